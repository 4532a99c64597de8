"""The one table of LSNet architectures, shared by the builder, the weight mapping and the tests.

Example:
    >>> from lsnet_keras.config import VARIANTS, stage_resolutions
    >>> VARIANTS["lsnet_t"]["embed_dim"]
    (64, 128, 256, 384)
    >>> stage_resolutions((224, 224))
    [(28, 28), (14, 14), (7, 7), (4, 4)]
"""

import numpy as np

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# MMDetection / MMSegmentation's img_norm_cfg of the released dense configs (RGB, 0-255 pixels).
MMDET_MEAN = (123.675, 116.28, 103.53)
MMDET_STD = (58.395, 57.12, 57.375)
DEFAULT_KEY_DIM = (16, 16, 16, 16)
# Export choices: numeric precision, the hardware the graph is laid out for, int8 model I/O.
PRECISIONS = ("fp32", "fp16", "dynamic", "int8")
TARGETS = ("cpu", "gpu", "edgetpu")
IO_TYPES = ("float32", "int8", "uint8")

VARIANTS = {
    "lsnet_t": {
        "embed_dim": (64, 128, 256, 384),
        "depth": (0, 2, 8, 10),
        "num_heads": (3, 3, 3, 4),
    },
    "lsnet_s": {
        "embed_dim": (96, 192, 320, 448),
        "depth": (1, 2, 8, 10),
        "num_heads": (3, 3, 3, 4),
    },
    "lsnet_b": {
        "embed_dim": (128, 256, 384, 512),
        "depth": (4, 6, 8, 10),
        "num_heads": (3, 3, 3, 4),
    },
}


def conv_output_size(size, stride=2, kernel_size=3):
    """Output length of a convolution padded symmetrically by `kernel_size // 2`.

    Example:
        >>> conv_output_size(7)
        4
    """
    pad = kernel_size // 2
    return (size + 2 * pad - kernel_size) // stride + 1


def stage_resolutions(image_size):
    """Spatial (height, width) of the four stages for an input of `image_size` (h, w).

    The patch embedding has three stride-2 convolutions (stride 8) and each later stage one more.

    Example:
        >>> stage_resolutions((160, 160))[-1]
        (3, 3)
    """
    h, w = image_size
    for _ in range(3):
        h, w = conv_output_size(h), conv_output_size(w)
    sizes = [(h, w)]
    for _ in range(3):
        h, w = conv_output_size(h), conv_output_size(w)
        sizes.append((h, w))
    return sizes


def make_divisible(value, divisor=8):
    """Round `value` to the nearest multiple of `divisor` (timm's rule for SE widths, no floor).

    Example:
        >>> make_divisible(96 * 0.25)
        24
    """
    return max(divisor, int(value + divisor / 2) // divisor * divisor)


def attention_bias_index(resolution):
    """The official bias index for a (height, width) grid: an (N, N) int array, N = h * w.

    Offsets (|dy|, |dx|) between every pair of grid points are numbered in order of first
    appearance, which for a grid starting at (0, 0) is simply `dy * w + dx`; the table therefore
    has h * w entries per head.

    Example:
        >>> attention_bias_index((2, 2))[0].tolist()
        [0, 1, 2, 3]
    """
    h, w = resolution
    ys, xs = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    ys, xs = ys.reshape(-1), xs.reshape(-1)
    dy = np.abs(ys[:, None] - ys[None, :])
    dx = np.abs(xs[:, None] - xs[None, :])
    return (dy * w + dx).astype("int32")
