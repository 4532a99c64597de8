"""Run a `.tflite` model on LiteRT's GPU accelerator and compare its outputs with the CPU's.

The GPU accelerator of the `ai-edge-litert` wheel is WebGPU; on a machine without a GPU it
runs on Mesa's lavapipe Vulkan driver (install it once: `bash tflite/setup_gpu.sh`). The model
is compiled for the GPU *alone*, which LiteRT refuses when any op would fall back to the CPU:
that is the "fully accelerated" test. (`is_fully_accelerated()` of a GPU+CPU model also counts
XNNPACK as an accelerator, and TF's `Analyzer(gpu_compatibility=True)` passes everything.)
A model that is not fully accelerated is then run GPU+CPU, so its difference is still reported.

LiteRT runs in a child Python process: lavapipe's LLVM crashes (SIGSEGV in vkCreateDevice)
when TensorFlow, which bundles its own LLVM, is loaded in the same process.

This module is the parent side: it writes a request, runs `gpu_worker.py` as the child (which
imports neither TensorFlow nor this package) and turns its result into a report; its errors are
the project's one-line `LSNetError`s. The command-line tool is `python -m tflite.gpu_check`.

Example:
    >>> from lsnet_keras.litert.gpu_check import check_gpu
    >>> check_gpu("model.tflite")["fully_accelerated"]  # doctest: +SKIP
    True
"""

import json
import os
import re
import subprocess
import sys
import tempfile

import numpy as np

from lsnet_keras.errors import LSNetError
from lsnet_keras.io import require_file
from lsnet_keras.litert import gpu_worker
from lsnet_keras.litert.gpu_worker import ACCELERATORS

LITERT_PIN = "ai-edge-litert==2.3.0"
SETUP_HINT = "run `bash tflite/setup_gpu.sh` (as root)"


def check_gpu(model_path, inputs=None, seed=0, *, rtol=1e-2, fp32=False, timeout=600):
    """Run `model_path` on the LiteRT GPU and on the CPU with the same inputs; report as a dict.

    Args:
        model_path: a `.tflite` file (first signature is run).
        inputs: None (random, seeded: float N(0, 1), int8/uint8 over their full range, int32
            in [0, 4)), a list of arrays in signature input order, or a dict name -> array.
            Float arrays given for an integer input are quantized with its scale/zero point.
        rtol: outputs are close when max |gpu - cpu| <= rtol * max |cpu| (or, for quantized
            outputs, when within 2 quantization steps).
        fp32: force fp32 GPU math (LiteRT's GPU default is fp16, like on phones).
        timeout: seconds for the child process.

    Returns:
        dict with `fully_accelerated`, `accelerator`, `max_abs_diff` (real units; from the
        GPU+CPU run when not fully accelerated), `output_scale`, `tolerance`, `close`, `ok`,
        `unsupported_ops` (the GPU delegate's reasons), `partition`, `precision`, `gpu_run`
        ("gpu" or "gpu+cpu"), `inputs` and `outputs` (per-output `max_abs_diff` and `scale`),
        `error` (a string when the GPU cannot be used at all; the results are then None).

    Raises:
        LSNetError (a ValueError): the file is missing or not a valid TFLite model, or `inputs`
            do not fit the model (one line naming the file).

    Example:
        >>> report = check_gpu("model.tflite")  # doctest: +SKIP
        >>> report["fully_accelerated"], report["max_abs_diff"] < 1e-2  # doctest: +SKIP
        (True, True)
    """
    _check_file(model_path)
    with tempfile.TemporaryDirectory(prefix="gpu_check_") as tmp:
        request = {"model": os.path.abspath(model_path), "seed": seed, "fp32": fp32}
        request.update(_save_inputs(inputs, tmp))
        try:
            worker, log, code = _run_worker(request, tmp, timeout)
        except subprocess.TimeoutExpired:
            return _failure(f"LiteRT did not finish within {timeout} s", fp32)
        if worker is None:
            return _failure(f"LiteRT child process died (exit {code}){_tail(log)}", fp32)
    if worker["status"] == "bad_input":
        raise _error(f"{model_path}: {worker['message']}")
    if worker["status"] == "bad_model":
        raise _error(f"{model_path}: LiteRT cannot load or run it on the CPU ({worker['message']})")
    if worker["status"] != "ok":
        return _failure(_gpu_error(worker, log), fp32)
    return _report(worker, log, rtol, fp32)


def litert_outputs(model_path, images, accelerator="gpu", timeout=600):
    """Run a one-input, one-output `.tflite` on each of `images` with `accelerator`; stack them.

    `accelerator` is a key of ACCELERATORS: gpu (float16, fully accelerated or an error),
    gpu_fp32, xnnpack or xnnpack_fp16. Runs in a child process like `check_gpu`.

    Returns:
        float32 array (len(images), *output shape without the batch axis).

    Raises:
        LSNetError (a ValueError): unknown accelerator, bad file, or LiteRT cannot run the
            model so.

    Example:
        >>> litert_outputs("model.tflite", images, "xnnpack_fp16").shape  # doctest: +SKIP
        (450, 10)
    """
    if accelerator not in ACCELERATORS:
        raise _error(f"accelerator must be one of {', '.join(ACCELERATORS)}, got {accelerator!r}")
    _check_file(model_path)
    with tempfile.TemporaryDirectory(prefix="litert_outputs_") as tmp:
        request = {"mode": "outputs", "model": os.path.abspath(model_path)}
        request.update(accelerator=accelerator, inputs=os.path.join(tmp, "inputs.npy"))
        request["outputs"] = os.path.join(tmp, "outputs.npy")
        np.save(request["inputs"], np.ascontiguousarray(images))
        try:
            worker, log, _ = _run_worker(request, tmp, timeout)
        except subprocess.TimeoutExpired:
            raise _error(f"{model_path}: LiteRT did not finish within {timeout} s") from None
        if worker is None:
            raise _error(f"{model_path}: LiteRT child process died{_tail(log)}")
        if worker["status"] != "ok":
            raise _error(f"{model_path} on {accelerator}: {worker['message']}")
        return np.load(request["outputs"])


def _run_worker(request, tmp, timeout):
    """Run `gpu_worker.py` on `request` (written to `tmp`): (its result, or None when the child
    died before writing one; its stdout + stderr; its exit status). Raises TimeoutExpired."""
    request["result"] = os.path.join(tmp, "result.json")
    req_path = os.path.join(tmp, "request.json")
    with open(req_path, "w") as f:
        json.dump(request, f)
    cmd = [sys.executable, os.path.abspath(gpu_worker.__file__), req_path]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    log = proc.stdout + proc.stderr
    if not os.path.exists(request["result"]):
        return None, log, proc.returncode
    with open(request["result"]) as f:
        return json.load(f), log, proc.returncode


def _error(message):
    """A one-line LSNetError of `message` (LiteRT's messages span several lines)."""
    return LSNetError(" ".join(str(message).splitlines()))


def _check_file(path):
    require_file(path, "TFLite model")
    with open(path, "rb") as f:
        head = f.read(8)
    if head[4:8] != b"TFL3":
        raise _error(f"{path}: not a TFLite flatbuffer (no TFL3 identifier)")


def _save_inputs(inputs, tmp):
    if inputs is None:
        return {"inputs": None, "input_names": None}
    names = list(inputs) if isinstance(inputs, dict) else None
    arrays = [np.asarray(a) for a in (inputs.values() if names else inputs)]
    path = os.path.join(tmp, "inputs.npz")
    np.savez(path, *arrays)
    return {"inputs": path, "input_names": names}


def _failure(error, fp32):
    report = dict.fromkeys(["accelerator", "max_abs_diff", "output_scale", "tolerance"])
    report.update(dict.fromkeys(["close", "partition", "gpu_run", "inputs", "outputs"]))
    report.update(fully_accelerated=False, ok=False, unsupported_ops=[], error=error)
    report["precision"] = "fp32" if fp32 else "fp16"
    return report


def _tail(log, lines=3):
    last = [line for line in log.strip().splitlines() if line.strip()][-lines:]
    return (": " + " | ".join(last)) if last else ""


def _gpu_error(worker, log):
    if worker["status"] == "no_litert":
        return f"{worker['message']}; pip install {LITERT_PIN}"
    if "No adapters found" in log or "Couldn't load Vulkan" in log:
        return f"no Vulkan/WebGPU adapter for LiteRT's GPU accelerator; {SETUP_HINT}"
    return f"GPU accelerator failed: {worker['message']}{_tail(log)}"


def _accelerator(log):
    """'WebGPU (Vulkan) on llvmpipe (LLVM 15.0.6, 256 bits)' from Dawn's 'Selected adapter' line."""
    line = re.search(r"Selected adapter: (.*?), arch=.*backend=(\w+)", log)
    return f"WebGPU ({line.group(2)}) on {line.group(1)}" if line else "WebGPU"


def _report(worker, log, rtol, fp32):
    tolerance = max(rtol * worker["output_scale"], 2 * worker["quant_step"])
    close = worker["max_abs_diff"] <= tolerance
    return {
        "fully_accelerated": worker["fully_accelerated"],
        "accelerator": _accelerator(log),
        "precision": "fp32" if fp32 else "fp16",
        "max_abs_diff": worker["max_abs_diff"],
        "output_scale": worker["output_scale"],
        "tolerance": tolerance,
        "close": close,
        "ok": bool(worker["fully_accelerated"] and close),
        "unsupported_ops": _unsupported_ops(log),
        "partition": next(iter(re.findall(r"\d+ operations will run on the GPU.*", log)), None),
        "gpu_run": worker["gpu_run"],
        "inputs": worker["inputs"],
        "outputs": worker["outputs"],
        "error": None,
    }


def _unsupported_ops(log):
    """The GPU delegate's 'OP: reason' lines, in order, without repeats."""
    found, inside = [], False
    for line in log.splitlines():
        if "operations are not supported by GPU delegate" in line:
            inside = True
        elif inside and re.match(r"\d+ operations will run on the GPU", line):
            inside = False
        elif inside and line.strip() and line.strip() not in found:
            found.append(line.strip())
    return found
