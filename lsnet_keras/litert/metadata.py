"""TFLite model metadata for image classifiers, the way MediaPipe Tasks and the TFLite Task Library
read it: input normalization, the labels file, names and descriptions.

The metadata is a flatbuffer of the TFLite metadata schema (`metadata_schema.fbs`, identifier
M001) kept in the model buffer named TFLITE_METADATA; the labels file is appended to the model as
an uncompressed zip archive, where both libraries look for associated files. The few tables a
classifier needs are written here with `flatbuffers` (field ids of `metadata_schema.fbs` below):
tflite-support's writers pin protobuf<4 (TensorFlow 2.21 needs protobuf>=6.31), MediaPipe's
writers fail to import from its wheels since 0.10.30 (their native module is not shipped), and
the only compatible wheel carrying the generated classes (mediapipe 1.2.3) would pull OpenCV and
a 130 MB library into every export. `tests/test_metadata.py` checks the result with
tflite-support's own parser and by running both libraries' `ImageClassifier` on it.

What those consumers accept (MediaPipe Tasks 1.2.3, Task Library 0.4.4):
- input uint8 or float32, output uint8 or float32 (int8 model I/O is refused);
- uint8 input receives raw 0..255 RGB pixels whatever the normalization says, so a uint8-input
  model normalizes inside (`--include-preprocessing`) and its metadata says mean 0, std 1;
- float32 input receives (pixel - mean) / std. MediaPipe refuses per-channel values ("Per-channel
  image normalization is not available"), so it cannot run the float32 ImageNet-normalized
  models; the Task Library applies per-channel values;
- scores are the output tensor as is (logits stay logits), dequantized for uint8; the Task
  Library drops scores below 0 unless the metadata sets a threshold, which is why a threshold
  keeping every score is written.

Example:
    >>> from lsnet_keras.litert.labels import imagenet_labels
    >>> from lsnet_keras.litert.metadata import add_classifier_metadata, read_metadata
    >>> tagged = add_classifier_metadata(tflite_bytes, imagenet_labels(),
    ...     mean=(123.675, 116.28, 103.53), std=(58.395, 57.12, 57.375),
    ...     name="LSNet-T", description="LSNet-T ImageNet-1k classifier")  # doctest: +SKIP
    >>> info = read_metadata(tagged)  # doctest: +SKIP
    >>> info["labels_file"], info["labels"][:2], info["std"]  # doctest: +SKIP
    ('labels.txt', ['tench', 'goldfish'], (58.395, 57.12, 57.375))
"""

import io
import warnings
import zipfile

import flatbuffers
import numpy as np
from flatbuffers.number_types import Float32Flags, Uint8Flags
from flatbuffers.table import Table

from lsnet_keras.errors import LSNetError

try:
    from ai_edge_litert import schema_py_generated as schema
except ImportError:  # TensorFlow ships the same generated module
    from tensorflow.lite.python import schema_py_generated as schema

METADATA_NAME = b"TFLITE_METADATA"
# A model metadata entry of our own (readers ignore names they do not know): `key=value` lines
# telling an app how to prepare images; the Android demo reads it (android_demo/core/GOLDEN.md).
PREPROCESSING_NAME = b"lsnet_preprocessing"
MIN_PARSER_VERSION = "1.0.0"  # every field written here exists in metadata schema 1.0.0
FEATURE, IMAGE = 1, 2  # ContentProperties union
NORMALIZATION, SCORE_THRESHOLDING = 1, 3  # ProcessUnitOptions union
RGB = 1  # ColorSpaceType
TENSOR_AXIS_LABELS = 2  # AssociatedFileType
COLOR_SPACES = {0: "UNKNOWN", 1: "RGB", 2: "GRAYSCALE"}
KEEP_ALL_SCORES = float(np.finfo(np.float32).min)


class MetadataError(LSNetError):
    """Metadata that does not fit the model, or a model without metadata."""


def add_classifier_metadata(
    tflite_bytes,
    labels,
    mean=None,
    std=None,
    name="LSNet",
    description="LSNet image classifier (ImageNet-1k).",
    *,
    version=None,
    author=None,
    license=None,
    input_description=None,
    output_description=None,
    labels_file="labels.txt",
    score_threshold=KEEP_ALL_SCORES,
    crop_fraction=None,
):
    """The model with classifier metadata and `labels` packed as `labels_file`.

    Args:
        tflite_bytes: a `.tflite` classifier, one input (1, H, W, 3) and one output (1, classes);
            metadata written before is replaced.
        labels: one name per class, in class-index order.
        mean, std: 1 or 3 values in 0..255 pixel units, the model input being
            (pixel - mean) / std. Required for float32 input; uint8 input is fed raw pixels,
            so it takes mean 0, std 1 (the default).
        score_threshold: consumers drop scores below it. The default keeps them all: logits
            can be negative, and without a threshold the Task Library drops scores below 0.
        crop_fraction: if given, the evaluation crop (crop side over resized shorter side,
            bicubic), stored as the entry PREPROCESSING_NAME.

    Example:
        >>> tagged = add_classifier_metadata(tflite_bytes, ["cat", "dog"], mean=(127.5,),
        ...                                  std=(127.5,), name="pets")  # doctest: +SKIP
    """
    model = schema.ModelT.InitFromPackedBuf(bytearray(tflite_bytes), 0)
    if len(model.subgraphs) != 1:
        raise MetadataError(f"a classifier has one subgraph, the model has {len(model.subgraphs)}")
    graph = model.subgraphs[0]
    if len(graph.inputs) != 1 or len(graph.outputs) != 1:
        raise MetadataError("a classifier has one input (the image) and one output (the scores)")
    image, scores = graph.tensors[graph.inputs[0]], graph.tensors[graph.outputs[0]]
    if len(image.shape) != 4 or image.shape[3] != 3:
        raise MetadataError(f"the input must be (1, H, W, 3) RGB, got {list(image.shape)}")
    if len(labels) != scores.shape[-1]:
        raise MetadataError(f"{len(labels)} labels for {scores.shape[-1]} output classes")
    if any("\n" in label or "\r" in label for label in labels):
        raise MetadataError("a label cannot contain a line break")
    mean, std = _normalization(image, mean, std)
    _warn_unsupported(image, scores)
    if image.type == schema.TensorType.UINT8:  # the value range goes into Stats, as writers do
        low, high, kind = (0.0,), (255.0,), "uint8 RGB pixels 0..255, normalized inside the model"
    else:
        low = tuple((0.0 - m) / s for m, s in zip(mean, std))
        high = tuple((255.0 - m) / s for m, s in zip(mean, std))
        kind = "RGB, (pixel - mean) / std with pixels in 0..255"
    fields = {
        "name": name,
        "description": description,
        "version": version,
        "author": author,
        "license": license,
        "input_description": input_description
        or f"Image {image.shape[1]}x{image.shape[2]}, {kind}.",
        "output_description": output_description
        or f"Scores (logits) of the {len(labels)} classes named in {labels_file}.",
        "labels_file": labels_file,
        "mean": mean,
        "std": std,
        "min": low,
        "max": high,
        "score_threshold": float(score_threshold),
    }
    _set_metadata_buffer(model, _metadata_flatbuffer(fields))
    if crop_fraction is not None:
        if not 0 < crop_fraction <= 1:
            raise MetadataError(f"crop fraction must be in (0, 1], got {crop_fraction}")
        text = f"crop_fraction={float(crop_fraction)!r}\nresample=bicubic\n"
        _set_metadata_buffer(model, text.encode(), PREPROCESSING_NAME)
    builder = flatbuffers.Builder(len(tflite_bytes) + 4096)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    out = io.BytesIO(builder.Output())
    out.seek(0, io.SEEK_END)
    with zipfile.ZipFile(out, "a", compression=zipfile.ZIP_STORED) as archive:
        archive.writestr(labels_file, "\n".join(labels) + "\n")
    return out.getvalue()


def read_metadata(tflite_bytes):
    """Name, descriptions, normalization and labels of a model written by `add_classifier_metadata`.

    Returns a dict: name, description, version, author, license, min_parser_version,
    input_name, input_description, color_space, mean, std, output_name, output_description,
    score_threshold, labels_file, labels (list of str), associated_files (names packed in
    the model) and crop_fraction (None without a PREPROCESSING_NAME entry).

    Example:
        >>> read_metadata(open("lsnet_t_int8.tflite", "rb").read())["mean"]  # doctest: +SKIP
        (0.0,)
    """
    if tflite_bytes[4:8] != b"TFL3":
        raise MetadataError("not a .tflite model (no TFL3 identifier)")
    data = _metadata_buffer(tflite_bytes)
    if data is None:
        raise MetadataError("the model has no TFLITE_METADATA")
    if data[4:8] != b"M001":
        raise MetadataError("TFLITE_METADATA is not a metadata flatbuffer (no M001 identifier)")
    root = _Fields(Table(data, flatbuffers.encode.Get(flatbuffers.packer.uoffset, data, 0)))
    graph = root.tables(3)[0]
    image, scores = graph.tables(2)[0], graph.tables(3)[0]
    units = [u.table(1) for u in image.tables(4) if u.scalar(0, Uint8Flags) == NORMALIZATION]
    content = image.table(3)
    props = content.table(1) if content and content.scalar(0, Uint8Flags) == IMAGE else None
    limits = [u.table(1) for u in scores.tables(4) if u.scalar(0, Uint8Flags) == SCORE_THRESHOLDING]
    names = [f.string(0) for f in scores.tables(6) if f.scalar(2, Uint8Flags) == TENSOR_AXIS_LABELS]
    packed = _packed_files(tflite_bytes)
    labels_file = names[0] if names else None
    labels = packed[labels_file].decode("utf-8").splitlines() if labels_file in packed else None
    return {
        "name": root.string(0),
        "description": root.string(1),
        "version": root.string(2),
        "author": root.string(4),
        "license": root.string(5),
        "min_parser_version": root.string(7),
        "input_name": image.string(0),
        "input_description": image.string(1),
        "color_space": COLOR_SPACES.get(props.scalar(0, Uint8Flags)) if props else None,
        "mean": units[0].floats(0) if units else None,
        "std": units[0].floats(1) if units else None,
        "output_name": scores.string(0),
        "output_description": scores.string(1),
        "score_threshold": limits[0].scalar(0, Float32Flags) if limits else None,
        "labels_file": labels_file,
        "labels": labels,
        "associated_files": sorted(packed),
        "crop_fraction": _crop_fraction(_metadata_buffer(tflite_bytes, PREPROCESSING_NAME)),
    }


def _normalization(image, mean, std):
    """(mean, std) as float tuples, checked against the input type."""
    if image.type == schema.TensorType.UINT8:
        mean, std = (0.0,) if mean is None else mean, (1.0,) if std is None else std
        if any(m != 0 for m in mean) or any(s != 1 for s in std):
            raise MetadataError(
                "uint8 input is fed raw 0..255 pixels (normalization is ignored by MediaPipe and "
                "the Task Library): normalize inside the model and use mean 0, std 1"
            )
    elif mean is None or std is None:
        raise MetadataError("a float input needs the mean and std it was normalized with")
    mean, std = tuple(float(m) for m in mean), tuple(float(s) for s in std)
    if len(mean) != len(std) or len(mean) not in (1, 3):
        raise MetadataError(f"mean and std need 1 or 3 values each, got {len(mean)}, {len(std)}")
    if any(s == 0 for s in std):
        raise MetadataError("std cannot be 0")
    return mean, std


def _warn_unsupported(image, scores):
    """Warn about I/O that MediaPipe Tasks and the TFLite Task Library refuse or misread."""
    q = image.quantization
    scales = () if q is None or q.scale is None else q.scale
    if image.type == schema.TensorType.UINT8 and len(scales):
        scale, zero = float(scales[0]), int(q.zeroPoint[0])
        if abs(scale - 1.0) > 0.01 or zero != 0:
            warnings.warn(
                f"uint8 input quantized with scale {scale:.4g}, zero point {zero}: consumers feed "
                "raw pixels, so the model sees scale * (pixel - zero point)",
                stacklevel=3,
            )
    supported = (schema.TensorType.FLOAT32, schema.TensorType.UINT8)
    if image.type not in supported or scores.type not in supported:
        warnings.warn(
            "MediaPipe Tasks and the TFLite Task Library take only uint8/float32 input and "
            "output: this model's metadata is for other readers",
            stacklevel=3,
        )


# The metadata_schema.fbs field ids written and read here (a union takes two: type, value):
#   ModelMetadata: name 0, description 1, version 2, subgraph_metadata 3, author 4, license 5,
#     min_parser_version 7. SubGraphMetadata: input_tensor_metadata 2, output_tensor_metadata 3.
#   TensorMetadata: name 0, description 1, content 3, process_units 4, stats 5, associated_files 6.
#   Content: content_properties 0-1. ImageProperties: color_space 0. ProcessUnit: options 0-1.
#   NormalizationOptions: mean 0, std 1. ScoreThresholdingOptions: global_score_threshold 0.
#   Stats: max 0, min 1. AssociatedFile: name 0, description 1, type 2.


def _metadata_flatbuffer(m):
    """The ModelMetadata flatbuffer: one subgraph, an image input, a labelled score output."""
    b = flatbuffers.Builder(1024)

    def text(value):
        return b.CreateString(value) if value else None

    def floats(values):
        return b.CreateNumpyVector(np.asarray(values, np.float32))

    normalization = _table(b, [(0, floats(m["mean"])), (1, floats(m["std"]))])
    unit = _table(b, [(1, normalization)], [(0, NORMALIZATION)])
    threshold = _table(b, [], [(0, m["score_threshold"])])
    limit = _table(b, [(1, threshold)], [(0, SCORE_THRESHOLDING)])
    image_content = _table(b, [(1, _table(b, [], [(0, RGB)]))], [(0, IMAGE)])
    stats = _table(b, [(0, floats(m["max"])), (1, floats(m["min"]))])
    image = _table(
        b,
        [
            (0, text("image")),
            (1, text(m["input_description"])),
            (3, image_content),
            (4, _vector(b, [unit])),
            (5, stats),
        ],
    )
    labels = _table(
        b,
        [(0, text(m["labels_file"])), (1, text("Class names, one per line, in class order."))],
        [(2, TENSOR_AXIS_LABELS)],
    )
    score_content = _table(b, [(1, _table(b, []))], [(0, FEATURE)])
    scores = _table(
        b,
        [
            (0, text("logits")),
            (1, text(m["output_description"])),
            (3, score_content),
            (4, _vector(b, [limit])),
            (6, _vector(b, [labels])),
        ],
    )
    graph = _table(b, [(2, _vector(b, [image])), (3, _vector(b, [scores]))])
    fields = [(0, text(m["name"])), (1, text(m["description"])), (2, text(m["version"]))]
    fields += [(3, _vector(b, [graph])), (4, text(m["author"])), (5, text(m["license"]))]
    root = _table(b, fields + [(7, text(MIN_PARSER_VERSION))])
    b.Finish(root, file_identifier=b"M001")
    return bytes(b.Output())


def _table(b, refs, scalars=()):
    """A table from (field id, offset) pairs, None offsets left out, and (field id, scalar)
    pairs: an int is a byte (enum), a float a float32."""
    refs = [(i, ref) for i, ref in refs if ref is not None]
    b.StartObject(1 + max((i for i, _ in [*refs, *scalars]), default=-1))
    for i, value in scalars:
        if isinstance(value, float):
            b.PrependFloat32Slot(i, value, 0.0)
        else:
            b.PrependUint8Slot(i, value, 0)
    for i, ref in refs:
        b.PrependUOffsetTRelativeSlot(i, ref, 0)
    return b.EndObject()


def _vector(b, refs):
    b.StartVector(4, len(refs), 4)
    for ref in reversed(refs):
        b.PrependUOffsetTRelative(ref)
    return b.EndVector()


class _Fields:
    """Reads the fields of one flatbuffer table by field id."""

    def __init__(self, table):
        self.t = table

    def _at(self, i):
        return self.t.Offset(4 + 2 * i)

    def string(self, i):
        o = self._at(i)
        return self.t.String(self.t.Pos + o).decode("utf-8") if o else None

    def scalar(self, i, flags):
        o = self._at(i)
        return self.t.Get(flags, self.t.Pos + o) if o else 0

    def floats(self, i):
        o = self._at(i)  # float32 values, read back as their shortest repr: 58.395, not 58.39500045
        return tuple(float(str(v)) for v in self.t.GetVectorAsNumpy(Float32Flags, o)) if o else None

    def table(self, i):
        o = self._at(i)
        return _Fields(Table(self.t.Bytes, self.t.Indirect(self.t.Pos + o))) if o else None

    def tables(self, i):
        o = self._at(i)
        if not o:
            return []
        start = self.t.Vector(o)
        count = self.t.VectorLen(o)
        return [_Fields(Table(self.t.Bytes, self.t.Indirect(start + 4 * k))) for k in range(count)]


def _crop_fraction(entry):
    """The crop_fraction of a PREPROCESSING_NAME entry's text, or None."""
    lines = (entry or b"").decode("utf-8").splitlines()
    fields = dict(line.split("=", 1) for line in lines if "=" in line)
    return float(fields["crop_fraction"]) if "crop_fraction" in fields else None


def _set_metadata_buffer(model, data, name=METADATA_NAME):
    """Point the model's metadata entry `name` at a buffer holding `data` (added if missing)."""
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(data, np.uint8)
    for entry in model.metadata or []:
        if entry.name in (name, name.decode()):
            model.buffers[entry.buffer] = buffer
            return
    model.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name, entry.buffer = name.decode(), len(model.buffers) - 1
    model.metadata = [*(model.metadata or []), entry]


def _metadata_buffer(tflite_bytes, name=METADATA_NAME):
    """The bytes of the buffer of metadata entry `name`, or None."""
    model = schema.Model.GetRootAs(tflite_bytes, 0)
    for i in range(model.MetadataLength()):
        entry = model.Metadata(i)
        buffer = model.Buffers(entry.Buffer())
        if entry.Name() == name and buffer.DataLength():
            return buffer.DataAsNumpy().tobytes()
    return None


def _packed_files(tflite_bytes):
    """{name: bytes} of the files appended to the model as a zip archive."""
    try:
        with zipfile.ZipFile(io.BytesIO(tflite_bytes)) as archive:
            return {name: archive.read(name) for name in archive.namelist()}
    except zipfile.BadZipFile:
        return {}
