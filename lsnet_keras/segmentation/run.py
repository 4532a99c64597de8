"""`lsnet segment`'s work: a `.keras` or `.tflite` Semantic FPN segmenter over image files,
any size.

Each image is stretched to the model's input (bilinear, as MediaPipe's ImageSegmenter does), its
logits (1/8 of the input) are resized bilinearly to the image's own size (align_corners False,
as MMSegmentation's `rescale`) and the argmax taken: a class map of the original image. A
`.tflite` (`lsnet export` of a segmenter) takes the pixels as they are (its normalization is
inside the graph) and goes through the same resize and argmax.

Example:
    >>> from lsnet_keras.segmentation.run import open_segmenter
    >>> open_segmenter("model.onnx")
    Traceback (most recent call last):
    ...
    lsnet_keras.errors.LSNetError: model.onnx: expected a .keras or .tflite segmenter
"""

import numpy as np
from PIL import Image

from lsnet_keras.config import MMDET_MEAN, MMDET_STD
from lsnet_keras.errors import LSNetError
from lsnet_keras.preprocess import load_image
from lsnet_keras.segmentation.ade20k import ade20k_palette, labels_or_numbers

# MMSegmentation's `show_result` draws the class colors over the image at this opacity.
OVERLAY_OPACITY = 0.5


class KerasSegmenter:
    """A `.keras` Semantic FPN-LSNet: pixels in, class map of the same size out."""

    def __init__(self, path):
        from lsnet_keras.model.loading import load_keras_model

        self.model = load_keras_model(path)
        if getattr(self.model, "task", None) != "segment":
            raise LSNetError(
                f"{path}: {self.model.name} is not a segmenter (convert a Semantic FPN "
                "checkpoint with lsnet convert)"
            )
        self.height, self.width = self.model.image_shape[:2]
        self.names = labels_or_numbers(self.model.num_classes)

    def segment(self, image):
        """(h, w) class indices of a PIL RGB image of any size (h, w)."""
        stretched = image.resize((self.width, self.height), Image.BILINEAR)
        pixels = np.asarray(stretched, "float32")
        normalized = (pixels - np.float32(MMDET_MEAN)) / np.float32(MMDET_STD)
        return self.model.segment(normalized[None], (image.height, image.width))[0]


class TFLiteSegmenter:
    """A `.tflite` segmenter (`export_segmenter`): pixels in, class map of the same size out.

    Example:
        >>> TFLiteSegmenter("missing.tflite")
        Traceback (most recent call last):
        ...
        lsnet_keras.errors.LSNetError: missing.tflite: model file not found
    """

    def __init__(self, path, num_threads=None):
        from lsnet_keras.litert.runtime import open_interpreter

        _, self.interpreter = open_interpreter(path, num_threads)
        inputs = self.interpreter.get_input_details()
        outputs = self.interpreter.get_output_details()
        shapes = [[int(n) for n in d["shape"]] for d in (*inputs, *outputs)]
        image = shapes[0] if len(inputs) == 1 else []
        logits = shapes[-1] if len(outputs) == 1 else []
        rgb = len(image) == 4 and image[0] == 1 and image[3] == 3
        float_logits = len(logits) == 4 and np.dtype(outputs[-1]["dtype"]) == np.float32
        if not (rgb and float_logits):
            raise LSNetError(
                f"{path}: not a segmenter (expected one [1, H, W, 3] image input and one float32 "
                f"[1, h, w, classes] logits output, got {shapes}; export one with lsnet export "
                "SEGMENTER.keras)"
            )
        self.input, self.output = inputs[0], outputs[0]
        self.height, self.width = shapes[0][1:3]
        self.names = labels_or_numbers(logits[3])

    def segment(self, image):
        """(h, w) class indices of a PIL RGB image of any size (h, w)."""
        from lsnet_keras.model.semantic_fpn import class_map

        stretched = image.resize((self.width, self.height), Image.BILINEAR)
        pixels = np.asarray(stretched)[None].astype(self.input["dtype"])
        self.interpreter.set_tensor(self.input["index"], pixels)
        self.interpreter.invoke()
        logits = self.interpreter.get_tensor(self.output["index"])
        return class_map(logits, (image.height, image.width))[0]


def open_segmenter(path):
    """The segmenter of a `.keras` or `.tflite` file (one-line LSNetError otherwise)."""
    if str(path).endswith(".keras"):
        return KerasSegmenter(path)
    if str(path).endswith(".tflite"):
        return TFLiteSegmenter(path)
    raise LSNetError(f"{path}: expected a .keras or .tflite segmenter")


def segment_file(segmenter, image_path):
    """(PIL image, class map (h, w) uint8 or uint16, record) of one image file; the record
    names the classes covering the most pixels: {"image", "size": [w, h], "classes":
    [{"label", "name", "share"}, ...]} (shares of the image, largest first, at least 1%).

    Example:
        >>> segmenter = open_segmenter("seg.keras")  # doctest: +SKIP
        >>> image, classes, record = segment_file(segmenter, "street.jpg")  # doctest: +SKIP
    """
    image = load_image(image_path)
    classes = segmenter.segment(image)
    counts = np.bincount(classes.ravel(), minlength=len(segmenter.names))
    order = np.argsort(-counts, kind="stable")
    shares = [
        {"label": int(i), "name": segmenter.names[i], "share": round(counts[i] / classes.size, 4)}
        for i in order
        if counts[i] >= 0.01 * classes.size
    ]
    dtype = np.uint8 if len(segmenter.names) <= 256 else np.uint16
    record = {"image": str(image_path), "size": [image.width, image.height], "classes": shares}
    return image, classes.astype(dtype), record


def overlay(image, classes, palette=None, opacity=OVERLAY_OPACITY):
    """The image with each pixel's class color blended over it (ADE20K's palette).

    Example:
        >>> picture = overlay(Image.new("RGB", (4, 2)), np.zeros((2, 4), np.uint8))
        >>> picture.getpixel((0, 0))
        (60, 60, 60)
    """
    palette = ade20k_palette() if palette is None else palette
    colors = palette[np.asarray(classes) % len(palette)].astype("float32")
    blended = (1 - opacity) * np.asarray(image, "float32") + opacity * colors
    return Image.fromarray(np.round(blended).astype(np.uint8))


def class_map_image(classes):
    """The class map as a grayscale PNG-ready image: pixel value = class index (0 = wall).

    Example:
        >>> class_map_image(np.array([[0, 149]], np.uint8)).mode
        'L'
    """
    classes = np.asarray(classes)
    return Image.fromarray(classes, "L" if classes.dtype == np.uint8 else "I;16")
