"""Keras LSNet -> `.tflite` with TFLite builtin ops only, for Android CPU, GPU and Edge TPU.

The model is reparameterized first, traced with a static input (batch 1 by default) and
converted with `TFLITE_BUILTINS` only (never Flex / SELECT_TF_OPS). Every exported graph is
checked: builtin ops only, every tensor at most 4-D.

Example:
    >>> import lsnet_keras
    >>> from lsnet_keras.litert.export import export_tflite
    >>> model = lsnet_keras.lsnet_t(num_classes=10, input_shape=64)
    >>> tflite_bytes = export_tflite(model, precision="fp16")
"""

import warnings

import numpy as np
import tensorflow as tf
from tensorflow.lite.python import convert as tflite_convert

from lsnet_keras.config import IMAGENET_MEAN, IMAGENET_STD, IO_TYPES, PRECISIONS, TARGETS
from lsnet_keras.errors import LSNetError
from lsnet_keras.io import atomic_path
from lsnet_keras.litert.calibration import builtin_images
from lsnet_keras.litert.graph import read_graph
from lsnet_keras.litert.labels import imagenet_labels
from lsnet_keras.litert.metadata import add_classifier_metadata
from lsnet_keras.litert.xnnpack import float_depthwise_weights, float_islands
from lsnet_keras.model.reparam import reparameterize, with_target_layout
from lsnet_keras.preprocess import CROP_FRACTION, normalize
from lsnet_keras.quantization.conversion import check_convertible, qat_converter
from lsnet_keras.quantization.qat_model import PixelNormalization, is_qat_model

TF_TYPES = {"float32": tf.float32, "int8": tf.int8, "uint8": tf.uint8}


class ExportError(LSNetError):
    """An export option that cannot work, or a graph that is not mobile-ready."""


def _check_options(precision, target, io, include_preprocessing):
    for value, allowed, name in (
        (precision, PRECISIONS, "precision"),
        (target, TARGETS, "target"),
        (io, IO_TYPES, "io"),
    ):
        if value not in allowed:
            raise ExportError(f"--{name} must be one of {', '.join(allowed)}, got {value!r}")
    if target == "edgetpu" and precision != "int8":
        raise ExportError("--target edgetpu runs only full-integer models: use --precision int8")
    if io != "float32" and precision != "int8":
        raise ExportError(f"--io {io} needs --precision int8 (other precisions take float32)")
    if include_preprocessing and io == "int8":
        raise ExportError("--include-preprocessing takes uint8 pixels: use --io uint8 or float32")


def default_labels(num_classes):
    """ImageNet-1k names for 1000 classes, else "class 0", "class 1", ..."""
    return imagenet_labels() if num_classes == 1000 else [f"class {i}" for i in range(num_classes)]


def _serving_function(model, batch_size, include_preprocessing, pixel_dtype=tf.uint8):
    """A tf.function with a static input signature; RGB pixels in when preprocessing.

    Float models take uint8 pixels (a CAST inside); int8 models are traced on float pixels,
    which the converter turns into a uint8 input quantized as the pixels themselves.
    """
    height, width, channels = model.input_shape[1:]
    if include_preprocessing:
        mean = tf.constant(np.array(IMAGENET_MEAN, "float32") * 255.0)
        inv_std = tf.constant(1.0 / (np.array(IMAGENET_STD, "float32") * 255.0))

        def serve(image):
            return model((tf.cast(image, tf.float32) - mean) * inv_std, training=False)

        dtype = pixel_dtype
    else:

        def serve(image):
            return model(image, training=False)

        dtype = tf.float32
    spec = tf.TensorSpec((batch_size, height, width, channels), dtype, name="image")
    return tf.function(serve, input_signature=[spec]).get_concrete_function()


def _representative(images, include_preprocessing):
    """Calibration batches: uint8 crops, normalized unless the model normalizes itself.

    With preprocessing inside, a black and a white frame pin the input range to exactly 0..255,
    so the quantized uint8 input is the raw pixel (scale 1, zero point 0).
    """
    if include_preprocessing:
        extremes = np.stack([np.zeros_like(images[0]), np.full_like(images[0], 255)])
        images = np.concatenate([extremes, images])

    def generate():
        for image in images:
            batch = image[None].astype("float32")
            yield [batch if include_preprocessing else normalize(batch)]

    return generate


def _with_metadata(model, model_bytes, precision, target, labels, include_preprocessing):
    labels = default_labels(model.num_classes) if labels is None else list(labels)
    pixels = {"mean": None, "std": None}
    if not include_preprocessing:
        pixels = {
            "mean": tuple(255 * m for m in IMAGENET_MEAN),
            "std": tuple(255 * s for s in IMAGENET_STD),
        }
    height, width = model.input_shape[1:3]
    with warnings.catch_warnings():  # int8 model I/O: readers other than MediaPipe / Task Library
        warnings.simplefilter("ignore")
        return add_classifier_metadata(
            model_bytes,
            labels,
            name=f"{model.name} {precision} ({target})",
            description=f"LSNet image classifier, {width}x{height}, {len(labels)} classes, "
            f"exported by lsnet-keras for {target}.",
            crop_fraction=CROP_FRACTION,
            **pixels,
        )


def check_mobile_graph(model_bytes, source="model", allowed_custom=()):
    """Raise ExportError unless the graph has builtin ops only and no tensor above 4-D.

    `allowed_custom` names custom ops every runtime registers by default (a detector's
    `TFLite_Detection_PostProcess`).

    Example:
        >>> check_mobile_graph(export_tflite(lsnet_keras.lsnet_t(input_shape=64)))  # doctest: +SKIP
    """
    graph = read_graph(model_bytes, source)
    allowed = {f"CUSTOM:{name}" for name in allowed_custom}
    custom = sorted({op.name for op in graph.operators if op.name.startswith("CUSTOM")} - allowed)
    if custom:
        raise ExportError(f"{source}: non-builtin ops {custom} (Flex/custom ops do not run)")
    if graph.max_rank() > 4:
        worst = max(graph.tensors, key=lambda t: len(t.shape))
        raise ExportError(f"{source}: tensor {worst.name} is {len(worst.shape)}-D {worst.shape}")
    return graph


def _converter(model, precision, target, io, calibration, include_preprocessing, batch_size):
    """(deployed model, converter) for a float LSNet: fp32, fp16, dynamic or int8 (PTQ)."""
    model = with_target_layout(model, target) if model.deploy else reparameterize(model, target)
    pixel_dtype = tf.float32 if precision == "int8" else tf.uint8
    function = _serving_function(model, batch_size, include_preprocessing, pixel_dtype)
    converter = tf.lite.TFLiteConverter.from_concrete_functions([function])
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if precision == "fp16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif precision == "dynamic":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        # Dense weights per tensor, not per channel: a float FULLY_CONNECTED with per-channel
        # int8 weights is op version 12, which tflite-runtime 2.14 (Coral, Raspberry Pi) cannot
        # load ("Didn't find op for builtin opcode 'FULLY_CONNECTED' version '12'"); per tensor
        # it is version 9. Convolutions stay per channel (CONV_2D v5, DEPTHWISE_CONV_2D v6 load).
        converter._experimental_disable_per_channel_quantization_for_dense_layers = True
    elif precision == "int8":
        if calibration is None:
            calibration = builtin_images(32, model.input_shape[1], seed=0)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = _representative(calibration, include_preprocessing)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = TF_TYPES["uint8" if include_preprocessing else io]
        converter.inference_output_type = TF_TYPES[io]
    return model, converter


def convert_for_cpu(converter, precision):
    """Run a set-up TFLiteConverter for the cpu target, whose graph runs in one XNNPACK partition.

    dynamic: the hybrid depthwise convolutions get float weights (`float_depthwise_weights`).
    int8: calibrate, then quantize as the converter's own int8 path does, but with the ops
    XNNPACK takes only in float kept float (`float_islands`). Other precisions: as is.

    Example:
        >>> model_bytes = convert_for_cpu(converter, "int8")  # doctest: +SKIP
    """
    if precision == "dynamic":
        return float_depthwise_weights(converter.convert())
    if precision != "int8":
        return converter.convert()
    converter._experimental_calibrate_only = True
    calibrated = converter.convert()
    return tflite_convert.mlir_quantize(
        calibrated,
        input_data_type=converter.inference_input_type or tf.float32,
        output_data_type=converter.inference_output_type or tf.float32,
        denylisted_nodes=float_islands(calibrated),
    )


def _qat_converter(model, precision, target, io, calibration, include_preprocessing, batch_size):
    """The converter of a QAT model: int8 from its fake-quant ranges, no representative dataset.

    A uint8 input takes raw pixels, normalized by int8 ops (`quantization.PixelNormalization`).
    """
    if precision != "int8":
        raise ExportError(f"{model.name} is a QAT model: export it with --precision int8")
    if calibration is not None:
        raise ExportError(f"{model.name} is a QAT model: its ranges are trained, no --calibration")
    check_convertible(model, target, io)
    normalize = PixelNormalization() if include_preprocessing else None

    def serve(image):
        return model(image if normalize is None else normalize(image), training=False)

    return qat_converter(
        serve,
        (batch_size, *model.input_shape[1:]),
        input_type="uint8" if include_preprocessing else io,
        output_type=io,
    )


def export_tflite(
    model,
    output=None,
    precision="fp32",
    target="cpu",
    io="float32",
    calibration=None,
    include_preprocessing=False,
    labels=None,
    batch_size=1,
    overwrite=False,
):
    """Convert an LSNet to TFLite and return the model bytes (also written to `output`).

    Args:
        model: a training-form or reparameterized LSNet (reparameterized here if needed).
        precision: fp32, fp16 (float16 weights), dynamic (int8 weights, float activations) or
            int8 (integer post-training quantization).
        target: cpu (XNNPACK), gpu (LiteRT GPU delegate) or edgetpu (Coral; int8 only). The
            cpu graph runs in one XNNPACK partition: its int8 model keeps in float the few ops
            XNNPACK takes only in float (softmax attention, GroupNorm's rsqrt; see
            `lsnet_keras.litert.xnnpack`), its dynamic model keeps float depthwise weights. The
            gpu and edgetpu int8 models are full-integer.
        io: input/output type of an int8 model: float32, int8 or uint8. A uint8 input takes
            raw RGB pixels (normalization inside, as with `include_preprocessing`), which is what
            MediaPipe Tasks and the TFLite Task Library feed uint8 models.
        calibration: uint8 RGB images (N, H, W, 3), already resized and center-cropped, for
            int8; None uses the built-in generated set (see `lsnet_keras.litert.calibration`).
        include_preprocessing: the model takes uint8 RGB and normalizes inside.
        labels: class names for the metadata; default ImageNet-1k (1000 classes) or "class i".

    The model carries TFLite metadata (normalization, labels file, descriptions) so MediaPipe
    Tasks and the TFLite Task Library can run it as is (see `lsnet_keras.litert.metadata`), and
    the evaluation crop fraction for apps (`preprocess.CROP_FRACTION`, read by android_demo).

    Example:
        >>> data = export_tflite(lsnet_keras.lsnet_t(input_shape=64), precision="int8",
        ...                      io="uint8")
    """
    _check_options(precision, target, io, include_preprocessing)
    include_preprocessing = include_preprocessing or io == "uint8"
    qat = is_qat_model(model)
    if qat:
        converter = _qat_converter(
            model, precision, target, io, calibration, include_preprocessing, batch_size
        )
    else:
        model, converter = _converter(
            model, precision, target, io, calibration, include_preprocessing, batch_size
        )
    with warnings.catch_warnings():  # TF warns about input statistics it does not use
        warnings.filterwarnings("ignore", "Statistics for quantized inputs")
        if target == "cpu" and not qat:
            model_bytes = convert_for_cpu(converter, precision)
        else:
            model_bytes = converter.convert()
    check_mobile_graph(model_bytes, f"{model.name} ({precision})")
    if model.include_top and not model.features_only:
        model_bytes = _with_metadata(
            model, model_bytes, precision, target, labels, include_preprocessing
        )
    if output is not None:
        with atomic_path(output, overwrite=overwrite) as tmp, open(tmp, "wb") as f:
            f.write(model_bytes)
    return model_bytes
