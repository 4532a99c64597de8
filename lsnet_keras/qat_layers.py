"""Quantization-aware layers of LSNet's deployment form, for int8 TFLite (CPU and Edge TPU).

Each layer computes what its deploy-form counterpart in `lsnet_keras.layers` computes, with
`keras.quantizers.fake_quant_with_min_max_vars` wherever the int8 TFLite graph stores a tensor:

* weights: per-channel symmetric, narrow range (convolutions), per tensor (the Dense head);
  the range is the current max |w|, so the converter re-derives exactly the same grid;
* activations: per tensor, after every op that writes a new int8 tensor (CONV_2D with its fused
  ReLU, ADD, MUL, SUB, MEAN, RSQRT, BATCH_MATMUL, ...). Ops that keep their input's scale
  (RESHAPE, STRIDED_SLICE, PAD, TRANSPOSE, PACK, CONCATENATION) get none, so the converter has
  nothing to requantize. Ranges are moving averages of the batch min/max in training, or fixed
  where the int8 kernel fixes them (LOGISTIC and SOFTMAX outputs: scale 1/256, zero point -128).

Per-channel affine maps (GroupNorm's affine, LSConv's BatchNorm, the input normalization) are
1x1 depthwise convolutions: their per-channel weights quantize exactly, unlike a MUL by a
per-tensor quantized constant. Constant factors (the attention scale, the token count of the
Edge TPU attention) are folded into the neighbouring convolution's weights.

With `quantize=False` a layer computes in float (no fake-quant inside it).

Example:
    >>> import numpy as np
    >>> from lsnet_keras.qat_layers import QBlock
    >>> block = QBlock(64, 16, 2, kind="lsconv")
    >>> block(np.zeros((1, 8, 8, 64), "float32"), training=True).shape
    (1, 8, 8, 64)
"""

import keras
import numpy as np
from keras import ops

from lsnet_keras.config import attention_bias_index, make_divisible
from lsnet_keras.layers import BN_EPSILON, Attention, _pytorch_pad, serializable

# LOGISTIC / SOFTMAX int8 outputs are fixed to scale 1/256, zero point -128 by the kernels:
# any other range would add a requantize op after them.
PROBABILITY_RANGE = (0.0, 255.0 / 256.0)
# Added to every attention bias (softmax ignores it): see QAttention.call.
SOFTMAX_SHIFT = 1e-6
_TINY = 1e-8


def fake_quant_weight(weight, num_bits=8, axis=-1):
    """Symmetric narrow-range fake quantization on the current max |w|, per `axis` or per tensor.

    The range is max |w| (no gradient flows through it), so the TFLite converter, which
    quantizes constants on their own max |w|, lands on exactly the same grid.

    Example:
        >>> w = keras.ops.convert_to_tensor([[0.5, -1.0], [0.25, 0.1]])
        >>> keras.ops.convert_to_numpy(fake_quant_weight(w, 2, axis=-1)).tolist()
        [[0.5, -1.0], [0.0, 0.0]]
    """
    rank = len(weight.shape)
    if axis is None:
        reduce = tuple(range(rank))
    else:
        axis = axis % rank
        reduce = tuple(i for i in range(rank) if i != axis)
    bound = ops.stop_gradient(ops.maximum(ops.max(ops.abs(weight), axis=reduce), _TINY))
    return keras.quantizers.fake_quant_with_min_max_vars(
        weight, -bound, bound, num_bits=num_bits, narrow_range=True, axis=axis
    )


def fake_quant_constant(value):
    """8-bit fake quantization of a constant operand (e.g. an ADD's bias) on its [min, max].

    The converter quantizes such a constant per tensor; with this range it keeps the same grid.

    Example:
        >>> keras.ops.convert_to_numpy(fake_quant_constant(keras.ops.ones((2,)))).tolist()
        [1.0, 1.0]
    """
    values = ops.stop_gradient(value)
    low = ops.minimum(ops.min(values), 0.0)
    high = ops.maximum(ops.max(values), low + _TINY)
    return keras.quantizers.fake_quant_with_min_max_vars(value, low, high)


def _quant_options(layer):
    """The options a composite QAT layer hands to its sublayers."""
    return {
        "quantize": layer.quantize,
        "weight_bits": layer.weight_bits,
        "range_momentum": layer.range_momentum,
        "dtype": layer.dtype_policy,
    }


@serializable
class FakeQuant(keras.layers.Layer):
    """Per-tensor 8-bit fake quantization of an activation.

    Without `fixed_range`, the range [min, max] (always containing 0) is an exponential moving
    average of the batch min/max, updated in `call(training=True)`; the first batch sets it.
    `enabled=False` makes the layer the identity (float computation). Called on a list of
    tensors, it quantizes all of them on one range: the converter gives a CONCATENATION's inputs
    and output one scale, overriding the ranges of the ops that produce them.

    Example:
        >>> quant = FakeQuant(fixed_range=(0.0, 255.0 / 256.0))
        >>> float(quant(keras.ops.convert_to_tensor([0.3]))[0]) == round(0.3 * 256) / 256
        True
    """

    def __init__(self, fixed_range=None, momentum=0.99, enabled=True, **kwargs):
        super().__init__(**kwargs)
        self.fixed_range = None if fixed_range is None else tuple(float(v) for v in fixed_range)
        self.momentum = momentum
        self.enabled = enabled

    def build(self, input_shape):
        if self.enabled and self.fixed_range is None:
            for bound in ("range_min", "range_max"):
                setattr(
                    self,
                    bound,
                    self.add_weight(
                        name=bound,
                        shape=(),
                        initializer="zeros",
                        trainable=False,
                        autocast=False,
                        aggregation="mean",
                    ),
                )

    def call(self, x, training=None):
        if not self.enabled:
            return x
        if self.fixed_range is not None:
            low, high = self.fixed_range
        elif training:
            low, high = self._update_range(x if isinstance(x, list | tuple) else [x])
        else:
            low, high = self.range_min, self.range_max
        if isinstance(x, list | tuple):  # one scale for all (the inputs of a CONCATENATION)
            return [keras.quantizers.fake_quant_with_min_max_vars(t, low, high) for t in x]
        return keras.quantizers.fake_quant_with_min_max_vars(x, low, high)

    def _update_range(self, tensors):
        values = [ops.stop_gradient(ops.cast(t, "float32")) for t in tensors]
        batch_min = ops.minimum(ops.min(ops.stack([ops.min(v) for v in values])), 0.0)
        batch_max = ops.maximum(ops.max(ops.stack([ops.max(v) for v in values])), _TINY)
        started = ops.greater(self.range_max, self.range_min)
        m = self.momentum
        low = ops.where(started, m * self.range_min + (1 - m) * batch_min, batch_min)
        high = ops.where(started, m * self.range_max + (1 - m) * batch_max, batch_max)
        self.range_min.assign(low)
        self.range_max.assign(high)
        return low, high

    def compute_output_shape(self, input_shape):
        return input_shape

    @property
    def calibrated(self):
        """Whether the range is set (fixed, or seen at least one training batch)."""
        if not self.enabled or self.fixed_range is not None:
            return True
        return float(self.range_max.numpy()) > float(self.range_min.numpy())

    def get_config(self):
        config = super().get_config()
        config.update(fixed_range=self.fixed_range, momentum=self.momentum, enabled=self.enabled)
        return config


class _QuantLayer(keras.layers.Layer):
    """Shared options of the QAT layers: float or quantized, weight bits, range momentum.

    Composite layers build their sublayers from shapes and state their output shape, so a
    model is built without tracing every call twice (which makes LSNet-size models slow).
    """

    def __init__(self, quantize=True, weight_bits=8, range_momentum=0.99, **kwargs):
        super().__init__(**kwargs)
        self.quantize = quantize
        self.weight_bits = weight_bits
        self.range_momentum = range_momentum

    def _fake_quant(self, name, fixed_range=None):
        return FakeQuant(
            fixed_range,
            momentum=self.range_momentum,
            enabled=self.quantize,
            name=name,
            dtype=self.dtype_policy,
        )

    def _weight(self, weight, axis=-1):
        return fake_quant_weight(weight, self.weight_bits, axis) if self.quantize else weight

    def _constant(self, value):
        return fake_quant_constant(value) if self.quantize else value

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            quantize=self.quantize,
            weight_bits=self.weight_bits,
            range_momentum=self.range_momentum,
        )
        return config


@serializable
class QConv(_QuantLayer):
    """A deploy-form Conv2dBN (convolution with bias), optional fused ReLU, output fake-quant.

    Pads like `Conv2dBN`. `output_scale` multiplies kernel and bias (the output), `input_scale`
    the kernel only (the input): constant factors fold into the weights, not into extra ops.

    Example:
        >>> QConv(8, 3, strides=2, activation="relu")(keras.ops.ones((1, 8, 8, 3))).shape
        (1, 4, 4, 8)
    """

    def __init__(
        self,
        filters,
        kernel_size=1,
        strides=1,
        depthwise=False,
        activation=None,
        input_scale=1.0,
        output_scale=1.0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if activation not in (None, "relu"):
            raise ValueError(f"activation must be None or 'relu', got {activation!r}")
        self.filters = filters
        self.kernel_size = kernel_size
        self.strides = strides
        self.depthwise = depthwise
        self.activation = activation
        self.input_scale = input_scale
        self.output_scale = output_scale
        self.pad = 0 if strides == 1 else kernel_size // 2
        self.output_quant = self._fake_quant("output_quant")

    def build(self, input_shape):
        channels = input_shape[-1]
        k = self.kernel_size
        shape = (k, k, channels, 1) if self.depthwise else (k, k, channels, self.filters)
        self.kernel = self.add_weight(name="kernel", shape=shape, initializer="glorot_uniform")
        self.bias = self.add_weight(name="bias", shape=(self.filters,), initializer="zeros")
        self.output_quant.build(None)

    def compute_output_shape(self, input_shape):
        batch, h, w, _ = input_shape
        if self.strides != 1:
            h, w = ((d + 2 * self.pad - self.kernel_size) // self.strides + 1 for d in (h, w))
        return (batch, h, w, self.filters)

    def call(self, x, training=None):
        kernel, bias = self.kernel, self.bias
        if self.input_scale * self.output_scale != 1.0:
            kernel = kernel * (self.input_scale * self.output_scale)
        if self.output_scale != 1.0:
            bias = bias * self.output_scale
        x = _pytorch_pad(x, self.pad)
        padding = "same" if self.strides == 1 else "valid"
        if self.depthwise:
            y = ops.depthwise_conv(x, self._weight(kernel, axis=2), self.strides, padding)
        else:
            y = ops.conv(x, self._weight(kernel, axis=3), self.strides, padding)
        y = y + bias
        if self.activation == "relu":
            y = ops.relu(y)
        return self.output_quant(y, training=training)

    def set_deploy_weights(self, conv):
        """Take kernel and bias from a Keras Conv2D / DepthwiseConv2D (deploy-form)."""
        self.kernel.assign(conv.kernel)
        self.bias.assign(conv.bias)

    def get_config(self):
        config = super().get_config()
        config.update(
            filters=self.filters,
            kernel_size=self.kernel_size,
            strides=self.strides,
            depthwise=self.depthwise,
            activation=self.activation,
            input_scale=self.input_scale,
            output_scale=self.output_scale,
        )
        return config


@serializable
class QChannelAffine(_QuantLayer):
    """`x * scale + shift` per channel, as a 1x1 depthwise convolution (exact per-channel int8).

    Example:
        >>> QChannelAffine()(keras.ops.ones((1, 2, 2, 4))).shape
        (1, 2, 2, 4)
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.output_quant = self._fake_quant("output_quant")

    def build(self, input_shape):
        channels = input_shape[-1]
        self.scale = self.add_weight(name="scale", shape=(channels,), initializer="ones")
        self.shift = self.add_weight(name="shift", shape=(channels,), initializer="zeros")
        self.output_quant.build(None)

    def call(self, x, training=None):
        kernel = self._weight(ops.reshape(self.scale, (1, 1, -1, 1)), axis=2)
        return self.output_quant(
            ops.depthwise_conv(x, kernel, 1, "same") + self.shift, training=training
        )


@serializable
class QSqueezeExcite(_QuantLayer):
    """SqueezeExcite: MEAN, 1x1 conv + ReLU, 1x1 conv, LOGISTIC (fixed range), MUL.

    Example:
        >>> QSqueezeExcite(64)(keras.ops.ones((1, 4, 4, 64))).shape
        (1, 4, 4, 64)
    """

    def __init__(self, dim, ratio=0.25, **kwargs):
        super().__init__(**kwargs)
        self.dim = dim
        self.ratio = ratio
        q = _quant_options(self)
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

    def get_config(self):
        config = super().get_config()
        config.update(dim=self.dim, ratio=self.ratio)
        return config


@serializable
class QFFN(_QuantLayer):
    """FFN: 1x1 conv + ReLU, 1x1 conv (each with its output fake-quant).

    Example:
        >>> QFFN(16, 32)(keras.ops.zeros((1, 3, 3, 16))).shape
        (1, 3, 3, 16)
    """

    def __init__(self, dim, hidden, **kwargs):
        super().__init__(**kwargs)
        self.dim = dim
        self.hidden = hidden
        q = _quant_options(self)
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

    def get_config(self):
        config = super().get_config()
        config.update(dim=self.dim, hidden=self.hidden)
        return config


@serializable
class QLKP(_QuantLayer):
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
        q = _quant_options(self)
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

    def get_config(self):
        config = super().get_config()
        config.update(dim=self.dim, large_kernel=self.large_kernel)
        return config


@serializable
class QSKA(_QuantLayer):
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
        wc = ops.shape(weights)[-1] // 9
        padded = _pytorch_pad(x, 1)
        taps = ops.reshape(weights, (-1, h * w, 9, wc))
        out = None
        for k in range(9):
            kh, kw = divmod(k, 3)
            shifted = ops.reshape(
                padded[:, kh : kh + h, kw : kw + w, :], (-1, h * w, channels // wc, wc)
            )
            term = self.product_quants[k](shifted * taps[:, :, k : k + 1, :], training=training)
            out = term if out is None else self.sum_quants[k - 1](out + term, training=training)
        return ops.reshape(out, (-1, h, w, channels))


@serializable
class QLSConv(_QuantLayer):
    """LSConv: SKA(x, LKP(x)), its BatchNorm as a 1x1 depthwise convolution, plus x.

    Example:
        >>> QLSConv(32)(keras.ops.zeros((1, 5, 5, 32))).shape
        (1, 5, 5, 32)
    """

    def __init__(self, dim, **kwargs):
        super().__init__(**kwargs)
        self.dim = dim
        q = _quant_options(self)
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

    def get_config(self):
        config = super().get_config()
        config.update(dim=self.dim)
        return config


@serializable
class QAttention(_QuantLayer):
    """Attention (see `layers.Attention`), fake-quantized for its formulation.

    The key_dim^-0.5 scale is folded into the q convolution. "matmul": BATCH_MATMUL, ADD (bias),
    SOFTMAX, BATCH_MATMUL, RELU. "elementwise" (Edge TPU), per head: MUL, CONV_2D (sum over
    channels), ADD (bias), one 1-D SOFTMAX per row, MUL, MEAN; the token count N of the
    `mean * N` is folded into the projection's kernel (ReLU commutes with it).

    Example:
        >>> QAttention(64, 16, 2, resolution=(4, 4))(keras.ops.zeros((1, 4, 4, 64))).shape
        (1, 4, 4, 64)
    """

    HEAD_STEPS = ("product", "scores", "biased", "weighted")

    def __init__(self, dim, key_dim, num_heads, resolution, formulation="matmul", **kwargs):
        super().__init__(**kwargs)
        if formulation not in Attention.FORMULATIONS:
            raise ValueError(
                f"formulation must be one of {Attention.FORMULATIONS}, got {formulation!r}"
            )
        self.dim = dim
        self.key_dim = key_dim
        self.num_heads = num_heads
        self.resolution = tuple(resolution)
        self.formulation = formulation
        self.value_dim = int(dim / (key_dim * num_heads) * key_dim)
        self.bias_index = attention_bias_index(self.resolution)
        tokens = self.resolution[0] * self.resolution[1]
        qk = key_dim * num_heads
        q = _quant_options(self)
        self.qkv = QConv(2 * qk + self.value_dim * num_heads, name="qkv", **q)
        self.dw = QConv(qk, 3, depthwise=True, output_scale=key_dim**-0.5, name="dw", **q)
        input_scale = float(tokens) if formulation == "elementwise" else 1.0
        self.proj = QConv(dim, input_scale=input_scale, name="proj", **q)
        steps = ["scores", "biased"]
        if formulation == "elementwise":  # per head; "context" is after the CONCATENATION
            steps = [f"{step}{h}" for h in range(num_heads) for step in self.HEAD_STEPS]
        self.step_quants = {step: self._fake_quant(f"{step}_quant") for step in steps}
        self.context_quant = self._fake_quant("context_quant")
        self.softmax_quant = self._fake_quant("softmax_quant", PROBABILITY_RANGE)
        self.relu_quant = self._fake_quant("relu_quant")

    def build(self, input_shape):
        h, w = self.resolution
        self.attention_biases = self.add_weight(
            name="attention_biases", shape=(self.num_heads, h * w), initializer="zeros"
        )
        batch = input_shape[0]
        self.qkv.build(input_shape)
        self.dw.build((batch, h, w, self.key_dim * self.num_heads))
        self.proj.build((batch, h, w, self.value_dim * self.num_heads))
        quants = [self.softmax_quant, self.relu_quant, self.context_quant]
        for quant in quants + list(self.step_quants.values()):
            quant.build(None)

    def call(self, x, training=None):
        nh, kd = self.num_heads, self.key_dim
        qkv = self.qkv(x, training=training)
        q = self.dw(qkv[..., : nh * kd], training=training)
        k = qkv[..., nh * kd : 2 * nh * kd]
        v = qkv[..., 2 * nh * kd :]
        bias = ops.take(self.attention_biases, self.bias_index, axis=1)
        # Softmax ignores a constant shift; this one keeps the bias ADD in the graph when the
        # table is all zero (as initialized): the converter would fold `x + 0` and merge the two
        # fake-quants around it into one that breaks its same-scale check after slicing.
        bias = self._constant(bias + SOFTMAX_SHIFT)
        if self.formulation == "matmul":
            out = self._matmul_attention(q, k, v, bias, training)
        else:
            out = self._elementwise_attention(q, k, v, bias, training)
        return self.proj(self.relu_quant(ops.relu(out), training=training), training=training)

    def _quant(self, head, step, x, training):
        """Fake-quant `x` at `step` of `head` (None: all heads at once, the matmul form)."""
        return self.step_quants[step + ("" if head is None else str(head))](x, training=training)

    def _matmul_attention(self, q, k, v, bias, training):
        _, h, w, _ = ops.shape(q)
        nh, kd, vd = self.num_heads, self.key_dim, self.value_dim
        q = ops.transpose(ops.reshape(q, (-1, h * w, nh, kd)), (0, 2, 1, 3))
        k = ops.transpose(ops.reshape(k, (-1, h * w, nh, kd)), (0, 2, 3, 1))
        v = ops.transpose(ops.reshape(v, (-1, h * w, nh, vd)), (0, 2, 1, 3))
        scores = self._quant(None, "scores", ops.matmul(q, k), training)
        scores = self._quant(None, "biased", scores + bias, training)
        attn = self.softmax_quant(ops.softmax(scores, axis=-1), training=training)
        context = self.context_quant(ops.matmul(attn, v), training=training)
        return ops.reshape(ops.transpose(context, (0, 2, 1, 3)), (-1, h, w, nh * vd))

    def _elementwise_attention(self, q, k, v, bias, training):
        _, h, w, _ = ops.shape(q)
        n = h * w
        kd, vd = self.key_dim, self.value_dim
        sum_channels = self._weight(ops.ones((1, 1, kd, 1), dtype=self.compute_dtype), axis=3)
        heads = []
        for head in range(self.num_heads):
            q_h = ops.reshape(q[..., head * kd : (head + 1) * kd], (-1, n, 1, kd))
            k_h = ops.reshape(k[..., head * kd : (head + 1) * kd], (-1, 1, n, kd))
            product = self._quant(head, "product", q_h * k_h, training)
            scores = self._quant(head, "scores", ops.conv(product, sum_channels), training)
            scores = scores + ops.reshape(bias[head], (1, n, n, 1))
            scores = self._quant(head, "biased", scores, training)
            rows = [
                self.softmax_quant(
                    ops.softmax(ops.reshape(scores[:, i], (-1, n))), training=training
                )
                for i in range(n)
            ]
            attn = ops.reshape(ops.stack(rows, axis=1), (-1, n, n, 1))
            v_h = ops.reshape(v[..., head * vd : (head + 1) * vd], (-1, 1, n, vd))
            weighted = self._quant(head, "weighted", attn * v_h, training)
            heads.append(ops.mean(weighted, axis=2))  # (batch, n, vd); N is folded into proj
        heads = self.context_quant(heads, training=training)  # one scale for the CONCATENATION
        return ops.reshape(ops.concatenate(heads, axis=-1), (-1, h, w, self.num_heads * vd))

    def set_deploy_weights(self, attention):
        for name in ("qkv", "dw", "proj"):
            getattr(self, name).set_deploy_weights(getattr(attention, name).conv)
        self.attention_biases.assign(attention.attention_biases)

    def get_config(self):
        config = super().get_config()
        config.update(
            dim=self.dim,
            key_dim=self.key_dim,
            num_heads=self.num_heads,
            resolution=self.resolution,
            formulation=self.formulation,
        )
        return config


@serializable
class QBlock(_QuantLayer):
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
        q = _quant_options(self)
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

    def get_config(self):
        config = super().get_config()
        config.update(
            dim=self.dim,
            key_dim=self.key_dim,
            num_heads=self.num_heads,
            kind=self.kind,
            resolution=self.resolution,
            formulation=self.formulation,
        )
        return config


@serializable
class QPool(_QuantLayer):
    """Global average pooling (MEAN over height and width) with its output fake-quant.

    Example:
        >>> QPool()(keras.ops.ones((1, 3, 3, 8))).shape
        (1, 8)
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.output_quant = self._fake_quant("output_quant")

    def build(self, input_shape):
        self.output_quant.build(None)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[-1])

    def call(self, x, training=None):
        return self.output_quant(ops.mean(x, axis=(1, 2)), training=training)


@serializable
class QLinear(_QuantLayer):
    """The deploy-form classifier (Dense), weights fake-quantized per tensor.

    Per tensor because TFLite's int8 FULLY_CONNECTED with per-channel weights is a newer op
    version that older runtimes (tflite-runtime 2.14, Coral) cannot load.

    Example:
        >>> QLinear(10)(keras.ops.ones((1, 64))).shape
        (1, 10)
    """

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.output_quant = self._fake_quant("output_quant")

    def build(self, input_shape):
        shape = (input_shape[-1], self.units)
        self.kernel = self.add_weight(name="kernel", shape=shape, initializer="glorot_uniform")
        self.bias = self.add_weight(name="bias", shape=(self.units,), initializer="zeros")
        self.output_quant.build(None)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.units)

    def call(self, x, training=None):
        y = ops.matmul(x, self._weight(self.kernel, axis=None)) + self.bias
        return self.output_quant(y, training=training)

    def set_deploy_weights(self, head):
        self.kernel.assign(head.linear.kernel)
        self.bias.assign(head.linear.bias)

    def get_config(self):
        config = super().get_config()
        config.update(units=self.units)
        return config
