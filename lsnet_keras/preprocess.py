"""The official evaluation transform: resize the shorter side, center crop, normalize.

Same steps as the official `data/datasets.py` (torchvision on PIL images): bicubic resize of the
shorter side to `int(256 / 224 * size)`, center crop `size` (top = round((h - size) / 2)),
scale to [0, 1], normalize with the ImageNet mean and std. Output is NHWC float32.

Example:
    >>> from lsnet_keras.preprocess import load_image, eval_transform
    >>> eval_transform(load_image("../shared/reference/preprocess.png")).shape
    (224, 224, 3)
"""

import os

import numpy as np
from PIL import Image, UnidentifiedImageError

from lsnet_keras.config import IMAGENET_MEAN, IMAGENET_STD
from lsnet_keras.errors import LSNetError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")
# The evaluation crop's side over the resized shorter side (224 / 256). Exports store it in the
# model (metadata entry `lsnet_preprocessing`) for apps, which resize the shorter side to
# int(size / CROP_FRACTION): equal to eval_crop's int(256 / 224 * size) at every size (tested).
CROP_FRACTION = 224 / 256


class ImageError(LSNetError):
    """An image file that cannot be read (one-line message naming the file)."""


def load_image(path):
    """Open an image file as an RGB PIL image, or raise ImageError naming the file.

    Example:
        >>> load_image("../shared/reference/preprocess.png").mode
        'RGB'
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ImageError(f"{path}: image file not found")
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        raise ImageError(f"{path}: not a readable image ({err})") from None


def resize_shorter_side(image, size):
    """Bicubic resize so the shorter side is `size`, as torchvision's `Resize(int)`.

    Example:
        >>> resize_shorter_side(Image.new("RGB", (400, 300)), 256).size
        (341, 256)
    """
    width, height = image.size
    if width <= height:
        new_size = (size, int(size * height / width))
    else:
        new_size = (int(size * width / height), size)
    return image.resize(new_size, Image.BICUBIC)


def center_crop(image, height, width=None):
    """Crop the central `height` x `width` region, rounding offsets as torchvision does.

    Example:
        >>> center_crop(Image.new("RGB", (341, 256)), 224).size
        (224, 224)
    """
    width = height if width is None else width
    image_width, image_height = image.size
    top = int(round((image_height - height) / 2.0))
    left = int(round((image_width - width) / 2.0))
    return image.crop((left, top, left + width, top + height))


def normalize(pixels):
    """uint8 or [0, 255] RGB array (..., 3) -> ImageNet-normalized float32.

    Example:
        >>> normalize(np.zeros((1, 1, 3), "uint8")).round(3).tolist()
        [[[-2.118, -2.036, -1.804]]]
    """
    scaled = np.asarray(pixels, dtype="float32") / 255.0
    return (scaled - np.array(IMAGENET_MEAN, "float32")) / np.array(IMAGENET_STD, "float32")


def eval_crop(image, height=224, width=None):
    """The official resize + center crop, without normalization (an app's uint8 input).

    The shorter side goes to `int(256 / 224 * max(height, width))`, bicubic, then the center
    `height` x `width` is cropped (square models: exactly the official transform).

    Example:
        >>> eval_crop(Image.new("RGB", (500, 375)), 224).size
        (224, 224)
    """
    width = height if width is None else width
    resized = resize_shorter_side(image, int((256 / 224) * max(height, width)))
    return center_crop(resized, height, width)


def eval_transform(image, size=224):
    """Official evaluation preprocessing of a PIL image: (size, size, 3) float32, NHWC.

    Example:
        >>> eval_transform(Image.new("RGB", (320, 240)), 160).dtype
        dtype('float32')
    """
    return normalize(np.asarray(eval_crop(image, size)))


def load_and_preprocess(path, size=224):
    """Read an image file and apply the official evaluation transform.

    Example:
        >>> load_and_preprocess("../shared/reference/preprocess.png", 224).shape
        (224, 224, 3)
    """
    return eval_transform(load_image(path), size)
