"""FPNHead (MMSegmentation 0.30's Semantic FPN decode head), on LSNetFPN's four levels.

Per level i, `max(1, log2(stride_i / stride_0))` stacked 3x3 ConvModules (conv without bias,
BatchNorm, ReLU; 128 channels), each followed on the coarser levels by a 2x bilinear upsample
(align_corners False); the levels are summed at the finest one (a coarser level whose upsampled
size differs is bilinearly resized to it first), then dropout (training only) and a 1x1
classifier `conv_seg`. The released configs keep ResNet's `feature_strides` 4-32 although
LSNet's levels are at strides 8-64: only their ratios matter here, and the logits come out at
1/8 of the input.

Example:
    >>> import numpy as np
    >>> from lsnet_keras.model.fpn_head import FPNHead
    >>> head = FPNHead(num_classes=5, channels=8)
    >>> levels = [np.zeros((1, s, s, 16), "float32") for s in (8, 4, 2, 1)]
    >>> tuple(head(levels).shape)
    (1, 8, 8, 5)
"""

import math

import keras
import numpy as np
from keras import ops

from lsnet_keras.model.conv import Conv2dBN
from lsnet_keras.model.serialization import serializable

# The released Semantic FPN configs (fpn_r50.py's decode_head, kept by fpn_lsnet_*).
FEATURE_STRIDES = (4, 8, 16, 32)
HEAD_CHANNELS = 128
DROPOUT_RATIO = 0.1


def bilinear_matrix(source, target):
    """(target, source) weights of PyTorch's 1-D bilinear resize, align_corners False: output
    i reads input (i + 0.5) * source / target - 0.5, clamped at 0, from its two neighbours.

    Example:
        >>> bilinear_matrix(2, 4).tolist()
        [[1.0, 0.0], [0.75, 0.25], [0.25, 0.75], [0.0, 1.0]]
    """
    position = np.maximum((np.arange(target) + 0.5) * source / target - 0.5, 0.0)
    lower = np.floor(position).astype(int)
    upper = np.minimum(lower + 1, source - 1)
    weight = position - lower
    matrix = np.zeros((target, source))
    np.add.at(matrix, (np.arange(target), lower), 1.0 - weight)
    np.add.at(matrix, (np.arange(target), upper), weight)
    return matrix


def upsample_bilinear(x, height, width):
    """`x` (batch, h, w, c) bilinearly resized to (height, width), as PyTorch's
    `interpolate(mode="bilinear", align_corners=False)` (half-pixel centres, no antialias).

    One RESIZE_BILINEAR in the graph, except in float64: TensorFlow's resize computes in
    float32 whatever its input (1e-6 of the scale off PyTorch's float64), so float64 models
    (the parity proofs) resize by the same weights as two matrix products instead.

    Example:
        >>> x = keras.ops.reshape(keras.ops.arange(2.0), (1, 1, 2, 1))
        >>> keras.ops.convert_to_numpy(upsample_bilinear(x, 1, 4)).ravel().tolist()
        [0.0, 0.25, 0.75, 1.0]
    """
    _, h, w, _ = x.shape
    if (h, w) == (height, width):
        return x
    if keras.backend.standardize_dtype(x.dtype) != "float64":
        return ops.image.resize(x, (height, width), interpolation="bilinear", antialias=False)
    rows = ops.convert_to_tensor(bilinear_matrix(h, height), "float64")
    columns = ops.convert_to_tensor(bilinear_matrix(w, width), "float64")
    return ops.einsum("ph,bhwc,qw->bpqc", rows, x, columns)


def scale_head_length(strides, level):
    """How many ConvModules level `level`'s scale head stacks (MMSegmentation's rule).

    Example:
        >>> [scale_head_length(FEATURE_STRIDES, i) for i in range(4)]
        [1, 1, 2, 3]
    """
    return max(1, int(math.log2(strides[level]) - math.log2(strides[0])))


@serializable("num_classes", "channels", "feature_strides", "dropout_ratio")
class FPNHead(keras.layers.Layer):
    """The Semantic FPN head: four levels in, class logits at the finest level's size out.

    `scale_heads[i]` lists level i's Conv2dBN layers (ReLU after each, a 2x upsample after
    each on levels i > 0), named `scale_heads_{i}_{j}` with j the index MMSegmentation's
    `nn.Sequential` gives it (upsamples take the odd indices).

    Example:
        >>> FPNHead(num_classes=150).scale_head_indices()
        [[0], [0], [0, 2], [0, 2, 4]]
    """

    def __init__(
        self,
        num_classes=150,
        channels=HEAD_CHANNELS,
        feature_strides=FEATURE_STRIDES,
        dropout_ratio=DROPOUT_RATIO,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.num_classes = num_classes
        self.channels = channels
        self.feature_strides = tuple(feature_strides)
        self.dropout_ratio = dropout_ratio
        policy = self.dtype_policy
        self.scale_heads = [
            [
                Conv2dBN(channels, 3, name=f"scale_heads_{level}_{index}", dtype=policy)
                for index in indices
            ]
            for level, indices in enumerate(self.scale_head_indices())
        ]
        self.dropout = keras.layers.Dropout(dropout_ratio, name="dropout", dtype=policy)
        self.conv_seg = keras.layers.Conv2D(num_classes, 1, name="conv_seg", dtype=policy)

    def scale_head_indices(self):
        """Per level, the `nn.Sequential` index of each ConvModule (an upsample follows each
        one on the coarser levels, taking the next index)."""
        step = [1] + [2] * (len(self.feature_strides) - 1)
        return [
            [step[level] * k for k in range(scale_head_length(self.feature_strides, level))]
            for level in range(len(self.feature_strides))
        ]

    def build(self, input_shape):
        for level, (convs, shape) in enumerate(zip(self.scale_heads, input_shape)):
            batch, h, w, _ = shape
            for conv in convs:
                conv.build((batch, h, w, shape[-1] if conv is convs[0] else self.channels))
                if level:
                    h, w = 2 * h, 2 * w
        batch, h, w, _ = input_shape[0]
        self.conv_seg.build((batch, h, w, self.channels))

    def compute_output_shape(self, input_shape):
        batch, h, w, _ = input_shape[0]
        return (batch, h, w, self.num_classes)

    def call(self, levels, training=None):
        output = None
        for level, (convs, x) in enumerate(zip(self.scale_heads, levels)):
            for conv in convs:
                x = ops.relu(conv(x, training=training))
                if level:
                    x = upsample_bilinear(x, 2 * x.shape[1], 2 * x.shape[2])
            if output is None:
                output = x
            else:
                output = output + upsample_bilinear(x, output.shape[1], output.shape[2])
        return self.conv_seg(self.dropout(output, training=training))
