"""Resize attention bias tables the way the official detection code does.

The official code calls `torch.nn.functional.interpolate(table.view(1, nh, R, R), size=(R2, R2),
mode="bicubic", align_corners=False)`. This is the same resampling in NumPy (cubic convolution
with A = -0.75, half-pixel centres, edge clamping), so loading needs no PyTorch.

Example:
    >>> import numpy as np
    >>> resize_bias_table(np.zeros((4, 16), "float32"), (5, 5)).shape
    (4, 25)
"""

import numpy as np

CUBIC_A = -0.75  # PyTorch's bicubic coefficient


def _cubic_weights(t):
    """Weights of the 4 neighbours at offsets -1, 0, 1, 2 for fractional positions t."""
    a = CUBIC_A

    def near(x):  # |x| <= 1
        return ((a + 2) * x - (a + 3)) * x * x + 1

    def far(x):  # 1 < |x| < 2
        return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a

    return np.stack([far(t + 1), near(t), near(1 - t), far(2 - t)], axis=-1)


def _resize_axis(values, axis, out_size):
    in_size = values.shape[axis]
    source = (np.arange(out_size) + 0.5) * (in_size / out_size) - 0.5
    start = np.floor(source).astype(int)
    weights = _cubic_weights(source - start)  # (out, 4)
    taps = np.clip(start[:, None] + np.arange(-1, 3)[None, :], 0, in_size - 1)  # (out, 4)
    moved = np.moveaxis(values, axis, -1)
    resized = (moved[..., taps] * weights).sum(axis=-1)
    return np.moveaxis(resized, -1, axis)


def resize_bias_table(table, resolution):
    """Bicubically resize a (heads, R * R) bias table to (heads, h * w) for a (h, w) grid.

    Example:
        >>> table = np.arange(8, dtype="float32").reshape(2, 4)
        >>> resize_bias_table(table, (2, 2)).tolist() == table.tolist()
        True
    """
    heads, cells = table.shape
    side = int(round(cells**0.5))
    grid = table.astype("float64").reshape(heads, side, side)
    grid = _resize_axis(_resize_axis(grid, 1, resolution[0]), 2, resolution[1])
    return grid.reshape(heads, -1).astype(table.dtype)


def bicubic_matrix(in_size, out_size):
    """The (out_size, in_size) matrix of PyTorch's bicubic resize along one axis.

    `matrix @ values` resizes `values` (in_size, ...) to out_size entries exactly as
    `torch.nn.functional.interpolate(mode="bicubic", align_corners=False)` does on that axis;
    the detection backbone uses it to resize its expanded attention bias to the token grid.

    Example:
        >>> bicubic_matrix(4, 4).tolist() == np.eye(4).tolist()
        True
    """
    return _resize_axis(np.eye(in_size), 0, out_size)
