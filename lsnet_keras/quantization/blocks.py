"""Quantization-aware blocks of LSNet's deployment form: SE, FFN, LKP, SKA, LSConv, Block
(attention is in `quantization.attention`).

Built from the QAT primitives of `quantization.layers` (see there for where fake-quant goes
and why); each block computes what its deploy-form counterpart in `lsnet_keras.model` does.

Example:
    >>> import numpy as np
    >>> from lsnet_keras.quantization.blocks import QBlock
    >>> block = QBlock(64, 16, 2, kind="lsconv")
    >>> block(np.zeros((1, 8, 8, 64), "float32"), training=True).shape
    (1, 8, 8, 64)
"""

import numpy as np
from keras import ops

from lsnet_keras.config import make_divisible
from lsnet_keras.model.ops import BN_EPSILON, ska_products
from lsnet_keras.model.serialization import serializable
from lsnet_keras.quantization.attention import QAttention
from lsnet_keras.quantization.layers import (
    PROBABILITY_RANGE,
    QChannelAffine,
    QConv,
    QuantLayer,
    quant_options,
)


@serializable("dim", "ratio")
class QSqueezeExcite(QuantLayer):
    """SqueezeExcite: MEAN, 1x1 conv + ReLU, 1x1 conv, LOGISTIC (fixed range), MUL.

    Example:
        >>> QSqueezeExcite(64)(keras.ops.ones((1, 4, 4, 64))).shape
        (1, 4, 4, 64)
    """

    def __init__(self, dim, ratio=0.25, **kwargs):
        super().__init__(**kwargs)
        self.dim = dim
        self.ratio = ratio
        q = quant_options(self)
        self.mean_quant = self._fake_quant("mean_quant")
        self.fc1 = QConv(make_divisible(dim * ratio), activation="relu", name="fc1", **q)
        self.fc2 = QConv(dim, name="fc2", **q)
        self.gate_quant = self._fake_quant("gate_quant", PROBABILITY_RANGE)
        self.output_quant = self._fake_quant("output_quant")

    def build(self, input_shape):
        batch, channels = input_shape[0], input_shape[-1]
        self.fc1.build((batch, 1, 1, channels))
        self.fc2.build((batch, 1, 1, self.fc1.filters))
        for quant in (self.mean_quant, self.gate_quant, self.output_quant):
            quant.build(None)

    def call(self, x, training=None):
        gate = self.mean_quant(ops.mean(x, axis=(1, 2), keepdims=True), training=training)
        gate = self.fc2(self.fc1(gate, training=training), training=training)
        gate = self.gate_quant(ops.sigmoid(gate), training=training)
        return self.output_quant(x * gate, training=training)

    def set_deploy_weights(self, se):
        self.fc1.set_deploy_weights(se.fc1)
        self.fc2.set_deploy_weights(se.fc2)


@serializable("dim", "hidden")
class QFFN(QuantLayer):
    """FFN: 1x1 conv + ReLU, 1x1 conv (each with its output fake-quant).

    Example:
        >>> QFFN(16, 32)(keras.ops.zeros((1, 3, 3, 16))).shape
        (1, 3, 3, 16)
    """

    def __init__(self, dim, hidden, **kwargs):
        super().__init__(**kwargs)
        self.dim = dim
        self.hidden = hidden
        q = quant_options(self)
        self.pw1 = QConv(hidden, activation="relu", name="pw1", **q)
        self.pw2 = QConv(dim, name="pw2", **q)

    def build(self, input_shape):
        self.pw1.build(input_shape)
        self.pw2.build(self.pw1.compute_output_shape(input_shape))

    def call(self, x, training=None):
        return self.pw2(self.pw1(x, training=training), training=training)

    def set_deploy_weights(self, ffn):
        self.pw1.set_deploy_weights(ffn.pw1.conv)
        self.pw2.set_deploy_weights(ffn.pw2.conv)


@serializable("dim", "large_kernel")
class QLKP(QuantLayer):
    """LKP with its hand-written GroupNorm, every intermediate tensor fake-quantized.

    GroupNorm: MEAN, SUB, MUL (the square: TFLite has no int8 SQUARE), MEAN, ADD (epsilon),
    RSQRT, MUL, then the affine as a 1x1 depthwise convolution. Output is tap-major (see LKP).

    Example:
        >>> QLKP(64)(keras.ops.zeros((1, 6, 6, 64))).shape
        (1, 6, 6, 72)
    """

    STEPS = ("mean", "centered", "square", "variance", "variance_eps", "rsqrt", "normalized")

    def __init__(self, dim, large_kernel=7, **kwargs):
        super().__init__(**kwargs)
        self.dim = dim
        self.large_kernel = large_kernel
        self.weight_channels = dim // 8
        half = dim // 2
        q = quant_options(self)
        self.cv1 = QConv(half, activation="relu", name="cv1", **q)
        self.cv2 = QConv(half, large_kernel, depthwise=True, name="cv2", **q)
        self.cv3 = QConv(half, activation="relu", name="cv3", **q)
        self.cv4 = QConv(9 * self.weight_channels, name="cv4", **q)
        self.norm_quants = {step: self._fake_quant(f"norm_{step}_quant") for step in self.STEPS}
        self.norm_affine = QChannelAffine(name="norm_affine", **q)

    def build(self, input_shape):
        shape = input_shape
        for conv in (self.cv1, self.cv2, self.cv3, self.cv4):
            conv.build(shape)
            shape = conv.compute_output_shape(shape)
        for quant in self.norm_quants.values():
            quant.build(None)
        self.norm_affine.build(shape)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:3], 9 * self.weight_channels)

    def call(self, x, training=None):
        for conv in (self.cv1, self.cv2, self.cv3, self.cv4):
            x = conv(x, training=training)
        return self.norm_affine(self.group_norm(x, training), training=training)

    def group_norm(self, w, training=None):
        """GroupNorm without the affine, over (taps, height, width) of each weight channel."""

        def quant(step, t):
            return self.norm_quants[step](t, training=training)

        _, h, width, channels = ops.shape(w)
        grouped = ops.reshape(w, (-1, h * width, 9, self.weight_channels))
        mean = quant("mean", ops.mean(grouped, axis=(1, 2), keepdims=True))
        centered = quant("centered", grouped - mean)
        square = quant("square", centered * centered)
        var = quant("variance", ops.mean(square, axis=(1, 2), keepdims=True))
        inv_std = quant("rsqrt", ops.rsqrt(quant("variance_eps", var + BN_EPSILON)))
        normalized = quant("normalized", centered * inv_std)
        return ops.reshape(normalized, (-1, h, width, channels))

    def set_deploy_weights(self, lkp):
        for name in ("cv1", "cv2", "cv3"):
            getattr(self, name).set_deploy_weights(getattr(lkp, name).conv)
        self.cv4.set_deploy_weights(lkp.cv4)
        self.norm_affine.scale.assign(lkp.norm_gamma)
        self.norm_affine.shift.assign(lkp.norm_beta)


@serializable()
class QSKA(QuantLayer):
    """SKA (see `layers.SKA`) with each of the 9 products and 8 partial sums fake-quantized.

    Example:
        >>> x = keras.ops.ones((1, 4, 4, 16))
        >>> QSKA()([x, keras.ops.ones((1, 4, 4, 18))]).shape
        (1, 4, 4, 16)
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.product_quants = [self._fake_quant(f"product{k}_quant") for k in range(9)]
        self.sum_quants = [self._fake_quant(f"sum{k}_quant") for k in range(1, 9)]

    def build(self, input_shape):
        for quant in self.product_quants + self.sum_quants:
            quant.build(None)

    def compute_output_shape(self, input_shape):
        return input_shape[0]

    def call(self, inputs, training=None):
        x, weights = inputs
        _, h, w, channels = ops.shape(x)
        out = None
        for k, product in enumerate(ska_products(x, weights)):
            term = self.product_quants[k](product, training=training)
            out = term if out is None else self.sum_quants[k - 1](out + term, training=training)
        return ops.reshape(out, (-1, h, w, channels))


@serializable("dim")
class QLSConv(QuantLayer):
    """LSConv: SKA(x, LKP(x)), its BatchNorm as a 1x1 depthwise convolution, plus x.

    Example:
        >>> QLSConv(32)(keras.ops.zeros((1, 5, 5, 32))).shape
        (1, 5, 5, 32)
    """

    def __init__(self, dim, **kwargs):
        super().__init__(**kwargs)
        self.dim = dim
        q = quant_options(self)
        self.lkp = QLKP(dim, name="lkp", **q)
        self.ska = QSKA(name="ska", **q)
        self.bn = QChannelAffine(name="bn", **q)
        self.output_quant = self._fake_quant("output_quant")

    def build(self, input_shape):
        self.lkp.build(input_shape)
        self.ska.build(None)
        self.bn.build(input_shape)
        self.output_quant.build(None)

    def call(self, x, training=None):
        y = self.ska([x, self.lkp(x, training=training)], training=training)
        return self.output_quant(self.bn(y, training=training) + x, training=training)

    def set_deploy_weights(self, lsconv):
        self.lkp.set_deploy_weights(lsconv.lkp)
        gamma, beta, mean, var = (np.asarray(v, "float64") for v in lsconv.bn.weights)
        scale = gamma / np.sqrt(var + BN_EPSILON)
        self.bn.scale.assign(scale.astype("float32"))
        self.bn.shift.assign((beta - mean * scale).astype("float32"))


@serializable("dim", "key_dim", "num_heads", "kind", "resolution", "formulation")
class QBlock(QuantLayer):
    """One LSNet block in deploy form (see `layers.Block`), fake-quantized.

    Example:
        >>> QBlock(32, 16, 2, kind="repvgg")(keras.ops.zeros((1, 4, 4, 32))).shape
        (1, 4, 4, 32)
    """

    def __init__(
        self, dim, key_dim, num_heads, kind, resolution=None, formulation="matmul", **kwargs
    ):
        super().__init__(**kwargs)
        self.dim = dim
        self.key_dim = key_dim
        self.num_heads = num_heads
        self.kind = kind
        self.resolution = None if resolution is None else tuple(resolution)
        self.formulation = formulation
        q = quant_options(self)
        self.se = None
        self.residual_quant = None
        if kind == "repvgg":
            self.mixer = QConv(dim, 3, depthwise=True, name="mixer", **q)
            self.se = QSqueezeExcite(dim, name="se", **q)
        elif kind == "lsconv":
            self.mixer = QLSConv(dim, name="mixer", **q)
        else:
            self.mixer = QAttention(
                dim, key_dim, num_heads, resolution, formulation, name="mixer", **q
            )
            self.residual_quant = self._fake_quant("residual_quant")
        self.ffn = QFFN(dim, 2 * dim, name="ffn", **q)
        self.output_quant = self._fake_quant("output_quant")

    def build(self, input_shape):
        for layer in (self.mixer, self.se, self.ffn):
            if layer is not None:
                layer.build(input_shape)
        for quant in (self.residual_quant, self.output_quant):
            if quant is not None:
                quant.build(None)

    def call(self, x, training=None):
        mixed = self.mixer(x, training=training)
        if self.residual_quant is not None:
            x = self.residual_quant(x + mixed, training=training)
        else:
            x = mixed
        if self.se is not None:
            x = self.se(x, training=training)
        return self.output_quant(x + self.ffn(x, training=training), training=training)

    def set_deploy_weights(self, block):
        if self.kind == "repvgg":
            self.mixer.set_deploy_weights(block.mixer.conv.conv)
            self.se.set_deploy_weights(block.se)
        else:
            self.mixer.set_deploy_weights(block.mixer)
        self.ffn.set_deploy_weights(block.ffn)
