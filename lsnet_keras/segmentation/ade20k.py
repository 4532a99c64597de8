"""ADE20K's 150 classes and MMSegmentation's colors for them (package data, see assets/README).

Example:
    >>> from lsnet_keras.segmentation.ade20k import ade20k_labels, ade20k_palette
    >>> ade20k_labels()[:3], ade20k_palette()[0].tolist()
    (['wall', 'building', 'sky'], [120, 120, 120])
"""

from importlib import resources

import numpy as np


def _asset_lines(name):
    return resources.files("lsnet_keras").joinpath(f"assets/{name}").read_text("utf-8").splitlines()


def ade20k_labels():
    """The 150 class names, index `i` naming class `i` (0 = wall), as MMSegmentation's.

    Example:
        >>> len(ade20k_labels()), ade20k_labels()[149]
        (150, 'flag')
    """
    return _asset_lines("ade20k_labels.txt")


def ade20k_palette():
    """(150, 3) uint8 RGB colors, row `i` class `i`'s, as MMSegmentation draws ADE20K.

    Example:
        >>> ade20k_palette().shape
        (150, 3)
    """
    return np.array([line.split() for line in _asset_lines("ade20k_palette.txt")], np.uint8)


def labels_or_numbers(num_classes):
    """ADE20K's names for a 150-class segmenter, else "class 0", "class 1", ...

    Example:
        >>> labels_or_numbers(2)
        ['class 0', 'class 1']
    """
    if num_classes == 150:
        return ade20k_labels()
    return [f"class {i}" for i in range(num_classes)]
