"""The main job: Keras LSNet -> mobile `.tflite` files, verified, benchmarked, with a report.

For one variant: export fp32 and int8 for the CPU, fp16 for the GPU delegate and int8 for the
Edge TPU; compare each with the Keras model on held-out images; time them on XNNPACK; check the
GPU model on the LiteRT GPU accelerator (when the Vulkan stack is installed) and the Edge TPU
model with the offline compiler rules; print a short report and write it as JSON.

Example:
    >>> from lsnet_keras.pipeline import run_pipeline
    >>> report = run_pipeline("lsnet_t", output_dir="out", runs=5)  # doctest: +SKIP
"""

import json
import os
import time

import keras
import numpy as np

from lsnet_keras.io import atomic_path, check_outputs, outputs_removed_on_failure
from lsnet_keras.litert.calibration import builtin_images, folder_images
from lsnet_keras.litert.edgetpu_check import check_edgetpu, summary_line
from lsnet_keras.litert.export import export_tflite
from lsnet_keras.litert.gpu_check import check_gpu
from lsnet_keras.litert.graph import read_graph
from lsnet_keras.litert.labels import imagenet_labels
from lsnet_keras.litert.runtime import TFLiteClassifier
from lsnet_keras.model.loading import model_from_checkpoint
from lsnet_keras.model.lsnet import build_variant
from lsnet_keras.model.reparam import reparameterize
from lsnet_keras.preprocess import eval_crop, load_image, normalize
from lsnet_keras.weights.hub import HubUnreachable

# A real photo shipped with the package (scikit-image's `chelsea.png`, CC0; assets/README.md).
PHOTO = os.path.join(os.path.dirname(__file__), "assets", "chelsea.png")
# name -> export options; the file is <variant>_<name>.tflite
EXPORTS = {
    "fp32": {"precision": "fp32", "target": "cpu"},
    "int8": {"precision": "int8", "target": "cpu"},
    "fp16_gpu": {"precision": "fp16", "target": "gpu"},
    "int8_edgetpu": {"precision": "int8", "target": "edgetpu", "io": "uint8"},
}


def _log(message):
    print(message, flush=True)


def _outputs(classifier, pixels):
    return np.stack([classifier.run(classifier.input_tensor(p))[0] for p in pixels])


def _latency(path, threads, runs, pixels):
    classifier = TFLiteClassifier(path, num_threads=threads)
    tensor = classifier.input_tensor(pixels)
    for _ in range(3):
        classifier.run(tensor)
    times = [classifier.run(tensor)[1] * 1000 for _ in range(runs)]
    return {"median_ms": float(np.median(times)), "min_ms": float(np.min(times))}


def realistic_random_weights(model, images, seed=0):
    """Random weights whose activations look like a trained model's, in place.

    Keras' initializers leave BatchNorm at identity and attention biases at zero, which hides
    numerical problems (the logits come out near zero). Here every weight is drawn at a scale
    that keeps activations O(1), then each BatchNorm's statistics are set to those of `images`
    (float32, normalized), as a trained network's would be.

    Example:
        >>> realistic_random_weights(model, normalize(builtin_images(8, 224)))  # doctest: +SKIP
    """
    rng = np.random.default_rng(seed)
    for variable in model.weights:
        shape = tuple(variable.shape)
        if len(shape) >= 2 and "attention_biases" not in variable.path:
            fan_in = int(np.prod(shape[:-1])) if len(shape) > 2 else shape[0]
            value = rng.normal(0.0, fan_in**-0.5, size=shape)
        elif "attention_biases" in variable.path or variable.path.endswith(("beta", "bias")):
            value = rng.normal(0.0, 0.1, size=shape)
        elif variable.path.endswith(("gamma",)):
            value = rng.normal(1.0, 0.2, size=shape)
        else:  # BatchNorm statistics: set from the images below
            continue
        variable.assign(value.astype(variable.dtype))
    norms = [la for la in model._flatten_layers() if la.__class__.__name__ == "BatchNormalization"]
    for layer in norms:
        layer.momentum = 0.0  # one batch sets the moving statistics exactly
    model(images, training=True)
    for layer in norms:
        layer.momentum = 0.9


def input_noise_floor(model, pixels, levels=1, seed=0):
    """How far `model`'s own logits move when each pixel moves by up to `levels` gray levels.

    A reference for the quantized models: a random network is chaotic (one gray level of
    noise can flip its top-1), a trained one is not. A quantized model whose difference from
    Keras is near this floor is as close as the weights allow. `pixels` are uint8 RGB crops.

    Example:
        >>> floor = input_noise_floor(model, builtin_images(8, 224, seed=1))  # doctest: +SKIP
        >>> floor["top1_agreement"]  # doctest: +SKIP
        1.0
    """
    rng = np.random.default_rng(seed)
    shifted = pixels.astype("int16") + rng.integers(-levels, levels + 1, size=pixels.shape)
    noisy = np.clip(shifted, 0, 255).astype("uint8")
    return _agreement(logits_of(model, normalize(noisy)), logits_of(model, normalize(pixels)))


def logits_of(model, images):
    """`model`'s outputs on a few normalized images, as NumPy, by an eager call.

    For a handful of images this is seconds faster than `model.predict`, which first traces the
    whole model into a graph; the computation is the same (inference mode).

    Example:
        >>> logits_of(model, normalize(builtin_images(4, 224))).shape  # doctest: +SKIP
        (4, 1000)
    """
    return keras.ops.convert_to_numpy(model(images, training=False))


def _agreement(outputs, expected):
    return {
        "max_abs_diff": float(np.abs(outputs - expected).max()),
        "max_rel_diff": float(np.abs(outputs - expected).max() / np.abs(expected).max()),
        "top1_agreement": float(np.mean(outputs.argmax(-1) == expected.argmax(-1))),
    }


def _gpu_verdict(path):
    try:
        return check_gpu(path)
    except ValueError as err:
        return {"error": str(err)}


def _photo_top5(model, img_size):
    """Top-5 ImageNet labels and probabilities of `model` on the bundled photo."""
    pixels = np.asarray(eval_crop(load_image(PHOTO), img_size), dtype="uint8")[None]
    logits = logits_of(model, normalize(pixels))[0].astype("float64")
    probabilities = np.exp(logits - logits.max())
    probabilities /= probabilities.sum()
    labels = imagenet_labels()
    return pixels, [[labels[i], float(probabilities[i])] for i in np.argsort(-logits)[:5]]


def _load_model(variant, weights, img_size, use_ema):
    """(model, weights label): the requested weights, or random ones when told or offline."""
    caveat = "latency and graph checks are real, accuracy is not"
    if weights == "random":
        _log(f"--weights random: {variant} gets RANDOM weights; {caveat}")
    else:
        try:
            return model_from_checkpoint(weights, variant, img_size, use_ema), weights
        except HubUnreachable as err:
            if weights != "imagenet":
                raise
            _log(f"note: no official weights ({err}); going on with RANDOM weights: {caveat}")
    model = build_variant(variant, input_shape=img_size)
    realistic_random_weights(model, normalize(builtin_images(16, img_size, seed=2)))
    return model, "random"


def run_pipeline(
    variant="lsnet_t",
    weights="imagenet",
    output_dir="lsnet_out",
    img_size=224,
    calibration_dir=None,
    threads=(1, 2),
    runs=20,
    overwrite=False,
    use_ema=False,
):
    """Export, verify and benchmark one variant; returns the report dict (also in JSON).

    `weights`: "imagenet" (the official release; random weights, said in one line, when the
    Hugging Face hub cannot be reached), an hf:// handle, a checkpoint path, or "random".

    Example:
        >>> run_pipeline("lsnet_t", output_dir="/tmp/lsnet", runs=3)  # doctest: +SKIP
    """
    paths = {name: os.path.join(output_dir, f"{variant}_{name}.tflite") for name in EXPORTS}
    report_path = os.path.join(output_dir, f"{variant}_report.json")
    check_outputs([*paths.values(), report_path], overwrite)  # before any work
    # rerun-able on failure: no file of this job (nor the folder it made) is left
    with outputs_removed_on_failure([*paths.values(), report_path], output_dir):
        return _run(
            variant, weights, use_ema, paths, report_path, img_size, calibration_dir, threads, runs
        )


def _run(variant, weights, use_ema, paths, report_path, img_size, calibration_dir, threads, runs):
    """run_pipeline after its checks: build, export, verify, benchmark, write the report."""
    model, weights = _load_model(variant, weights, img_size, use_ema)
    deployed = reparameterize(model)
    calibration = (
        folder_images(calibration_dir, img_size)
        if calibration_dir
        else builtin_images(32, img_size, seed=0)
    )
    held_out = builtin_images(8, img_size, seed=1)
    expected = logits_of(deployed, normalize(held_out))
    photo, top5 = _photo_top5(deployed, img_size) if model.num_classes == 1000 else (None, None)
    report = {
        "variant": variant,
        "weights": weights,
        "img_size": img_size,
        "keras_input_noise_floor": input_noise_floor(deployed, held_out),
        "models": {},
    }
    for name, options in EXPORTS.items():
        path = paths[name]
        start = time.perf_counter()
        data = export_tflite(deployed, path, calibration=calibration, overwrite=True, **options)
        _log(f"exported {path} in {time.perf_counter() - start:.0f} s")
        outputs = _outputs(TFLiteClassifier(path), held_out)
        entry = {
            "path": path,
            "size_mb": round(len(data) / 1e6, 2),
            "ops": sum(read_graph(data).op_counts().values()),
            **{f"{k}_vs_keras": v for k, v in _agreement(outputs, expected).items()},
            "latency": {t: _latency(path, t, runs, held_out[0]) for t in threads},
        }
        if photo is not None:
            top1 = int(_outputs(TFLiteClassifier(path), photo)[0].argmax())
            entry["photo_top1"] = imagenet_labels()[top1]
        report["models"][name] = entry
    if photo is not None:
        report["photo"] = {"file": os.path.basename(PHOTO), "keras_top5": top5}
    report["gpu"] = _gpu_verdict(report["models"]["fp16_gpu"]["path"])
    edgetpu = check_edgetpu(report["models"]["int8_edgetpu"]["path"])
    report["edgetpu"] = {"ok": edgetpu.ok, "summary": summary_line(edgetpu)}
    with atomic_path(report_path, overwrite=True) as tmp, open(tmp, "w") as f:
        json.dump(report, f, indent=1)
    _log(format_report(report))
    _log(f"report written to {report_path}")
    return report


def format_report(report):
    """The report as a short text table."""
    threads = list(next(iter(report["models"].values()))["latency"])
    head = " | ".join(f"{t} thr ms" for t in threads)
    lines = [
        f"{report['variant']} ({report['weights']} weights), {report['img_size']}px",
        f"model        | MB    | ops  | max|diff|/max|logit| vs Keras | top-1 agree | {head}",
    ]
    for name, m in report["models"].items():
        times = " | ".join(f"{m['latency'][t]['median_ms']:8.1f}" for t in threads)
        lines.append(
            f"{name:12} | {m['size_mb']:5.1f} | {m['ops']:4d} | {m['max_rel_diff_vs_keras']:28.2e}"
            f" | {m['top1_agreement_vs_keras']:11.0%} | {times}"
        )
    floor = report["keras_input_noise_floor"]
    lines.append(
        f"{'noise floor':12} |       |      | {floor['max_rel_diff']:28.2e}"
        f" | {floor['top1_agreement']:11.0%} | Keras fp32 with +-1 gray level of input noise"
    )
    if report["weights"] == "random":
        lines.append(
            "random weights are chaotic (see the noise floor): judge the quantized rows against"
            " the floor, not against 100%; --weights imagenet gives meaningful agreement"
        )
    gpu = report["gpu"]
    if gpu.get("error"):
        lines.append(f"GPU: not checked: {gpu['error']}")
    else:
        verdict = "fully accelerated" if gpu["fully_accelerated"] else "NOT fully accelerated"
        relative = gpu["max_abs_diff"] / max(gpu["output_scale"], 1e-12)
        lines.append(
            f"GPU: {verdict}, max |GPU - CPU| = {gpu['max_abs_diff']:.3g}"
            f" ({relative:.2e} of max|logit|; compare with the noise floor)"
        )
    lines.append(f"Edge TPU: {report['edgetpu']['summary']}")
    if report.get("photo"):
        top5 = ", ".join(f"{label} {p:.1%}" for label, p in report["photo"]["keras_top5"])
        top1 = ", ".join(f"{name} {m['photo_top1']}" for name, m in report["models"].items())
        lines.append(f"photo {report['photo']['file']} (CC0): Keras top-5 {top5}; top-1 {top1}")
    return "\n".join(lines)
