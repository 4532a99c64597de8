"""Class names: the ImageNet-1k names shipped with the package, and those of a `.tflite` model.

No TensorFlow needed: on a tflite-runtime-only install the packed labels are read from the
model's zip archive directly.

Example:
    >>> from lsnet_keras.litert.labels import imagenet_labels
    >>> labels = imagenet_labels()
    >>> len(labels), labels[0], labels[999]
    (1000, 'tench', 'toilet tissue')
"""

import io
import zipfile
from importlib import resources
from pathlib import Path

from lsnet_keras.errors import LSNetError
from lsnet_keras.io import require_file


def imagenet_labels():
    """The 1000 ImageNet-1k class names, index `i` naming class `i` (see `data/README.md`)."""
    text = resources.files("lsnet_keras").joinpath("assets/imagenet_labels.txt").read_text("utf-8")
    return text.splitlines()


def labels_for(model_path, num_classes, labels_path=None):
    """Names of a `.tflite` model's `num_classes` classes: from `labels_path` (one per line) if
    given, else the labels packed in the model (`lsnet_keras.litert.metadata`), else the ImageNet-1k
    names for 1000 classes, else "class 0", "class 1", ...

    Example:
        >>> labels_for("lsnet_t_int8.tflite", 1000)[:2]  # doctest: +SKIP
        ['tench', 'goldfish']
    """
    if labels_path is not None:
        labels, source = _read_labels(labels_path), labels_path
    else:
        labels, source = _packed_labels(Path(model_path).read_bytes()), model_path
        if labels is None:
            if num_classes == 1000:
                return imagenet_labels()
            return [f"class {i}" for i in range(num_classes)]
    if len(labels) != num_classes:
        raise LSNetError(f"{source}: {len(labels)} labels for {num_classes} classes")
    return labels


def _read_labels(path):
    """The lines of a UTF-8 labels file, or LSNetError naming the file."""
    path = require_file(path, "labels")
    try:
        return Path(path).read_text("utf-8").splitlines()
    except UnicodeDecodeError as err:
        raise LSNetError(f"{path}: not a UTF-8 text file of labels ({err.reason})") from None


def _packed_labels(model_bytes):
    """The labels packed in a model with metadata, or None."""
    try:
        from lsnet_keras.litert.metadata import MetadataError, read_metadata
    except ImportError:  # no flatbuffers or TFLite schema module: read the default labels file
        try:
            with zipfile.ZipFile(io.BytesIO(model_bytes)) as archive:
                return archive.read("labels.txt").decode("utf-8").splitlines()
        except (zipfile.BadZipFile, KeyError):
            return None
    try:
        return read_metadata(model_bytes)["labels"]
    except MetadataError:
        return None
