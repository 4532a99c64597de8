"""Convolution layers of LSNet: Conv2dBN, RepVGGDW, SqueezeExcite, FFN and the BNLinear head.

Every convolution pads like PyTorch (symmetrically) and each layer has a `deploy` form (BatchNorm
folded, RepVGG branches fused) that `reparameterize` fills.

Example:
    >>> import numpy as np
    >>> from lsnet_keras.model.conv import FFN
    >>> FFN(16, 32)(np.zeros((1, 3, 3, 16), "float32")).shape
    (1, 3, 3, 16)
"""

import keras
from keras import ops

from lsnet_keras.config import make_divisible
from lsnet_keras.model.ops import (
    batch_norm,
    build_sublayers,
    depthwise_7x7_as_columns,
    pytorch_pad,
)
from lsnet_keras.model.serialization import serializable


@serializable("filters", "kernel_size", "strides", "depthwise", "deploy")
class Conv2dBN(keras.layers.Layer):
    """Convolution without bias followed by BatchNorm (official `Conv2d_BN`).

    Stride-1 convolutions use `same` padding (symmetric for odd kernels); strided ones pad
    explicitly so even-sized inputs are padded like PyTorch, not like Keras `same`.
    With `deploy=True` the layer is a single convolution with bias.

    Example:
        >>> Conv2dBN(32, kernel_size=3, strides=2)(keras.ops.zeros((1, 8, 8, 3))).shape
        (1, 4, 4, 32)
    """

    def __init__(self, filters, kernel_size=1, strides=1, depthwise=False, deploy=False, **kwargs):
        super().__init__(**kwargs)
        self.filters = filters
        self.kernel_size = kernel_size
        self.strides = strides
        self.depthwise = depthwise
        self.deploy = deploy
        padding = "same" if strides == 1 else "valid"
        self.pad = 0 if strides == 1 else kernel_size // 2
        common = {"strides": strides, "padding": padding, "use_bias": deploy}
        if depthwise:
            self.conv = keras.layers.DepthwiseConv2D(
                kernel_size, name="conv", dtype=self.dtype_policy, **common
            )
        else:
            self.conv = keras.layers.Conv2D(
                filters, kernel_size, name="conv", dtype=self.dtype_policy, **common
            )
        self.bn = None if deploy else batch_norm("bn", self.dtype_policy)

    def build(self, input_shape):
        padded = self._padded_shape(input_shape)
        self.conv.build(padded)
        if self.bn is not None:
            self.bn.build(self.conv.compute_output_shape(padded))

    def compute_output_shape(self, input_shape):
        return self.conv.compute_output_shape(self._padded_shape(input_shape))

    def _padded_shape(self, shape):
        batch, h, w, channels = shape
        grow = 2 * self.pad
        return (batch, None if h is None else h + grow, None if w is None else w + grow, channels)

    def call(self, x, training=None):
        if self._uses_column_strips(x):
            return depthwise_7x7_as_columns(x, self.conv.kernel, self.conv.bias)
        x = self.conv(pytorch_pad(x, self.pad))
        return x if self.bn is None else self.bn(x, training=training)

    def _uses_column_strips(self, x):
        """Deploy-form 7x7 stride-1 depthwise on maps at least 7 wide (narrower maps would
        give strips that see only padding, whose all-zero outputs break int8 calibration)."""
        width = x.shape[2]
        wide_enough = width is None or width >= 7
        deploy_7x7 = self.deploy and self.depthwise and self.kernel_size == 7
        return deploy_7x7 and self.strides == 1 and wide_enough


@serializable("dim", "deploy")
class RepVGGDW(keras.layers.Layer):
    """3x3 depthwise Conv2dBN + 1x1 depthwise Conv2dBN + identity; one 3x3 conv when deployed.

    Example:
        >>> RepVGGDW(16)(keras.ops.zeros((1, 5, 5, 16))).shape
        (1, 5, 5, 16)
    """

    def __init__(self, dim, deploy=False, **kwargs):
        super().__init__(**kwargs)
        self.dim = dim
        self.deploy = deploy
        self.conv = Conv2dBN(
            dim, 3, depthwise=True, deploy=deploy, name="conv", dtype=self.dtype_policy
        )
        self.conv1 = (
            None
            if deploy
            else Conv2dBN(dim, 1, depthwise=True, name="conv1", dtype=self.dtype_policy)
        )

    def build(self, input_shape):
        build_sublayers(input_shape, self.conv, self.conv1)

    def compute_output_shape(self, input_shape):
        return input_shape

    def call(self, x, training=None):
        if self.conv1 is None:
            return self.conv(x)
        return self.conv(x, training=training) + self.conv1(x, training=training) + x


@serializable("dim", "ratio", "fp16_safe")
class SqueezeExcite(keras.layers.Layer):
    """timm's SqueezeExcite: mean over space, 1x1 conv, ReLU, 1x1 conv, sigmoid gate.

    `fp16_safe=True` (the gpu target) takes the same mean as a mean over width then over height,
    so a float16 accumulator sums at most max(h, w) values, not h * w.

    Example:
        >>> SqueezeExcite(64)(keras.ops.ones((1, 4, 4, 64))).shape
        (1, 4, 4, 64)
    """

    def __init__(self, dim, ratio=0.25, fp16_safe=False, **kwargs):
        super().__init__(**kwargs)
        self.dim = dim
        self.ratio = ratio
        self.fp16_safe = fp16_safe
        hidden = make_divisible(dim * ratio)
        self.fc1 = keras.layers.Conv2D(hidden, 1, name="fc1", dtype=self.dtype_policy)
        self.fc2 = keras.layers.Conv2D(dim, 1, name="fc2", dtype=self.dtype_policy)

    def build(self, input_shape):
        pooled = (input_shape[0], 1, 1, self.dim)
        self.fc1.build(pooled)
        self.fc2.build(self.fc1.compute_output_shape(pooled))

    def compute_output_shape(self, input_shape):
        return input_shape

    def call(self, x):
        if self.fp16_safe:  # rows, then columns: no partial sum of more than max(h, w) values
            gate = ops.mean(ops.mean(x, axis=2, keepdims=True), axis=1, keepdims=True)
        else:
            gate = ops.mean(x, axis=(1, 2), keepdims=True)
        gate = self.fc2(ops.relu(self.fc1(gate)))
        return x * ops.sigmoid(gate)


@serializable("dim", "hidden", "deploy")
class FFN(keras.layers.Layer):
    """1x1 Conv2dBN to `hidden`, ReLU, 1x1 Conv2dBN back to `dim` (the residual is the Block's).

    Example:
        >>> FFN(16, 32)(keras.ops.zeros((1, 3, 3, 16))).shape
        (1, 3, 3, 16)
    """

    def __init__(self, dim, hidden, deploy=False, **kwargs):
        super().__init__(**kwargs)
        self.dim = dim
        self.hidden = hidden
        self.deploy = deploy
        self.pw1 = Conv2dBN(hidden, deploy=deploy, name="pw1", dtype=self.dtype_policy)
        self.pw2 = Conv2dBN(dim, deploy=deploy, name="pw2", dtype=self.dtype_policy)

    def build(self, input_shape):
        self.pw1.build(input_shape)
        self.pw2.build(self.pw1.compute_output_shape(input_shape))

    def compute_output_shape(self, input_shape):
        return input_shape

    def call(self, x, training=None):
        return self.pw2(ops.relu(self.pw1(x, training=training)), training=training)


@serializable("units", "deploy")
class BNLinear(keras.layers.Layer):
    """BatchNorm1d then Linear (official `BN_Linear`), the classifier on pooled features.

    With `deploy=True` the BatchNorm is folded into the Dense layer.

    Example:
        >>> BNLinear(10)(keras.ops.zeros((2, 64))).shape
        (2, 10)
    """

    def __init__(self, units, deploy=False, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.deploy = deploy
        self.bn = None if deploy else batch_norm("bn", self.dtype_policy)
        self.linear = keras.layers.Dense(units, name="linear", dtype=self.dtype_policy)

    def build(self, input_shape):
        build_sublayers(input_shape, self.bn, self.linear)

    def compute_output_shape(self, input_shape):
        return self.linear.compute_output_shape(input_shape)

    def call(self, x, training=None):
        if self.bn is not None:
            x = self.bn(x, training=training)
        return self.linear(x)
