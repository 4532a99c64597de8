"""Read official LSNet checkpoints into {key: numpy array}, safely.

`.pth` files are read with `torch.load(weights_only=True)`, whose unpickler only rebuilds
tensors and plain containers, plus exactly the plain-data types the official trainer writes
(`argparse.Namespace`, its `args`): a checkpoint that carries a pickled callable is refused,
never run. `.safetensors` files hold no code at all. Every failure is a one-line
`CheckpointError`.

Example:
    >>> from lsnet_keras.weights.checkpoint import read_state_dict
    >>> state = read_state_dict("../shared/reference/tiny_128.safetensors")
    >>> state["patch_embed.0.c.weight"].shape
    (8, 3, 3, 3)
"""

import argparse
import os
from typing import NamedTuple

import numpy as np

from lsnet_keras.errors import LSNetError
from lsnet_keras.io import require_file

WRAPPER_KEYS = ("model", "state_dict", "model_ema")
# Non-tensor types allowed in a .pth: what the official main.py saves besides tensors and
# plain containers ({"model", "optimizer", "lr_scheduler", "epoch", "model_ema", "scaler",
# "args": argparse.Namespace}). Plain data, no behavior; nothing else is unpickled.
SAFE_TYPES = (argparse.Namespace,)
HALF_FLOATS = ("float16", "bfloat16")  # read as float32


class CheckpointError(LSNetError):
    """A checkpoint that cannot be read or does not fit the model (one-line message)."""


class Checkpoint(NamedTuple):
    """What `read_checkpoint` read: the state_dict, the entry it came from, all wrapper entries.

    `entry` is "model", "state_dict" or "model_ema" for a wrapped (training) checkpoint and
    None for a bare state_dict; `wrappers` lists the wrapper entries the file holds.
    """

    state: dict
    entry: str | None
    wrappers: tuple


def _read_safetensors(path, source):
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
            f"{source}: not a valid .safetensors file ({_first_line(err)})"
        ) from None


def _load_pth(path, source):
    try:
        import torch
    except ImportError:
        raise CheckpointError(
            f"{source}: reading .pth checkpoints needs PyTorch; install it with "
            "`pip install 'lsnet-keras[torch]'` (torch==2.13.0, CPU) or convert to .safetensors"
        ) from None
    import pickle
    import warnings

    try:
        with torch.serialization.safe_globals(list(SAFE_TYPES)), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch warns about pickle protocols it may not read
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        # torch's message suggests weights_only=False, i.e. running the file's code: never
        # repeat it; name only what was refused.
        offending = _unsafe_global(err)
        if offending is None:
            raise CheckpointError(
                f"{source}: not a readable PyTorch checkpoint (the safe reader refused it: "
                f"{_unpickler_reason(err)}); it was not executed"
            ) from None
        raise CheckpointError(
            f"{source}: refused: the checkpoint contains pickled code or objects that are not "
            f"tensors ({offending}); it was not executed"
        ) from None
    except Exception as err:  # RuntimeError, EOFError, BadZipFile, struct.error on junk bytes
        raise CheckpointError(
            f"{source}: not a readable PyTorch checkpoint ({_first_line(err)})"
        ) from None


def _unwrap(obj, source, use_ema):
    """(state_dict, entry): the dict of tensors of a raw or wrapped checkpoint."""
    if use_ema:
        if not isinstance(obj.get("model_ema"), dict):
            raise CheckpointError(
                f"{source}: use_ema / --ema asked for EMA weights, but the checkpoint has no "
                f"'model_ema' (entries: {', '.join(map(str, obj)) or 'none'})"
            )
        return obj["model_ema"], "model_ema"
    for key in WRAPPER_KEYS:
        if isinstance(obj.get(key), dict):
            return obj[key], key
    return obj, None


def _read_pth(path, source, use_ema):
    import torch

    obj = _load_pth(path, source)
    if not isinstance(obj, dict):
        raise CheckpointError(f"{source}: expected a dict of tensors, found {type(obj).__name__}")
    wrappers = tuple(key for key in WRAPPER_KEYS if isinstance(obj.get(key), dict))
    obj, entry = _unwrap(obj, source, use_ema)
    state = {}
    for key, value in obj.items():
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(
                f"{source}: entry {key!r} is a {type(value).__name__}, not a tensor "
                f"(wrapped checkpoints are read from one of {WRAPPER_KEYS})"
            )
        value = value.detach().cpu()
        if value.dtype in (torch.bfloat16, torch.float16):
            value = value.float()
        try:
            state[key] = value.numpy()
        except TypeError:
            raise CheckpointError(
                f"{source}: entry {key!r} has the unsupported type {value.dtype}"
            ) from None
    return state, entry, wrappers


def _first_line(err):
    """The first line of an error, skipping torch's advice to load with weights_only=False."""
    text = [line for line in str(err).strip().splitlines() if "weights_only" not in line]
    return text[0] if text else type(err).__name__


def _unpickler_reason(err):
    """The reason line of torch's weights-only refusal (its first lines are boilerplate, and
    its advice to load with weights_only=False, i.e. to run the file's code, is never kept)."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    for index, line in enumerate(lines):
        if line.endswith("WeightsUnpickler error:") and index + 1 < len(lines):
            return lines[index + 1]
        if "WeightsUnpickler error:" in line:
            return line.split("WeightsUnpickler error:", 1)[1].strip()
    specific = [line for line in lines[1:] if "weights_only" not in line and "issue" not in line]
    return specific[0] if specific else "not a tensor checkpoint"


def _unsafe_global(err):
    """The global torch's weights-only unpickler refused (e.g. `posix.system`), or None."""
    for line in str(err).splitlines():
        if "GLOBAL" in line:
            return line.strip()
    return None


def read_checkpoint(path, use_ema=False, source=None):
    """A `Checkpoint` (state_dict, entry, wrappers) read from a `.pth` / `.safetensors` file.

    A training checkpoint is read from "model" (else "state_dict", else "model_ema") unless
    `use_ema` asks for "model_ema". `source` names the file in errors (default: `path`).

    Example:
        >>> read_checkpoint("../shared/reference/tiny_128.safetensors").entry is None
        True
    """
    try:
        path = require_file(path, "checkpoint")
    except LSNetError as err:  # named by `source` when it is not the path (hf://, imagenet)
        named = source in (None, os.fspath(path))
        raise CheckpointError(str(err) if named else f"{source}: {err}") from None
    source = source or path
    if path.endswith(".safetensors"):
        if use_ema:
            raise CheckpointError(f"{source}: a .safetensors file holds one set of weights, no EMA")
        state, entry, wrappers = _read_safetensors(path, source), None, ()
    elif path.endswith((".pth", ".pt", ".bin")):
        state, entry, wrappers = _read_pth(path, source, use_ema)
    else:
        raise CheckpointError(f"{source}: unknown checkpoint type; expected .pth or .safetensors")
    if not state:
        raise CheckpointError(f"{source}: the checkpoint holds no tensors")
    if all(key.startswith("module.") for key in state):
        state = {key.removeprefix("module."): value for key, value in state.items()}
    return Checkpoint({key: _as_numpy(v) for key, v in state.items()}, entry, wrappers)


def _as_numpy(value):
    """A checkpoint tensor as NumPy; 16-bit floats (float16, bfloat16) become float32."""
    value = np.asarray(value)
    if value.dtype.name in HALF_FLOATS:
        value = value.astype("float32")
    return value


def read_state_dict(path, use_ema=False):
    """Read a `.pth` / `.safetensors` checkpoint into {official key: numpy array}.

    Unwraps `{"model": ...}`, `{"state_dict": ...}` or `{"model_ema": ...}` (first found;
    `use_ema=True` takes "model_ema") and a `module.` prefix (DataParallel / DDP).

    Example:
        >>> len(read_state_dict("../shared/reference/tiny_128.safetensors")) > 100
        True
    """
    return read_checkpoint(path, use_ema).state
