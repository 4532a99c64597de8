"""`lsnet detect`'s work: a `.keras` or `.tflite` detector over image files, any size.

Each image is letterboxed to the model's input (`letterbox`), detected, and its boxes mapped
back to the image's pixels. A `.tflite` model runs without TensorFlow.

Example:
    >>> from lsnet_keras.detection.run import open_detector
    >>> open_detector("classifier.tflite")  # doctest: +SKIP
    Traceback (most recent call last):
    ...
    lsnet_keras.errors.LSNetError: classifier.tflite: not a detector (...)
"""

import numpy as np

from lsnet_keras.config import MMDET_MEAN, MMDET_STD
from lsnet_keras.detection.coco import COCO_CLASSES, class_names
from lsnet_keras.detection.letterbox import boxes_to_original, letterbox
from lsnet_keras.detection.postprocess import MMDET_TEST
from lsnet_keras.errors import LSNetError
from lsnet_keras.preprocess import load_image


class KerasDetector:
    """A `.keras` RetinaNet-LSNet behind the interface of `TFLiteDetector`."""

    def __init__(self, path):
        from lsnet_keras.model.loading import load_keras_model

        self.model = load_keras_model(path)
        if getattr(self.model, "task", None) != "detect":
            raise LSNetError(
                f"{path}: a {self.model.name} classifier, not a detector (convert a RetinaNet "
                "checkpoint with lsnet convert)"
            )
        self.height, self.width = self.model.image_shape[:2]
        self.names = class_names(self.model.num_classes)

    @classmethod
    def from_model(cls, model, names=None):
        """A detector around a RetinaNet-LSNet in memory (`names`: its class names).

        Example:
            >>> import lsnet_keras
            >>> detector = KerasDetector.from_model(lsnet_keras.lsnet_t_retinanet(
            ...     num_classes=2, input_shape=64), names=["cat", "dog"])
            >>> detector.height, detector.names
            (64, ['cat', 'dog'])
        """
        detector = cls.__new__(cls)
        detector.model = model
        detector.height, detector.width = model.image_shape[:2]
        detector.names = list(names) if names else class_names(model.num_classes)
        return detector

    def detect(self, pixels, score_threshold=MMDET_TEST.score_threshold, content=None):
        """Detections of (H, W, 3) pixels 0..255 (MMDetection's post-processing, its score
        threshold `score_threshold`), boxes clipped to `content` (h, w)."""
        normalized = (np.asarray(pixels, "float32") - np.float32(MMDET_MEAN)) / np.float32(
            MMDET_STD
        )
        settings = MMDET_TEST._replace(score_threshold=score_threshold)
        sizes = None if content is None else [content]
        return self.model.detect(normalized[None], settings, image_sizes=sizes)[0]


def open_detector(path, num_threads=None):
    """The detector of a `.keras` or `.tflite` file (one-line LSNetError otherwise).

    Example:
        >>> open_detector("model.onnx")
        Traceback (most recent call last):
        ...
        lsnet_keras.errors.LSNetError: model.onnx: expected a .keras or .tflite detector
    """
    if str(path).endswith(".tflite"):
        from lsnet_keras.litert.detector_metadata import packed_labels
        from lsnet_keras.litert.detector_runtime import TFLiteDetector

        detector = TFLiteDetector(path, num_threads=num_threads)
        detector.names = packed_labels(path) or class_names(80)
        return detector
    if str(path).endswith(".keras"):
        return KerasDetector(path)
    raise LSNetError(f"{path}: expected a .keras or .tflite detector")


def detect_file(detector, image_path, score_threshold):
    """(PIL image, JSON record) of one image file: boxes in its own pixels.

    The record is {"image": path, "detections": [{"box": [x1, y1, x2, y2], "score", "label"
    (0-based class index), "category_id" (COCO's id, None for other classes), "name"}, ...]}.

    Example:
        >>> detector = open_detector("det.tflite")  # doctest: +SKIP
        >>> image, record = detect_file(detector, "cat.jpg", 0.3)  # doctest: +SKIP
    """
    image = load_image(image_path)
    fitted = letterbox(image, detector.height, detector.width)
    found = detector.detect(fitted.pixels, score_threshold, content=fitted.content)
    boxes = boxes_to_original(found.boxes, fitted)
    coco = len(detector.names) == len(COCO_CLASSES)
    detections = []
    for box, score, label in zip(boxes, found.scores, found.labels):
        label = int(label)
        if not 0 <= label < len(detector.names):
            raise LSNetError(
                f"{image_path}: the model gave class {label}, it has {len(detector.names)}"
            )
        detections.append(
            {
                "box": [round(float(v), 2) for v in box],
                "score": round(float(score), 5),
                "label": label,
                "category_id": COCO_CLASSES[label][0] if coco else None,
                "name": detector.names[label],
            }
        )
    return image, {"image": str(image_path), "detections": detections}
