"""Contenders of `benchmarks/mobile_latency.py` converted in litert-torch's own venv.

    litert-torch           `litert_torch.convert` of the Conv+BN-folded reference (fp32, NCHW).
    litert-torch-int8      its PT2E route: `torch.export`, `PT2EQuantizer` with litert-torch's
                           `get_symmetric_quantization_config(is_per_channel=True)` (static:
                           int8 activations with histogram ranges, per-channel symmetric int8
                           weights), `prepare_pt2e`, calibration, `convert_pt2e`, then
                           `litert_torch.convert(..., quant_config=QuantConfig(pt2e_quantizer))`.
    aeq-int8               ai-edge-quantizer's static int8 recipe (`recipe.static_wi8_ai8()`:
                           int8 weights and activations, min/max) applied to the litert-torch
                           fp32 .tflite above.

Both int8 routes calibrate on the images our int8 export uses (the 32 built-in images,
normalized, NCHW). litert-torch pins its own torch, jax and pydantic versions, so it lives
in a venv under ~/.cache/lsnet-keras (`litert_torch_python`) and this module is run there as
a script (`python litert_torch_routes.py COMMAND ...`); at import time it needs only numpy.
"""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

# Versions that install together: litert-torch 0.10.0 requires ai-edge-quantizer 0.10.* and
# ai-edge-litert 2.3.*; torch is pinned to the CPU wheel of the main environment (an unpinned
# torch would pull CUDA).
SPECS = ("litert-torch==0.10.0", "ai-edge-quantizer==0.10.0", "torch==2.13.0")
VENV = Path.home() / ".cache" / "lsnet-keras" / "litert-torch-venv"
NAMES = ("litert-torch", "litert-torch-int8", "aeq-int8")
DESCRIPTIONS = {
    "litert-torch": "litert_torch.convert of the Conv+BN-folded reference (fp32, NCHW input), "
    "ai_edge_litert + XNNPACK like ours",
    "litert-torch-int8": "litert-torch's PT2E int8: torch.export, PT2EQuantizer with "
    "get_symmetric_quantization_config(is_per_channel=True) (static int8 activations, histogram "
    "observer; per-channel symmetric int8 weights), calibrated on our 32 built-in images, "
    "convert_pt2e, litert_torch.convert(quant_config=QuantConfig(pt2e_quantizer)); "
    "ai_edge_litert + XNNPACK",
    "aeq-int8": "ai-edge-quantizer recipe.static_wi8_ai8() (int8 weights and activations, "
    "min/max) on the litert-torch fp32 .tflite, calibrated on our 32 built-in images; "
    "ai_edge_litert + XNNPACK",
}
_PROBE = "import litert_torch, ai_edge_quantizer"


def litert_torch_python(install=True):
    """The Python of a venv with litert-torch and ai-edge-quantizer (`SPECS`), created under
    ~/.cache/lsnet-keras if missing, so the main environment is never changed. Returns None if
    unavailable (install failed, or `install=False` and no venv)."""
    python = VENV / "bin" / "python"
    probe = [str(python), "-c", _PROBE]
    if python.exists() and subprocess.run(probe, capture_output=True).returncode == 0:
        return python
    if not install:
        return None
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(VENV)], check=True)
    if subprocess.run([str(python), "-m", "pip", "install", "-q", *SPECS]).returncode != 0:
        return None
    return python if subprocess.run(probe, capture_output=True).returncode == 0 else None


def _run(python, *args):
    """Run this module in the venv's Python; RuntimeError with the tail of stderr if it fails."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    command = [str(python), __file__, *map(str, args)]
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    if result.returncode != 0:
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        raise RuntimeError(f"{args[0]} failed: {' | '.join(lines[-3:])[-1500:]}")


def export_litert_torch(model, variant, path, python):
    """`litert_torch.convert` (fp32) of the folded reference `model` (its state_dict)."""
    import torch

    state_path = Path(path).with_suffix(".state.pt")
    torch.save(model.state_dict(), state_path)
    try:
        _run(python, "fp32", variant, state_path, path)
    finally:
        state_path.unlink()
    return path


def export_litert_torch_int8(model, variant, path, python, calibration_nchw):
    """litert-torch's PT2E static int8 of the folded reference, calibrated on the images."""
    import torch

    state_path = Path(path).with_suffix(".state.pt")
    calibration_path = Path(path).with_suffix(".calibration.npy")
    torch.save(model.state_dict(), state_path)
    np.save(calibration_path, np.asarray(calibration_nchw, dtype="float32"))
    try:
        _run(python, "pt2e-int8", variant, state_path, calibration_path, path)
    finally:
        state_path.unlink()
        calibration_path.unlink()
    return path


def export_aeq_int8(fp32_path, path, python, calibration_nchw):
    """ai-edge-quantizer's static int8 recipe on the litert-torch fp32 .tflite `fp32_path`."""
    if not Path(fp32_path).exists():
        raise RuntimeError(f"needs the litert-torch fp32 model ({Path(fp32_path).name}): missing")
    calibration_path = Path(path).with_suffix(".calibration.npy")
    np.save(calibration_path, np.asarray(calibration_nchw, dtype="float32"))
    try:
        _run(python, "aeq-int8", fp32_path, calibration_path, path)
    finally:
        calibration_path.unlink()
    return path


# --- run in the venv -------------------------------------------------------------------------


def _folded_reference(variant, state_path):
    import contenders
    import torch

    model = contenders.fold_conv_bn(contenders.reference_model(variant)).eval()
    model.load_state_dict(torch.load(state_path))
    return model


def _fp32_main(variant, state_path, output):
    import litert_torch
    import torch

    model = _folded_reference(variant, state_path)
    litert_torch.convert(model, (torch.zeros(1, 3, 224, 224),)).export(output)


def _pt2e_int8_main(variant, state_path, calibration_path, output):
    import litert_torch
    import torch
    from litert_torch.quantize import pt2e_quantizer
    from litert_torch.quantize.quant_config import QuantConfig
    from torchao.quantization.pt2e import quantize_pt2e

    model = _folded_reference(variant, state_path)
    args = (torch.zeros(1, 3, 224, 224),)
    quantizer = pt2e_quantizer.PT2EQuantizer().set_global(
        pt2e_quantizer.get_symmetric_quantization_config(is_per_channel=True, is_dynamic=False)
    )
    prepared = quantize_pt2e.prepare_pt2e(torch.export.export(model, args).module(), quantizer)
    with torch.no_grad():
        for image in np.load(calibration_path):
            prepared(torch.from_numpy(image[None]))
    converted = quantize_pt2e.convert_pt2e(prepared, fold_quantize=False)
    config = QuantConfig(pt2e_quantizer=quantizer)
    litert_torch.convert(converted, args, quant_config=config).export(output)


def _aeq_int8_main(fp32_path, calibration_path, output):
    from ai_edge_litert.interpreter import Interpreter
    from ai_edge_quantizer import quantizer, recipe

    signatures = Interpreter(model_path=fp32_path).get_signature_list()
    key, signature = next(iter(signatures.items()))
    (name,) = signature["inputs"]
    data = {key: [{name: image[None]} for image in np.load(calibration_path)]}
    qt = quantizer.Quantizer(fp32_path, recipe.static_wi8_ai8())
    calibration = qt.calibrate(data, num_threads=1)
    qt.quantize(calibration).export_model(output, overwrite=True)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    commands = {"fp32": _fp32_main, "pt2e-int8": _pt2e_int8_main, "aeq-int8": _aeq_int8_main}
    commands[sys.argv[1]](*sys.argv[2:])
