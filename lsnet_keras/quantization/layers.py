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

The blocks built from these layers are in `lsnet_keras.quantization.blocks`.

Example:
    >>> from lsnet_keras.quantization.layers import QConv
    >>> QConv(16, 3, activation="relu")(keras.ops.zeros((1, 8, 8, 3)), training=True).shape
    (1, 8, 8, 16)
"""

import keras
from keras import ops

from lsnet_keras.model.ops import pytorch_pad
from lsnet_keras.model.serialization import config_fields, serializable

_TINY = 1e-8
# LOGISTIC / SOFTMAX int8 outputs are fixed to scale 1/256, zero point -128 by the kernels:
# any other range would add a requantize op after them.
PROBABILITY_RANGE = (0.0, 255.0 / 256.0)


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


def quant_options(layer):
    """The options a composite QAT layer hands to its sublayers."""
    return {
        "quantize": layer.quantize,
        "weight_bits": layer.weight_bits,
        "range_momentum": layer.range_momentum,
        "dtype": layer.dtype_policy,
    }


@serializable("fixed_range", "momentum", "enabled")
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


@config_fields("quantize", "weight_bits", "range_momentum")
class QuantLayer(keras.layers.Layer):
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


@serializable(
    "filters", "kernel_size", "strides", "depthwise", "activation", "input_scale", "output_scale"
)
class QConv(QuantLayer):
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
        x = pytorch_pad(x, self.pad)
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


@serializable()
class QChannelAffine(QuantLayer):
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


@serializable()
class QPool(QuantLayer):
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


@serializable("units")
class QLinear(QuantLayer):
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
