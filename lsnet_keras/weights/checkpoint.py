"""Read official LSNet checkpoints into {key: numpy array}, safely.

`.pth` files are read with `torch.load(weights_only=True)`, whose unpickler only rebuilds
tensors and plain containers: a checkpoint that carries a pickled callable is refused, never run.
`.safetensors` files hold no code at all. Every failure is a one-line `CheckpointError`.

Example:
    >>> from lsnet_keras.weights.checkpoint import read_state_dict
    >>> state = read_state_dict("../shared/reference/tiny_128.safetensors")
    >>> state["patch_embed.0.c.weight"].shape
    (8, 3, 3, 3)
"""

import zipfile

import numpy as np

from lsnet_keras.errors import LSNetError
from lsnet_keras.io import require_file

WRAPPER_KEYS = ("model", "state_dict", "model_ema")
HALF_FLOATS = ("float16", "bfloat16")  # read as float32


class CheckpointError(LSNetError):
    """A checkpoint that cannot be read or does not fit the model (one-line message)."""


def _read_safetensors(path):
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    try:
        import ml_dtypes  # noqa: F401  (lets NumPy, and so safetensors, hold bfloat16)
    except ImportError:
        pass
    try:
        return load_file(path)
    except (SafetensorError, OSError, ValueError, TypeError, KeyError) as err:
        raise CheckpointError(
            f"{path}: not a valid .safetensors file ({_first_line(err)})"
        ) from None


def _read_pth(path):
    try:
        import torch
    except ImportError:
        raise CheckpointError(
            f"{path}: reading .pth checkpoints needs PyTorch; install it with "
            "`pip install 'lsnet-keras[torch]'` (torch==2.13.0, CPU) or convert to .safetensors"
        ) from None
    import pickle
    import warnings

    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols it may not read
            warnings.simplefilter("ignore")
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        # torch's message suggests weights_only=False, i.e. running the file's code: never
        # repeat it; name only what was refused.
        offending = _unsafe_global(err)
        if offending is None:
            raise CheckpointError(
                f"{path}: not a readable PyTorch checkpoint (the safe reader refused it: "
                f"{_unpickler_reason(err)}); it was not executed"
            ) from None
        raise CheckpointError(
            f"{path}: refused: the checkpoint contains pickled code or objects that are not "
            f"tensors ({offending}); it was not executed"
        ) from None
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError) as err:
        raise CheckpointError(
            f"{path}: not a readable PyTorch checkpoint ({_first_line(err)})"
        ) from None
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: expected a dict of tensors, found {type(obj).__name__}")
    for key in WRAPPER_KEYS:
        if isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    state = {}
    for key, value in obj.items():
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(
                f"{path}: entry {key!r} is a {type(value).__name__}, not a tensor "
                f"(wrapped checkpoints are read from one of {WRAPPER_KEYS})"
            )
        value = value.detach().cpu()
        if value.dtype in (torch.bfloat16, torch.float16):
            value = value.float()
        try:
            state[key] = value.numpy()
        except TypeError:
            raise CheckpointError(
                f"{path}: entry {key!r} has the unsupported type {value.dtype}"
            ) from None
    return state


def _first_line(err):
    """The first line of an error, skipping torch's advice to load with weights_only=False."""
    text = [line for line in str(err).strip().splitlines() if "weights_only" not in line]
    return text[0] if text else type(err).__name__


def _unpickler_reason(err):
    """The specific line of torch's weights-only refusal (e.g. `Unsupported operand 149`)."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    specific = [line for line in lines[1:] if "weights_only" not in line and "issue" not in line]
    return specific[0] if specific else "not a tensor checkpoint"


def _unsafe_global(err):
    """The global torch's weights-only unpickler refused (e.g. `posix.system`), or None."""
    for line in str(err).splitlines():
        if "GLOBAL" in line:
            return line.strip()
    return None


def read_state_dict(path):
    """Read a `.pth` / `.safetensors` checkpoint into {official key: numpy array}.

    Unwraps `{"model": ...}`, `{"state_dict": ...}` or `{"model_ema": ...}` (first found) and a
    `module.` prefix (DataParallel / DDP).

    Example:
        >>> len(read_state_dict("../shared/reference/tiny_128.safetensors")) > 100
        True
    """
    try:
        path = require_file(path, "checkpoint")
    except LSNetError as err:
        raise CheckpointError(str(err)) from None
    if path.endswith(".safetensors"):
        state = _read_safetensors(path)
    elif path.endswith((".pth", ".pt", ".bin")):
        state = _read_pth(path)
    else:
        raise CheckpointError(f"{path}: unknown checkpoint type; expected .pth or .safetensors")
    if not state:
        raise CheckpointError(f"{path}: the checkpoint holds no tensors")
    if all(key.startswith("module.") for key in state):
        state = {key.removeprefix("module."): value for key, value in state.items()}
    return {key: _as_numpy(value) for key, value in state.items()}


def _as_numpy(value):
    """A checkpoint tensor as NumPy; 16-bit floats (float16, bfloat16) become float32."""
    value = np.asarray(value)
    if value.dtype.name in HALF_FLOATS:
        value = value.astype("float32")
    return value
