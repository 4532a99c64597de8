"""Fine-tuning detectors (python -m training.detect): COCO-format data and its one-line errors,
MaxIoU assignment, DeltaXYWH targets and the focal loss on cases with known answers, the
training input pipeline, and COCO mAP through pycocotools. The training runs themselves
(learning, SIGKILL + --resume) are in test_detect_training_slow.py."""

import contextlib
import io
import json

import numpy as np
import pytest
from PIL import Image

from lsnet_keras.detection.dataset import open_coco
from lsnet_keras.detection.evaluation import coco_metrics, detect_split
from lsnet_keras.detection.postprocess import Detections, decode_boxes
from lsnet_keras.detection.targets import (
    assign_anchors,
    detection_loss,
    encode_boxes,
    focal_loss,
    image_anchors,
)
from lsnet_keras.training.data import DatasetError
from lsnet_keras.training.detection import epoch_order, train_batches
from lsnet_keras.training.shapes import write_shapes_dataset
from training import detect as detect_cli


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    folder = tmp_path_factory.mktemp("shapes")
    write_shapes_dataset(folder, {"train": 12, "val": 4}, size=(64, 96))
    return folder


def coco_folder(root, images, annotations, categories=({"id": 3, "name": "cat"},)):
    """A one-split COCO layout (train and val the same file) with the given records."""
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    for split in ("train", "val"):
        (root / split).mkdir(exist_ok=True)
        for record in images:
            path = root / split / record["file_name"]
            if record.get("write", True):
                Image.new("RGB", (record.get("width", 8), record.get("height", 8))).save(path)
        content = {
            "images": [{k: v for k, v in r.items() if k != "write"} for r in images],
            "annotations": list(annotations),
            "categories": list(categories),
        }
        (root / "annotations" / f"instances_{split}.json").write_text(json.dumps(content))
    return root


IMAGE = {"id": 1, "file_name": "a.png", "height": 40, "width": 60}


def box(bbox, category=3, **extra):
    return {"id": 1, "image_id": 1, "category_id": category, "bbox": bbox, **extra}


# --- data -------------------------------------------------------------------------------------
def test_generated_shapes_read_back_with_exact_boxes(shapes):
    data = open_coco(shapes)
    assert data.class_names == ["square", "circle", "triangle"]
    assert data.category_ids == [1, 2, 3]
    assert data.train.num_images == 12 and data.val.num_images == 4
    mask = np.asarray(Image.open(shapes / "masks" / "train" / "000000.png"))
    for (x1, y1, x2, y2), label in zip(data.train.boxes[0], data.train.labels[0]):
        ys, xs = np.nonzero(mask[int(y1) : int(y2), int(x1) : int(x2)] == label + 1)
        assert (xs.min(), ys.min()) == (0, 0)  # the box is tight on its visible pixels
        assert (xs.max() + 1, ys.max() + 1) == (x2 - x1, y2 - y1)


def test_labels_follow_sorted_category_ids(tmp_path):
    categories = ({"id": 9, "name": "dog"}, {"id": 2, "name": "cat"})
    data = open_coco(coco_folder(tmp_path, [IMAGE], [box([1, 1, 5, 5], 9)], categories))
    assert data.class_names == ["cat", "dog"] and data.category_ids == [2, 9]
    assert data.train.labels[0].tolist() == [1]
    assert data.train.boxes[0].tolist() == [[1, 1, 6, 6]]  # x, y, w, h -> x1, y1, x2, y2


def test_boxes_outside_the_image_or_under_a_pixel_are_skipped_and_counted(tmp_path):
    annotations = [
        box([70, 5, 10, 10]),  # right of the 60-pixel-wide image
        box([5, 5, 0.5, 10]),  # under a pixel wide
        box([5, 5, 10, 0]),  # no height
        box([-5, -5, 10, 10]),  # partly outside: kept, as MMDetection keeps it
        box([5, 5, 10, 10], iscrowd=1),  # crowd: not trained on
    ]
    data = open_coco(coco_folder(tmp_path, [IMAGE], annotations))
    assert data.train.skipped_boxes == 3 and data.train.crowd_boxes == 1
    assert data.train.boxes[0].tolist() == [[-5, -5, 5, 5]]


def test_an_image_without_boxes_is_listed_but_not_trained_on(tmp_path):
    second = {**IMAGE, "id": 2, "file_name": "b.png"}
    data = open_coco(coco_folder(tmp_path, [IMAGE, second], [box([1, 1, 5, 5])]))
    assert data.train.num_images == 2 and data.train.empty_images == 1
    assert data.train.trainable() == [0]


@pytest.mark.parametrize(
    "images, annotations, message",
    [
        ([IMAGE], [box([1, 1, 5, 5], category=7)], "annotation 1: category_id 7 is not in"),
        ([IMAGE], [{**box([1, 1, 5, 5]), "image_id": 5}], "annotation 1: image_id 5 is not listed"),
        ([IMAGE], [{"id": 1, "image_id": 1, "category_id": 3}], "annotation 1: no box"),
        ([IMAGE], [box([1, 1, 5])], "annotation 1: no box"),
        ([{**IMAGE, "write": False}], [], "image 1: "),
        ([{**IMAGE, "file_name": "../a.png"}], [], "is outside"),
        ([{"id": 1, "file_name": "a.png"}], [], "image 1 has no valid 'height'"),
    ],
    ids=["unknown-category", "unknown-image", "no-bbox", "short-bbox", "missing-file",
         "escaping-name", "no-size"],
)  # fmt: skip
def test_malformed_datasets_name_the_problem_in_one_line(tmp_path, images, annotations, message):
    coco_folder(tmp_path, images, annotations)
    with pytest.raises(DatasetError, match=message) as error:
        open_coco(tmp_path)
    assert "\n" not in str(error.value) and "instances_train.json" in str(error.value)


def test_a_file_that_is_not_coco_is_named(tmp_path):
    coco_folder(tmp_path, [IMAGE], [])
    (tmp_path / "annotations" / "instances_train.json").write_text('{"images": {}}')
    with pytest.raises(DatasetError, match="not a COCO instances file"):
        open_coco(tmp_path)
    (tmp_path / "annotations" / "instances_train.json").write_text("{")
    with pytest.raises(DatasetError, match="not a JSON file"):
        open_coco(tmp_path)


def test_the_command_refuses_a_malformed_dataset_in_one_line(tmp_path, capsys):
    coco_folder(tmp_path / "data", [IMAGE], [box([1, 1, 5, 5], category=7)])
    status = detect_cli.main(
        ["--data-dir", str(tmp_path / "data"), "--output-dir", str(tmp_path / "run")]
    )
    error = capsys.readouterr().err.strip()
    assert status == 2 and len(error.splitlines()) == 1, error
    assert "category_id 7 is not in 'categories'" in error
    assert not (tmp_path / "run" / "checkpoints").exists()


# --- targets and loss -------------------------------------------------------------------------
def test_max_iou_assignment_thresholds_and_low_quality_matches():
    anchors = np.array(
        [[0, 0, 10, 10], [0, 0, 10, 12], [0, 0, 10, 20], [50, 50, 60, 60], [0, 0, 10, 30]],
        "float32",
    )
    gt = np.array([[[0, 0, 10, 10], [40, 40, 80, 80], [0, 0, 0, 0]]], "float32")
    assigned = assign_anchors(anchors, gt, np.array([[True, True, False]])).numpy()[0]
    # IoU with box 1: 1, 0.83 (positive), 0.5 (positive), 0; 0.33 (negative, < 0.4).
    # Box 2 overlaps anchor 3 only at 0.0625, yet takes it: every box gets its best anchor.
    assert assigned.tolist() == [1, 1, 1, 2, 0]
    ignore = assign_anchors(
        np.array([[0, 0, 10, 10], [0, 0, 10, 22]], "float32"),
        np.array([[[0, 0, 10, 10]]], "float32"),
        np.array([[True]]),
    ).numpy()[0]
    assert ignore.tolist() == [1, -1]  # IoU 0.45: between the thresholds, ignored


def test_encoded_deltas_decode_back_to_the_box():
    rng = np.random.default_rng(0)
    anchors = image_anchors([(4, 4), (2, 2)])
    corners = rng.uniform(0, 60, size=(len(anchors), 2))
    boxes = np.concatenate([corners, corners + rng.uniform(2, 40, size=corners.shape)], axis=1)
    deltas = encode_boxes(anchors, boxes.astype("float32")).numpy()
    decoded = decode_boxes(anchors, deltas, (200, 200))
    np.testing.assert_allclose(decoded, boxes, atol=1e-3)


def test_focal_loss_is_the_formula():
    logits = np.array([-3.0, -0.5, 0.0, 2.0], "float32")
    targets = np.array([1.0, 0.0, 1.0, 0.0], "float32")
    p = 1 / (1 + np.exp(-logits.astype("float64")))
    p_t = np.where(targets == 1, p, 1 - p)
    alpha_t = np.where(targets == 1, 0.25, 0.75)
    expected = -alpha_t * (1 - p_t) ** 2 * np.log(p_t)
    np.testing.assert_allclose(focal_loss(logits, targets).numpy(), expected, rtol=1e-5)


def test_loss_sums_over_anchors_and_divides_by_the_positives():
    anchors = np.array([[0, 0, 8, 8], [0, 0, 8, 9], [30, 30, 40, 40]], "float32")
    logits = np.array([[[0.0, 1.0], [-1.0, 2.0], [0.5, -0.5]]], "float32")  # (1, 3 anchors, 2)
    deltas = np.array([[[0.1, 0, 0, 0], [0, -0.2, 0, 0], [5, 5, 5, 5]]], "float32")
    outputs = {
        "cls_score_0": logits.reshape(1, 1, 3, 2),
        "bbox_pred_0": deltas.reshape(1, 1, 3, 4),
    }
    cls, reg = detection_loss(outputs, np.array([[[0, 0, 8, 8]]], "float32"), np.array([[1]]),
                              anchors, num_classes=2)  # fmt: skip
    targets = np.array([[0, 1], [0, 1], [0, 0]], "float32")  # anchors 0 and 1 positive
    expected_cls = focal_loss(logits[0], targets).numpy().sum() / 2
    box_target = encode_boxes(anchors[1], np.array([0, 0, 8, 8], "float32")).numpy()
    expected_reg = (0.1 + np.abs(deltas[0, 1] - box_target).sum()) / 2
    assert float(cls) == pytest.approx(expected_cls, rel=1e-5)
    assert float(reg) == pytest.approx(expected_reg, rel=1e-5)


# --- input pipeline ---------------------------------------------------------------------------
def test_epoch_order_is_a_seeded_permutation(shapes):
    split = open_coco(shapes).train
    order, flips = epoch_order(split, epoch=3, seed=1, flip=0.5)
    again, flips_again = epoch_order(split, epoch=3, seed=1, flip=0.5)
    assert sorted(order.tolist()) == split.trainable()
    assert order.tolist() == again.tolist() and flips.tolist() == flips_again.tolist()
    assert order.tolist() != epoch_order(split, epoch=4, seed=1, flip=0.5)[0].tolist()


def test_training_images_are_letterboxed_and_flipped_with_their_boxes(shapes):
    split = open_coco(shapes).train
    order = np.array([0, 0])
    images, targets = next(iter(train_batches(split, order, np.array([False, True]),
                                              (128, 128), 2, max_boxes=4)))  # fmt: skip
    images, boxes = images.numpy(), targets["boxes"].numpy()
    count = len(split.boxes[0])
    scale = 128 / 96  # the 64x96 image fits the width: 85 x 128, padded below
    np.testing.assert_allclose(
        boxes[0, :count], split.boxes[0] * np.array([scale, 85 / 64] * 2), rtol=1e-5
    )
    assert (targets["labels"].numpy()[:, count:] == -1).all()
    np.testing.assert_allclose(images[1, :85], images[0, :85, ::-1], atol=1e-5)
    assert np.abs(images[:, 85:]).max() == 0  # padding is the mean colour: zero once normalized
    x1, y1, x2, y2 = boxes[0, 0]
    np.testing.assert_allclose(boxes[1, 0], [128 - x2, y1, 128 - x1, y2], rtol=1e-5)


# --- evaluation -------------------------------------------------------------------------------
class TruthDetector:
    """Finds exactly each image's ground truth (in the letterboxed input's pixels), the images
    taken in the split's order as `detect_split` takes them."""

    height = width = 128

    def __init__(self, split):
        self.truth = iter(zip(split.boxes, split.labels))

    def detect(self, pixels, score_threshold, content):
        boxes, labels = next(self.truth)
        scale = content[1] / 96  # the 64x96 images fill the width
        return Detections((boxes * scale).astype("float32"), np.ones(len(boxes), "float32"), labels)


def test_perfect_detections_score_one(shapes):
    data = open_coco(shapes)
    records = detect_split(TruthDetector(data.val), data.val, data.category_ids)
    metrics = coco_metrics(data.val.annotation_file, records, data.val.image_ids)
    assert metrics["mAP"] == pytest.approx(1.0) and metrics["AP50"] == pytest.approx(1.0)


def test_a_box_at_iou_0_6_scores_what_coco_says(tmp_path):
    """One box of 10 x 10 and a detection moved 2.5 pixels: IoU 7.5 / 12.5 = 0.6. It matches at
    the IoU thresholds 0.50, 0.55 and 0.60 of COCO's ten, so mAP = 0.3, AP50 = 1, AP75 = 0."""
    coco_folder(tmp_path, [IMAGE], [box([10, 10, 10, 10], area=100, iscrowd=0)])
    annotation_file = str(tmp_path / "annotations" / "instances_val.json")
    record = {"image_id": 1, "category_id": 3, "bbox": [12.5, 10, 10, 10], "score": 0.9}
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        metrics = coco_metrics(annotation_file, [record])
    assert printed.getvalue() == ""  # pycocotools' printing is kept out of the library's output
    assert metrics["mAP"] == pytest.approx(0.3) and metrics["AP50"] == pytest.approx(1.0)
    assert metrics["AP75"] == 0.0 and metrics["AP_small"] == pytest.approx(0.3)
    assert coco_metrics(annotation_file, []) == dict.fromkeys(metrics, 0.0)


def test_the_learning_rate_warms_up_then_steps_down():
    from lsnet_keras.training.detection import WarmupStepDecay

    schedule = WarmupStepDecay(2e-4, steps_per_epoch=100, decay_epochs=(8, 11), warmup_steps=500,
                               warmup_ratio=0.001)  # fmt: skip
    rates = {step: float(schedule(step)) for step in (0, 250, 500, 799, 800, 1100)}
    assert rates[0] == pytest.approx(2e-7, rel=1e-4) and rates[250] == pytest.approx(
        2e-4 * 0.5005, rel=1e-5
    )
    assert rates[500] == rates[799] == pytest.approx(2e-4, rel=1e-6)
    assert rates[800] == pytest.approx(2e-5, rel=1e-6) and rates[1100] == pytest.approx(
        2e-6, rel=1e-6
    )
