"""TFRecord shards and TFDS datasets as splits of records, and `write_tfrecords`.

`open_dataset` (in `data.py`) comes here for data that is not a folder of images:

* TFRecord shards `train-*-of-*` and `validation-*-of-*` of `tf.train.Example`s with
  `image/encoded` and `image/class/label` (the TensorFlow ImageNet format), plus the optional
  `dataset.json` that `write_tfrecords` writes (class names and counts);
* a prepared TFDS dataset (a folder with `dataset_info.json`), read with
  `tfds.builder_from_directory` (pip install tensorflow-datasets).

Each split's `records(shuffle_seed, shard)` streams (encoded image, label) pairs, sharded by
file when there are enough files, else by record. Images over the pixel budget are left out as
they stream (`budget_filter`, from their header) and noted once each in `Split.skipped`.

Example:
    >>> from lsnet_keras.training.records import write_tfrecords
    >>> from lsnet_keras.training.data import open_dataset
    >>> data = open_dataset("flowers")  # doctest: +SKIP
    >>> shards = write_tfrecords(data.train, "flowers_tfrecord", "train", 4,
    ...                          data.class_names)  # doctest: +SKIP
    >>> open_dataset("flowers_tfrecord").kind  # doctest: +SKIP
    'tfrecord'
"""

import glob
import io
import json
import os

import numpy as np
import tensorflow as tf

from lsnet_keras.preprocess import ImageError, ImageTooLarge, open_image
from lsnet_keras.training.data import SPLIT_NAMES, DatasetError, ImageDataset, Split

TFRECORD_FEATURES = {
    "image/encoded": tf.io.FixedLenFeature([], tf.string),
    "image/class/label": tf.io.FixedLenFeature([], tf.int64),
}


def shard_files(data_dir, split):
    """The sorted TFRecord shards of `split` ("train" or "val") in `data_dir`; [] if none.

    Example:
        >>> shard_files("imagenet_tfrecord", "val")[:1]  # doctest: +SKIP
        ['imagenet_tfrecord/validation-00000-of-00128']
    """
    for name in SPLIT_NAMES[split]:
        found = sorted(glob.glob(os.path.join(data_dir, f"{name}-*-of-*")))
        if found:
            return found
    return []


def _header_fits(encoded, name, seen, skipped):
    """False for an encoded image whose header gives an absurd size (noted once in `skipped`)."""
    try:
        open_image(io.BytesIO(encoded), f"{name} record", decode=False)
    except ImageTooLarge as err:
        if hash(encoded) not in seen:
            seen.add(hash(encoded))
            skipped.append((f"{name} record", f"image too large ({str(err).split(': ', 1)[1]})"))
        return np.bool_(False)
    except ImageError:  # not readable by PIL: the decoder decides
        pass
    return np.bool_(True)


def budget_filter(name, skipped):
    """A function: (encoded image, label) records -> those within the pixel budget.

    Only the header of each image is read (PIL, as for files). A record left out is appended
    to `skipped` as ("NAME record", "image too large (...)") the first time it is met, however
    many times the records are read (one filter per split).

    Example:
        >>> png = tf.io.encode_png(tf.zeros((4, 4, 3), "uint8"))
        >>> skipped = []
        >>> keep = budget_filter("train", skipped)
        >>> len(list(keep(tf.data.Dataset.from_tensors((png, 0))))), skipped
        (1, [])
    """
    seen = set()

    def fits(encoded, label):
        ok = tf.numpy_function(
            lambda data: _header_fits(data, name, seen, skipped), [encoded], tf.bool
        )
        return tf.ensure_shape(ok, [])

    return lambda records: records.filter(fits)


def _tfrecord_split(files, name, info, label_offset):
    skipped = []
    keep_fitting = budget_filter(name, skipped)

    def records(shuffle_seed=None, shard=(0, 1)):
        index, count = shard
        names = tf.data.Dataset.from_tensor_slices(files)
        by_file = len(files) >= count
        if by_file:
            names = names.shard(count, index)
        if shuffle_seed is not None:
            names = names.shuffle(len(files), seed=shuffle_seed)
        data = names.interleave(
            tf.data.TFRecordDataset,
            cycle_length=min(16, len(files)),
            num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=True,
        )
        if not by_file:
            data = data.shard(count, index)

        def parse(record):
            example = tf.io.parse_single_example(record, TFRECORD_FEATURES)
            return example["image/encoded"], example["image/class/label"] - label_offset

        return keep_fitting(data.map(parse, num_parallel_calls=tf.data.AUTOTUNE))

    if info is None:
        print(f"counting the records of {len(files)} {name} shards (no dataset.json) ...")
        labels = records().map(lambda _, label: label).as_numpy_iterator()
        info = {"num_examples": 0, "max_label": -1}
        for label in labels:
            info["num_examples"] += 1
            info["max_label"] = max(info["max_label"], int(label))
    split = Split(name, info["num_examples"], records=records, num_files=len(files))
    split.skipped = skipped  # filled as records are read
    return split, info


def open_tfrecords(data_dir, label_offset=0):
    """The TFRecord shards `train-*-of-*` / `validation-*-of-*` in `data_dir` as an ImageDataset.

    Split sizes and class names come from `dataset.json` when it is there (`write_tfrecords`
    writes it); otherwise the records are counted once and the classes are named "class i".
    `label_offset` is subtracted from every label.

    Example:
        >>> data = open_tfrecords("imagenet_tfrecord", label_offset=1)  # doctest: +SKIP
        >>> data.kind, data.train.num_files  # doctest: +SKIP
        ('tfrecord', 1024)
    """
    meta_path = os.path.join(data_dir, "dataset.json")
    meta = json.load(open(meta_path)) if os.path.isfile(meta_path) else {}
    splits, top = {}, -1
    for split in SPLIT_NAMES:
        files = shard_files(data_dir, split)
        if files:
            info = meta.get("splits", {}).get(split)
            splits[split], info = _tfrecord_split(files, split, info, label_offset)
            top = max(top, info.get("max_label", -1))
    names = meta.get("class_names") or [f"class {i}" for i in range(top + 1)]
    return ImageDataset(splits.get("train"), splits.get("val"), names, "tfrecord")


def open_tfds(data_dir):
    """The prepared TFDS dataset in `data_dir` (it holds `dataset_info.json`) as an ImageDataset.

    Its `train` split, and `validation` (else `val`, else `test`), with the first Image and
    ClassLabel features; images stay encoded (decoded by the pipelines).

    Example:
        >>> data = open_tfds("tensorflow_datasets/tf_flowers/3.0.1")  # doctest: +SKIP
        >>> data.kind, data.class_names[:2]  # doctest: +SKIP
        ('tfds', ['dandelion', 'daisy'])
    """
    try:
        import tensorflow_datasets as tfds
    except ImportError:
        raise DatasetError(f"{data_dir}: a TFDS dataset; pip install tensorflow-datasets") from None
    builder = tfds.builder_from_directory(data_dir)
    features = builder.info.features
    image_key = next(k for k, f in features.items() if isinstance(f, tfds.features.Image))
    label_key = next(k for k, f in features.items() if isinstance(f, tfds.features.ClassLabel))
    splits = {}
    for split, candidates in SPLIT_NAMES.items():
        found = [n for n in candidates + ("test",) * (split == "val") if n in builder.info.splits]
        if not found:
            continue
        info = builder.info.splits[found[0]]
        skipped = []
        keep_fitting = budget_filter(found[0], skipped)

        def records(
            shuffle_seed=None, shard=(0, 1), name=found[0], files=info.num_shards, keep=keep_fitting
        ):
            index, count = shard
            by_file = files >= count
            context = tf.distribute.InputContext(count, index) if by_file and count > 1 else None
            config = tfds.ReadConfig(shuffle_seed=shuffle_seed, input_context=context)
            data = builder.as_dataset(
                name,
                shuffle_files=shuffle_seed is not None,
                read_config=config,
                decoders={image_key: tfds.decode.SkipDecoding()},
            )
            if not by_file:
                data = data.shard(count, index)
            data = data.map(lambda e: (e[image_key], tf.cast(e[label_key], tf.int64)))
            return keep(data)

        splits[split] = Split(
            split, info.num_examples, records=records, num_files=info.num_shards, skipped=skipped
        )
    names = list(features[label_key].names)
    return ImageDataset(splits.get("train"), splits.get("val"), names, "tfds")


def write_tfrecords(split, output_dir, name, num_shards=1, class_names=None):
    """Write a folder split as TFRecord shards `name-0000i-of-0000n` (+ dataset.json).

    Example:
        >>> data = open_dataset("flowers")  # doctest: +SKIP
        >>> write_tfrecords(data.train, "flowers_tfrecord", "train", 4, data.class_names)
    """
    os.makedirs(output_dir, exist_ok=True)
    shards = [
        os.path.join(output_dir, f"{name}-{i:05d}-of-{num_shards:05d}") for i in range(num_shards)
    ]
    writers = [tf.io.TFRecordWriter(path) for path in shards]
    for i, (path, label) in enumerate(zip(split.paths, split.labels)):
        with open(path, "rb") as f:
            encoded = f.read()
        feature = {
            "image/encoded": tf.train.Feature(bytes_list=tf.train.BytesList(value=[encoded])),
            "image/class/label": tf.train.Feature(int64_list=tf.train.Int64List(value=[label])),
        }
        example = tf.train.Example(features=tf.train.Features(feature=feature))
        writers[i % num_shards].write(example.SerializeToString())
    for writer in writers:
        writer.close()
    meta_path = os.path.join(output_dir, "dataset.json")
    meta = json.load(open(meta_path)) if os.path.isfile(meta_path) else {"splits": {}}
    meta["class_names"] = list(class_names) if class_names else meta.get("class_names")
    split_name = "val" if name in SPLIT_NAMES["val"] else name
    max_label = int(split.labels.max()) if len(split.labels) else -1
    meta["splits"][split_name] = {"num_examples": int(split.num_examples), "max_label": max_label}
    with open(meta_path, "w") as f:
        json.dump(meta, f, indent=1)
    return shards
