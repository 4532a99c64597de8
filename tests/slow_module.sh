#!/usr/bin/env bash
# One test module's slow tests in their own pytest process (tests/run.sh runs two at a time):
# its whole output when it fails, its last lines when it passes. Exits with pytest's status.
#
#   bash tests/slow_module.sh tests/test_arm.py
set -uo pipefail
log=$(mktemp)
python -m pytest -q -m slow -p no:cacheprovider "$1" >"$log" 2>&1
status=$?
echo "== $1: exit $status"
if ((status == 0)); then tail -n 3 "$log"; else cat "$log"; fi
rm -f "$log"
exit "$status"
