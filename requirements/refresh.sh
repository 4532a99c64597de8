#!/usr/bin/env bash
# Regenerate requirements/lock.txt: exact versions of everything setup.py asks for (the base
# install and the torch, train and dev extras) that install together, resolved by pip-tools
# with this machine's pip settings (torch 2.13.0 as the CPU build). Run after changing
# setup.py, or monthly to move to new releases; then run `bash tests/run.sh` before committing.
#
#   bash requirements/refresh.sh
set -euo pipefail
cd "$(dirname "$0")/.."
tools=$(mktemp -d)
trap 'rm -rf "$tools"' EXIT
python3 -m venv "$tools"
"$tools/bin/python" -m pip install -q "pip-tools==7.5.*"
"$tools/bin/pip-compile" --quiet --strip-extras --no-emit-index-url --no-emit-find-links \
    --extra torch --extra train --extra dev --output-file requirements/lock.txt setup.py
echo "wrote requirements/lock.txt ($(grep -c '==' requirements/lock.txt) pinned packages)"
