"""Loading of the official LSNet golden cases in ``../shared/reference`` (framework-neutral)."""

import json
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file

REFERENCE_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "reference"
MANIFEST_DIR = REFERENCE_DIR / "manifests"
FEATURE_NAMES = ("patch_embed", "blocks1", "blocks2", "blocks3", "blocks4")
CASES = ("tiny_128", "tiny_160", "tiny_distill_128", "lsnet_t_224")
# Cases run on another case's weights at a new image size: name -> (weights case, img_size).
RESIZED_CASES = {"lsnet_t_288_from_224": ("lsnet_t_224", 288)}
VARIANTS = (
    "lsnet_t",
    "lsnet_s",
    "lsnet_b",
    "lsnet_t_distill",
    "lsnet_s_distill",
    "lsnet_b_distill",
)


def load_case(name):
    """Load a golden case as a dict of numpy data.

    Keys: ``input`` (NCHW float32), ``logits``, ``features`` (dict name -> NCHW array, in
    ``FEATURE_NAMES`` order; ``None`` for resized cases), ``state_dict`` (name -> array, as
    saved; a resized case gets its source's unresized weights) and ``config`` (``LSNet`` kwargs,
    including ``img_size`` and ``num_classes``).
    """
    source, img_size = RESIZED_CASES.get(name, (name, None))
    meta = json.loads((REFERENCE_DIR / f"{source}.json").read_text())
    logits = np.load(REFERENCE_DIR / f"{name}.logits.npy")
    config = {**meta["kwargs"], "img_size": img_size or meta["img_size"]}
    config["num_classes"] = logits.shape[1]
    features = None
    if img_size is None:
        with np.load(REFERENCE_DIR / f"{name}.features.npz") as npz:
            features = {key: npz[key] for key in FEATURE_NAMES}
    return {
        "input": np.load(REFERENCE_DIR / f"{name}.input.npy"),
        "logits": logits,
        "features": features,
        "state_dict": load_file(REFERENCE_DIR / f"{source}.safetensors"),
        "config": config,
    }


def float32_bound(logits):
    """How far float32 LSNet-T-size logits may be from the goldens: 2e-4 of their largest value.

    float32 summation order differs between CPUs and kernels (oneDNN on an Intel machine moved
    LSNet-T's logits, about 14 in size, by 1.09e-3; XNNPACK orders sums its own way). Exactness
    is proven in float64 (test_parity_goldens, test_parity_torch).
    """
    return 2e-4 * float(np.abs(logits).max())


def load_manifest(variant):
    """Return ``(kwargs, [(key, shape tuple, dtype name), ...])`` of a released variant."""
    manifest = json.loads((MANIFEST_DIR / f"{variant}.json").read_text())
    return manifest["kwargs"], [(k, tuple(shape), dtype) for k, shape, dtype in manifest["keys"]]
