"""Run a `.tflite` model on LiteRT's GPU accelerator and compare its outputs with the CPU's.

The GPU accelerator of the `ai-edge-litert` wheel is WebGPU; on a machine without a GPU it
runs on Mesa's lavapipe Vulkan driver (install it once: `bash tflite/setup_gpu.sh`). The model
is compiled for the GPU *alone*, which LiteRT refuses when any op would fall back to the CPU:
that is the "fully accelerated" test. (`is_fully_accelerated()` of a GPU+CPU model also counts
XNNPACK as an accelerator, and TF's `Analyzer(gpu_compatibility=True)` passes everything.)
A model that is not fully accelerated is then run GPU+CPU, so its difference is still reported.

LiteRT runs in a child Python process: lavapipe's LLVM crashes (SIGSEGV in vkCreateDevice)
when TensorFlow, which bundles its own LLVM, is loaded in the same process.

This module is run as a script in the child, so it imports only the standard library and
NumPy (not the lsnet_keras package, which would load TensorFlow); the parent's errors are the
project's one-line `LSNetError`s, imported where raised (`_error`). The command-line tool is
`python -m tflite.gpu_check`.

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

LITERT_PIN = "ai-edge-litert==2.3.0"
SETUP_HINT = "run `bash tflite/setup_gpu.sh` (as root)"
XNNPACK_FORCE_FP16 = 4  # TFLITE_XNNPACK_DELEGATE_FLAG_FORCE_FP16 (xnnpack_delegate.h)
# How `litert_outputs` runs a model: (LiteRT accelerator, float16 math).
ACCELERATORS = {
    "gpu": ("GPU", True),  # LiteRT's GPU default, as on phones
    "gpu_fp32": ("GPU", False),
    "xnnpack": ("CPU", False),
    "xnnpack_fp16": ("CPU", True),  # XNNPACK's fp16 kernels (needs F16C or ARM fp16)
}


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
        request["result"] = os.path.join(tmp, "result.json")
        req_path = os.path.join(tmp, "request.json")
        with open(req_path, "w") as f:
            json.dump(request, f)
        cmd = [sys.executable, os.path.abspath(__file__), "_worker", req_path]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return _failure(f"LiteRT did not finish within {timeout} s", fp32)
        log = proc.stdout + proc.stderr
        if not os.path.exists(request["result"]):
            return _failure(f"LiteRT child process died (exit {proc.returncode}){_tail(log)}", fp32)
        with open(request["result"]) as f:
            worker = json.load(f)
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
        request["result"] = os.path.join(tmp, "result.json")
        np.save(request["inputs"], np.ascontiguousarray(images))
        req_path = os.path.join(tmp, "request.json")
        with open(req_path, "w") as f:
            json.dump(request, f)
        cmd = [sys.executable, os.path.abspath(__file__), "_worker", req_path]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise _error(f"{model_path}: LiteRT did not finish within {timeout} s") from None
        if not os.path.exists(request["result"]):
            log = proc.stdout + proc.stderr
            raise _error(f"{model_path}: LiteRT child process died{_tail(log)}")
        with open(request["result"]) as f:
            worker = json.load(f)
        if worker["status"] != "ok":
            raise _error(f"{model_path} on {accelerator}: {worker['message']}")
        return np.load(request["outputs"])


def _outputs_worker(request):
    """Child side of `litert_outputs`: one compiled model, every image through it."""
    try:
        from ai_edge_litert import compiled_model as cm
    except ImportError as err:
        return {"status": "no_litert", "message": f"ai-edge-litert is not importable ({err})"}
    hardware, fp16 = ACCELERATORS[request["accelerator"]]
    if hardware == "GPU":
        options = cm.Options(
            cm.HardwareAccelerator.GPU, gpu_options=cm.GpuOptions(enforce_f32=not fp16)
        )
    else:
        flags = XNNPACK_FORCE_FP16 if fp16 else None
        options = cm.Options(
            cm.HardwareAccelerator.CPU, cpu_options=cm.CpuOptions(xnnpack_flags=flags)
        )
    try:
        model = cm.CompiledModel.from_file(request["model"], options=options)
        in_buffers, out_buffers = model.create_input_buffers(0), model.create_output_buffers(0)
        details = out_buffers[0].get_tensor_details()
        shape = [max(int(n), 1) for n in details["shape"]]
        outputs = []
        for image in np.load(request["inputs"]):
            in_buffers[0].write(np.ascontiguousarray(image[None]))
            model.run_by_index(0, in_buffers, out_buffers)
            value = out_buffers[0].read(int(np.prod(shape)), np.dtype(details["dtype"]))
            outputs.append(value.reshape(shape[1:]).astype(np.float32))
    except Exception as err:  # LiteRT raises RuntimeError with a multi-line text
        return {"status": "error", "message": _message(err)}
    np.save(request["outputs"], np.stack(outputs))
    return {"status": "ok"}


def _error(message):
    """The parent's one-line LSNetError (imported here: the child must not load TensorFlow)."""
    from lsnet_keras.errors import LSNetError

    return LSNetError(" ".join(str(message).splitlines()))


def _check_file(path):
    from lsnet_keras.io import require_file

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


# ---------------------------------------------------------------- child process (no TensorFlow)


def _worker(request):
    """Compile and run the model on CPU and GPU; return the raw result dict."""
    try:
        from ai_edge_litert import compiled_model as cm
    except ImportError as err:
        return {"status": "no_litert", "message": f"ai-edge-litert is not importable ({err})"}
    model = request["model"]
    try:
        cpu = cm.CompiledModel.from_file(model, hardware_accel=cm.HardwareAccelerator.CPU)
        signature = next(iter(cpu.get_signature_list()))
        quant = _quantization(model, cpu, signature)
    except Exception as err:  # LiteRT raises RuntimeError with a multi-line text
        return {"status": "bad_model", "message": _message(err)}
    try:
        inputs = _inputs(cpu, signature, quant, request)
    except ValueError as err:
        return {"status": "bad_input", "message": str(err)}
    try:
        expected = _run(cpu, signature, inputs, quant)
    except Exception as err:
        return {"status": "bad_model", "message": f"CPU run failed: {_message(err)}"}
    scale = max((_absmax(v) for v in expected.values()), default=0.0)
    steps = [quant[name][0] for name in expected if quant.get(name, (0.0, 0))[0] > 0]
    result = {"status": "gpu_error", "output_scale": scale, "quant_step": max(steps, default=0.0)}
    result["inputs"] = [
        {"name": k, "dtype": str(v.dtype), "shape": list(v.shape)} for k, v in inputs.items()
    ]
    gpu_options = cm.GpuOptions(enforce_f32=bool(request["fp32"]))
    try:
        accel = cm.HardwareAccelerator.GPU
        gpu = cm.CompiledModel.from_file(model, options=cm.Options(accel, gpu_options=gpu_options))
        fully, result["gpu_run"] = gpu.is_fully_accelerated(), "gpu"
    except Exception as err:
        if "not accelerated" not in str(err):
            return {**result, "message": _message(err)}
        accel = cm.HardwareAccelerator.GPU | cm.HardwareAccelerator.CPU
        try:
            gpu = cm.CompiledModel.from_file(
                model, options=cm.Options(accel, gpu_options=gpu_options)
            )
        except Exception as err2:
            return {**result, "message": _message(err2)}
        fully, result["gpu_run"] = False, "gpu+cpu"
    try:
        actual = _run(gpu, signature, inputs, quant)
    except Exception as err:
        return {**result, "message": f"GPU run failed: {_message(err)}"}
    outputs = [
        {"name": k, "max_abs_diff": _max_abs_diff(actual[k], v), "scale": _absmax(v)}
        for k, v in expected.items()
    ]
    diff = max((o["max_abs_diff"] for o in outputs), default=0.0)
    result.update(status="ok", fully_accelerated=bool(fully), max_abs_diff=diff, outputs=outputs)
    return result


def _message(err):
    lines = [line.strip("└ ").strip() for line in str(err).splitlines() if line.strip()]
    return lines[-1] if lines else type(err).__name__


def _quantization(path, model, signature):
    """name -> (scale, zero_point) of the signature's inputs and outputs (scale 0: float)."""
    from ai_edge_litert.interpreter import Interpreter

    tensors = {t["index"]: t for t in Interpreter(model_path=path).get_tensor_details()}
    details = {
        **model.get_input_tensor_details(signature),
        **model.get_output_tensor_details(signature),
    }
    return {name: tuple(tensors[d["index"]]["quantization"]) for name, d in details.items()}


def _inputs(model, signature, quant, request):
    """name -> array in the model's input dtype: the request's arrays, or seeded random ones."""
    details = model.get_input_tensor_details(signature)
    order = model.get_signature_list()[signature]["inputs"]  # the buffers' order
    rng = np.random.default_rng(request["seed"])
    given = None
    if request["inputs"]:
        with np.load(request["inputs"]) as data:
            given = [data[f"arr_{i}"] for i in range(len(data.files))]
        names = request["input_names"] or order[: len(given)]
        if sorted(names) != sorted(order):
            raise ValueError(f"inputs {names} do not match the model's inputs {order}")
        given = dict(zip(names, given))
    inputs = {}
    for name in order:
        d = details[name]
        dtype, shape = np.dtype(d["dtype"]), [max(int(n), 1) for n in d["shape"]]
        if given is None:
            inputs[name] = _random(rng, dtype, shape)
            continue
        array = np.asarray(given[name])
        if array.size != int(np.prod(shape)):
            raise ValueError(f"input {name}: {array.shape} does not fit the model's {shape}")
        scale, zero = quant.get(name, (0.0, 0))
        if array.dtype.kind == "f" and dtype.kind in "iu" and scale > 0:
            info = np.iinfo(dtype)
            array = np.clip(np.round(array / scale + zero), info.min, info.max)
        inputs[name] = np.ascontiguousarray(array.astype(dtype).reshape(shape))
    return inputs


def _random(rng, dtype, shape):
    if dtype.kind == "f":
        return rng.standard_normal(shape).astype(dtype)
    if dtype in (np.int8, np.uint8):
        info = np.iinfo(dtype)
        return rng.integers(info.min, info.max, shape, endpoint=True).astype(dtype)
    if dtype.kind in "iu":
        return rng.integers(0, 4, shape).astype(dtype)
    if dtype == np.bool_:
        return rng.integers(0, 2, shape).astype(bool)
    raise ValueError(f"cannot make inputs of dtype {dtype}")


def _run(model, signature, inputs, quant):
    """name -> output array in real units (quantized outputs dequantized), float64.

    A tensor listed twice among the outputs gets two buffers, and only the last one is filled.
    """
    index = model.get_signature_index(signature)
    in_buffers = model.create_input_buffers(index)
    for buffer, array in zip(in_buffers, inputs.values()):
        buffer.write(array)
    out_buffers = model.create_output_buffers(index)
    model.run_by_index(index, in_buffers, out_buffers)
    outputs = {}
    for buffer, name in zip(out_buffers, model.get_signature_list()[signature]["outputs"]):
        d = buffer.get_tensor_details()
        shape = [max(int(n), 1) for n in d["shape"]]
        value = buffer.read(int(np.prod(shape)), np.dtype(d["dtype"])).reshape(shape)
        scale, zero = quant.get(name, (0.0, 0))
        value = value.astype(np.float64)
        outputs[name] = (value - zero) * scale if scale > 0 else value
    return outputs


def _absmax(array):
    return float(np.max(np.abs(array))) if array.size else 0.0


def _max_abs_diff(actual, expected):
    diff = np.abs(actual - expected)
    diff[np.isnan(actual) & np.isnan(expected)] = 0.0
    diff[np.isnan(diff)] = np.inf
    return float(diff.max()) if diff.size else 0.0


def _worker_main(request_path):
    with open(request_path) as f:
        request = json.load(f)
    worker = _outputs_worker if request.get("mode") == "outputs" else _worker
    result = worker(request)
    with open(request["result"], "w") as f:
        json.dump(result, f)
    return 0


if __name__ == "__main__":  # the child process: `python gpu.py _worker REQUEST.json`
    sys.exit(_worker_main(sys.argv[2]))
