"""RetinaNet's anchors, computed as MMDetection 2.28's `AnchorGenerator` (float32, same order).

Per level: 9 base anchors centred on (0, 0) (ratio-major: ratios 0.5, 1, 2, each at the three
octave scales 4 * 2**(i / 3) times the stride), shifted to every location; rows are
location-major (row by row), then anchor: `index = (y * w + x) * 9 + a`, as the head's
channels.

Example:
    >>> from lsnet_keras.detection.anchors import RETINANET, level_anchors
    >>> level_anchors(RETINANET, level=0, height=2, width=2).shape
    (36, 4)
"""

from typing import NamedTuple

import numpy as np


class AnchorSettings(NamedTuple):
    """An `AnchorGenerator` configuration (MMDetection's names; center offset 0)."""

    strides: tuple
    ratios: tuple
    octave_base_scale: float
    scales_per_octave: int

    @property
    def num_anchors(self):
        """Anchors per location."""
        return len(self.ratios) * self.scales_per_octave


# The released RetinaNet-LSNet configs (retinanet_lsnet_fpn.py).
RETINANET = AnchorSettings(
    strides=(8, 16, 32, 64, 128), ratios=(0.5, 1.0, 2.0), octave_base_scale=4, scales_per_octave=3
)


def base_anchors(settings, level):
    """(num_anchors, 4) x1, y1, x2, y2 anchors of one level centred on (0, 0).

    Example:
        >>> base_anchors(RETINANET, 0)[4].tolist()  # ratio 1, scale 4 * 2**(1/3) * 8
        [-20.158739471435547, -20.158739471435547, 20.158739471435547, 20.158739471435547]
    """
    size = np.float32(settings.strides[level])
    octave = [2 ** (i / settings.scales_per_octave) for i in range(settings.scales_per_octave)]
    scales = np.array(octave, "float32") * np.float32(settings.octave_base_scale)
    h_ratios = np.sqrt(np.array(settings.ratios, "float32"))
    w_ratios = np.float32(1) / h_ratios
    ws = (size * w_ratios[:, None] * scales[None, :]).reshape(-1)
    hs = (size * h_ratios[:, None] * scales[None, :]).reshape(-1)
    half = np.float32(0.5)
    return np.stack([-half * ws, -half * hs, half * ws, half * hs], axis=-1)


def level_anchors(settings, level, height, width):
    """(height * width * num_anchors, 4) anchors of a level whose map is height x width.

    Example:
        >>> anchors = level_anchors(RETINANET, 0, height=1, width=2)
        >>> float(anchors[9, 0] - anchors[0, 0])  # the next location, one stride (8) right
        8.0
    """
    stride = np.float32(settings.strides[level])
    xs = np.arange(width, dtype="float32") * stride
    ys = np.arange(height, dtype="float32") * stride
    xx, yy = np.meshgrid(xs, ys)
    shifts = np.stack([xx.ravel(), yy.ravel(), xx.ravel(), yy.ravel()], axis=-1)
    return (shifts[:, None, :] + base_anchors(settings, level)[None]).reshape(-1, 4)
