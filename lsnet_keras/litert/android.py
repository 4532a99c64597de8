"""What the Android demo loads, and the golden files that tie its Kotlin code to ours.

`write_android_assets` exports the two models the app offers (fp16 for the GPU accelerator,
int8 for the CPU), both taking raw uint8 RGB pixels with the normalization inside, so the app
needs no normalization constants, plus `labels.txt`; each model carries the evaluation crop
fraction the app crops frames with. `write_golden` runs an exported model on a photo with the
library's preprocessing and LiteRT, and writes the directory format of
`android_demo/core/GOLDEN.md` (photo and model included) for the Kotlin test to reproduce.

Example:
    >>> from lsnet_keras.litert.android import write_android_assets
    >>> write_android_assets(model, "android_demo/app/src/main/assets")  # doctest: +SKIP
"""

import io
import json
import os

import numpy as np

from lsnet_keras.config import IMAGENET_MEAN, IMAGENET_STD
from lsnet_keras.errors import LSNetError
from lsnet_keras.io import atomic_path, check_outputs, outputs_removed_on_failure
from lsnet_keras.litert.export import default_labels, export_tflite
from lsnet_keras.litert.metadata import MetadataError, read_metadata
from lsnet_keras.litert.runtime import TFLiteClassifier
from lsnet_keras.preprocess import CROP_FRACTION, eval_crop, load_image

ANDROID_MODELS = {
    "lsnet_fp16.tflite": {"precision": "fp16", "target": "gpu", "include_preprocessing": True},
    "lsnet_int8.tflite": {"precision": "int8", "target": "cpu", "io": "uint8"},
}


def asset_paths(folder):
    """The files `write_android_assets` writes into `folder`.

    Example:
        >>> [os.path.basename(p) for p in asset_paths("assets")]
        ['lsnet_fp16.tflite', 'lsnet_int8.tflite', 'labels.txt']
    """
    return [os.path.join(folder, name) for name in [*ANDROID_MODELS, "labels.txt"]]


def write_android_assets(model, folder, calibration=None, labels=None, overwrite=False):
    """Write `lsnet_fp16.tflite`, `lsnet_int8.tflite` and `labels.txt` into `folder`.

    Example:
        >>> sorted(write_android_assets(model, "/tmp/assets"))  # doctest: +SKIP
        ['labels.txt', 'lsnet_fp16.tflite', 'lsnet_int8.tflite']
    """
    paths = asset_paths(folder)
    names = [os.path.basename(path) for path in paths]
    check_outputs(paths, overwrite)  # before any work
    labels = default_labels(model.num_classes) if labels is None else list(labels)
    with outputs_removed_on_failure(paths, folder):  # a failure part-way does not block a rerun
        for name, options in ANDROID_MODELS.items():
            path = os.path.join(folder, name)
            export_tflite(
                model, path, calibration=calibration, labels=labels, overwrite=overwrite, **options
            )
        with atomic_path(os.path.join(folder, "labels.txt"), overwrite=overwrite) as tmp:
            with open(tmp, "w", encoding="utf-8") as f:
                f.write("\n".join(labels) + "\n")
    return names


def _quantized_input(pixels, dtype, scale, zero_point):
    """The Kotlin rule: round half away from zero, then clamp (GOLDEN.md)."""
    if not scale:
        return pixels.astype(dtype)
    real = pixels.astype("float32") / np.float32(scale)
    rounded = np.sign(real) * np.floor(np.abs(real) + 0.5) + zero_point
    info = np.iinfo(dtype)
    return np.clip(rounded, info.min, info.max).astype(dtype)


def _top5(scores):
    probabilities = np.asarray(scores, "float64")
    if not (
        probabilities.min() >= 0
        and probabilities.max() <= 1
        and abs(probabilities.sum() - 1) < 1e-3
    ):
        shifted = np.exp(probabilities - probabilities.max())
        probabilities = shifted / shifted.sum()
    order = np.argsort(-probabilities, kind="stable")[:5]
    return {"indices": [int(i) for i in order], "scores": [float(probabilities[i]) for i in order]}


def _model_crop_fraction(model_path):
    """The crop fraction stored in the model, which must be the one `eval_crop` applies."""
    with open(model_path, "rb") as f:
        model_bytes = f.read()
    try:
        crop_fraction = read_metadata(model_bytes)["crop_fraction"]
    except MetadataError as err:
        raise LSNetError(f"{model_path}: {err}") from None
    if crop_fraction != CROP_FRACTION:
        raise LSNetError(
            f"{model_path}: crop fraction {crop_fraction} in the model's metadata, expected "
            f"{CROP_FRACTION} (the evaluation crop); export the model again with lsnet export"
        )
    return model_bytes, crop_fraction


GOLDEN_FILES = (
    "meta.json",
    "input_argb.bin",
    "expected_input.bin",
    "raw_output.bin",
    "expected_top5.json",
    "model.tflite",
    "photo.png",
)


def write_golden(model_path, image_path, folder, overwrite=False):
    """Write the GOLDEN.md directory for `model_path` run on `image_path` (official crop).

    The photo as decoded (PNG) and the model go in too: the Kotlin side crops the same pixels
    with the crop fraction it reads from the model. Existing golden files are replaced only
    with `overwrite`; a failure part-way leaves none.

    Example:
        >>> write_golden("lsnet_int8.tflite", "cat.png", "/tmp/golden_int8")  # doctest: +SKIP
    """
    check_outputs([os.path.join(folder, name) for name in GOLDEN_FILES], overwrite)
    photo = load_image(image_path)  # refuses unreadable or over-budget images before any work
    classifier = TFLiteClassifier(model_path)
    model_bytes, crop_fraction = _model_crop_fraction(model_path)
    details, output = classifier.input, classifier.output
    pixels = np.asarray(eval_crop(photo, classifier.height, classifier.width))
    dtype = np.dtype(details["dtype"])
    if dtype == np.float32:
        tensor = (
            (pixels.astype("float32") / 255 - np.float32(IMAGENET_MEAN)) / np.float32(IMAGENET_STD)
        )[None].astype("float32")
    else:
        tensor = _quantized_input(pixels, dtype, *details["quantization"])[None]
    interpreter = classifier.interpreter
    interpreter.set_tensor(details["index"], tensor)
    interpreter.invoke()
    raw = interpreter.get_tensor(output["index"])
    scores, _ = classifier.run(tensor)
    meta = {
        "width": classifier.width,
        "height": classifier.height,
        "crop_fraction": crop_fraction,
        "input_dtype": dtype.name,
        "mean": list(IMAGENET_MEAN),
        "std": list(IMAGENET_STD),
        "output_dtype": np.dtype(output["dtype"]).name,
    }
    for prefix, tensor_details in (("input", details), ("output", output)):
        scale, zero_point = tensor_details["quantization"]
        if np.dtype(tensor_details["dtype"]) != np.float32 and scale:
            meta[f"{prefix}_scale"], meta[f"{prefix}_zero_point"] = float(scale), int(zero_point)
    argb = (
        (0xFF << 24)
        | (pixels[..., 0].astype("uint32") << 16)
        | (pixels[..., 1].astype("uint32") << 8)
        | pixels[..., 2].astype("uint32")
    )
    files = {
        "meta.json": json.dumps(meta, indent=1).encode(),
        "input_argb.bin": argb.astype("<u4").tobytes(),
        "expected_input.bin": tensor.astype(tensor.dtype.newbyteorder("<")).tobytes(),
        "raw_output.bin": raw.astype(raw.dtype.newbyteorder("<")).tobytes(),
        "expected_top5.json": json.dumps(_top5(scores)).encode(),
        "model.tflite": model_bytes,
        "photo.png": _png(photo),
    }
    golden = [os.path.join(folder, name) for name in GOLDEN_FILES]
    with outputs_removed_on_failure(golden, folder):
        for name in GOLDEN_FILES:
            with atomic_path(os.path.join(folder, name), overwrite=True) as tmp:
                with open(tmp, "wb") as f:
                    f.write(files[name])
    return folder


def _png(image):
    """A PIL image as PNG bytes (lossless: the Kotlin side decodes exactly these pixels)."""
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()
