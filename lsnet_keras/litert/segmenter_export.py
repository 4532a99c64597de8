"""Semantic FPN-LSNet -> `.tflite` in the form MediaPipe Tasks' ImageSegmenter runs.

The graph takes RGB pixels (1, H, W, 3), uint8 for int8 models and float32 0..255 for the others,
normalizes them inside (MMSegmentation's mean and std: MediaPipe refuses per-channel
normalization metadata) and returns the head's float32 logits (1, H/8, W/8, classes), the class
names attached to them as axis labels. Upsampling and argmax are left to the phone's segmenter
(MediaPipe resizes the logits to the image and takes the argmax itself): inside the graph they
would make a (1, H, W, classes) tensor 64 times the logits' size for one argmax, work the
caller can do at the display's resolution or skip (an app that only needs a coarse mask reads
the logits directly). MediaPipe's resize scales by (in - 1) / (out - 1) (align corners), not
MMSegmentation's half-pixel rule: tests/test_segmenter_export.py measures what that changes.

Example:
    >>> import lsnet_keras
    >>> from lsnet_keras.litert.segmenter_export import export_segmenter
    >>> data = export_segmenter(lsnet_keras.lsnet_t_semfpn(input_shape=128))  # doctest: +SKIP
"""

import io
import warnings
import zipfile

import flatbuffers
import numpy as np
import tensorflow as tf
from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

from lsnet_keras.config import MMDET_MEAN, MMDET_STD, PRECISIONS, TARGETS
from lsnet_keras.litert.detector_export import _calibration, _written
from lsnet_keras.litert.detector_metadata import _pack, _unpack, pixel_input
from lsnet_keras.litert.export import ExportError, check_mobile_graph, convert_for_cpu
from lsnet_keras.litert.metadata import (
    IMAGE,
    MIN_PARSER_VERSION,
    TENSOR_AXIS_LABELS,
    MetadataError,
    _set_metadata_buffer,
    _table,
    _vector,
)
from lsnet_keras.model.reparam import reparameterize, with_target_layout
from lsnet_keras.segmentation.ade20k import labels_or_numbers

GRAYSCALE = 2  # ColorSpaceType of the output "image" (one class score per channel)


def _network_function(model):
    """Frozen float32 pixels 0..255 -> logits (1, h, w, classes), batch 1."""
    height, width = model.image_shape[:2]
    mean = tf.constant(MMDET_MEAN, tf.float32)
    inv_std = tf.constant(1.0 / np.array(MMDET_STD, "float32"))

    def network(image):
        return model((image - mean) * inv_std, training=False)

    spec = tf.TensorSpec((1, height, width, 3), tf.float32, name="image")
    concrete = tf.function(network, input_signature=[spec]).get_concrete_function()
    return convert_variables_to_constants_v2(concrete)


def _metadata_flatbuffer(name, description, labels_file, image_shape):
    b = flatbuffers.Builder(1024)
    image = pixel_input(b, image_shape)
    labels = _table(
        b,
        [(0, b.CreateString(labels_file)), (1, b.CreateString("Class names, one per line."))],
        [(2, TENSOR_AXIS_LABELS)],
    )
    content = _table(b, [(1, _table(b, [], [(0, GRAYSCALE)]))], [(0, IMAGE)])
    masks = _table(
        b,
        [
            (0, b.CreateString("segmentation_masks")),
            (1, b.CreateString("Class logits at 1/8 of the input, one channel per class.")),
            (3, content),
            (6, _vector(b, [labels])),
        ],
    )
    graph = _table(b, [(2, _vector(b, [image])), (3, _vector(b, [masks]))])
    root = _table(
        b,
        [
            (0, b.CreateString(name)),
            (1, b.CreateString(description)),
            (3, _vector(b, [graph])),
            (7, b.CreateString(MIN_PARSER_VERSION)),
        ],
    )
    b.Finish(root, file_identifier=b"M001")
    return bytes(b.Output())


def add_segmenter_metadata(tflite_bytes, labels, name="LSNet segmenter", description=""):
    """The segmenter with ImageSegmenter metadata and `labels` packed as axis labels.

    Example:
        >>> tagged = add_segmenter_metadata(tflite_bytes, ["wall", "building"])  # doctest: +SKIP
    """
    model = _unpack(tflite_bytes)
    graph = model.subgraphs[0]
    image, logits = graph.tensors[graph.inputs[0]], graph.tensors[graph.outputs[0]]
    if len(graph.inputs) != 1 or len(graph.outputs) != 1 or int(logits.shape[-1]) != len(labels):
        raise MetadataError(f"expected one image in and one (1, h, w, {len(labels)}) output")
    if any("\n" in label or "\r" in label for label in labels):
        raise MetadataError("a label cannot contain a line break")
    data = _metadata_flatbuffer(name, description, "labels.txt", tuple(image.shape[1:3]))
    _set_metadata_buffer(model, data)
    out = io.BytesIO(_pack(model, len(tflite_bytes)))
    out.seek(0, io.SEEK_END)
    with zipfile.ZipFile(out, "a", compression=zipfile.ZIP_STORED) as archive:
        archive.writestr("labels.txt", "\n".join(labels) + "\n")
    return out.getvalue()


def export_segmenter(
    model,
    output=None,
    precision="fp32",
    target="cpu",
    calibration=None,
    labels=None,
    overwrite=False,
):
    """Convert a Semantic FPN-LSNet to a `.tflite` MediaPipe's ImageSegmenter runs as is.

    Args:
        model: a training-form or reparameterized `LSNetSemanticFPN`.
        precision: fp32, fp16, dynamic or int8 (post-training, calibrated on `calibration`;
            uint8 pixels in, float32 logits out as MediaPipe wants them).
        target: cpu (XNNPACK) or gpu (fp16).
        calibration: uint8 RGB images (N, H, W, 3) at the model's size for int8; default a
            built-in generated set (real images from the target domain calibrate better).
        labels: class names (default ADE20K's 150, else "class i").

    Example:
        >>> data = export_segmenter(model, precision="int8")  # doctest: +SKIP
    """
    if precision not in PRECISIONS or target not in TARGETS:
        raise ExportError(f"precision {precision!r} / target {target!r}: unknown")
    if target == "edgetpu":
        raise ExportError("--target edgetpu: segmenters export for cpu and gpu so far")
    model = with_target_layout(model, target) if model.deploy else reparameterize(model, target)
    converter = tf.lite.TFLiteConverter.from_concrete_functions([_network_function(model)])
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if precision == "fp16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif precision == "dynamic":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    elif precision == "int8":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = _calibration(model, calibration)
        converter.inference_input_type = tf.uint8
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Statistics for quantized inputs")
        model_bytes = (
            convert_for_cpu(converter, precision) if target == "cpu" else converter.convert()
        )
    check_mobile_graph(model_bytes, f"{model.name} ({precision})")
    names = labels_or_numbers(model.num_classes) if labels is None else list(labels)
    height, width = model.image_shape[:2]
    model_bytes = add_segmenter_metadata(
        model_bytes,
        names,
        name=f"{model.name} {precision} ({target})",
        description=f"Semantic FPN-LSNet segmenter, {width}x{height}, {len(names)} classes, "
        f"exported by lsnet-keras for {target}.",
    )
    return _written(model_bytes, output, overwrite)
