"""COCO-format detection data: an images folder plus an instances JSON, checked once.

`open_coco(DIR)` reads the COCO layout `DIR/annotations/instances_<split>.json` with the images
of each split in `DIR/<split>/` (split names "train" and "val" by default; COCO's own are
"train2017" and "val2017"). Labels are the categories in the order of their ids (label 0 is
the smallest id), as MMDetection's `CocoDataset` numbers them.

Checked as MMDetection reads the same file: a box is `[x, y, width, height]` in pixels; boxes
that miss their image or are under one pixel wide or high are skipped and counted
(`DetectionSplit.skipped_boxes`), crowd boxes are left out of training (the evaluation keeps
them, as pycocotools does), and images left without a box are not trained on
(`empty_images`). Errors, one line each: a file that is not a COCO instances JSON, an
annotation of an unknown image or category, an annotation without a box, an image listed
but missing from the folder.

Example:
    >>> from lsnet_keras.detection.dataset import open_coco
    >>> data = open_coco("shapes")  # doctest: +SKIP
    >>> data.train.num_images, data.class_names[:2]  # doctest: +SKIP
    (200, ['circle', 'square'])
"""

import dataclasses
import json
import os

import numpy as np

from lsnet_keras.training.data import DatasetError

# An instances JSON larger than this is refused before it is parsed (COCO's train2017 file is
# 448 MB; parsing takes about 8x the file's size in memory).
MAX_ANNOTATION_BYTES = 2 << 30
MIN_BOX_SIDE = 1.0  # pixels, as MMDetection's `_parse_ann_info`


@dataclasses.dataclass
class DetectionSplit:
    """One split: image files, their sizes and ids, and the training boxes of each image.

    `boxes[i]` is (n, 4) float32 x1, y1, x2, y2 in the pixels of image i, `labels[i]` (n,)
    int32; `annotation_file` is the JSON the evaluation reads its ground truth from.
    """

    name: str
    annotation_file: str
    paths: list
    image_ids: list
    sizes: list  # (height, width) of each image, from the JSON
    boxes: list
    labels: list
    skipped_boxes: int = 0
    crowd_boxes: int = 0
    empty_images: int = 0

    @property
    def num_images(self):
        """Images in the split (with or without boxes)."""
        return len(self.paths)

    def trainable(self):
        """Indices of the images that have at least one box to learn from."""
        return [i for i, boxes in enumerate(self.boxes) if len(boxes)]


@dataclasses.dataclass
class DetectionDataset:
    """The splits of a COCO-format folder and the class names (index = label)."""

    train: DetectionSplit
    val: DetectionSplit
    class_names: list
    category_ids: list  # COCO category id of each label


def _read_json(path):
    if not os.path.isfile(path):
        raise DatasetError(f"{path}: annotation file not found")
    size = os.path.getsize(path)
    if size > MAX_ANNOTATION_BYTES:
        raise DatasetError(
            f"{path}: {size:,} bytes, over the limit of {MAX_ANNOTATION_BYTES:,} for an "
            "instances JSON"
        )
    try:
        with open(path, encoding="utf-8") as file:
            content = json.load(file)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DatasetError(f"{path}: not a JSON file ({error})") from None
    if not isinstance(content, dict) or not all(
        isinstance(content.get(key), list) for key in ("images", "annotations", "categories")
    ):
        raise DatasetError(
            f"{path}: not a COCO instances file (expected lists 'images', 'annotations' and "
            "'categories')"
        )
    return content


def _field(record, key, kind, path, what):
    value = record.get(key) if isinstance(record, dict) else None
    if not isinstance(value, kind) or isinstance(value, bool):
        raise DatasetError(f"{path}: {what} has no valid '{key}'")
    return value


def _categories(content, path):
    """{category id: name}, the ids sorted (label order)."""
    categories = {}
    for record in content["categories"]:
        category = _field(record, "id", int, path, "a category")
        categories[category] = str(record.get("name", f"class {category}"))
    if not categories:
        raise DatasetError(f"{path}: no categories")
    return dict(sorted(categories.items()))


def _images(content, path, images_dir):
    """{image id: (file path, height, width)}, every file checked to exist."""
    images = {}
    for record in content["images"]:
        image_id = _field(record, "id", int, path, "an image")
        what = f"image {image_id}"
        name = _field(record, "file_name", str, path, what)
        height = _field(record, "height", int, path, what)
        width = _field(record, "width", int, path, what)
        file_path = os.path.join(images_dir, name)
        if os.path.isabs(name) or os.path.normpath(name).startswith(".."):
            raise DatasetError(f"{path}: {what}: file_name {name!r} is outside {images_dir}")
        if not os.path.isfile(file_path):
            raise DatasetError(f"{path}: {what}: {file_path} not found")
        if height < 1 or width < 1:
            raise DatasetError(f"{path}: {what}: size {width}x{height}")
        images[image_id] = (file_path, height, width)
    return images


def _usable(box, height, width):
    """MMDetection's rule: the box overlaps its image and is at least a pixel each way."""
    x, y, w, h = box
    overlap_w = max(0.0, min(x + w, width) - max(x, 0.0))
    overlap_h = max(0.0, min(y + h, height) - max(y, 0.0))
    return overlap_w * overlap_h > 0 and w >= MIN_BOX_SIDE and h >= MIN_BOX_SIDE


def read_coco_split(name, images_dir, annotation_file, categories=None):
    """Read one split; `categories` ({id: name}) are the training split's (a val split whose
    categories differ is an error). Returns (DetectionSplit, categories).

    Example:
        >>> split, categories = read_coco_split(
        ...     "val", "shapes/val", "shapes/annotations/instances_val.json")  # doctest: +SKIP
    """
    content = _read_json(annotation_file)
    found = _categories(content, annotation_file)
    if categories is not None and found != categories:
        raise DatasetError(f"{annotation_file}: categories differ from the training split's")
    labels_of = {category: label for label, category in enumerate(found)}
    images = _images(content, annotation_file, images_dir)
    boxes = {image_id: [] for image_id in images}
    labels = {image_id: [] for image_id in images}
    skipped = crowd = 0
    for record in content["annotations"]:
        what = f"annotation {record.get('id', '?') if isinstance(record, dict) else '?'}"
        image_id = _field(record, "image_id", int, annotation_file, what)
        category = _field(record, "category_id", int, annotation_file, what)
        if image_id not in images:
            raise DatasetError(f"{annotation_file}: {what}: image_id {image_id} is not listed")
        if category not in labels_of:
            raise DatasetError(
                f"{annotation_file}: {what}: category_id {category} is not in 'categories'"
            )
        box = record.get("bbox")
        if not (
            isinstance(box, list)
            and len(box) == 4
            and all(isinstance(v, (int, float)) and np.isfinite(v) for v in box)
        ):
            raise DatasetError(f"{annotation_file}: {what}: no box (expected bbox [x, y, w, h])")
        _, height, width = images[image_id]
        if record.get("iscrowd"):
            crowd += 1
        elif not _usable(box, height, width):
            skipped += 1
        else:
            x, y, w, h = (float(v) for v in box)
            boxes[image_id].append([x, y, x + w, y + h])
            labels[image_id].append(labels_of[category])
    ids = list(images)
    split = DetectionSplit(
        name=name,
        annotation_file=annotation_file,
        paths=[images[i][0] for i in ids],
        image_ids=ids,
        sizes=[images[i][1:] for i in ids],
        boxes=[np.array(boxes[i], "float32").reshape(-1, 4) for i in ids],
        labels=[np.array(labels[i], "int32") for i in ids],
        skipped_boxes=skipped,
        crowd_boxes=crowd,
        empty_images=sum(not boxes[i] for i in ids),
    )
    return split, found


def open_coco(data_dir, train_split="train", val_split="val"):
    """The COCO layout of `data_dir`: `annotations/instances_<split>.json` + `<split>/`.

    Example:
        >>> open_coco("missing")
        Traceback (most recent call last):
            ...
        lsnet_keras.training.data.DatasetError: missing/annotations/instances_train.json: \
annotation file not found
    """
    splits = {}
    categories = None
    for name in (train_split, val_split):
        images_dir = os.path.join(data_dir, name)
        annotation_file = os.path.join(data_dir, "annotations", f"instances_{name}.json")
        if not os.path.isdir(images_dir) and os.path.isfile(annotation_file):
            raise DatasetError(f"{images_dir}: images folder not found")
        splits[name], categories = read_coco_split(name, images_dir, annotation_file, categories)
    return DetectionDataset(
        train=splits[train_split],
        val=splits[val_split],
        class_names=list(categories.values()),
        category_ids=list(categories),
    )
