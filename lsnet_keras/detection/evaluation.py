"""COCO box mAP of a detector on a COCO-format split, computed by pycocotools' `COCOeval`.

Each image is letterboxed to the detector's input as `lsnet detect` does, detected with
MMDetection's test settings (score >= 0.05, top 1000 per level, NMS 0.5, at most 100), and
its boxes mapped back to the image's pixels; the ground truth is the split's own instances
JSON (crowd boxes and all), so the figures are those `tools/test.py --eval bbox` prints for the
same detections. Works with any detector of `lsnet_keras.detection.run` (`.keras` in memory,
`.tflite` exports).

Example:
    >>> from lsnet_keras.detection.evaluation import evaluate_detector
    >>> metrics = evaluate_detector(detector, data.val, data.category_ids)  # doctest: +SKIP
    >>> metrics["mAP"]  # doctest: +SKIP
    0.412
"""

import contextlib
import io
import logging

from lsnet_keras.detection.letterbox import boxes_to_original, letterbox
from lsnet_keras.detection.postprocess import MMDET_TEST
from lsnet_keras.preprocess import load_image

logger = logging.getLogger(__name__)

# COCOeval.stats, in its order.
METRICS = ("mAP", "AP50", "AP75", "AP_small", "AP_medium", "AP_large")


def detect_split(detector, split, category_ids, score_threshold=MMDET_TEST.score_threshold):
    """COCO result records ({image_id, category_id, bbox [x, y, w, h], score}) of a split.

    Example:
        >>> records = detect_split(detector, data.val, data.category_ids)  # doctest: +SKIP
    """
    records = []
    for path, image_id in zip(split.paths, split.image_ids):
        fitted = letterbox(load_image(path), detector.height, detector.width)
        found = detector.detect(fitted.pixels, score_threshold, content=fitted.content)
        for box, score, label in zip(
            boxes_to_original(found.boxes, fitted), found.scores, found.labels
        ):
            x1, y1, x2, y2 = (float(v) for v in box)
            records.append(
                {
                    "image_id": image_id,
                    "category_id": category_ids[int(label)],
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "score": float(score),
                }
            )
    return records


def coco_metrics(annotation_file, records, image_ids=None):
    """{METRICS name: value} of result `records` against an instances JSON (pycocotools).

    No detections at all score 0 everywhere (pycocotools refuses an empty result list).

    Example:
        >>> coco_metrics("shapes/annotations/instances_val.json", [])  # doctest: +SKIP
        {'mAP': 0.0, 'AP50': 0.0, 'AP75': 0.0, 'AP_small': 0.0, 'AP_medium': 0.0, 'AP_large': 0.0}
    """
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    if not records:
        return dict.fromkeys(METRICS, 0.0)
    report = io.StringIO()
    with contextlib.redirect_stdout(report):  # pycocotools prints its progress and table
        truth = COCO(annotation_file)
        evaluation = COCOeval(truth, truth.loadRes(records), "bbox")
        if image_ids is not None:
            evaluation.params.imgIds = list(image_ids)
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    logger.debug("pycocotools:\n%s", report.getvalue())
    # -1: no ground truth of that size; reported as 0 so the figures stay comparable numbers
    return {name: max(0.0, float(value)) for name, value in zip(METRICS, evaluation.stats)}


def evaluate_detector(detector, split, category_ids, score_threshold=MMDET_TEST.score_threshold):
    """COCO mAP, AP50, AP75 and AP per size of `detector` on a `DetectionSplit`.

    Example:
        >>> evaluate_detector(detector, data.val, data.category_ids)["AP50"]  # doctest: +SKIP
        0.63
    """
    records = detect_split(detector, split, category_ids, score_threshold)
    return coco_metrics(split.annotation_file, records, split.image_ids)
