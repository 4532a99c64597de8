"""fp16 numerics of a trained LSNet: its fp16 `.tflite` on the LiteRT GPU (float16 math, as on
phones) and on XNNPACK's fp16 kernels, against the Keras float32 model.

Random weights cannot answer this (an untrained LSNet is chaotic: any rounding moves its logits
by a large fraction of their size), so it is meant for a trained network and its held-out
images, plus inputs at the extremes of the pixel range (all black, all white, saturated noise).

Figures, per accelerator:
* `top1_agreement`: share of held-out images whose fp16 top-1 class is the float32 one;
* `median_relative_error` / `max_relative_error`: per image, max |fp16 - fp32| over the logits
  divided by max |fp32 logit| (the largest logit sets the scale), then the median / maximum;
* `extreme_relative_error`: that error on each extreme input, by name;
* `nonfinite`: NaN or Inf values among all outputs (held-out and extreme).

Example:
    >>> report = fp16_report(model, test_pixels)  # doctest: +SKIP
    >>> report["accelerators"]["gpu"]["top1_agreement"] >= 0.995  # doctest: +SKIP
    True
"""

import os
import tempfile

import numpy as np

from lsnet_keras.litert.export import export_tflite
from lsnet_keras.litert.gpu_check import litert_outputs
from lsnet_keras.preprocess import normalize

# The issue-13 targets, asserted by tests/test_fp16_gpu.py and reported by benchmarks/fp16_gpu.py.
TARGETS = {"top1_agreement": 0.995, "median_relative_error": 1e-2, "nonfinite": 0}


def extreme_pixels(size, noise_images=4, seed=0):
    """name -> uint8 RGB (1, size, size, 3): black, white and saturated noise (each pixel 0 or
    255 per channel), `noise_0` ... `noise_{n-1}`.

    Example:
        >>> sorted(extreme_pixels(8, noise_images=1))
        ['black', 'noise_0', 'white']
    """
    rng = np.random.default_rng(seed)
    shape = (1, size, size, 3)
    extremes = {"black": np.zeros(shape, "uint8"), "white": np.full(shape, 255, "uint8")}
    for i in range(noise_images):
        extremes[f"noise_{i}"] = (rng.integers(0, 2, shape) * 255).astype("uint8")
    return extremes


def relative_errors(reference, actual):
    """Per row: max |actual - reference| / max |reference| (inf where actual is not finite).

    Example:
        >>> relative_errors(np.array([[4.0, -2.0]]), np.array([[4.0, -1.0]])).tolist()
        [0.25]
    """
    reference = np.asarray(reference, "float64").reshape(len(reference), -1)
    actual = np.asarray(actual, "float64").reshape(len(actual), -1)
    error = np.max(np.abs(actual - reference), axis=1) / np.max(np.abs(reference), axis=1)
    return np.where(np.all(np.isfinite(actual), axis=1), error, np.inf)


def compare(reference, actual, extreme_names=()):
    """The figures of one accelerator (see the module docstring); the last rows of both arrays
    are the extreme inputs named `extreme_names`.

    Example:
        >>> compare(np.eye(3), np.eye(3))["top1_agreement"]
        1.0
    """
    held_out = len(reference) - len(extreme_names)
    errors = relative_errors(reference, actual)
    agree = np.argmax(actual[:held_out], -1) == np.argmax(reference[:held_out], -1)
    return {
        "top1_agreement": float(np.mean(agree)),
        "median_relative_error": float(np.median(errors[:held_out])),
        "max_relative_error": float(np.max(errors[:held_out])),
        "extreme_relative_error": {
            name: float(e) for name, e in zip(extreme_names, errors[held_out:])
        },
        "nonfinite": int(np.sum(~np.isfinite(actual))),
    }


def meets_targets(figures):
    """True when one accelerator's figures meet TARGETS (extreme inputs: finite only).

    Example:
        >>> meets_targets({"top1_agreement": 1.0, "median_relative_error": 0.0, "nonfinite": 0})
        True
    """
    return (
        figures["top1_agreement"] >= TARGETS["top1_agreement"]
        and figures["median_relative_error"] <= TARGETS["median_relative_error"]
        and figures["nonfinite"] <= TARGETS["nonfinite"]
    )


def fp16_report(model, pixels, accelerators=("gpu", "xnnpack_fp16"), target="gpu"):
    """Export `model` as fp16 for `target`, run it on each accelerator, compare with Keras fp32.

    Args:
        model: a trained LSNet (training or deploy form; float32).
        pixels: held-out uint8 RGB images (N, H, W, 3) at the model's input size.
        accelerators: keys of `gpu_check.ACCELERATORS`.
        target: the export target whose layout is measured (gpu: fp16-safe formulation).

    Returns:
        dict: `held_out` (N), `extremes` (names), `logit_scale` (max |fp32 logit|) and
        `accelerators` (name -> figures, see `compare`, plus `meets_targets`).

    Example:
        >>> fp16_report(model, test_pixels)["accelerators"]["gpu"]["nonfinite"]  # doctest: +SKIP
        0
    """
    extremes = extreme_pixels(pixels.shape[1])
    images = normalize(np.concatenate([pixels, *extremes.values()]))
    reference = np.asarray(model.predict(images, batch_size=32, verbose=0), "float32")
    report = {
        "held_out": len(pixels),
        "extremes": list(extremes),
        "logit_scale": float(np.max(np.abs(reference))),
        "accelerators": {},
    }
    with tempfile.TemporaryDirectory(prefix="fp16_check_") as tmp:
        path = os.path.join(tmp, "model_fp16.tflite")
        export_tflite(model, path, precision="fp16", target=target)
        for accelerator in accelerators:
            figures = compare(reference, litert_outputs(path, images, accelerator), extremes)
            figures["meets_targets"] = meets_targets(figures)
            report["accelerators"][accelerator] = figures
    return report
