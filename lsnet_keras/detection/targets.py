"""RetinaNet's training targets and loss, as MMDetection 2.28 trains the released detector.

Every anchor of the image (all five levels, in the head's order) is assigned by
`MaxIoUAssigner(pos_iou_thr=0.5, neg_iou_thr=0.4, min_pos_iou=0)`: IoU with its best box
>= 0.5 is positive, < 0.4 negative, in between ignored; then every box takes the anchors that
overlap it most (ties all taken, a later box winning), so each box has an anchor. (With
`min_pos_iou=0` MMDetection would also do that for a box no anchor overlaps at all, making
every zero-IoU anchor positive; here only a positive overlap counts.) Positives regress
DeltaXYWH offsets (means 0, stds 1). The loss: sigmoid focal loss (alpha 0.25, gamma 2) over
positives and negatives plus L1 on the positives' deltas, both summed and divided by the
number of positives (at least one per image).

TensorFlow ops on padded batches: boxes (batch, max_boxes, 4) x1, y1, x2, y2 pixels of the
model's input, labels (batch, max_boxes) with -1 for padding.

Example:
    >>> import numpy as np
    >>> from lsnet_keras.detection.targets import assign_anchors
    >>> anchors = np.array([[0, 0, 10, 10], [20, 20, 30, 30]], "float32")
    >>> assign_anchors(anchors, np.array([[[0, 0, 10, 12]]], "float32"),
    ...                np.array([[True]])).numpy().tolist()
    [[1, 0]]
"""

import keras
import numpy as np
import tensorflow as tf

from lsnet_keras.detection.anchors import RETINANET, level_anchors

POSITIVE_IOU = 0.5
NEGATIVE_IOU = 0.4
FOCAL_ALPHA = 0.25
FOCAL_GAMMA = 2.0


def image_anchors(level_sizes, settings=RETINANET):
    """(anchors, 4) of all levels in the head's order, for maps of `level_sizes` [(h, w)].

    Example:
        >>> image_anchors([(2, 2), (1, 1)]).shape
        (45, 4)
    """
    return np.concatenate(
        [level_anchors(settings, level, h, w) for level, (h, w) in enumerate(level_sizes)]
    )


def box_iou(anchors, boxes):
    """IoU of each anchor (A, 4) with each box (batch, G, 4): (batch, A, G).

    Example:
        >>> float(box_iou(np.array([[0, 0, 2, 2]], "float32"),
        ...               np.array([[[1, 0, 3, 2]]], "float32"))[0, 0, 0])
        0.3333333432674408
    """
    anchors = tf.convert_to_tensor(anchors, tf.float32)[None, :, None, :]
    boxes = tf.convert_to_tensor(boxes, tf.float32)[:, None, :, :]
    low = tf.maximum(anchors[..., :2], boxes[..., :2])
    high = tf.minimum(anchors[..., 2:], boxes[..., 2:])
    overlap = tf.reduce_prod(tf.maximum(high - low, 0.0), axis=-1)

    def area(b):
        return (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])

    union = area(anchors) + area(boxes) - overlap
    return overlap / tf.maximum(union, 1e-6)


def assign_anchors(anchors, boxes, valid):
    """MaxIoUAssigner: (batch, A) int32, -1 ignored, 0 negative, k > 0 positive for box k - 1.

    `valid` (batch, G) marks the real boxes among the padding.

    Example:
        >>> assign_anchors(np.array([[0, 0, 10, 10]], "float32"),
        ...                np.zeros((1, 1, 4), "float32"), np.array([[False]])).numpy().tolist()
        [[0]]
    """
    valid = tf.convert_to_tensor(valid, tf.bool)
    iou = tf.where(valid[:, None, :], box_iou(anchors, boxes), 0.0)
    best_iou = tf.reduce_max(iou, axis=2)
    best_box = tf.cast(tf.argmax(iou, axis=2, output_type=tf.int32), tf.int32)
    assigned = tf.where(best_iou < NEGATIVE_IOU, 0, -1)
    assigned = tf.where(best_iou >= POSITIVE_IOU, best_box + 1, assigned)
    box_best = tf.reduce_max(iou, axis=1, keepdims=True)  # (batch, 1, G)
    closest = (iou == box_best) & (box_best > 0) & valid[:, None, :]
    numbers = tf.range(1, tf.shape(iou)[2] + 1, dtype=tf.int32)
    last_closest = tf.reduce_max(tf.where(closest, numbers, 0), axis=2)
    return tf.where(last_closest > 0, last_closest, assigned)


def encode_boxes(anchors, boxes):
    """DeltaXYWH offsets (means 0, stds 1) that turn anchors into boxes, both (..., 4).

    Example:
        >>> deltas = encode_boxes(np.array([[0, 0, 4, 4]], "float32"),
        ...                       np.array([[2, 0, 6, 8]], "float32"))
        >>> [round(float(v), 4) for v in deltas[0]]  # dh: log(8 / 4)
        [0.5, 0.5, 0.0, 0.6931]
    """
    anchors = tf.convert_to_tensor(anchors, tf.float32)
    boxes = tf.convert_to_tensor(boxes, tf.float32)
    anchor_size = anchors[..., 2:] - anchors[..., :2]
    box_size = boxes[..., 2:] - boxes[..., :2]
    anchor_center = anchors[..., :2] + 0.5 * anchor_size
    box_center = boxes[..., :2] + 0.5 * box_size
    offsets = (box_center - anchor_center) / anchor_size
    return tf.concat([offsets, tf.math.log(box_size / anchor_size)], axis=-1)


def flatten_outputs(outputs, num_classes):
    """The model's per-level dict -> (class logits (batch, A, classes), deltas (batch, A, 4)).

    Example:
        >>> out = {"cls_score_0": np.zeros((1, 2, 2, 18)), "bbox_pred_0": np.zeros((1, 2, 2, 36))}
        >>> [tuple(t.shape) for t in flatten_outputs(out, num_classes=2)]
        [(1, 36, 2), (1, 36, 4)]
    """
    levels = len([key for key in outputs if key.startswith("cls_score_")])
    batch = tf.shape(outputs["cls_score_0"])[0]
    logits = [
        tf.reshape(outputs[f"cls_score_{i}"], (batch, -1, num_classes)) for i in range(levels)
    ]
    deltas = [tf.reshape(outputs[f"bbox_pred_{i}"], (batch, -1, 4)) for i in range(levels)]
    return tf.concat(logits, axis=1), tf.concat(deltas, axis=1)


def focal_loss(logits, targets):
    """Elementwise sigmoid focal loss (alpha 0.25, gamma 2), Keras' `binary_focal_crossentropy`.

    Example:
        >>> round(float(focal_loss(np.zeros(1, "float32"), np.ones(1, "float32"))[0]), 4)
        0.0433
    """
    logits = tf.convert_to_tensor(logits, tf.float32)
    return keras.losses.binary_focal_crossentropy(
        tf.convert_to_tensor(targets, tf.float32)[..., None],
        logits[..., None],
        apply_class_balancing=True,
        alpha=FOCAL_ALPHA,
        gamma=FOCAL_GAMMA,
        from_logits=True,
    )


def detection_loss(outputs, boxes, labels, anchors, num_classes):
    """(classification loss, box loss) of one batch, MMDetection's RetinaNet losses.

    Example:
        >>> out = {"cls_score_0": np.zeros((1, 1, 1, 1), "float32"),
        ...        "bbox_pred_0": np.zeros((1, 1, 1, 4), "float32")}
        >>> cls, box = detection_loss(out, np.array([[[0, 0, 8, 8]]], "float32"),
        ...                           np.array([[0]]), np.array([[0, 0, 8, 8]], "float32"), 1)
        >>> round(float(cls), 4), float(box)
        (0.0433, 0.0)
    """
    logits, deltas = flatten_outputs(outputs, num_classes)
    logits = tf.cast(logits, tf.float32)
    deltas = tf.cast(deltas, tf.float32)
    labels = tf.convert_to_tensor(labels, tf.int32)
    boxes = tf.convert_to_tensor(boxes, tf.float32)
    assigned = assign_anchors(anchors, boxes, labels >= 0)
    positive = assigned > 0
    box_index = tf.maximum(assigned - 1, 0)
    classes = tf.gather(labels, box_index, batch_dims=1)
    targets = tf.one_hot(tf.where(positive, classes, -1), num_classes)
    weights = tf.cast(assigned >= 0, tf.float32)[..., None]
    per_image = tf.maximum(tf.reduce_sum(tf.cast(positive, tf.float32), axis=1), 1.0)
    normalizer = tf.reduce_sum(per_image)
    cls_loss = tf.reduce_sum(focal_loss(logits, targets) * weights) / normalizer
    anchors = tf.convert_to_tensor(anchors, tf.float32)[None]
    matched = tf.where(positive[..., None], tf.gather(boxes, box_index, batch_dims=1), anchors)
    box_error = tf.abs(deltas - encode_boxes(anchors, matched))
    box_loss = tf.reduce_sum(tf.where(positive[..., None], box_error, 0.0)) / normalizer
    return cls_loss, box_loss
