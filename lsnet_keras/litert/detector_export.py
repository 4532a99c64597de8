"""RetinaNet-LSNet -> `.tflite` ending in TFLite's standard detection post-processing.

The graph takes RGB pixels (1, H, W, 3), uint8 for int8 models and float32 0..255 for the others
(no CAST, which XNNPACK does not take), and normalizes them inside (MMDetection's mean and std:
MediaPipe refuses per-channel normalization metadata), runs the deployed network, and
hands its outputs to `TFLite_Detection_PostProcess`, the one custom op that LiteRT,
tflite-runtime and MediaPipe register by default (as in every SSD model MediaPipe ships):

- class scores: the head's logits through a sigmoid, (1, anchors, classes), anchor-major (the
  anchor order of `lsnet_keras.detection.anchors`, levels in order);
- box encodings: MMDetection's (dx, dy, dw, dh) reordered to the op's (dy, dx, dh, dw), scales 1,
  with dw / dh clamped at log(1000 / 16) before the op, as MMDetection's decoder clamps them
  (the op does not);
- anchors: (y center, x center, h, w) normalized by the input size, so boxes come out as ratios.

The op runs regular (per-class) NMS at IoU 0.5 on the scores above 0.05, at most 100 per class
and 100 in all. Unlike MMDetection it neither takes only the top 1000 pairs per level before NMS
nor clips boxes to the image before NMS: boxes may extend past the image (clip them when
drawing). The four outputs are boxes (ymin, xmin, ymax, xmax ratios), classes, scores, count,
with the metadata MediaPipe Tasks' ObjectDetector reads (`detector_metadata`).

Example:
    >>> import lsnet_keras
    >>> from lsnet_keras.litert.detector_export import export_detector
    >>> data = export_detector(lsnet_keras.lsnet_t_retinanet(input_shape=128))  # doctest: +SKIP
"""

import tempfile
import warnings

import numpy as np
import tensorflow as tf
from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

from lsnet_keras.config import MMDET_MEAN, MMDET_STD, PRECISIONS, TARGETS
from lsnet_keras.detection.anchors import RETINANET, level_anchors
from lsnet_keras.detection.coco import class_names
from lsnet_keras.detection.postprocess import MAX_LOG_RATIO, MMDET_TEST
from lsnet_keras.io import atomic_path
from lsnet_keras.litert.calibration import builtin_images
from lsnet_keras.litert.detector_metadata import add_detector_metadata, put_detections_last
from lsnet_keras.litert.export import ExportError, check_mobile_graph, convert_for_cpu
from lsnet_keras.model.reparam import reparameterize, with_target_layout

POSTPROCESS_OP = "TFLite_Detection_PostProcess"


def normalized_anchors(model):
    """(anchors, 4) y center, x center, height, width of every anchor, divided by the input size.

    Example:
        >>> import lsnet_keras
        >>> normalized_anchors(lsnet_keras.lsnet_t_retinanet(input_shape=64)).shape
        (765, 4)
    """
    height, width = model.image_shape[:2]
    anchors = np.concatenate(
        [level_anchors(RETINANET, i, h, w) for i, (h, w) in enumerate(model.level_sizes())]
    ).astype("float64")
    centers = (anchors[:, :2] + anchors[:, 2:]) / 2
    sizes = anchors[:, 2:] - anchors[:, :2]
    scale = np.array([height, width], "float64")
    return np.concatenate([centers[:, ::-1] / scale, sizes[:, ::-1] / scale], -1).astype("float32")


def _postprocess_signature(num_classes, settings):
    """The `experimental_implements` text the converter turns into the post-processing op."""
    attributes = [
        ("max_detections", "i", settings.max_detections),
        ("max_classes_per_detection", "i", 1),
        ("detections_per_class", "i", settings.max_detections),
        ("use_regular_nms", "b", "true"),
        ("nms_score_threshold", "f", settings.score_threshold),
        ("nms_iou_threshold", "f", settings.iou_threshold),
        ("y_scale", "f", 1.0),
        ("x_scale", "f", 1.0),
        ("h_scale", "f", 1.0),
        ("w_scale", "f", 1.0),
        ("num_classes", "i", num_classes),
    ]
    fields = [
        f'attr {{ key: "{key}" value {{ {kind}: {value} }} }}' for key, kind, value in attributes
    ]
    return " ".join([f'name: "{POSTPROCESS_OP}"', *fields])


def _network_function(model, pixel_dtype):
    """Frozen pixels (uint8 for int8 models, else float32 0..255) -> (box encodings, class
    scores), batch 1."""
    height, width = model.image_shape[:2]
    mean = tf.constant(MMDET_MEAN, tf.float32)
    inv_std = tf.constant(1.0 / np.array(MMDET_STD, "float32"))
    classes = model.num_classes

    def network(image):
        outputs = model((tf.cast(image, tf.float32) - mean) * inv_std, training=False)
        logits, deltas = [], []
        for level in range(len(RETINANET.strides)):
            logits.append(tf.reshape(outputs[f"cls_score_{level}"], (1, -1, classes)))
            deltas.append(tf.reshape(outputs[f"bbox_pred_{level}"], (1, -1, 4)))
        scores = tf.sigmoid(tf.concat(logits, axis=1))
        deltas = tf.concat(deltas, axis=1)
        with tf.name_scope("box_encodings"):  # kept float in int8 (xnnpack.FLOAT_SCOPES)
            dx, dy, dw, dh = (deltas[..., k : k + 1] for k in range(4))

            def clamp(log_ratio):
                return tf.clip_by_value(log_ratio, -MAX_LOG_RATIO, MAX_LOG_RATIO)

            encodings = tf.concat([dy, dx, clamp(dh), clamp(dw)], axis=-1)
        return encodings, scores

    spec = tf.TensorSpec((1, height, width, 3), pixel_dtype, name="image")
    concrete = tf.function(network, input_signature=[spec]).get_concrete_function()
    return convert_variables_to_constants_v2(concrete), spec


def _saved_detector(model, pixel_dtype, settings, folder):
    """A SavedModel of network + post-processing (the converter fuses the op from it)."""
    network, spec = _network_function(model, pixel_dtype)
    anchors = tf.constant(normalized_anchors(model))

    @tf.function(experimental_implements=_postprocess_signature(model.num_classes, settings))
    def postprocess(encodings, scores, anchors):  # replaced by the op; the body is never run
        zero = tf.constant(0.0)
        return zero, zero, zero, zero

    def detect(image):
        encodings, scores = network(image)
        return postprocess(encodings, scores, anchors)

    module = tf.Module()
    module.detect = tf.function(detect, input_signature=[spec])
    tf.saved_model.save(module, folder, signatures=module.detect.get_concrete_function())


def _calibration(model, images):
    """Calibration batches of float pixels, with a black and a white frame first so the uint8
    input is quantized as the pixels themselves (scale 1, zero point 0)."""
    height, width = model.image_shape[:2]
    if images is None:
        images = builtin_images(32, max(height, width), seed=0)[:, :height, :width]
    images = np.concatenate([np.zeros_like(images[:1]), np.full_like(images[:1], 255), images])

    def generate():
        for image in images:
            yield [image[None].astype("float32")]

    return generate


def export_detector(
    model,
    output=None,
    precision="fp32",
    target="cpu",
    calibration=None,
    labels=None,
    settings=MMDET_TEST,
    network_only=False,
    overwrite=False,
):
    """Convert a RetinaNet-LSNet to a `.tflite` detector MediaPipe's ObjectDetector runs as is.

    Args:
        model: a training-form or reparameterized `LSNetRetinaNet`.
        precision: fp32, fp16, dynamic or int8 (post-training, calibrated on `calibration`).
        target: cpu (XNNPACK: the network in one partition), gpu (fp16) or edgetpu (int8).
        calibration: uint8 RGB images (N, H, W, 3) at the model's size for int8; default a
            built-in generated set (real images from the target domain calibrate better).
        labels: class names (default COCO's 80, else "class i").
        settings: the post-processing's thresholds (default MMDetection's test_cfg).
        network_only: stop before the post-processing op: outputs box encodings (1, N, 4:
            dy, dx, dh, dw, clamped) and class scores (1, N, classes) for the anchors of
            `normalized_anchors`, no metadata (for one's own NMS; and the graph the GPU and
            Edge TPU checks hold to the classifier's rules).

    Example:
        >>> data = export_detector(model, precision="int8")  # doctest: +SKIP
    """
    if precision not in PRECISIONS or target not in TARGETS:
        raise ExportError(f"precision {precision!r} / target {target!r}: unknown")
    if target == "edgetpu" and precision != "int8":
        raise ExportError("--target edgetpu runs only full-integer models: use --precision int8")
    model = with_target_layout(model, target) if model.deploy else reparameterize(model, target)
    pixel_dtype = tf.float32  # int8: quantized to a uint8 input holding the pixels as they are
    with tempfile.TemporaryDirectory(prefix="lsnet-detector-") as folder:
        if network_only:
            network, _ = _network_function(model, pixel_dtype)
            converter = tf.lite.TFLiteConverter.from_concrete_functions([network])
        else:
            _saved_detector(model, pixel_dtype, settings, folder)
            converter = tf.lite.TFLiteConverter.from_saved_model(folder)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        converter.allow_custom_ops = True  # the post-processing op only (checked below)
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
            if target == "cpu":
                model_bytes = convert_for_cpu(converter, precision)
            else:
                model_bytes = converter.convert()
    if network_only:
        check_mobile_graph(model_bytes, f"{model.name} ({precision}, network only)")
        return _written(model_bytes, output, overwrite)
    model_bytes = put_detections_last(model_bytes)
    check_mobile_graph(model_bytes, f"{model.name} ({precision})", allowed_custom=(POSTPROCESS_OP,))
    names = class_names(model.num_classes) if labels is None else list(labels)
    height, width = model.image_shape[:2]
    model_bytes = add_detector_metadata(
        model_bytes,
        names,
        name=f"{model.name} {precision} ({target})",
        description=f"RetinaNet-LSNet object detector, {width}x{height}, {len(names)} classes, "
        f"exported by lsnet-keras for {target}.",
    )
    return _written(model_bytes, output, overwrite)


def _written(model_bytes, output, overwrite):
    if output is not None:
        with atomic_path(output, overwrite=overwrite) as tmp, open(tmp, "wb") as f:
            f.write(model_bytes)
    return model_bytes
