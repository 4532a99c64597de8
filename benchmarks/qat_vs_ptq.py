"""QAT vs post-training quantization on real images, for the cpu and edgetpu int8 graphs.

Random weights say nothing about quantization (a random LSNet amplifies tiny perturbations), so
this trains a small LSNet on real handwritten digits (scikit-learn's copy of the UCI set:
1797 8x8 images, shipped inside scikit-learn, no download), upscaled to RGB, with a stratified
held-out split. Then, for each target graph (cpu: batched-matmul attention; edgetpu: the Edge
TPU formulation):

* PTQ: `export_tflite(float_model, precision="int8", calibration=<train images>)`;
* QAT: `quantize_model(float_model, target)`, a short fine-tune with `model.fit` distilling
  from the float model (targets: half the label, half the float model's softmax, as
  `training/qat.py --distill`), then `export_tflite(qat_model, precision="int8")` (no
  representative dataset).

Both int8 models take uint8 pixels (`io="uint8"`) and run in ai-edge-litert. Reported: held-out
top-1 of the float model and of each int8 model, and each int8 model's top-1 agreement with the
float model. Prints a markdown table and writes JSON (default benchmarks/results/qat_vs_ptq.json).

Example:
    $ python benchmarks/qat_vs_ptq.py            # about 4 minutes on 2 CPU cores
    $ python benchmarks/qat_vs_ptq.py --quick    # a smoke run: fewer epochs, 64 px
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import lsnet_keras  # noqa: E402
from lsnet_keras.litert.export import export_tflite  # noqa: E402
from lsnet_keras.preprocess import normalize  # noqa: E402
from lsnet_keras.quantization.conversion import integer_violations  # noqa: E402
from lsnet_keras.quantization.qat_model import quantize_model  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
ARCHITECTURE = {"embed_dim": (32, 64, 96, 128), "depth": (2, 2, 2, 2), "num_heads": (2, 2, 2, 2)}
TARGETS = ("cpu", "edgetpu")


def digits(size=96, test_fraction=0.25, seed=0):
    """(train_pixels, train_labels, test_pixels, test_labels): uint8 RGB (N, size, size, 3).

    scikit-learn's digits (0..16 gray levels, 8x8) scaled to 0..255 and resized bicubically.

    Example:
        >>> digits(32)[0].shape
        (1347, 32, 32, 3)
    """
    from PIL import Image
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    images = []
    for image in data.images:
        gray = Image.fromarray((image * (255.0 / 16.0)).round().astype("uint8"))
        big = np.asarray(gray.resize((size, size), Image.BICUBIC))
        images.append(np.repeat(big[..., None], 3, axis=-1))
    train_x, test_x, train_y, test_y = train_test_split(
        np.stack(images),
        data.target.astype("int32"),
        test_size=test_fraction,
        stratify=data.target,
        random_state=seed,
    )
    return train_x, train_y, test_x, test_y


def small_lsnet(size, num_classes=10, seed=0):
    """The benchmark's LSNet: embed_dim (32, 64, 96, 128), depth 2 per stage, 2 heads.

    Example:
        >>> small_lsnet(64).output_shape
        (None, 10)
    """
    keras.utils.set_random_seed(seed)
    return lsnet_keras.LSNet(**ARCHITECTURE, num_classes=num_classes, input_shape=size)


def fit(model, pixels, targets, epochs, lr, batch_size=32, seed=0):
    """Train with AdamW and a cosine schedule on normalized pixels; returns the model.

    `targets`: class probabilities (N, classes), one-hot or soft.

    Example:
        >>> pixels, labels = digits(32)[:2]
        >>> fit(small_lsnet(32), pixels, np.eye(10)[labels], epochs=1, lr=1e-3)  # doctest: +SKIP
    """
    keras.utils.set_random_seed(seed)
    steps = epochs * (len(pixels) // batch_size)
    schedule = keras.optimizers.schedules.CosineDecay(lr, max(steps, 1))
    model.compile(
        keras.optimizers.AdamW(schedule, weight_decay=0.01),
        keras.losses.CategoricalCrossentropy(from_logits=True),
    )
    model.fit(
        normalize(pixels), targets, batch_size=batch_size, epochs=epochs, shuffle=True, verbose=0
    )
    return model


def tflite_top1(model_bytes, pixels):
    """(top-1 classes, XNNPACK used) of a uint8-input classifier on uint8 pixels, one at a time.

    XNNPACK refuses some int8 graphs (e.g. a requantization scale outside its range); those run
    on TFLite's builtin kernels instead, and the result says so.

    Example:
        >>> int8 = export_tflite(model, precision="int8", io="uint8")  # doctest: +SKIP
        >>> tflite_top1(int8, pixels)  # doctest: +SKIP
    """
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    try:
        interpreter = Interpreter(model_content=model_bytes, num_threads=2)
        interpreter.allocate_tensors()
        xnnpack = True
    except RuntimeError:
        interpreter = Interpreter(
            model_content=model_bytes,
            experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
        )
        interpreter.allocate_tensors()
        xnnpack = False
    (source,), (sink,) = interpreter.get_input_details(), interpreter.get_output_details()
    top1 = []
    for image in pixels:
        interpreter.set_tensor(source["index"], image[None].astype(source["dtype"]))
        interpreter.invoke()
        top1.append(int(np.argmax(interpreter.get_tensor(sink["index"])[0])))
    return np.array(top1), xnnpack


def run(size=80, epochs=16, qat_epochs=3, lr=2e-3, qat_lr=2e-5, seed=0, log=print):
    """Train, quantize both ways for each target, evaluate; returns the results dict.

    Example:
        >>> results = run(size=32, epochs=1, qat_epochs=1)  # doctest: +SKIP
    """
    began = time.time()
    train_x, train_y, test_x, test_y = digits(size, seed=seed)
    log(f"digits: {len(train_x)} train / {len(test_x)} held-out images at {size}x{size}")
    one_hot = np.eye(10, dtype="float32")[train_y]
    model = fit(small_lsnet(size, seed=seed), train_x, one_hot, epochs, lr, seed=seed)
    float_top1 = np.argmax(model.predict(normalize(test_x), verbose=0), axis=-1)
    teacher = keras.ops.convert_to_numpy(
        keras.ops.softmax(model.predict(normalize(train_x), verbose=0))
    )
    distill_targets = 0.5 * one_hot + 0.5 * teacher
    results = {
        "dataset": "scikit-learn digits (UCI), stratified 75/25 split",
        "image_size": size,
        "architecture": {k: list(v) for k, v in ARCHITECTURE.items()},
        "epochs": epochs,
        "qat_epochs": qat_epochs,
        "train_images": len(train_x),
        "test_images": len(test_x),
        "float_top1": float(np.mean(float_top1 == test_y)),
        "targets": {},
    }
    log(f"float: top-1 {100 * results['float_top1']:.2f}% ({time.time() - began:.0f} s)")
    calibration = train_x[np.random.default_rng(seed).permutation(len(train_x))[:200]]
    for target in TARGETS:
        row = {}
        ptq = export_tflite(
            model, precision="int8", target=target, io="uint8", calibration=calibration
        )
        qat = quantize_model(model, target=target, calibration=normalize(calibration))
        qat = fit(qat, train_x, distill_targets, qat_epochs, qat_lr, seed=seed)
        qat_bytes = export_tflite(qat, precision="int8", target=target, io="uint8")
        float_ops, requantize = integer_violations(qat_bytes)
        qat_keras_top1 = np.argmax(qat.predict(normalize(test_x), verbose=0), axis=-1)
        top1 = {}
        for name, model_bytes in (("ptq", ptq), ("qat", qat_bytes)):
            top1[name], row[f"{name}_runs_on_xnnpack"] = tflite_top1(model_bytes, test_x)
            row[f"{name}_int8_top1"] = float(np.mean(top1[name] == test_y))
            row[f"{name}_agreement_with_float"] = float(np.mean(top1[name] == float_top1))
        row["qat_keras_top1"] = float(np.mean(qat_keras_top1 == test_y))
        row["qat_int8_agreement_with_qat_keras"] = float(np.mean(top1["qat"] == qat_keras_top1))
        row["qat_float_ops"], row["qat_requantize_ops"] = float_ops, requantize
        results["targets"][target] = row
        ptq_top1, qat_top1 = 100 * row["ptq_int8_top1"], 100 * row["qat_int8_top1"]
        log(f"{target}: PTQ {ptq_top1:.2f}%, QAT {qat_top1:.2f}% ({time.time() - began:.0f} s)")
    results["seconds"] = round(time.time() - began, 1)
    return results


def markdown(results):
    """The README table of a `run` result (a dagger marks a model XNNPACK refused).

    Example:
        >>> print(markdown(json.load(open("benchmarks/results/qat_vs_ptq.json"))))  # doctest: +SKIP
    """
    lines = [
        "| graph | float top-1 | PTQ int8 top-1 | QAT int8 top-1 | PTQ agreement with float "
        "| QAT agreement with float |",
        "|---|---|---|---|---|---|",
    ]
    refused = False
    for target, row in results["targets"].items():
        cells = [f"{100 * results['float_top1']:.2f}%"]
        for name in ("ptq", "qat"):
            mark = "" if row[f"{name}_runs_on_xnnpack"] else " †"
            refused = refused or bool(mark)
            cells.append(f"{100 * row[f'{name}_int8_top1']:.2f}%{mark}")
        for name in ("ptq", "qat"):
            cells.append(f"{100 * row[f'{name}_agreement_with_float']:.2f}%")
        lines.append(f"| {target} | " + " | ".join(cells) + " |")
    if refused:
        lines.append("\n† XNNPACK refused this model; run with TFLite's builtin int8 kernels.")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--img-size", type=int, default=80, help="80: stage 4 is 2x2 tokens")
    parser.add_argument("--epochs", type=int, default=16, help="float training epochs")
    parser.add_argument("--qat-epochs", type=int, default=3, help="QAT fine-tuning epochs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="smoke run: 64 px, 3 + 1 epochs")
    parser.add_argument("--json", default=str(REPO / "benchmarks" / "results" / "qat_vs_ptq.json"))
    args = parser.parse_args(argv)
    if args.quick:
        args.img_size, args.epochs, args.qat_epochs = 64, 3, 1
    results = run(args.img_size, args.epochs, args.qat_epochs, seed=args.seed)
    table = markdown(results)
    print(table)
    results["table"] = table
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    with open(args.json, "w") as f:
        json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
