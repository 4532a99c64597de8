"""Training and evaluation data: image folders, TFRecord shards or a TFDS dataset, via tf.data.

`open_dataset(DIR)` recognizes the layout of DIR:

* an ImageNet-style folder: `train/<class>/*.jpg` and `val/<class>/*` (or `validation/`);
  every file is checked once with the decoder that will read it (TensorFlow for training, PIL
  for evaluation); unreadable and non-image files are skipped and counted (`strict=True`: an
  error), and a class folder without images is an error naming it;
* TFRecord shards `train-*-of-*` and `validation-*-of-*` (the TensorFlow ImageNet format) or a
  prepared TFDS dataset (a folder with `dataset_info.json`): read by `records.py`, which also
  holds `write_tfrecords`.

This module holds the split types (`Split`, `ImageDataset`, `DatasetError`), folder scanning,
`open_dataset` and the tf.data pipelines (`train_dataset`, `eval_dataset`).

Images over the pixel budget of `lsnet_keras.preprocess` (Pillow's MAX_IMAGE_PIXELS, 50:1) are
skipped and counted in `Split.skipped`, never decoded: files when a folder is scanned, records
of TFRecord / TFDS data as they stream (from their header; noted once each when first met).

`train_dataset` yields one epoch of augmented (images, soft targets) batches for one input
pipeline, starting at any step, deterministically: a resumed run sees exactly the examples the
killed one had left. `eval_dataset` applies the official evaluation transform
(`lsnet_keras.preprocess.eval_transform`, PIL) and pads to full batches (label -1).

Example:
    >>> from lsnet_keras.training.data import open_dataset
    >>> data = open_dataset("flowers")  # flowers/train/<class>/*.jpg, flowers/val/...
    >>> data.train.num_examples, data.class_names[:2]  # doctest: +SKIP
    (3000, ['daisy', 'rose'])
"""

import concurrent.futures
import dataclasses
import io
import json
import os

import numpy as np
import tensorflow as tf

from lsnet_keras.errors import LSNetError
from lsnet_keras.io import require_folder, walk_files
from lsnet_keras.preprocess import (
    IMAGE_EXTENSIONS,
    ImageError,
    ImageTooLarge,
    eval_transform,
    load_image,
    open_image,
)
from lsnet_keras.training.augment import Augment, decode_image, mix_batch, train_transform

SPLIT_NAMES = {"train": ("train",), "val": ("val", "validation")}


class DatasetError(LSNetError):
    """A dataset that cannot be used as given (one line naming the folder or file)."""


@dataclasses.dataclass
class Split:
    """One split: image files with labels (folders) or record files (TFRecord / TFDS)."""

    name: str
    num_examples: int
    paths: np.ndarray = None  # folders: file paths, and their integer labels
    labels: np.ndarray = None
    records: object = None  # TFRecord / TFDS: callable(shuffle_seed, shard) -> (bytes, label)
    num_files: int = 1
    skipped: list = dataclasses.field(default_factory=list)  # [(path, reason)]


@dataclasses.dataclass
class ImageDataset:
    """The splits found in a data folder and the class names (index = label)."""

    train: Split
    val: Split
    class_names: list
    kind: str


def _verify_tf(paths):
    """Indices of the files TensorFlow's decoder (the training one) reads."""
    indices = tf.data.Dataset.from_tensor_slices((paths, np.arange(len(paths))))
    checked = indices.map(
        lambda path, i: (tf.shape(decode_image(tf.io.read_file(path)))[0], i),
        num_parallel_calls=tf.data.AUTOTUNE,
    ).ignore_errors()
    return {int(i) for _, i in checked.as_numpy_iterator()}


def _verify_pil(paths):
    """Indices of the files PIL (the evaluation transform's reader) reads."""

    def readable(path):
        try:
            load_image(path)
            return True
        except ImageError:
            return False

    with concurrent.futures.ThreadPoolExecutor(min(32, (os.cpu_count() or 1) * 4)) as pool:
        return {i for i, ok in enumerate(pool.map(readable, paths)) if ok}


def _within_budget(path):
    """False for an image whose header gives an absurd size (it is never decoded)."""
    try:
        open_image(path, decode=False)
    except ImageTooLarge:
        return False
    except ImageError:  # not readable by PIL: the split's decoder decides
        return True
    return True


def scan_image_folder(root, class_names=None, strict=False, reader="tf"):
    """(paths, labels, class_names, skipped) of `root/<class>/<image>`.

    Files without an image extension, and files the split's decoder cannot read, are skipped
    (`strict`: DatasetError); a class folder left without images is a DatasetError.
    `class_names` (the training classes) fixes the labels of a validation folder.

    Example:
        >>> scan_image_folder("missing")
        Traceback (most recent call last):
        ...
        lsnet_keras.training.data.DatasetError: missing: not a folder of class folders
    """
    if not os.path.isdir(root):
        raise DatasetError(f"{root}: not a folder of class folders")
    folders = _class_folders(root)
    if not folders:
        raise DatasetError(f"{root}: no class folders (expected {root}/<class>/<image>)")
    names = list(class_names) if class_names is not None else folders
    unknown = sorted(set(folders) - set(names))
    if unknown:
        raise DatasetError(f"{os.path.join(root, unknown[0])}: class not in the training set")
    paths, labels, skipped = [], [], []
    for folder in folders:
        label = names.index(folder)
        for path in walk_files(os.path.join(root, folder), skipped):
            name = os.path.basename(path)
            if not (name.lower().endswith(IMAGE_EXTENSIONS) and not name.startswith(".")):
                skipped.append((path, "not an image file"))
            elif not os.path.isfile(path):
                skipped.append((path, "not a regular file (broken link, pipe or device)"))
            else:
                paths.append(path)
                labels.append(label)
    with concurrent.futures.ThreadPoolExecutor(min(32, (os.cpu_count() or 1) * 4)) as pool:
        fits = list(pool.map(_within_budget, paths))
    skipped += [
        (p, "image too large (pixels or aspect ratio)") for p, ok in zip(paths, fits) if not ok
    ]
    paths = [p for p, ok in zip(paths, fits) if ok]
    labels = [label for label, ok in zip(labels, fits) if ok]
    readable = (_verify_tf if reader == "tf" else _verify_pil)(paths) if paths else set()
    skipped += [(p, "unreadable image") for i, p in enumerate(paths) if i not in readable]
    keep = sorted(readable)
    paths, labels = np.array(paths)[keep], np.array(labels, np.int64)[keep]
    if skipped and strict:
        path, reason = skipped[0]
        raise DatasetError(f"{path}: {reason} ({len(skipped)} such files in {root}; --strict)")
    counts = np.bincount(labels, minlength=len(names))
    for folder in folders:
        if counts[names.index(folder)] == 0:
            raise DatasetError(f"{os.path.join(root, folder)}: class folder has no images")
    return paths, labels, names, sorted(skipped)


def _folder_split(root, name, class_names, strict, cache):
    """A folder split, scanned once: the result is cached in `cache` (a JSON file) if given."""
    if cache and os.path.isfile(cache):
        with open(cache) as f:
            saved = json.load(f)
        if saved["root"] == os.path.abspath(root):
            paths, labels = np.array(saved["paths"]), np.array(saved["labels"], np.int64)
            split = Split(name, len(paths), paths, labels, skipped=saved["skipped"])
            return split, saved["class_names"]
    reader = "tf" if name == "train" else "pil"
    paths, labels, names, skipped = scan_image_folder(root, class_names, strict, reader)
    if cache:
        from lsnet_keras.io import atomic_path

        saved = {"root": os.path.abspath(root), "class_names": names, "skipped": skipped}
        saved.update(paths=paths.tolist(), labels=labels.tolist())
        with atomic_path(cache, overwrite=True) as tmp, open(tmp, "w") as f:
            json.dump(saved, f)
    return Split(name, len(paths), paths, labels, skipped=skipped), names


def _class_folders(root):
    return sorted(e.name for e in os.scandir(root) if e.is_dir() and e.name[0] != ".")


def open_dataset(data_dir, splits=("train", "val"), strict=False, label_offset=0, cache_dir=None):
    """The dataset in `data_dir` (folders, TFRecord shards or TFDS); see the module docstring.

    `splits`: the splits to open (folders are scanned only for these; class names always come
    from `train/` when it exists). `cache_dir`: where folder scans are cached (a resumed run
    does not scan again). `label_offset`: subtracted from TFRecord labels (1 for shards whose
    labels run 1..1000).

    Example:
        >>> open_dataset("missing")
        Traceback (most recent call last):
        ...
        lsnet_keras.training.data.DatasetError: missing: data folder not found
    """
    try:
        data_dir = require_folder(data_dir, "data")
    except LSNetError as err:
        raise DatasetError(str(err)) from None
    from lsnet_keras.training import records  # not at the top: records.py imports Split from here

    if os.path.isfile(os.path.join(data_dir, "dataset_info.json")):
        return records.open_tfds(data_dir)
    if records.shard_files(data_dir, "train") or records.shard_files(data_dir, "val"):
        return records.open_tfrecords(data_dir, label_offset)
    roots = {}
    for split, names in SPLIT_NAMES.items():
        roots[split] = next(
            (r for r in (os.path.join(data_dir, n) for n in names) if os.path.isdir(r)), None
        )
    if not any(roots.values()):
        raise DatasetError(
            f"{data_dir}: expected train/<class>/<image> and val/<class>/<image> folders, "
            "TFRecord shards (train-*-of-*) or a TFDS dataset (dataset_info.json)"
        )
    names = _class_folders(roots["train"]) if roots["train"] else None
    found = {}
    for split in splits:
        if roots[split]:
            cache = cache_dir and os.path.join(cache_dir, f"{split}_index.json")
            found[split], names = _folder_split(roots[split], split, names, strict, cache)
    return ImageDataset(found.get("train"), found.get("val"), names, "folder")


def _replica_order(num_examples, epoch, seed, steps, global_batch, pipeline, repeats):
    """Example indices and stream positions of one epoch for one input pipeline.

    The epoch is a seeded permutation, each index repeated `repeats` times (repeated
    augmentation), cut to `steps` global batches. Global replica g takes stream[g::R], as the
    official RASampler, so the copies of an image land on different replicas.
    """
    index, count, local = pipeline
    replicas = count * local
    order = np.random.default_rng([seed, epoch]).permutation(num_examples)
    order = np.resize(np.repeat(order, repeats), steps * global_batch)
    positions = np.arange(steps * global_batch).reshape(steps, -1, replicas)
    positions = positions[:, :, index * local : (index + 1) * local].transpose(0, 2, 1)
    positions = positions.reshape(-1)
    return order[positions], positions


def train_dataset(split, epoch, steps, batch_size, img_size, num_classes, **options):
    """One epoch of (images, soft targets) batches of `batch_size` (per replica) for one pipeline.

    Options: start_step (resume inside the epoch), pipeline=(index, count, local_replicas),
    seed, repeats (repeated augmentation), augment (an `Augment`).

    Example:
        >>> batches = train_dataset(data.train, epoch=0, steps=10, batch_size=32,
        ...                         img_size=224, num_classes=5)  # doctest: +SKIP
    """
    start = options.get("start_step", 0)
    pipeline = options.get("pipeline", (0, 1, 1))
    seed, repeats = options.get("seed", 0), options.get("repeats", 1)
    augment = options.get("augment", Augment())
    index, count, local = pipeline
    local_batch = local * batch_size
    if split.paths is not None:
        order, positions = _replica_order(
            split.num_examples, epoch, seed, steps, local_batch * count, pipeline, repeats
        )
        skip = start * local_batch
        data = tf.data.Dataset.from_tensor_slices(
            (split.paths[order[skip:]], split.labels[order[skip:]], positions[skip:])
        )
        data = data.map(lambda p, label, k: (tf.io.read_file(p), label, k))
    else:
        data = split.records(shuffle_seed=seed * 1000003 + epoch, shard=(index, count))
        data = data.repeat().shuffle(min(10000, 16 * local_batch), seed=seed + epoch)
        if repeats > 1:
            data = data.flat_map(lambda *x: tf.data.Dataset.from_tensors(x).repeat(repeats))
        data = data.take(steps * local_batch).skip(start * local_batch)
        data = data.enumerate(start * local_batch)
        data = data.map(lambda k, x: (x[0], x[1], k * count + index))
    epoch_seed = tf.constant(seed * 100003 + epoch, tf.int64)

    def augment_one(encoded, label, position):
        key = tf.stack([epoch_seed, tf.cast(position, tf.int64)])
        return train_transform(encoded, key, img_size, augment), label

    data = data.map(augment_one, num_parallel_calls=tf.data.AUTOTUNE)
    data = data.batch(batch_size, drop_remainder=True).enumerate(start * local)

    def mix(batch, example):
        replica = index * local + batch % local
        key = tf.stack([epoch_seed, (batch // local) * 65536 + replica + 2**40])
        return mix_batch(example[0], example[1], key, num_classes, augment)

    return data.map(mix, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def _eval_image(encoded, label, size):
    if label < 0:
        return np.zeros((size, size, 3), np.float32)
    return eval_transform(open_image(io.BytesIO(encoded), "an evaluation image"), size)


def eval_dataset(split, batch_size, img_size, pipeline=(0, 1, 1)):
    """(images, labels) batches with the official eval transform; padding has label -1.

    Every pipeline yields the same number of batches, ceil(N / global batch).

    Example:
        >>> batches = eval_dataset(data.val, batch_size=64, img_size=224)  # doctest: +SKIP
    """
    index, count, local = pipeline
    local_batch = local * batch_size
    steps = -(-split.num_examples // (local_batch * count))
    if split.paths is not None:
        picked = np.arange(index, split.num_examples, count)
        data = tf.data.Dataset.from_tensor_slices((split.paths[picked], split.labels[picked]))
        data = data.map(lambda p, label: (tf.io.read_file(p), label))
    else:
        data = split.records(shard=(index, count))
    padding = tf.data.Dataset.from_tensors((tf.constant(b""), tf.constant(-1, tf.int64))).repeat()
    data = data.concatenate(padding).take(steps * local_batch)

    def transform(encoded, label):
        image = tf.numpy_function(_eval_image, [encoded, label, img_size], tf.float32)
        return tf.ensure_shape(image, (img_size, img_size, 3)), label

    data = data.map(transform, num_parallel_calls=tf.data.AUTOTUNE)
    return data.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)
