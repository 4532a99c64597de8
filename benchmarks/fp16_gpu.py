"""fp16 on the GPU, on trained networks: LiteRT GPU (float16 math) and XNNPACK fp16 vs Keras fp32.

Trains two LSNets on real images (scikit-learn's digits, upscaled to RGB; see qat_vs_ptq.py):
the small benchmark LSNet at 96 px and an LSNet-T (the real variant: embed (64, 128, 256, 384),
depth (0, 2, 8, 10)) at 128 px, where stage 4 attends over 2x2 tokens. Each is exported as fp16
for the gpu target (its fp16-safe layout) and run on the held-out images and on extreme inputs
(black, white, saturated noise) with `lsnet_keras.litert.fp16_check.fp16_report`.
The GPU is LiteRT's WebGPU accelerator, on Mesa lavapipe here (`bash tflite/setup_gpu.sh`).

Prints a markdown table and writes JSON (default benchmarks/results/fp16_gpu.json).

Example:
    $ python benchmarks/fp16_gpu.py            # about 25 minutes on 2 CPU cores
    $ python benchmarks/fp16_gpu.py --quick    # smoke run: small model only, 1 epoch, 64 px
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
import qat_vs_ptq  # noqa: E402

import lsnet_keras  # noqa: E402
from lsnet_keras.litert.fp16_check import TARGETS, fp16_report  # noqa: E402
from lsnet_keras.preprocess import normalize  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
# name -> (builder(size), image size, epochs)
MODELS = {
    "small": (qat_vs_ptq.small_lsnet, 96, 6),
    "lsnet_t": (lambda size: lsnet_keras.lsnet_t(num_classes=10, input_shape=size), 128, 8),
}


def run(names=tuple(MODELS), quick=False, seed=0, log=print):
    """Train each model, measure fp16 on GPU and XNNPACK; returns the results dict.

    Example:
        >>> results = run(["small"], quick=True)  # doctest: +SKIP
    """
    results = {"dataset": "scikit-learn digits (UCI), stratified 75/25 split", "targets": TARGETS}
    results["models"] = {}
    for name in names:
        began = time.time()
        build, size, epochs = MODELS[name]
        if quick:
            size, epochs = 64, 1
        train_x, train_y, test_x, test_y = qat_vs_ptq.digits(size, seed=seed)
        keras.utils.set_random_seed(seed)
        one_hot = np.eye(10, dtype="float32")[train_y]
        model = qat_vs_ptq.fit(build(size), train_x, one_hot, epochs, 2e-3, seed=seed)
        logits = model.predict(normalize(test_x), verbose=0)
        row = {"image_size": size, "epochs": epochs, "parameters": model.count_params()}
        row["float_top1"] = float(np.mean(np.argmax(logits, -1) == test_y))
        log(f"{name}: trained, top-1 {100 * row['float_top1']:.2f}% ({time.time() - began:.0f} s)")
        row.update(fp16_report(model, test_x))
        row["seconds"] = round(time.time() - began, 1)
        results["models"][name] = row
        log(markdown({"models": {name: row}}))
    return results


def markdown(results):
    """The README table of a `run` result.

    Example:
        >>> print(markdown(json.load(open("benchmarks/results/fp16_gpu.json"))))  # doctest: +SKIP
    """
    lines = [
        "| model | accelerator | top-1 agreement with fp32 | median rel. logit error "
        "| max rel. error | worst extreme input | NaN/Inf |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, row in results["models"].items():
        for accelerator, f in row["accelerators"].items():
            worst = max(f["extreme_relative_error"].items(), key=lambda kv: kv[1])
            lines.append(
                f"| {name} ({row['image_size']} px, fp32 top-1 {100 * row['float_top1']:.1f}%) "
                f"| {accelerator} | {100 * f['top1_agreement']:.2f}% "
                f"| {f['median_relative_error']:.1e} | {f['max_relative_error']:.1e} "
                f"| {worst[1]:.1e} ({worst[0]}) | {f['nonfinite']} |"
            )
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS))
    parser.add_argument("--quick", action="store_true", help="64 px, 1 epoch (a smoke run)")
    parser.add_argument("--json", default=str(REPO / "benchmarks/results/fp16_gpu.json"))
    args = parser.parse_args(argv)
    results = run(args.models, quick=args.quick)
    print(markdown(results))
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {args.json}")
    failed = [
        f"{name}/{accelerator}"
        for name, row in results["models"].items()
        for accelerator, f in row["accelerators"].items()
        if not f["meets_targets"]
    ]
    if failed:
        print(f"fp16 targets {TARGETS} NOT met by: {', '.join(failed)}")
    return 1 if failed and not args.quick else 0


if __name__ == "__main__":
    sys.exit(main())
