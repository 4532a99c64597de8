"""TFLite metadata for object detectors, as MediaPipe Tasks' ObjectDetector reads it.

A detector ending in `TFLite_Detection_PostProcess` has four outputs, in this order: boxes
(1, N, 4: ymin, xmin, ymax, xmax as ratios of the input), classes (1, N), scores (1, N) and the
count (1,). The metadata names them "location", "category", "score" and "number of
detections", groups the first three as "detection_result", describes the boxes
(BoundingBoxProperties: index [1, 0, 3, 2], BOUNDARIES, RATIO) and attaches the class names as
a TENSOR_VALUE_LABELS file on the classes; the image input is uint8 RGB pixels (mean 0, std 1:
the model normalizes inside). Written with `flatbuffers` like the classifier's metadata (see
`lsnet_keras.litert.metadata` for why not with a metadata writer library).

Example:
    >>> from lsnet_keras.litert.detector_metadata import add_detector_metadata
    >>> tagged = add_detector_metadata(tflite_bytes, ["person", "bicycle"])  # doctest: +SKIP
"""

import io
import zipfile

import flatbuffers
import numpy as np

from lsnet_keras.litert.metadata import (
    FEATURE,
    IMAGE,
    MIN_PARSER_VERSION,
    NORMALIZATION,
    RGB,
    MetadataError,
    _set_metadata_buffer,
    _table,
    _vector,
    schema,
)

BOUNDING_BOX = 3  # ContentProperties union
TENSOR_VALUE_LABELS = 3  # AssociatedFileType
BOUNDARIES, RATIO = 1, 0  # BoundingBoxType, CoordinateType
# The op's box layout (ymin, xmin, ymax, xmax) as positions of left, top, right, bottom.
BOX_INDEX = (1, 0, 3, 2)
OUTPUT_NAMES = ("location", "category", "score", "number of detections")
POSTPROCESS_CODE = b"TFLite_Detection_PostProcess"
# Labels files larger than this are not read (a few thousand names take a few KB).
MAX_LABELS_BYTES = 1 << 20


def _unpack(tflite_bytes):
    model = schema.ModelT.InitFromPackedBuf(bytearray(tflite_bytes), 0)
    if len(model.subgraphs) != 1:
        raise MetadataError(f"a detector has one subgraph, the model has {len(model.subgraphs)}")
    return model


def _pack(model, size_hint):
    builder = flatbuffers.Builder(size_hint + 4096)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def put_detections_last(tflite_bytes):
    """The model with its outputs set to the post-processing op's four, in the op's order.

    The converter orders a SavedModel's outputs its own way; MediaPipe and the SSD convention
    want boxes, classes, scores, count.

    Example:
        >>> ordered = put_detections_last(tflite_bytes)  # doctest: +SKIP
    """
    model = _unpack(tflite_bytes)
    codes = [i for i, code in enumerate(model.operatorCodes) if code.customCode == POSTPROCESS_CODE]
    graph = model.subgraphs[0]
    ops = [op for op in graph.operators if op.opcodeIndex in codes]
    if len(ops) != 1:
        raise MetadataError(f"expected one {POSTPROCESS_CODE.decode()} op, found {len(ops)}")
    graph.outputs = np.asarray(ops[0].outputs, dtype=np.int32)
    return _pack(model, len(tflite_bytes))


def pixel_input(b, image_shape):
    """The metadata of a (1, H, W, 3) RGB pixel input normalized inside the graph (mean 0,
    std 1, as MediaPipe accepts: it refuses per-channel values), built in `b`."""
    normalization = _table(
        b,
        [
            (0, b.CreateNumpyVector(np.asarray((0.0,), np.float32))),
            (1, b.CreateNumpyVector(np.asarray((1.0,), np.float32))),
        ],
    )
    unit = _table(b, [(1, normalization)], [(0, NORMALIZATION)])
    image_content = _table(b, [(1, _table(b, [], [(0, RGB)]))], [(0, IMAGE)])
    stats = _table(
        b,
        [
            (0, b.CreateNumpyVector(np.asarray((255.0,), np.float32))),
            (1, b.CreateNumpyVector(np.asarray((0.0,), np.float32))),
        ],
    )
    height, width = image_shape
    description = f"Image {height}x{width}, RGB pixels 0..255, normalized inside."
    return _table(
        b,
        [
            (0, b.CreateString("image")),
            (1, b.CreateString(description)),
            (3, image_content),
            (4, _vector(b, [unit])),
            (5, stats),
        ],
    )


def _metadata_flatbuffer(name, description, labels_file, image_shape):
    b = flatbuffers.Builder(1024)

    def text(value):
        return b.CreateString(value)

    image = pixel_input(b, image_shape)

    def value_range():  # ValueRange min = max = 2, the dimension the content is on, as writers do
        b.StartObject(2)
        b.PrependInt32Slot(0, 2, 0)
        b.PrependInt32Slot(1, 2, 0)
        return b.EndObject()

    index = b.CreateNumpyVector(np.asarray(BOX_INDEX, np.uint32))
    box_properties = _table(b, [(0, index)], [(1, BOUNDARIES), (2, RATIO)])
    location = _table(
        b,
        [
            (0, text(OUTPUT_NAMES[0])),
            (1, text("Boxes: ymin, xmin, ymax, xmax as ratios of the input (may pass its edge).")),
            (3, _table(b, [(1, box_properties), (2, value_range())], [(0, BOUNDING_BOX)])),
        ],
    )
    labels = _table(
        b,
        [(0, text(labels_file)), (1, text("Class names, one per line, in class order."))],
        [(2, TENSOR_VALUE_LABELS)],
    )
    category = _table(
        b,
        [
            (0, text(OUTPUT_NAMES[1])),
            (1, text(f"Class index of each detection (names in {labels_file}).")),
            (3, _table(b, [(1, _table(b, [])), (2, value_range())], [(0, FEATURE)])),
            (6, _vector(b, [labels])),
        ],
    )
    score = _table(
        b,
        [
            (0, text(OUTPUT_NAMES[2])),
            (1, text("Score (sigmoid probability) of each detection, best first.")),
            (3, _table(b, [(1, _table(b, [])), (2, value_range())], [(0, FEATURE)])),
        ],
    )
    count = _table(b, [(0, text(OUTPUT_NAMES[3])), (1, text("How many detections are valid."))])
    group_names = _vector(b, [text(n) for n in OUTPUT_NAMES[:3]])
    group = _table(b, [(0, text("detection_result")), (1, group_names)])
    graph = _table(
        b,
        [
            (2, _vector(b, [image])),
            (3, _vector(b, [location, category, score, count])),
            (8, _vector(b, [group])),
        ],
    )
    root = _table(
        b,
        [
            (0, text(name)),
            (1, text(description)),
            (3, _vector(b, [graph])),
            (7, text(MIN_PARSER_VERSION)),
        ],
    )
    b.Finish(root, file_identifier=b"M001")
    return bytes(b.Output())


def add_detector_metadata(
    tflite_bytes, labels, name="LSNet detector", description="", labels_file="labels.txt"
):
    """The detector with ObjectDetector metadata and `labels` packed as `labels_file`.

    The model must take a (1, H, W, 3) uint8 image and end in the post-processing op's four
    outputs (see `put_detections_last`).

    Example:
        >>> tagged = add_detector_metadata(tflite_bytes, ["cat", "dog"])  # doctest: +SKIP
    """
    model = _unpack(tflite_bytes)
    graph = model.subgraphs[0]
    image = graph.tensors[graph.inputs[0]]
    if len(graph.inputs) != 1 or len(image.shape) != 4 or image.shape[3] != 3:
        raise MetadataError(f"a detector takes one (1, H, W, 3) image, got {list(image.shape)}")
    if image.type not in (schema.TensorType.UINT8, schema.TensorType.FLOAT32):
        raise MetadataError("a detector for MediaPipe takes uint8 or float32 pixels")
    if len(graph.outputs) != 4:  # the op sizes them when it runs: their shapes are not stored
        raise MetadataError(
            f"expected boxes, classes, scores and count outputs, got {len(graph.outputs)}"
        )
    if any("\n" in label or "\r" in label for label in labels):
        raise MetadataError("a label cannot contain a line break")
    data = _metadata_flatbuffer(name, description, labels_file, tuple(image.shape[1:3]))
    _set_metadata_buffer(model, data)
    out = io.BytesIO(_pack(model, len(tflite_bytes)))
    out.seek(0, io.SEEK_END)
    with zipfile.ZipFile(out, "a", compression=zipfile.ZIP_STORED) as archive:
        archive.writestr(labels_file, "\n".join(labels) + "\n")
    return out.getvalue()


def packed_labels(path, labels_file="labels.txt"):
    """The class names packed in a `.tflite` file by `add_detector_metadata`, or None.

    Example:
        >>> packed_labels("no_metadata.tflite") is None  # doctest: +SKIP
        True
    """
    try:
        with zipfile.ZipFile(path) as archive:
            info = archive.getinfo(labels_file)
            if info.file_size > MAX_LABELS_BYTES:
                return None
            return archive.read(info).decode("utf-8").splitlines()
    except (zipfile.BadZipFile, KeyError, OSError, UnicodeDecodeError):
        return None
