"""The shared detection and segmentation goldens (../shared/reference/dense), made by
MMDetection 2.28.2 and MMSegmentation 0.30.0 themselves."""

import json

import numpy as np
from goldens import REFERENCE_DIR
from safetensors.numpy import load_file

DENSE_DIR = REFERENCE_DIR / "dense"
RETINANET_SIZES = ((320, 320), (256, 384))
SEMFPN_SIZES = ((320, 320), (256, 384))
LEVELS = 5


def retinanet_weights():
    """The golden RetinaNet-LSNet-T state_dict (float16 values, as float32)."""
    return _load("retinanet_lsnet_t.safetensors")


def semfpn_weights():
    """The golden Semantic FPN-LSNet-T state_dict (float16 values, as float32)."""
    return _load("semfpn_lsnet_t.safetensors")


def _load(name):
    state = load_file(DENSE_DIR / name)
    return {k: v.astype("float32") if v.dtype == "float16" else v for k, v in state.items()}


def semfpn_case(size):
    """One golden size: input and head logits (NHWC), class map, top-2 margin, meta."""
    folder = DENSE_DIR / f"semfpn_lsnet_t_{size[0]}x{size[1]}"
    return {
        "input": np.load(folder / "input.npy").transpose(0, 2, 3, 1),
        "logits": np.load(folder / "seg_logits_head.npy").transpose(0, 2, 3, 1),
        "class_map": np.load(folder / "seg_pred.npy"),
        "margin": np.load(folder / "seg_margin.npy"),
        "meta": json.loads((folder / "meta.json").read_text()),
        "image": folder / "image.png",
    }


def retinanet_case(size):
    """One golden size: input (NHWC), raw outputs (NHWC), anchors, detections and meta."""
    folder = DENSE_DIR / f"retinanet_lsnet_t_{size[0]}x{size[1]}"

    def nhwc(name):
        return np.load(folder / f"{name}.npy").transpose(0, 2, 3, 1)

    return {
        "input": nhwc("input"),
        "cls_scores": [nhwc(f"cls_score_{i}") for i in range(LEVELS)],
        "bbox_preds": [nhwc(f"bbox_pred_{i}") for i in range(LEVELS)],
        "anchors": [np.load(folder / f"anchors_{i}.npy") for i in range(LEVELS)],
        "boxes": np.load(folder / "det_boxes.npy"),
        "scores": np.load(folder / "det_scores.npy"),
        "labels": np.load(folder / "det_labels.npy"),
        "meta": json.loads((folder / "meta.json").read_text()),
        "image": folder / "image.png",
    }


def match_detections(found, boxes, scores, labels, within=1.0):
    """For each expected detection, the worst (score, box) difference to its match in `found`:
    the box of the same label nearest in coordinates (NMS leaves no two overlapping boxes of a
    label; boxes clipped to zero area overlap nothing, so IoU cannot match those). Returns
    (unmatched count, max score diff, max box diff in pixels); a match more than `within` px
    away counts as unmatched.

    Scores of the goldens are densely packed (neighbours 6e-6 apart): detections are compared
    by matching, not by rank.
    """
    unmatched, score_diff, box_diff = 0, 0.0, 0.0
    for box, score, label in zip(boxes, scores, labels):
        same = np.nonzero(found.labels == label)[0]
        distances = np.abs(found.boxes[same] - box).max(axis=1) if len(same) else np.array([])
        if len(same) == 0 or distances.min() > within:
            unmatched += 1
            continue
        best = same[int(np.argmin(distances))]
        score_diff = max(score_diff, abs(float(found.scores[best]) - float(score)))
        box_diff = max(box_diff, float(distances.min()))
    return unmatched, score_diff, box_diff
