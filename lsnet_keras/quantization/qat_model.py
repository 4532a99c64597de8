"""Quantization-aware training (QAT) on Keras 3, for full-integer TFLite on CPU and Edge TPU.

`quantize_model` turns an LSNet into a `QATLSNet`: the deployment form (BatchNorm folded, RepVGG
fused, laid out for the target) rebuilt from the QAT layers of `lsnet_keras.quantization.layers` and
`quantization.blocks`, which fake-quantize weights and activations exactly where the int8
TFLite graph keeps a tensor. Train it with `model.fit` (optionally under `tf.distribute`),
save it as `.keras`, and convert it with `export_tflite(qat_model, precision="int8")` or
`lsnet export QAT.keras --precision int8`: no representative dataset, no float op, no
requantize op.

tensorflow-model-optimization cannot do this: it works only with Keras 2 (`tf_keras`).

Example:
    >>> import numpy as np, lsnet_keras
    >>> from lsnet_keras.quantization.qat_model import quantize_model
    >>> model = lsnet_keras.LSNet((32, 64, 96, 128), (2, 2, 2, 2), (2, 2, 2, 2),
    ...                           num_classes=10, input_shape=64)
    >>> images = np.random.default_rng(0).normal(size=(8, 64, 64, 3)).astype("float32")
    >>> qat = quantize_model(model, calibration=images)
    >>> qat.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    >>> int8_bytes = lsnet_keras.export_tflite(qat, precision="int8")
"""

import fnmatch

import keras
import numpy as np

from lsnet_keras.config import IMAGENET_MEAN, IMAGENET_STD
from lsnet_keras.errors import LSNetError
from lsnet_keras.model.block import Block
from lsnet_keras.model.conv import BNLinear, Conv2dBN
from lsnet_keras.model.lsnet import LSNet
from lsnet_keras.model.reparam import TARGET_ATTENTION, reparameterize, with_target_layout
from lsnet_keras.model.serialization import serializable
from lsnet_keras.quantization.blocks import QBlock
from lsnet_keras.quantization.layers import FakeQuant, QConv, QLinear, QPool, fake_quant_weight

# The model input is ImageNet-normalized RGB: its range is fixed by the pixels' 0..255, so a
# uint8 pixel input maps onto it without clipping (see `PixelNormalization`).
INPUT_RANGE = (
    float(min(-m / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD))),
    float(max((1 - m) / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD))),
)
# Weight bits: 5..8 are stored as int8 (values on a coarser grid, within one int8 step of it);
# 4 is stored as int4 by the converter (CONV_2D / DEPTHWISE_CONV_2D v7, FULLY_CONNECTED v10:
# recent TFLite CPU runtimes only, not the Edge TPU compiler). Activations are always 8-bit:
# the int8 kernels and the Edge TPU have no other activation width.
WEIGHT_BITS = (4, 5, 6, 7, 8)


class QuantizationError(LSNetError):
    """A QAT option that cannot work, or a QAT model that is not ready to convert."""


@serializable()
class QATLSNet(keras.Model):
    """An LSNet in deployment form with fake-quant (see `lsnet_keras.quantization.layers`).

    Args:
        lsnet: the `LSNet.get_config()` of the architecture (deploy form is implied).
        target: cpu, gpu or edgetpu: the attention formulation (fixed: the ranges belong to it).
        float_layers: names or glob patterns of blocks and/or the head to compute in float
            (e.g. "head", "blocks4_*"). A float block's output is quantized again for the next
            layer; a float head gives float logits (export with io float32). Single
            convolutions cannot stay float: the converter quantizes an op between two int8
            tensors whatever its weights.
        weight_bits: 5..8 (stored as int8) or 4 (stored as int4; CPU only).
        range_momentum: moving-average momentum of the activation ranges.
        template: optional, the deploy-form LSNet of this config if already built (it is only
            read for its layer sequence; saves building one).

    Build it with `quantize_model`, which also loads the float model's weights.

    Example:
        >>> qat = QATLSNet(lsnet_keras.lsnet_t(num_classes=10, input_shape=64).get_config())
        >>> qat.output_shape, qat.target
        ((None, 10), 'cpu')
    """

    def __init__(
        self,
        lsnet,
        target="cpu",
        float_layers=(),
        weight_bits=8,
        range_momentum=0.99,
        name=None,
        template=None,
        **kwargs,
    ):
        if target not in TARGET_ATTENTION:
            raise QuantizationError(f"target must be one of {', '.join(TARGET_ATTENTION)}")
        if weight_bits not in WEIGHT_BITS:
            raise QuantizationError(f"weight_bits must be in {WEIGHT_BITS}, got {weight_bits!r}")
        if weight_bits < 5 and target == "edgetpu":
            raise QuantizationError("4-bit weights are stored as int4: the Edge TPU needs 5 to 8")
        lsnet = dict(lsnet, deploy=True, distillation=False, fp16_safe=False)  # int8, not fp16
        lsnet["attention_formulation"] = TARGET_ATTENTION[target]
        if template is None:
            template = LSNet.from_config(lsnet)
        float_layers = tuple(float_layers)
        floatable = [layer.name for layer in template.layers if isinstance(layer, Block | BNLinear)]
        for pattern in float_layers:
            if not fnmatch.filter(floatable, pattern):
                raise QuantizationError(
                    f"float_layers: {pattern!r} matches no block nor the head (a single op "
                    "between int8 tensors is always converted to int8)"
                )
        options = {"weight_bits": weight_bits, "range_momentum": range_momentum}
        inputs = keras.Input(shape=template.input_shape[1:], name="image")
        x = FakeQuant(INPUT_RANGE, name="image_quant")(inputs)
        tensors = {}
        layers = template.layers[1:]
        for i, layer in enumerate(layers):
            if isinstance(layer, keras.layers.ReLU):
                continue  # fused into the convolution before it
            next_layer = layers[i + 1] if i + 1 < len(layers) else None
            in_float = layer.name in floatable and any(
                fnmatch.fnmatch(layer.name, p) for p in float_layers
            )
            qat_layer = _qat_layer(layer, next_layer, dict(options, quantize=not in_float))
            x = qat_layer(x)
            if in_float and isinstance(layer, Block):  # int8 again for the next layer
                x = FakeQuant(momentum=range_momentum, name=f"{layer.name}_quant")(x)
            tensors[layer.name] = x
        outputs = [tensors[t._keras_history.operation.name] for t in template.outputs]
        super().__init__(
            inputs=inputs,
            outputs=outputs if len(outputs) > 1 else outputs[0],
            name=name or f"{template.name}_qat",
            **kwargs,
        )
        self.lsnet_config = {k: v for k, v in lsnet.items() if k not in ("name", "trainable")}
        self.lsnet_config["name"] = template.name
        self.target = target
        self.float_layers = float_layers
        self.weight_bits = weight_bits
        self.range_momentum = range_momentum
        self.num_classes = template.num_classes
        self.include_top = template.include_top
        self.features_only = template.features_only
        self.image_shape = template.image_shape
        self.attention_formulation = template.attention_formulation
        self.deploy = True

    def get_config(self):
        return {
            "lsnet": self.lsnet_config,
            "target": self.target,
            "float_layers": list(self.float_layers),
            "weight_bits": self.weight_bits,
            "range_momentum": self.range_momentum,
            "name": self.name,
            "trainable": self.trainable,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def fake_quants(self):
        """Every activation fake-quant layer of the model, in depth-first order.

        Example:
            >>> len(qat.fake_quants()) > 0  # doctest: +SKIP
            True
        """
        return [layer for layer in self._flatten_layers() if isinstance(layer, FakeQuant)]

    def uncalibrated(self):
        """Paths of the fake-quant layers whose range was never set (no batch seen yet).

        Example:
            >>> len(quantize_model(lsnet_keras.lsnet_t(input_shape=64)).uncalibrated()) > 0
            True
        """
        return [layer.path for layer in self.fake_quants() if not layer.calibrated]


def _qat_layer(layer, next_layer, options):
    """The QAT counterpart of one top-level layer of a deploy-form LSNet."""
    if isinstance(layer, Conv2dBN):
        relu = isinstance(next_layer, keras.layers.ReLU)
        return QConv(
            layer.filters,
            layer.kernel_size,
            layer.strides,
            layer.depthwise,
            activation="relu" if relu else None,
            name=layer.name,
            **options,
        )
    if isinstance(layer, Block):
        return QBlock(
            layer.dim,
            layer.key_dim,
            layer.num_heads,
            layer.kind,
            layer.resolution,
            layer.formulation,
            name=layer.name,
            **options,
        )
    if isinstance(layer, keras.layers.GlobalAveragePooling2D):
        return QPool(name=layer.name, **options)
    if isinstance(layer, BNLinear):
        return QLinear(layer.units, name=layer.name, **options)
    if isinstance(layer, keras.layers.Identity):
        return keras.layers.Identity(name=layer.name)
    raise QuantizationError(f"no QAT form for layer {layer.name} ({type(layer).__name__})")


def is_qat_model(model):
    """Whether `model` is a QAT model (made by `quantize_model`).

    Example:
        >>> is_qat_model(lsnet_keras.lsnet_t(input_shape=64))
        False
    """
    return isinstance(model, QATLSNet)


def calibrate(qat_model, images, batch_size=16):
    """Set the activation ranges from `images` (normalized NHWC float32) before training.

    Runs the model in training mode, which only moves the ranges (the deploy form has no
    BatchNorm): the first batch sets them, later ones average in. Returns the model.

    Example:
        >>> calibrate(qat, np.zeros((4, 64, 64, 3), "float32"))  # doctest: +SKIP
    """
    images = np.asarray(images, dtype="float32")
    for start in range(0, len(images), batch_size):
        qat_model(images[start : start + batch_size], training=True)
    return qat_model


def quantize_model(
    model,
    target="cpu",
    float_layers=(),
    weight_bits=8,
    range_momentum=0.99,
    calibration=None,
):
    """The QAT model of a (training-form or deployed) LSNet, with its weights.

    Args:
        model: an `LSNet`; reparameterized here (BatchNorm folded, RepVGG fused) if needed.
        target: cpu, gpu or edgetpu: the graph layout the QAT model (and its export) uses;
            edgetpu is the full-integer, Edge TPU-mappable attention (no BATCH_MATMUL).
        float_layers: names or glob patterns of blocks and/or the head to leave in float
            (e.g. "head", "blocks4_*"; see `QATLSNet`).
        weight_bits: 8 (default) down to 5: the weight grid, stored as int8; 4 is stored as
            int4 (recent TFLite CPU runtimes; not the Edge TPU).
        range_momentum: moving-average momentum of the activation ranges during training.
        calibration: optional normalized images (N, H, W, 3) to set the activation ranges
            now; otherwise the first training batch sets them.

    Example:
        >>> qat = quantize_model(lsnet_keras.lsnet_t(num_classes=10, input_shape=64),
        ...                      target="edgetpu", float_layers=["head"])
        >>> qat.get_layer("head").quantize
        False
    """
    if isinstance(model, QATLSNet):
        raise QuantizationError(f"{model.name} is already a QAT model")
    if not isinstance(model, LSNet):
        raise QuantizationError(f"quantize_model takes an LSNet, got {type(model).__name__}")
    if model.dtype_policy.name != "float32":
        raise QuantizationError(f"QAT needs a float32 model, got {model.dtype_policy.name}")
    if target not in TARGET_ATTENTION:
        raise QuantizationError(f"target must be one of {', '.join(TARGET_ATTENTION)}")
    deployed = with_target_layout(model, target) if model.deploy else reparameterize(model, target)
    qat = QATLSNet(
        deployed.get_config(),
        target=target,
        float_layers=float_layers,
        weight_bits=weight_bits,
        range_momentum=range_momentum,
        template=deployed,
    )
    for layer in qat.layers:
        if hasattr(layer, "set_deploy_weights"):
            source = deployed.get_layer(layer.name)
            layer.set_deploy_weights(source.conv if isinstance(source, Conv2dBN) else source)
    if calibration is not None:
        calibrate(qat, calibration)
    return qat


class PixelNormalization(keras.layers.Layer):
    """uint8-range RGB pixels -> ImageNet-normalized input, as int8 TFLite ops.

    The pixels are fake-quantized to 0..255 (a uint8 input is the pixel itself) and normalized
    by a 1x1 depthwise convolution (per-channel weights quantize exactly), whose output lands on
    the QAT model's fixed input range (`INPUT_RANGE`): no requantize op.

    Example:
        >>> PixelNormalization()(keras.ops.zeros((1, 2, 2, 3))).shape
        (1, 2, 2, 3)
    """

    def call(self, pixels):
        from keras import ops

        pixels = keras.quantizers.fake_quant_with_min_max_vars(pixels, 0.0, 255.0)
        std = np.array(IMAGENET_STD, "float32")
        kernel = ops.convert_to_tensor((1.0 / (255.0 * std)).reshape(1, 1, 3, 1))
        shift = ops.convert_to_tensor(-np.array(IMAGENET_MEAN, "float32") / std)
        normalized = ops.depthwise_conv(pixels, fake_quant_weight(kernel, axis=2), 1, "same")
        return keras.quantizers.fake_quant_with_min_max_vars(normalized + shift, *INPUT_RANGE)
