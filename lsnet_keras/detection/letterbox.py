"""Fit any image to a detector's fixed H x W input, and map its boxes back.

The released test pipeline rescales to 1333x800 keeping the ratio, which a fixed-size phone
model cannot; here an image of h x w pixels is scaled by min(H / h, W / w) (bilinear with
half-pixel centres and no antialiasing, as mmcv's `imrescale` with OpenCV), the new size rounded
as mmcv rounds it (`int(side * scale + 0.5)`), and padded at the bottom and right with the mean
colour, which normalizes to zero as MMDetection's padding after Normalize. Boxes found on the
model's input divide by the scale and are clipped to the original image.

Example:
    >>> import numpy as np
    >>> from PIL import Image
    >>> from lsnet_keras.detection.letterbox import letterbox
    >>> fitted = letterbox(Image.new("RGB", (640, 480)), 320, 320)
    >>> fitted.pixels.shape, fitted.scale, fitted.content
    ((320, 320, 3), 0.5, (240, 320))
"""

from typing import NamedTuple

import numpy as np

from lsnet_keras.config import MMDET_MEAN

PAD_COLOUR = MMDET_MEAN  # normalizes to zero


class Letterboxed(NamedTuple):
    """An image fitted to the model: `pixels` (H, W, 3) float32 0..255, the `scale` applied,
    `content` (h, w) of the resized image inside the padding, `original` (h, w)."""

    pixels: np.ndarray
    scale: float
    content: tuple
    original: tuple


def bilinear_matrix(in_size, out_size):
    """The (out_size, in_size) matrix of a bilinear resize along one axis, half-pixel centres,
    no antialiasing (OpenCV's INTER_LINEAR, PyTorch's align_corners=False).

    Example:
        >>> bilinear_matrix(2, 4).round(2).tolist()[0]
        [1.0, 0.0]
    """
    source = np.clip((np.arange(out_size) + 0.5) * (in_size / out_size) - 0.5, 0, None)
    low = np.minimum(np.floor(source).astype(int), in_size - 1)
    high = np.minimum(low + 1, in_size - 1)
    weight = source - low
    matrix = np.zeros((out_size, in_size))
    np.add.at(matrix, (np.arange(out_size), low), 1 - weight)
    np.add.at(matrix, (np.arange(out_size), high), weight)
    return matrix


def letterbox(image, height, width):
    """Fit a PIL RGB image into (height, width): scaled to fit, padded bottom and right.

    Example:
        >>> from PIL import Image
        >>> letterbox(Image.new("RGB", (100, 300)), 64, 64).content
        (64, 21)
    """
    w, h = image.size
    scale = min(height / h, width / w)
    new_h = min(height, max(1, int(h * scale + 0.5)))
    new_w = min(width, max(1, int(w * scale + 0.5)))
    pixels = np.asarray(image, dtype="float64")
    rows, columns = bilinear_matrix(h, new_h), bilinear_matrix(w, new_w)
    resized = np.tensordot(rows, pixels, axes=(1, 0))  # (new_h, w, 3)
    resized = np.tensordot(resized, columns, axes=(1, 1)).transpose(0, 2, 1)
    fitted = np.empty((height, width, 3), "float32")
    fitted[:] = np.float32(PAD_COLOUR)
    fitted[:new_h, :new_w] = resized
    return Letterboxed(fitted, scale, (new_h, new_w), (h, w))


def boxes_to_original(boxes, fitted):
    """x1, y1, x2, y2 boxes on the model's input -> pixels of the original image, clipped.

    Example:
        >>> from PIL import Image
        >>> fitted = letterbox(Image.new("RGB", (640, 480)), 320, 320)
        >>> boxes_to_original(np.array([[10.0, 10, 400, 200]]), fitted).tolist()
        [[20.0, 20.0, 640.0, 400.0]]
    """
    h, w = fitted.original
    boxes = np.asarray(boxes, "float64") / fitted.scale
    boxes[:, 0::2] = np.clip(boxes[:, 0::2], 0, w)
    boxes[:, 1::2] = np.clip(boxes[:, 1::2], 0, h)
    return boxes
