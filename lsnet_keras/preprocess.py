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
import warnings

import numpy as np
from PIL import Image, UnidentifiedImageError

from lsnet_keras.config import IMAGENET_MEAN, IMAGENET_STD
from lsnet_keras.errors import LSNetError
from lsnet_keras.io import require_file

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")
# The evaluation crop's side over the resized shorter side (224 / 256). Exports store it in the
# model (metadata entry `lsnet_preprocessing`) for apps, which resize the shorter side to
# int(size / CROP_FRACTION): equal to eval_crop's int(256 / 224 * size) at every size (tested).
CROP_FRACTION = 224 / 256


class ImageError(LSNetError):
    """An image file that cannot be read (one-line message naming the file)."""


class ImageTooLarge(ImageError):
    """An image refused from its header: too many pixels or too elongated to decode."""


# Images are refused before decoding beyond Pillow's decompression-bomb limit (about 89
# megapixels) or a 50:1 aspect ratio (its shorter side resized to 256 would not fit in memory).
MAX_ASPECT_RATIO = 50
# Modes whose samples are 16-bit: scaled to 8 bits (Pillow's convert("RGB") would clip them).
SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")


def max_image_pixels():
    """The pixel budget of one image: Pillow's `Image.MAX_IMAGE_PIXELS` (None: no limit)."""
    return Image.MAX_IMAGE_PIXELS


def check_image_size(size, path):
    """Raise ImageError if an image of `size` (width, height) is too large or too elongated.

    Example:
        >>> check_image_size((1, 100), "thin.png")
        Traceback (most recent call last):
        ...
        lsnet_keras.preprocess.ImageTooLarge: thin.png: 1x100 pixels: aspect ratio over 50:1
    """
    width, height = size
    budget = max_image_pixels()
    if width < 1 or height < 1:
        raise ImageError(f"{path}: empty image ({width}x{height} pixels)")
    if budget and width * height > budget:
        raise ImageTooLarge(
            f"{path}: {width}x{height} pixels is over the limit of {budget:,} pixels "
            "(PIL.Image.MAX_IMAGE_PIXELS)"
        )
    if max(width, height) > MAX_ASPECT_RATIO * min(width, height):
        raise ImageTooLarge(
            f"{path}: {width}x{height} pixels: aspect ratio over {MAX_ASPECT_RATIO}:1"
        )


def to_rgb(image):
    """A PIL image of any mode as 8-bit RGB: 16-bit samples scaled (not clipped) to 8 bits.

    Example:
        >>> to_rgb(Image.new("I;16", (2, 2), 65535)).getpixel((0, 0))
        (255, 255, 255)
    """
    if image.mode in SIXTEEN_BIT_MODES:
        image = image.convert("I").point(lambda value: value * (1 / 256)).convert("L")
    return image.convert("RGB")


def open_image(source, path=None, decode=True):
    """Decode an image file or file object to RGB, or raise ImageError naming `path`.

    The header is checked (`check_image_size`) before any pixel is decoded; `decode=False`
    only checks it (returns None).

    Example:
        >>> open_image("../shared/reference/preprocess.png").mode
        'RGB'
    """
    path = os.fspath(source) if path is None else path
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(source) as image:
                check_image_size(image.size, path)
                return to_rgb(image) if decode else None
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageTooLarge(
            f"{path}: over the limit of {max_image_pixels():,} pixels (PIL.Image.MAX_IMAGE_PIXELS)"
        ) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise ImageError(f"{path}: not a readable image ({err})") from None


def load_image(path):
    """Open an image file as an RGB PIL image, or raise ImageError naming the file.

    Example:
        >>> load_image("../shared/reference/preprocess.png").mode
        'RGB'
    """
    try:
        path = require_file(path, "image")
    except LSNetError as err:
        raise ImageError(str(err)) from None
    return open_image(path)


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
