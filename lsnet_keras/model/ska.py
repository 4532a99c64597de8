"""LSConv, the "see large, focus small" mixer of stages 1-3: LKP predicts per-pixel 3x3
kernels from a large 7x7 view, SKA applies them.

Example:
    >>> import numpy as np
    >>> from lsnet_keras.model.ska import LSConv
    >>> LSConv(32)(np.zeros((1, 5, 5, 32), "float32")).shape
    (1, 5, 5, 32)
"""

import keras
from keras import ops

from lsnet_keras.model.conv import Conv2dBN
from lsnet_keras.model.ops import (
    BN_EPSILON,
    batch_norm,
    build_sublayers,
    ska_products,
    stats_dtype,
)
from lsnet_keras.model.serialization import serializable


@serializable("dim", "large_kernel", "deploy", "fp16_safe")
class LKP(keras.layers.Layer):
    """Large-kernel perception: predicts per-pixel 3x3 kernels for SKA.

    cv1 (1x1) -> ReLU -> cv2 (7x7 depthwise) -> cv3 (1x1) -> ReLU -> cv4 (1x1, bias) -> GroupNorm
    with `dim // 8` groups of 9 taps each, normalized over (taps, height, width).

    The output is laid out tap-major: channel `k * (dim // 8) + j` is tap k of weight channel j
    (the official layout is `j * 9 + k`; the weight mapping permutes cv4 and the norm to match).
    Tap-major keeps each tap a contiguous slice and the norm a 4-D reshape.

    `fp16_safe=True` (the gpu target) computes the same norm on the group divided by its largest
    magnitude, so every value it sums or squares is at most 2 (see `group_norm`).

    Example:
        >>> LKP(64)(keras.ops.zeros((1, 6, 6, 64))).shape
        (1, 6, 6, 72)
    """

    def __init__(self, dim, large_kernel=7, deploy=False, fp16_safe=False, **kwargs):
        super().__init__(**kwargs)
        self.dim = dim
        self.large_kernel = large_kernel
        self.deploy = deploy
        self.fp16_safe = fp16_safe
        self.weight_channels = dim // 8
        half = dim // 2
        self.cv1 = Conv2dBN(half, deploy=deploy, name="cv1", dtype=self.dtype_policy)
        self.cv2 = Conv2dBN(
            half, large_kernel, depthwise=True, deploy=deploy, name="cv2", dtype=self.dtype_policy
        )
        self.cv3 = Conv2dBN(half, deploy=deploy, name="cv3", dtype=self.dtype_policy)
        self.cv4 = keras.layers.Conv2D(
            9 * self.weight_channels, 1, name="cv4", dtype=self.dtype_policy
        )

    def build(self, input_shape):
        half = (*input_shape[:-1], self.dim // 2)
        self.cv1.build(input_shape)
        build_sublayers(half, self.cv2, self.cv3, self.cv4)
        channels = 9 * self.weight_channels
        self.norm_gamma = self.add_weight(name="norm_gamma", shape=(channels,), initializer="ones")
        self.norm_beta = self.add_weight(name="norm_beta", shape=(channels,), initializer="zeros")

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], 9 * self.weight_channels)

    def call(self, x, training=None):
        x = ops.relu(self.cv1(x, training=training))
        x = ops.relu(self.cv3(self.cv2(x, training=training), training=training))
        return self.group_norm(self.cv4(x))

    def group_norm(self, w):
        """GroupNorm over (taps, height, width) of each weight channel, in at most 4-D."""
        _, h, width, channels = ops.shape(w)
        grouped = ops.reshape(
            ops.cast(w, stats_dtype(self.compute_dtype)), (-1, h * width, 9, self.weight_channels)
        )
        epsilon = BN_EPSILON
        if self.fp16_safe:
            grouped, epsilon = _unit_peak(grouped)
        mean = ops.mean(grouped, axis=(1, 2), keepdims=True)
        centered = grouped - mean
        var = ops.mean(centered * centered, axis=(1, 2), keepdims=True)
        normalized = ops.reshape(centered * ops.rsqrt(var + epsilon), (-1, h, width, channels))
        normalized = ops.cast(normalized, self.compute_dtype)
        return normalized * self.norm_gamma + self.norm_beta


def _unit_peak(grouped):
    """(grouped / p, BN_EPSILON / p**2) with p the largest |value| of each group (>= sqrt(eps)).

    GroupNorm is unchanged: `(x / p - mean) / sqrt(var / p**2 + eps / p**2)` is exactly the
    norm of x, for any p > 0. With |x / p| <= 1 the sums behind the mean and the variance stay
    within float16 range (65504) for groups of up to 16384 values (a 42x42 map's 9 taps), where
    the plain form overflows as soon as a value reaches 256. `eps / p**2 <= 1` is computed as
    `(sqrt(eps) / p)**2`, never forming 1 / p**2.
    """
    floor = BN_EPSILON**0.5
    peak = ops.maximum(ops.max(ops.abs(grouped), axis=(1, 2), keepdims=True), floor)
    relative_floor = floor / peak
    return grouped / peak, relative_floor * relative_floor


@serializable()
class SKA(keras.layers.Layer):
    """Small-kernel aggregation: a 3x3 convolution whose kernel differs at every pixel.

    `out[b, h, w, c] = sum_k x[b, h + kh - 1, w + kw - 1, c] * weights[b, h, w, k * wc + c % wc]`
    with zero padding, no kernel flip, `wc = channels // 8` and `k = kh * 3 + kw` (tap-major
    weights, see LKP). Channel c shares weight channel `c % wc`, as in the official kernel.
    Built from PAD, STRIDED_SLICE, RESHAPE, MUL and ADD on tensors of at most 4-D.

    Example:
        >>> x = keras.ops.ones((1, 4, 4, 16))
        >>> SKA()([x, keras.ops.ones((1, 4, 4, 18))]).shape
        (1, 4, 4, 16)
    """

    def compute_output_shape(self, input_shape):
        return input_shape[0]

    def call(self, inputs):
        x, weights = inputs
        _, h, w, channels = ops.shape(x)
        out = None
        for term in ska_products(x, weights):
            out = term if out is None else out + term
        return ops.reshape(out, (-1, h, w, channels))


@serializable("dim", "deploy", "fp16_safe")
class LSConv(keras.layers.Layer):
    """LS convolution: `bn(ska(x, lkp(x))) + x`.

    Example:
        >>> LSConv(32)(keras.ops.zeros((1, 5, 5, 32))).shape
        (1, 5, 5, 32)
    """

    def __init__(self, dim, deploy=False, fp16_safe=False, **kwargs):
        super().__init__(**kwargs)
        self.dim = dim
        self.deploy = deploy
        self.fp16_safe = fp16_safe
        self.lkp = LKP(dim, deploy=deploy, fp16_safe=fp16_safe, name="lkp", dtype=self.dtype_policy)
        self.ska = SKA(name="ska", dtype=self.dtype_policy)
        self.bn = batch_norm("bn", self.dtype_policy)

    def build(self, input_shape):
        build_sublayers(input_shape, self.lkp, self.bn)

    def compute_output_shape(self, input_shape):
        return input_shape

    def call(self, x, training=None):
        return self.bn(self.ska([x, self.lkp(x, training=training)]), training=training) + x
