"""Run `.tflite` models with tflite-runtime on given input tensors; JSON out.

Runs in the tflite-runtime 2.14 virtualenv made by tests/test_tflite_runtime_compat.py (NumPy < 2,
no TensorFlow, no ai-edge-litert), the stack of Coral and Raspberry Pi images:

    python tflite_runtime_run.py --inputs inputs.npz --output result.json a.tflite b.tflite

`inputs.npz` holds, for the i-th model given, an array `model_<i>` of shape (N, *input shape)
already in the model's input dtype; each of the N tensors is invoked on its own, on one thread,
with each kernel set of KERNELS. The output maps each model path to
{kernels: {"outputs": nested list (N, *output shape), "dtype": "int8"|...}}, or to
{"error": message} when tflite-runtime cannot load or run the model, plus the versions used.
Imports only NumPy and tflite-runtime.
"""

import argparse
import json
import sys
from importlib import metadata

import numpy as np
from tflite_runtime.interpreter import Interpreter, OpResolverType

# "default": what an app gets (optimized kernels, XNNPACK applied by default);
# "reference": the reference kernels, whose arithmetic is meant to stay fixed across releases.
KERNELS = {"default": OpResolverType.AUTO, "reference": OpResolverType.BUILTIN_REF}


def run(model_path, inputs, resolver):
    """The model's first output for each input tensor, stacked."""
    interpreter = Interpreter(
        model_path=model_path, num_threads=1, experimental_op_resolver_type=resolver
    )
    interpreter.allocate_tensors()
    (source,), (sink,) = interpreter.get_input_details(), interpreter.get_output_details()
    if inputs.dtype != source["dtype"]:
        raise TypeError(f"inputs are {inputs.dtype}, the model takes {source['dtype']}")
    outputs = []
    for tensor in inputs:
        interpreter.set_tensor(source["index"], tensor[None])
        interpreter.invoke()
        outputs.append(interpreter.get_tensor(sink["index"])[0].copy())
    return np.stack(outputs)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+")
    parser.add_argument("--inputs", required=True)
    parser.add_argument("--output", required=True)
    args = parser.parse_args()
    arrays = np.load(args.inputs)
    results = {}
    for i, path in enumerate(args.models):
        try:
            outputs = {k: run(path, arrays[f"model_{i}"], r) for k, r in KERNELS.items()}
        except Exception as err:  # a refusal is a result: the test asserts on the message
            results[path] = {"error": f"{type(err).__name__}: {err}"}
        else:
            results[path] = {
                k: {"outputs": v.tolist(), "dtype": v.dtype.name} for k, v in outputs.items()
            }
    versions = {
        "python": sys.version.split()[0],
        "tflite-runtime": metadata.version("tflite-runtime"),
        "numpy": np.__version__,
    }
    with open(args.output, "w") as f:
        json.dump({"versions": versions, "results": results}, f)


if __name__ == "__main__":
    main()
