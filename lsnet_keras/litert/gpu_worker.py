"""The child process of `gpu_check`: LiteRT compiles and runs a `.tflite` model here.

Lavapipe's LLVM crashes (SIGSEGV in vkCreateDevice) when TensorFlow, which bundles its own LLVM,
is loaded in the same process, so `gpu_check` runs this file as a script in a fresh Python: it
imports only the standard library and NumPy (not the lsnet_keras package, which would load
TensorFlow). The parent writes a request (JSON: the model, the inputs, where the result goes):

- `check_gpu`'s: run the model on the CPU, then on the GPU alone (or GPU+CPU when LiteRT refuses
  that), and measure the difference (`_compare`);
- `litert_outputs`' (mode "outputs"): every image through one of ACCELERATORS (`_outputs`).

Example:
    $ python lsnet_keras/litert/gpu_worker.py REQUEST.json  # writes request["result"]
"""

import json
import sys

import numpy as np

XNNPACK_FORCE_FP16 = 4  # TFLITE_XNNPACK_DELEGATE_FLAG_FORCE_FP16 (xnnpack_delegate.h)
# How `litert_outputs` runs a model: (LiteRT accelerator, float16 math).
ACCELERATORS = {
    "gpu": ("GPU", True),  # LiteRT's GPU default, as on phones
    "gpu_fp32": ("GPU", False),
    "xnnpack": ("CPU", False),
    "xnnpack_fp16": ("CPU", True),  # XNNPACK's fp16 kernels (needs F16C or ARM fp16)
}


def _compare(request):
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


def _outputs(request):
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


def main(request_path):
    """Answer the request in `request_path` (JSON): write the result where it says; returns 0.

    Example:
        $ python lsnet_keras/litert/gpu_worker.py REQUEST.json
    """
    with open(request_path) as f:
        request = json.load(f)
    worker = _outputs if request.get("mode") == "outputs" else _compare
    result = worker(request)
    with open(request["result"], "w") as f:
        json.dump(result, f)
    return 0


if __name__ == "__main__":  # the child process: `python gpu_worker.py REQUEST.json`
    sys.exit(main(sys.argv[1]))
