#!/usr/bin/env bash
# Builds, once, the MMDetection 2.28.2 / MMSegmentation 0.30.0 reference virtualenv of
# tests/test_parity_mmdet.py and tests/test_parity_mmseg.py, and
# prints its python's path as the last line of stdout (progress goes to stderr).
#
#   bash tests/mmdet_reference/build_env.sh [PYTHON]     # PYTHON: the base, default python3
#
# Where: ${XDG_CACHE_HOME:-~/.cache}/lsnet-keras/mmdet-<hash>, the hash of the Python version,
# requirements.txt and this script; a finished one is reused as it is. Built beside its place
# and renamed into it at the end, so an interrupted build is never reused.
#
# What: every package of requirements.txt with --no-deps (so pip never pulls a CUDA torch or
# anything unlisted): torch 2.13.0+cpu and the build tools first, then the rest, mmcv 1.7.2
# built pure-Python (MMCV_WITH_OPS=0, no build isolation: its setup.py imports torch). Then
# mmcv's own CPU NMS kernel, mmcv/ops/csrc/pytorch/cpu/nms.cpp, compiled alone as a torch C++
# extension (with a binding of our own) into <venv>/mmcv_nms/, which run_mmdet.py loads as the
# `nms` of its stand-in mmcv._ext; and run_mmdet.py --check. Needs a C++ compiler.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
python="${1:-python3}"
unset PYTHONPATH PYTHONHOME MMCV_WITH_TRT FORCE_CUDA FORCE_MLU FORCE_MPS
export MMCV_WITH_OPS=0 PIP_DISABLE_PIP_VERSION_CHECK=1

version="$("$python" -c 'import sys; print(sys.version)')"
hash="$({ echo "$version"; cat "$here/requirements.txt" "$here/build_env.sh"; } | sha256sum | cut -c1-16)"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/lsnet-keras"
venv="$cache/mmdet-$hash"
if [[ -f "$venv/lsnet-ready" ]]; then
    echo "$venv/bin/python"
    exit 0
fi

mkdir -p "$cache"
building="$venv.building-$$"
rm -rf "$building"
trap 'rm -rf "$building"' EXIT
log="$building.log"
echo "building the MMDetection reference environment in $venv (log: $log)" >&2
step() {
    echo "  $1" >&2
    shift
    if ! "$@" >>"$log" 2>&1; then
        tail -n 30 "$log" >&2
        echo "build_env.sh: failed: $*" >&2
        exit 1
    fi
}
: >"$log"
step "virtualenv ($version)" "$python" -m venv "$building"
py="$building/bin/python"
pip=("$py" -m pip install --no-deps)
step "torch and the build tools" "${pip[@]}" \
    $(grep -E '^(torch|setuptools|wheel|ninja)==' "$here/requirements.txt")
step "mmcv, mmdet and the rest" "${pip[@]}" --no-build-isolation -r "$here/requirements.txt"
step "torch is a CPU build" "$py" -c "import torch; assert torch.version.cuda is None"

mkdir -p "$building/mmcv_nms"
cat >"$building/mmcv_nms/binding.cpp" <<'EOF'
// Python binding of mmcv's nms_cpu (mmcv/ops/csrc/pytorch/cpu/nms.cpp), compiled beside it.
#include <torch/extension.h>

at::Tensor nms_cpu(at::Tensor boxes, at::Tensor scores, float iou_threshold, int offset);

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("nms", &nms_cpu, "mmcv's CPU NMS kernel", py::arg("boxes"), py::arg("scores"),
        py::arg("iou_threshold"), py::arg("offset"));
}
EOF
compile_nms() {
    PATH="$building/bin:$PATH" "$py" - "$building/mmcv_nms" <<'EOF'
import importlib.util
import os
import sys

from torch.utils.cpp_extension import load

out = sys.argv[1]
csrc = os.path.join(importlib.util.find_spec("mmcv").submodule_search_locations[0], "ops", "csrc")
load(
    "mmcv_nms_cpu",
    [os.path.join(csrc, "pytorch", "cpu", "nms.cpp"), os.path.join(out, "binding.cpp")],
    extra_include_paths=[os.path.join(csrc, "common")],
    build_directory=out,
    verbose=True,
)
EOF
}
step "mmcv's CPU NMS kernel (cpu/nms.cpp alone)" compile_nms
step "run_mmdet.py --check" "$py" "$here/run_mmdet.py" --check
date -u +%FT%TZ >"$building/lsnet-ready"
if [[ ! -f "$venv/lsnet-ready" ]]; then  # else another build finished first: keep that one
    rm -rf "$venv"
    mv -T "$building" "$venv"
fi
rm -f "$log"
echo "$venv/bin/python"
