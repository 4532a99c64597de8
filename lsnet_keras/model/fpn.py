"""LSNetFPN, the official neck of the LSNet detector and segmenter (not MMDetection's FPN).

Four backbone levels (strides 8-64) -> 1x1 lateral convs, a top-down path adding each coarser
lateral, nearest-upsampled, to the finer one, and a 3x3 conv per level; with
`num_outs=len(in_channels) + 1` (RetinaNet) one more stride-2 3x3 conv on the raw last backbone
level (strides 8-128). No norm, no activation. All convs have a bias.

Example:
    >>> import numpy as np
    >>> from lsnet_keras.model.fpn import LSNetFPN
    >>> neck = LSNetFPN((8, 16, 24, 32), out_channels=16, num_outs=5)
    >>> levels = [np.zeros((1, s, s, c), "float32") for s, c in ((8, 8), (4, 16), (2, 24), (1, 32))]
    >>> [tuple(level.shape) for level in neck(levels)][-2:]
    [(1, 1, 1, 16), (1, 1, 1, 16)]
"""

import keras
from keras import ops

from lsnet_keras.model.ops import pytorch_pad
from lsnet_keras.model.serialization import serializable


def upsample_nearest(x, height, width):
    """`x` (batch, h, w, c) nearest-upsampled to (height, width), as PyTorch's `nearest`.

    Every neck level is `ceil(finer / 2)`: the finer size is 2h, or 2h - 1 when it is odd.
    PyTorch's rule (source = floor(target * h / height)) is then "repeat each row and column
    twice, drop the last when odd". The repeat is a concatenation with itself and a reshape,
    once per axis (4-D throughout, ops XNNPACK and the GPU delegate take), the drop a crop.

    Example:
        >>> x = keras.ops.reshape(keras.ops.arange(3.0), (1, 3, 1, 1))
        >>> keras.ops.reshape(upsample_nearest(x, 5, 1), (-1,)).tolist()
        [0.0, 0.0, 1.0, 1.0, 2.0]
    """
    _, h, w, channels = x.shape
    if height not in (2 * h, 2 * h - 1) or width not in (2 * w, 2 * w - 1):
        raise ValueError(f"cannot upsample {h}x{w} to {height}x{width} (expected about 2x)")
    x = ops.reshape(ops.concatenate([x, x], axis=-1), (-1, h, 2 * w, channels))
    x = ops.reshape(ops.concatenate([x, x], axis=2), (-1, 2 * h, 2 * w, channels))
    if (height, width) != (2 * h, 2 * w):
        x = x[:, :height, :width, :]
    return x


@serializable("in_channels", "out_channels", "num_outs")
class LSNetFPN(keras.layers.Layer):
    """The official `LSNetFPN` neck (start level 0): a list of levels in, a list out.

    Args:
        in_channels: channels of the backbone levels (4 for LSNet).
        out_channels: channels of every output level (256 in the released models).
        num_outs: `len(in_channels)` (Semantic FPN) or one more (RetinaNet: the extra level is
            a stride-2 3x3 conv on the raw last input, the official `add_extra_convs` default
            of its config being 'on_input').

    Example:
        >>> LSNetFPN((64, 128, 256, 384), num_outs=4).num_outs
        4
    """

    def __init__(self, in_channels, out_channels=256, num_outs=5, **kwargs):
        super().__init__(**kwargs)
        self.in_channels = tuple(in_channels)
        self.out_channels = out_channels
        self.num_outs = num_outs
        levels = len(self.in_channels)
        if num_outs not in (levels, levels + 1):
            raise ValueError(f"num_outs must be {levels} or {levels + 1}, got {num_outs}")
        policy = self.dtype_policy
        self.lateral_convs = [
            keras.layers.Conv2D(out_channels, 1, name=f"lateral_convs_{i}", dtype=policy)
            for i in range(levels)
        ]
        self.fpn_convs = [
            keras.layers.Conv2D(
                out_channels, 3, padding="same", name=f"fpn_convs_{i}", dtype=policy
            )
            for i in range(levels)
        ]
        self.extra_conv = None
        if num_outs > levels:
            self.extra_conv = keras.layers.Conv2D(
                out_channels, 3, strides=2, name=f"fpn_convs_{levels}", dtype=policy
            )

    def build(self, input_shape):
        for lateral, fpn, shape in zip(self.lateral_convs, self.fpn_convs, input_shape):
            lateral.build(shape)
            fpn.build(lateral.compute_output_shape(shape))
        if self.extra_conv is not None:
            batch, h, w, channels = input_shape[-1]
            self.extra_conv.build((batch, h + 2, w + 2, channels))

    def compute_output_shape(self, input_shape):
        shapes = [(s[0], s[1], s[2], self.out_channels) for s in input_shape]
        if self.extra_conv is not None:
            batch, h, w, channels = input_shape[-1]
            shapes.append(self.extra_conv.compute_output_shape((batch, h + 2, w + 2, channels)))
        return shapes

    def call(self, features):
        laterals = [conv(x) for conv, x in zip(self.lateral_convs, features)]
        for i in range(len(laterals) - 1, 0, -1):
            finer = laterals[i - 1]
            laterals[i - 1] = finer + upsample_nearest(laterals[i], finer.shape[1], finer.shape[2])
        outputs = [conv(x) for conv, x in zip(self.fpn_convs, laterals)]
        if self.extra_conv is not None:
            outputs.append(self.extra_conv(pytorch_pad(features[-1], 1)))
        return outputs
