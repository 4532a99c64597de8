#!/usr/bin/env bash
# Every check of the project, from nothing: the README's test command, and what CI runs.
#  1. a fresh virtual environment (.venv) with the locked versions (requirements/lock.txt);
#  2. the Vulkan stack for the LiteRT GPU checks, and qemu-user with an arm64 tree for the ARM
#     checks (tflite/arm; cached under ~/.cache/lsnet-keras): apt-get, so root, or sudo the
#     first time;
#  3. lint (ruff), the Android core's Kotlin tests and the app's XML check;
#  4. the fast suite, then the slow one (a pytest process per test module, two at a time). The
#     tflite-runtime and MediaPipe / Task Library checks build their own cached virtual
#     environments (under ~/.cache/lsnet-keras).
set -euo pipefail
cd "$(dirname "$0")/.."

python3 -m venv --clear .venv
. .venv/bin/activate
python -m pip install -q -c requirements/lock.txt -e ".[dev]"

if [[ $(id -u) -eq 0 ]]; then as_root=(); else as_root=(sudo); fi
"${as_root[@]}" bash tflite/setup_gpu.sh
"${as_root[@]}" bash tflite/arm/setup.sh

ruff check .
ruff format --check .
bash android_demo/core/test.sh
python android_demo/check_xml.py

python -m pytest -q
# The slow suite: one pytest process per test module, two at a time, so what a module leaves
# in memory goes with its process (an xdist worker running module after module grew to 17 GB
# and was OOM-killed on the 24 GiB CI machine). Each module's output is shown when it ends.
slow_modules=$(python -m pytest -q -m slow --collect-only -p no:cacheprovider |
    grep -oE '^tests/[a-z0-9_]+\.py' | sort -u)
echo "slow suite: $(wc -w <<<"$slow_modules") modules, two at a time"
xargs -P 2 -n 1 bash tests/slow_module.sh <<<"$slow_modules"
