"""MMDetection 2.28's RetinaNet test-time post-processing, in NumPy.

Per level (`_get_bboxes_single`): sigmoid scores, the (anchor, class) pairs above
`score_threshold`, at most `nms_pre` of them by score (`filter_scores_and_topk`: pairs, not
anchors), their boxes decoded (DeltaXYWH, dw / dh clamped at log(1000 / 16), clipped to the
image). All levels together: per-class NMS at `iou_threshold` (mmcv's `batched_nms`: boxes
offset by class, greedy, suppressing IoU > threshold), at most `max_detections` by score.

Example:
    >>> import numpy as np
    >>> from lsnet_keras.detection import postprocess
    >>> logits = [np.full((1, 1, 9 * 2), -9.0, "float32")]
    >>> deltas = [np.zeros((1, 1, 36), "float32")]
    >>> postprocess(logits, deltas, image_size=(8, 8), strides=(8,)).boxes.shape
    (0, 4)
"""

from typing import NamedTuple

import numpy as np

from lsnet_keras.detection.anchors import RETINANET, level_anchors

# DeltaXYWHBBoxCoder's wh_ratio_clip = 16 / 1000.
MAX_LOG_RATIO = float(np.abs(np.log(16 / 1000)))


class TestSettings(NamedTuple):
    """The released configs' `test_cfg`."""

    score_threshold: float = 0.05
    nms_pre: int = 1000
    iou_threshold: float = 0.5
    max_detections: int = 100


# The released configs' test_cfg.
MMDET_TEST = TestSettings()


class Detections(NamedTuple):
    """Final detections of one image, best first: boxes (n, 4) x1, y1, x2, y2 in input
    pixels, scores (n,), labels (n,) class indices."""

    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray


def sigmoid(x):
    """The logistic function in float32.

    Example:
        >>> float(sigmoid(np.float32(0)))
        0.5
    """
    x = np.asarray(x, "float32")
    return (np.float32(1) / (np.float32(1) + np.exp(-x))).astype("float32")


def decode_boxes(anchors, deltas, image_size):
    """DeltaXYWH decoding (means 0, stds 1), dw / dh clamped, boxes clipped to (h, w).

    Example:
        >>> decode_boxes(np.array([[0, 0, 4, 4]], "float32"), np.zeros((1, 4), "float32"),
        ...              (10, 10)).tolist()
        [[0.0, 0.0, 4.0, 4.0]]
    """
    anchors = np.asarray(anchors, "float32")
    deltas = np.asarray(deltas, "float32")
    centers = (anchors[:, :2] + anchors[:, 2:]) * np.float32(0.5)
    sizes = anchors[:, 2:] - anchors[:, :2]
    log_ratio = np.clip(deltas[:, 2:], -MAX_LOG_RATIO, MAX_LOG_RATIO).astype("float32")
    new_centers = centers + sizes * deltas[:, :2]
    new_sizes = sizes * np.exp(log_ratio)
    half = new_sizes * np.float32(0.5)
    boxes = np.concatenate([new_centers - half, new_centers + half], axis=-1)
    height, width = image_size
    boxes[:, 0::2] = np.clip(boxes[:, 0::2], 0, width)
    boxes[:, 1::2] = np.clip(boxes[:, 1::2], 0, height)
    return boxes


def _top_pairs(scores, threshold, limit):
    """(anchor index, class index, score) of the best `limit` pairs above `threshold`."""
    anchor_idx, class_idx = np.nonzero(scores > threshold)
    kept = scores[anchor_idx, class_idx]
    order = np.argsort(-kept, kind="stable")[:limit]
    return anchor_idx[order], class_idx[order], kept[order]


def nms(boxes, scores, iou_threshold):
    """Greedy NMS as mmcv's kernel (offset 0): indices kept, by decreasing score.

    Example:
        >>> boxes = np.array([[0, 0, 10, 10], [1, 1, 10, 10], [20, 20, 30, 30]], "float32")
        >>> nms(boxes, np.array([0.9, 0.8, 0.7], "float32"), 0.5).tolist()
        [0, 2]
    """
    order = np.argsort(-scores, kind="stable")
    x1, y1, x2, y2 = (boxes[:, k] for k in range(4))
    areas = (x2 - x1) * (y2 - y1)
    suppressed = np.zeros(len(boxes), bool)
    keep = []
    for position, i in enumerate(order):
        if suppressed[i]:
            continue
        keep.append(i)
        rest = order[position + 1 :]
        rest = rest[~suppressed[rest]]
        w = np.maximum(np.float32(0), np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]))
        h = np.maximum(np.float32(0), np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]))
        inter = w * h
        with np.errstate(invalid="ignore", divide="ignore"):  # 0 / 0 for empty boxes: kept,
            iou = inter / (areas[i] + areas[rest] - inter)  # as mmcv's NaN > threshold is false
        suppressed[rest[iou > iou_threshold]] = True
    return np.array(keep, dtype="int64")


def batched_nms(boxes, scores, labels, iou_threshold):
    """Per-class NMS as mmcv's `batched_nms`: each class's boxes moved apart by an offset.

    Example:
        >>> boxes = np.array([[0, 0, 10, 10], [1, 1, 10, 10]], "float32")
        >>> batched_nms(boxes, np.array([0.9, 0.8], "float32"), np.array([0, 1]), 0.5).tolist()
        [0, 1]
    """
    if len(boxes) == 0:
        return np.zeros(0, "int64")
    offsets = labels.astype("float32") * (boxes.max() + np.float32(1))
    return nms(boxes + offsets[:, None], scores, iou_threshold)


def postprocess(
    cls_scores,
    bbox_preds,
    image_size,
    settings=MMDET_TEST,
    anchors=RETINANET,
    strides=None,
):
    """Detections of one image from the head's per-level outputs (NHWC, batch entry taken).

    `cls_scores[i]` is (h, w, A * C) logits and `bbox_preds[i]` (h, w, A * 4) deltas of level
    i (a leading batch axis of 1 is dropped); `image_size` (height, width) is the unpadded
    image the boxes are clipped to; `strides` overrides the anchor settings' (tests).

    Example:
        >>> logits = [np.zeros((1, 1, 9 * 2), "float32")]  # every score 0.5
        >>> deltas = [np.zeros((1, 1, 36), "float32")]
        >>> found = postprocess(logits, deltas, image_size=(8, 8), strides=(8,))
        >>> found.labels.tolist()  # one box per class survives NMS
        [0, 1]
    """
    if strides is not None:
        anchors = anchors._replace(strides=tuple(strides))
    all_boxes, all_scores, all_labels = [], [], []
    for level, (logits, deltas) in enumerate(zip(cls_scores, bbox_preds)):
        logits, deltas = np.asarray(logits), np.asarray(deltas)
        if logits.ndim == 4:
            logits, deltas = logits[0], deltas[0]
        height, width, channels = logits.shape
        scores = sigmoid(logits).reshape(-1, channels // anchors.num_anchors)
        deltas = deltas.reshape(-1, 4)
        anchor_idx, labels, kept = _top_pairs(scores, settings.score_threshold, settings.nms_pre)
        priors = level_anchors(anchors, level, height, width)[anchor_idx]
        all_boxes.append(decode_boxes(priors, deltas[anchor_idx], image_size))
        all_scores.append(kept)
        all_labels.append(labels)
    boxes = np.concatenate(all_boxes).astype("float32")
    scores = np.concatenate(all_scores).astype("float32")
    labels = np.concatenate(all_labels).astype("int64")
    keep = batched_nms(boxes, scores, labels, settings.iou_threshold)[: settings.max_detections]
    return Detections(boxes[keep], scores[keep], labels[keep])
