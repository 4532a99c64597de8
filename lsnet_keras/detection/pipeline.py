"""`lsnet pipeline --task detect`: a RetinaNet-LSNet -> the four mobile `.tflite` detectors.

For one variant: export fp32 and int8 for the CPU, fp16 for the GPU delegate and int8 for the
Edge TPU (each ending in `TFLite_Detection_PostProcess`, with MediaPipe's metadata); run each on
the bundled photo, letterboxed to the model's input, and match its detections with the Keras
model's; time each on XNNPACK; check the GPU model's network on the LiteRT GPU accelerator (the
post-processing op stays on the CPU there, as in every SSD model) and the Edge TPU model with the
offline compiler rules; write the report as JSON. Progress goes to `logging`.

Example:
    >>> from lsnet_keras.detection.pipeline import run_detect_pipeline
    >>> report = run_detect_pipeline("lsnet_t", output_dir="out", runs=5)  # doctest: +SKIP
    >>> print(format_detect_report(report))  # doctest: +SKIP
"""

import json
import logging
import os
import tempfile
import time

import numpy as np

from lsnet_keras.config import MMDET_MEAN, MMDET_STD
from lsnet_keras.detection.letterbox import letterbox
from lsnet_keras.detection.postprocess import MMDET_TEST
from lsnet_keras.io import atomic_path, check_outputs, outputs_removed_on_failure
from lsnet_keras.litert.calibration import folder_images
from lsnet_keras.litert.detector_export import export_detector
from lsnet_keras.litert.detector_runtime import TFLiteDetector
from lsnet_keras.litert.edgetpu_check import check_edgetpu, summary_line
from lsnet_keras.litert.gpu_check import check_gpu
from lsnet_keras.litert.graph import read_graph
from lsnet_keras.model.loading import model_from_checkpoint
from lsnet_keras.model.reparam import reparameterize
from lsnet_keras.model.retinanet import DETECTOR_BUILDERS
from lsnet_keras.preprocess import load_image
from lsnet_keras.weights.hub import HubUnreachable

logger = logging.getLogger(__name__)

# A real photo shipped with the package (scikit-image's `chelsea.png`, CC0; assets/README.md).
PHOTO = os.path.join(os.path.dirname(os.path.dirname(__file__)), "assets", "chelsea.png")
# name -> export options; the file is <variant>_retinanet_<name>.tflite
EXPORTS = {
    "fp32": {"precision": "fp32", "target": "cpu"},
    "int8": {"precision": "int8", "target": "cpu"},
    "fp16_gpu": {"precision": "fp16", "target": "gpu"},
    "int8_edgetpu": {"precision": "int8", "target": "edgetpu"},
}
# Keras detections at or above this score are looked for in each exported model's.
COMPARED_SCORE = 0.1
MATCH_IOU = 0.5


def _iou(box, boxes):
    x1 = np.maximum(box[0], boxes[:, 0])
    y1 = np.maximum(box[1], boxes[:, 1])
    x2 = np.minimum(box[2], boxes[:, 2])
    y2 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / np.maximum(area + areas - inter, 1e-9)


def match_with_keras(found, expected, min_score=COMPARED_SCORE, iou=MATCH_IOU):
    """How many of `expected`'s detections scoring >= `min_score` `found` has (same label, IoU
    >= `iou`), and the largest score difference of those matched.

    Example:
        >>> from lsnet_keras.detection.postprocess import Detections
        >>> one = Detections(np.float32([[0, 0, 10, 10]]), np.float32([0.9]), np.int64([3]))
        >>> match_with_keras(one, one)
        {'keras_detections': 1, 'matched': 1, 'max_score_diff': 0.0}
    """
    compared = np.nonzero(expected.scores >= min_score)[0]
    matched, score_diff = 0, 0.0
    for i in compared:
        same = np.nonzero(found.labels == expected.labels[i])[0]
        if len(same) == 0:
            continue
        overlaps = _iou(expected.boxes[i], found.boxes[same])
        if overlaps.max() >= iou:
            matched += 1
            best = same[int(np.argmax(overlaps))]
            score_diff = max(score_diff, abs(float(found.scores[best] - expected.scores[i])))
    return {"keras_detections": len(compared), "matched": matched, "max_score_diff": score_diff}


def _load_detector(variant, weights, img_size):
    """(model, weights label): the requested weights, or Keras' initial ones (told, offline)."""
    caveat = "latency and graph checks are real, detections are not"
    if weights == "random":
        logger.warning("--weights random: %s gets RANDOM weights; %s", variant, caveat)
    else:
        try:
            if weights == "coco":
                model = DETECTOR_BUILDERS[f"{variant}_retinanet"](
                    input_shape=img_size, weights="coco"
                )
            else:
                model = model_from_checkpoint(weights, variant, img_size)
        except HubUnreachable as err:
            if weights != "coco":
                raise
            logger.warning(
                "no official weights (%s); going on with RANDOM weights: %s", err, caveat
            )
        else:
            return model, weights
    return DETECTOR_BUILDERS[f"{variant}_retinanet"](input_shape=img_size), "random"


def _latency(path, threads, runs, pixels):
    detector = TFLiteDetector(path, num_threads=threads)
    for _ in range(2):
        detector.detect(pixels)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        detector.detect(pixels)
        times.append((time.perf_counter() - start) * 1000)
    return {"median_ms": float(np.median(times)), "min_ms": float(np.min(times))}


def _gpu_verdict(model, pixels):
    """The LiteRT GPU check of the fp16 network (the part the GPU delegate takes)."""
    with tempfile.TemporaryDirectory() as folder:
        network = os.path.join(folder, "gpu_network.tflite")
        export_detector(model, network, precision="fp16", target="gpu", network_only=True)
        try:
            return check_gpu(network, inputs=[pixels[None].astype("float32")])
        except ValueError as err:
            return {"error": str(err)}


def run_detect_pipeline(
    variant="lsnet_t",
    weights="coco",
    output_dir="lsnet_out",
    img_size=(640, 640),
    calibration_dir=None,
    threads=(1, 2),
    runs=20,
    overwrite=False,
):
    """Export, verify and benchmark one detector; returns the report dict (also in JSON).

    `weights`: "coco" (the official RetinaNet release; random weights, said in one warning, when
    the Hugging Face hub cannot be reached), an hf:// handle, a checkpoint path, or "random".
    `img_size`: (height, width), multiples of 32.

    Example:
        >>> run_detect_pipeline("lsnet_t", img_size=(320, 320), runs=3)  # doctest: +SKIP
    """
    stem = f"{variant}_retinanet"
    paths = {name: os.path.join(output_dir, f"{stem}_{name}.tflite") for name in EXPORTS}
    report_path = os.path.join(output_dir, f"{stem}_report.json")
    check_outputs([*paths.values(), report_path], overwrite)  # before any work
    with outputs_removed_on_failure([*paths.values(), report_path], output_dir):
        model, weights = _load_detector(variant, weights, tuple(img_size))
        deployed = reparameterize(model)
        height, width = deployed.image_shape[:2]
        if calibration_dir:
            fit = lambda image: letterbox(image, height, width).pixels  # noqa: E731
            calibration = folder_images(calibration_dir, fit=fit)
        else:
            calibration = None  # export_detector's built-in generated set
        fitted = letterbox(load_image(PHOTO), height, width)
        normalized = (fitted.pixels.astype("float32") - np.float32(MMDET_MEAN)) / np.float32(
            MMDET_STD
        )
        expected = deployed.detect(normalized[None], MMDET_TEST, image_sizes=[fitted.content])[0]
        report = {
            "variant": variant,
            "weights": weights,
            "img_size": [height, width],
            "photo": os.path.basename(PHOTO),
            "keras_detections_at_0.05": len(expected.scores),
            "models": {},
        }
        for name, options in EXPORTS.items():
            start = time.perf_counter()
            data = export_detector(
                deployed, paths[name], calibration=calibration, overwrite=True, **options
            )
            logger.info("exported %s in %.0f s", paths[name], time.perf_counter() - start)
            found = TFLiteDetector(paths[name]).detect(fitted.pixels, content=fitted.content)
            report["models"][name] = {
                "path": paths[name],
                "size_mb": round(len(data) / 1e6, 2),
                "ops": sum(read_graph(data).op_counts().values()),
                "detections": len(found.scores),
                **match_with_keras(found, expected),
                "latency": {t: _latency(paths[name], t, runs, fitted.pixels) for t in threads},
            }
        report["gpu"] = _gpu_verdict(deployed, fitted.pixels)
        edgetpu = check_edgetpu(paths["int8_edgetpu"])
        report["edgetpu"] = {
            "blockers": sorted(r.op for r in edgetpu.blockers),
            "summary": summary_line(edgetpu),
        }
        with atomic_path(report_path, overwrite=True) as tmp, open(tmp, "w") as f:
            json.dump(report, f, indent=1)
    return report


def format_detect_report(report):
    """The report of `run_detect_pipeline` as a short text table.

    Example:
        >>> print(format_detect_report(report))  # doctest: +SKIP
    """
    threads = list(next(iter(report["models"].values()))["latency"])
    head = " | ".join(f"{t} thr ms" for t in threads)
    height, width = report["img_size"]
    lines = [
        f"{report['variant']} RetinaNet ({report['weights']} weights), {height}x{width}, "
        f"photo {report['photo']}: Keras finds {report['keras_detections_at_0.05']} "
        f"detections >= 0.05",
        f"model        | MB    | ops  | found | Keras >= {COMPARED_SCORE} matched | max|score diff|"
        f" | {head}",
    ]
    for name, m in report["models"].items():
        times = " | ".join(f"{m['latency'][t]['median_ms']:8.1f}" for t in threads)
        matched = f"{m['matched']}/{m['keras_detections']}"
        lines.append(
            f"{name:12} | {m['size_mb']:5.1f} | {m['ops']:4d} | {m['detections']:5d} | "
            f"{matched:>20} | {m['max_score_diff']:15.3g} | {times}"
        )
    if report["weights"] == "random":
        lines.append(
            "random weights: few or no detections to compare; --weights coco (or a RetinaNet "
            "checkpoint) gives meaningful ones"
        )
    gpu = report["gpu"]
    if gpu.get("error"):
        lines.append(f"GPU: not checked: {gpu['error']}")
    else:
        verdict = "fully accelerated" if gpu["fully_accelerated"] else "NOT fully accelerated"
        relative = gpu["max_abs_diff"] / max(gpu["output_scale"], 1e-12)
        lines.append(
            f"GPU (fp16 network; the post-processing op runs on the CPU): {verdict}, "
            f"max |GPU - CPU| = {relative:.2e} of the output scale"
        )
    lines.append(
        f"Edge TPU: {report['edgetpu']['summary']} (the post-processing and its two DEQUANTIZE "
        "inputs stay on the CPU by design)"
    )
    return "\n".join(lines)
