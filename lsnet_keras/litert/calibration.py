"""Calibration data for full-integer quantization: an image folder, arrays, or a built-in set.

Images go through the official evaluation transform. The built-in set is generated (smooth
colour fields, edges and textures from a fixed seed) so that no download is needed; it gives
plausible activation ranges, but real images from the target domain calibrate better.

Example:
    >>> from lsnet_keras.litert.calibration import builtin_images
    >>> builtin_images(4, 64).shape
    (4, 64, 64, 3)
"""

import os

import numpy as np
from PIL import Image, ImageFilter

from lsnet_keras.errors import LSNetError
from lsnet_keras.io import require_folder, walk_files
from lsnet_keras.preprocess import IMAGE_EXTENSIONS, eval_crop, load_image


def builtin_images(count=32, size=224, seed=0):
    """`count` generated RGB uint8 images (count, size, size, 3): natural-looking statistics.

    Example:
        >>> builtin_images(2, 32).dtype
        dtype('uint8')
    """
    rng = np.random.default_rng(seed)
    images = []
    for _ in range(count):
        coarse = rng.uniform(0, 255, size=(rng.integers(2, 9), rng.integers(2, 9), 3))
        image = Image.fromarray(coarse.astype("uint8")).resize((size, size), Image.BICUBIC)
        detail = rng.normal(0, rng.uniform(5, 40), size=(size, size, 3))
        pixels = np.asarray(image, dtype="float32") + detail
        edges = Image.fromarray(np.clip(pixels, 0, 255).astype("uint8"))
        blur = float(rng.uniform(0, 2))
        images.append(np.asarray(edges.filter(ImageFilter.GaussianBlur(blur))))
    return np.stack(images)


def folder_images(folder, size=224, limit=100, fit=None):
    """Up to `limit` images found under `folder` (recursively), official resize + crop, uint8.

    `fit` replaces the resize and crop: a function of a PIL image returning (H, W, 3) pixels
    (a detector's letterbox).

    Example:
        >>> folder_images("/nonexistent")
        Traceback (most recent call last):
        ...
        lsnet_keras.errors.LSNetError: /nonexistent: calibration folder not found
    """
    folder = require_folder(folder, "calibration")
    paths = [
        path
        for path in walk_files(folder, [])
        if path.lower().endswith(IMAGE_EXTENSIONS) and os.path.isfile(path)
    ]
    if not paths:
        raise LSNetError(f"{folder}: no images ({', '.join(IMAGE_EXTENSIONS)}) in the folder")
    fit = fit or (lambda image: np.asarray(eval_crop(image, size)))
    return np.stack([np.asarray(fit(load_image(p))) for p in paths[:limit]]).astype("uint8")
