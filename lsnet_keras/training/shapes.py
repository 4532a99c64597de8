"""A generated detection and segmentation dataset with exact answers: shapes on textures.

Each image has a smooth random texture and one to `max_objects` filled shapes (square,
circle, triangle) of random colour, size and place; the boxes are exact and every pixel's class
is known. Written in the COCO layout `open_coco` reads (`annotations/instances_<split>.json`,
images in `<split>/`) with one mask PNG per image in `masks/<split>/` (0: background,
k: category k). It stands in for real data where none can be downloaded: the fine-tuning
tests and the int8 accuracy benchmark train on it.

Example:
    >>> from lsnet_keras.training.shapes import write_shapes_dataset
    >>> write_shapes_dataset("shapes", {"train": 64, "val": 16}, size=128)  # doctest: +SKIP
"""

import json
import os

import numpy as np
from PIL import Image, ImageDraw

from lsnet_keras.io import atomic_path

SHAPES = ("square", "circle", "triangle")


def _texture(rng, height, width):
    """A smooth random background: coarse noise upsampled bilinearly, plus fine grain."""
    coarse = rng.uniform(40, 215, size=(max(2, height // 16), max(2, width // 16), 3))
    image = Image.fromarray(coarse.astype("uint8")).resize((width, height), Image.BILINEAR)
    grain = rng.normal(0, 8, size=(height, width, 3))
    return Image.fromarray(np.clip(np.asarray(image) + grain, 0, 255).astype("uint8"))


def _draw(canvas, shape, box, fill):
    x1, y1, x2, y2 = box
    if shape == "square":
        canvas.rectangle((x1, y1, x2 - 1, y2 - 1), fill=fill)
    elif shape == "circle":
        canvas.ellipse((x1, y1, x2 - 1, y2 - 1), fill=fill)
    else:
        canvas.polygon(((x1, y2 - 1), ((x1 + x2 - 1) / 2, y1), (x2 - 1, y2 - 1)), fill=fill)


def shapes_image(rng, size, max_objects=3, min_side=0.15, max_side=0.6):
    """(RGB image, mask, [(category index, (x1, y1, x2, y2))]) of one generated picture.

    Example:
        >>> image, mask, objects = shapes_image(np.random.default_rng(0), (64, 96))
        >>> image.size, mask.shape, 1 <= len(objects) <= 3
        ((96, 64), (64, 96), True)
    """
    height, width = size
    image = _texture(rng, height, width)
    mask = Image.new("L", (width, height), 0)
    objects = []
    for _ in range(int(rng.integers(1, max_objects + 1))):
        category = int(rng.integers(len(SHAPES)))
        side_h = int(rng.uniform(min_side, max_side) * height)
        side_w = int(rng.uniform(min_side, max_side) * width)
        x1 = int(rng.integers(0, width - side_w + 1))
        y1 = int(rng.integers(0, height - side_h + 1))
        box = (x1, y1, x1 + side_w, y1 + side_h)
        colour = tuple(int(c) for c in rng.integers(0, 256, size=3))
        _draw(ImageDraw.Draw(image), SHAPES[category], box, colour)
        _draw(ImageDraw.Draw(mask), SHAPES[category], box, category + 1)
        objects.append((category, box))
    mask = np.asarray(mask)
    kept = []
    for category, (x1, y1, x2, y2) in objects:  # boxes of what later shapes left visible
        ys, xs = np.nonzero(mask[y1:y2, x1:x2] == category + 1)
        if len(xs):
            kept.append(
                (category, (x1 + xs.min(), y1 + ys.min(), x1 + xs.max() + 1, y1 + ys.max() + 1))
            )
    return image, mask, [(c, tuple(int(v) for v in box)) for c, box in kept]


def write_shapes_dataset(folder, splits, size=128, seed=0, max_objects=3):
    """Write `splits` ({name: number of images}) of generated images under `folder`.

    `size` is an int or (height, width). Returns the path of each split's instances JSON.

    Example:
        >>> write_shapes_dataset("shapes", {"train": 8})  # doctest: +SKIP
        {'train': 'shapes/annotations/instances_train.json'}
    """
    size = (size, size) if isinstance(size, int) else tuple(size)
    os.makedirs(os.path.join(folder, "annotations"), exist_ok=True)
    written = {}
    for split_index, (split, count) in enumerate(splits.items()):
        rng = np.random.default_rng([seed, split_index])
        for sub in (split, os.path.join("masks", split)):
            os.makedirs(os.path.join(folder, sub), exist_ok=True)
        images, annotations = [], []
        for index in range(count):
            image, mask, objects = shapes_image(rng, size, max_objects)
            name = f"{index:06d}.png"
            image.save(os.path.join(folder, split, name))
            Image.fromarray(mask).save(os.path.join(folder, "masks", split, name))
            images.append({"id": index + 1, "file_name": name, "height": size[0], "width": size[1]})
            for category, (x1, y1, x2, y2) in objects:
                annotations.append(
                    {
                        "id": len(annotations) + 1,
                        "image_id": index + 1,
                        "category_id": category + 1,
                        "bbox": [x1, y1, x2 - x1, y2 - y1],
                        "area": int(np.sum(mask[y1:y2, x1:x2] == category + 1)),
                        "iscrowd": 0,
                    }
                )
        categories = [{"id": i + 1, "name": name} for i, name in enumerate(SHAPES)]
        path = os.path.join(folder, "annotations", f"instances_{split}.json")
        with atomic_path(path, overwrite=True) as tmp, open(tmp, "w", encoding="utf-8") as file:
            json.dump(
                {"images": images, "annotations": annotations, "categories": categories}, file
            )
        written[split] = path
    return written
