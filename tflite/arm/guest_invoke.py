"""Run inside the emulated aarch64 Python (see tflite/arm.py): one .tflite, counted invokes.

    guest_invoke.py MODEL INPUTS.npz OUTPUTS.npz REPEATS THREADS

INPUTS.npz holds one array per model input, `input_0`, `input_1`, ... in the interpreter's
input order. After one uncounted warm-up invoke, each of REPEATS invokes is marked for the
counting plugin (a syscall no kernel has, watched by insn_count.c); an empty marked region
comes first so the host can subtract what marking itself costs. OUTPUTS.npz gets `output_0`,
... of the last invoke. Only numpy and ai-edge-litert are imported here: the guest has nothing
else.
"""

import ctypes
import sys

sys.path.insert(0, "/opt/site")

import numpy as np  # noqa: E402
from ai_edge_litert.interpreter import Interpreter  # noqa: E402

MARK_SYSCALL, MARK_BEGIN, MARK_END = 0x4C53, 1, 2


def main(model, inputs, outputs, repeats, threads):
    mark = ctypes.CDLL(None).syscall
    interpreter = Interpreter(model_path=model, num_threads=int(threads))
    interpreter.allocate_tensors()
    with np.load(inputs) as arrays:
        for i, detail in enumerate(interpreter.get_input_details()):
            interpreter.set_tensor(detail["index"], arrays[f"input_{i}"])
    interpreter.invoke()
    mark(MARK_SYSCALL, MARK_BEGIN)
    mark(MARK_SYSCALL, MARK_END)
    for _ in range(int(repeats)):
        mark(MARK_SYSCALL, MARK_BEGIN)
        interpreter.invoke()
        mark(MARK_SYSCALL, MARK_END)
    results = {
        f"output_{i}": interpreter.get_tensor(detail["index"])
        for i, detail in enumerate(interpreter.get_output_details())
    }
    np.savez(outputs, **results)


if __name__ == "__main__":
    main(*sys.argv[1:])
