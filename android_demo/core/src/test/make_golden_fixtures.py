"""Writes the golden fixtures under src/test/resources/golden/ from two tiny real TFLite models,
and the crop fixtures under src/test/resources/crop/ from a real photo.

A reference writer of the format in GOLDEN.md: the image is the library's evaluation crop
(`lsnet_keras.preprocess.eval_crop`, Pillow) of `resources/crop/photo.png` (a 201x150 cut of the
official `preprocess.png`), the model runs in the TFLite interpreter, the input tensor follows
the Kotlin rule, the top-5 follows the Kotlin scoring rule. Needs the project's Python
dependencies; rerun only to regenerate fixtures (from the repository root):

    python android_demo/core/src/test/make_golden_fixtures.py
"""

import json
import shutil
from pathlib import Path

import numpy as np
import tensorflow as tf
from PIL import Image

from lsnet_keras.preprocess import CROP_FRACTION, eval_crop

RESOURCES = Path(__file__).parent / "resources"
OUT = RESOURCES / "golden"
PHOTO = RESOURCES / "crop" / "photo.png"
# (width, height, clockwise turn before the crop) of the crops EvalCropTest compares exactly.
CROPS = ((64, 64, 0), (224, 224, 0), (64, 48, 0), (64, 64, 90), (33, 33, 270))
SIZE, CLASSES = 4, 8
MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)


def tiny_model(normalize_inside):
    """GAP + Dense over a SIZE x SIZE RGB input; normalizes 0..255 pixels itself if asked."""
    inp = tf.keras.Input((SIZE, SIZE, 3), batch_size=1)
    x = (inp / 255.0 - MEAN) / STD if normalize_inside else inp
    x = tf.keras.layers.GlobalAveragePooling2D()(x)
    dense = tf.keras.layers.Dense(CLASSES)
    out = dense(x)
    rng = np.random.default_rng(0)
    dense.set_weights([rng.normal(0, 2, (3, CLASSES)), rng.normal(0, 0.5, CLASSES)])
    return tf.keras.Model(inp, out)


def convert(model, quantized):
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    if quantized:
        rng = np.random.default_rng(1)

        def representative():
            for _ in range(16):
                img = rng.integers(0, 256, (1, SIZE, SIZE, 3)).astype(np.float32)
                img[0, 0, 0] = [0, 0, 0]
                img[0, 0, 1] = [255, 255, 255]
                yield [img]

        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = representative
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = tf.uint8
        conv.inference_output_type = tf.int8
    return conv.convert()


def quant_fields(prefix, detail):
    scale, zero_point = detail["quantization"]
    if detail["dtype"] == np.float32:
        return {}
    return {f"{prefix}_scale": float(scale), f"{prefix}_zero_point": int(zero_point)}


def encode_input(pixels_rgb, detail):
    """The Kotlin InputEncoder rule."""
    if detail["dtype"] == np.float32:
        return ((pixels_rgb.astype(np.float32) / np.float32(255) - MEAN) / STD).astype(np.float32)
    scale, zero_point = detail["quantization"]
    real = pixels_rgb.astype(np.float32) / np.float32(scale)
    q = np.sign(real) * np.floor(np.abs(real) + np.float32(0.5)) + zero_point
    info = np.iinfo(detail["dtype"])
    return np.clip(q, info.min, info.max).astype(detail["dtype"])


def top5(raw, detail):
    """The Kotlin scoring rule: dequantize, softmax unless a distribution, stable ranking."""
    values = raw.astype(np.float64).ravel()
    if detail["dtype"] != np.float32:
        scale, zero_point = detail["quantization"]
        values = scale * (values - zero_point)
    is_distribution = np.all((values >= 0) & (values <= 1)) and abs(values.sum() - 1) <= 1e-3
    if not is_distribution:
        e = np.exp(values - values.max())
        values = e / e.sum()
    order = np.argsort(-values, kind="stable")[:5]
    return {"indices": order.tolist(), "scores": values[order].tolist()}


def write_case(name, tflite_bytes):
    case = OUT / name
    case.mkdir(parents=True, exist_ok=True)
    interpreter = tf.lite.Interpreter(model_content=tflite_bytes)
    interpreter.allocate_tensors()
    inp = interpreter.get_input_details()[0]
    out = interpreter.get_output_details()[0]

    rgb = np.asarray(eval_crop(Image.open(PHOTO).convert("RGB"), SIZE, SIZE))
    argb = (
        (0xFF << 24)
        | (rgb[..., 0].astype(np.uint32) << 16)
        | (rgb[..., 1].astype(np.uint32) << 8)
        | rgb[..., 2]
    )
    tensor = encode_input(rgb, inp)
    interpreter.set_tensor(inp["index"], tensor[None])
    interpreter.invoke()
    raw = interpreter.get_tensor(out["index"])

    meta = {
        "width": SIZE,
        "height": SIZE,
        "crop_fraction": CROP_FRACTION,
        "input_dtype": np.dtype(inp["dtype"]).name,
        **quant_fields("input", inp),
        "mean": MEAN.tolist(),
        "std": STD.tolist(),
        "output_dtype": np.dtype(out["dtype"]).name,
        **quant_fields("output", out),
    }
    (case / "model.tflite").write_bytes(tflite_bytes)
    shutil.copyfile(PHOTO, case / "photo.png")
    (case / "input_argb.bin").write_bytes(argb.astype("<u4").tobytes())
    (case / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    (case / "expected_input.bin").write_bytes(
        tensor.astype(tensor.dtype.newbyteorder("<")).tobytes()
    )
    (case / "raw_output.bin").write_bytes(raw.astype(raw.dtype.newbyteorder("<")).tobytes())
    (case / "expected_top5.json").write_text(json.dumps(top5(raw, out), indent=2) + "\n")


def write_crops():
    """Python's evaluation crops of the photo, turned clockwise first, as PNGs."""
    photo = Image.open(PHOTO).convert("RGB")
    for width, height, turn in CROPS:
        upright = photo.rotate(-turn, expand=True) if turn else photo
        eval_crop(upright, height, width).save(
            PHOTO.parent / f"expected_{width}x{height}_rot{turn}.png"
        )


if __name__ == "__main__":
    write_crops()
    write_case("tiny_float", convert(tiny_model(normalize_inside=False), quantized=False))
    write_case("tiny_uint8", convert(tiny_model(normalize_inside=True), quantized=True))
