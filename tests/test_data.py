"""Datasets for training: folder scanning, bad files, TFRecord / TFDS sources, exact positions."""

import os

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from lsnet_keras.training import augment
from lsnet_keras.training.data import (
    DatasetError,
    eval_dataset,
    open_dataset,
    scan_image_folder,
    train_dataset,
)
from lsnet_keras.training.records import write_tfrecords

COLORS = np.array([[220, 40, 40], [40, 200, 40], [40, 60, 220], [220, 220, 40], [200, 40, 200]])


def make_image_folder(root, classes=4, per_class=12, val_per_class=4, size=(48, 40), seed=0):
    """train/ and val/ class folders of noisy solid-color images (JPEG and PNG), one color per
    class, so a tiny model learns them in a few steps."""
    rng = np.random.default_rng(seed)
    for split, count in (("train", per_class), ("val", val_per_class)):
        for label in range(classes):
            folder = os.path.join(root, split, f"class_{label}")
            os.makedirs(folder, exist_ok=True)
            for i in range(count):
                base = COLORS[label] * rng.uniform(0.7, 1.0)
                noise = rng.normal(0, 20, (size[1], size[0], 3))
                pixels = np.clip(base + noise, 0, 255).astype("uint8")
                extension = "png" if i % 3 == 0 else "jpg"
                Image.fromarray(pixels).save(os.path.join(folder, f"{i:03d}.{extension}"))
    return str(root)


def add_bad_files(root):
    """A text file, a garbage .jpg and a truncated JPEG in the training folders."""
    train = os.path.join(root, "train")
    with open(os.path.join(train, "class_0", "notes.txt"), "w") as f:
        f.write("not an image")
    with open(os.path.join(train, "class_1", "broken.jpg"), "wb") as f:
        f.write(b"garbage")
    good = open(os.path.join(train, "class_2", "001.jpg"), "rb").read()
    with open(os.path.join(train, "class_2", "truncated.jpg"), "wb") as f:
        f.write(good[: len(good) // 3])


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return make_image_folder(tmp_path_factory.mktemp("images"), classes=3, per_class=8)


def test_bad_files_are_skipped_and_counted(tmp_path):
    root = make_image_folder(tmp_path, classes=3, per_class=4)
    add_bad_files(root)
    data = open_dataset(root)
    reasons = {os.path.basename(p): why for p, why in data.train.skipped}
    assert reasons == {
        "notes.txt": "not an image file",
        "broken.jpg": "unreadable image",
        "truncated.jpg": "unreadable image",
    }
    assert data.train.num_examples == 12 and data.val.num_examples == 12
    assert data.class_names == ["class_0", "class_1", "class_2"]
    with pytest.raises(DatasetError, match=r"notes\.txt: not an image file \(3 such files"):
        open_dataset(root, strict=True)


def test_class_folder_without_images_is_named(tmp_path):
    root = make_image_folder(tmp_path, classes=2, per_class=2)
    os.makedirs(os.path.join(root, "train", "empty_class"))
    with open(os.path.join(root, "train", "empty_class", "readme.txt"), "w") as f:
        f.write("nothing here")
    with pytest.raises(DatasetError, match=r"empty_class: class folder has no images$"):
        open_dataset(root)


def test_layout_errors_are_one_line(tmp_path):
    with pytest.raises(DatasetError, match="expected train/<class>/<image>"):
        open_dataset(tmp_path)
    make_image_folder(tmp_path, classes=2, per_class=1)
    os.makedirs(os.path.join(tmp_path, "val", "stranger"))
    with pytest.raises(DatasetError, match="stranger: class not in the training set"):
        scan_image_folder(os.path.join(tmp_path, "val"), ["class_0", "class_1"])


@pytest.mark.slow
def test_resume_inside_an_epoch_continues_the_same_stream(folder):
    data = open_dataset(folder)
    options = dict(epoch=1, steps=3, batch_size=4, img_size=32, num_classes=3, repeats=3)
    full = [x.numpy() for x, _ in train_dataset(data.train, **options)]
    resumed = [x.numpy() for x, _ in train_dataset(data.train, start_step=2, **options)]
    assert len(full) == 3 and len(resumed) == 1
    np.testing.assert_array_equal(full[2], resumed[0])
    other_epoch = next(iter(train_dataset(data.train, **{**options, "epoch": 2})))[0]
    assert not np.array_equal(full[0], other_epoch.numpy())


def test_two_replicas_split_each_global_batch(folder):
    """Replicas 0 and 1 (per-replica batch 4) see exactly the images of one batch of 8."""
    data = open_dataset(folder)
    plain = augment.Augment(rand_augment="none", reprob=0.0, mixup=0.0, cutmix=0.0)
    options = dict(epoch=0, steps=2, img_size=32, num_classes=3, augment=plain, repeats=1)
    single = [x.numpy() for x, _ in train_dataset(data.train, batch_size=8, **options)]
    pipeline = (0, 1, 2)  # one input pipeline feeding two local replicas
    pairs = [
        x.numpy() for x, _ in train_dataset(data.train, batch_size=4, pipeline=pipeline, **options)
    ]
    for step, batch in enumerate(single):
        joined = np.stack([pairs[2 * step], pairs[2 * step + 1]], 1).reshape(batch.shape)
        np.testing.assert_allclose(joined, batch, atol=1e-6)  # stream[g::2] per replica


def test_repeated_augmentation_copies_go_to_different_replicas():
    from lsnet_keras.training.data import _replica_order

    order, _ = _replica_order(8, 0, 0, steps=3, global_batch=8, pipeline=(0, 1, 4), repeats=3)
    per_replica = order.reshape(3, 4, 2)  # (step, replica, example)
    copies = [per_replica[0, replica, 0] for replica in range(3)]
    assert len(set(copies)) == 1  # the 3 copies of the first image, one on each replica
    assert per_replica[0, 3, 0] != copies[0]


def test_eval_dataset_pads_to_full_batches(folder):
    data = open_dataset(folder)
    batches = list(eval_dataset(data.val, batch_size=5, img_size=32))
    labels = np.concatenate([y.numpy() for _, y in batches])
    assert len(batches) == 3 and (labels >= 0).sum() == 12 and set(labels[12:]) == {-1}
    x = batches[0][0].numpy()
    from lsnet_keras.preprocess import load_and_preprocess

    np.testing.assert_allclose(x[0], load_and_preprocess(data.val.paths[0], 32), atol=1e-6)


@pytest.mark.slow
def test_tfrecord_shards(folder, tmp_path):
    source = open_dataset(folder)
    write_tfrecords(source.train, tmp_path, "train", 3, source.class_names)
    write_tfrecords(source.val, tmp_path, "validation", 1, source.class_names)
    data = open_dataset(tmp_path)
    assert data.kind == "tfrecord" and data.class_names == source.class_names
    assert (data.train.num_examples, data.val.num_examples) == (24, 12)
    os.remove(os.path.join(tmp_path, "dataset.json"))  # counted by reading, names generic
    data = open_dataset(tmp_path)
    assert data.train.num_examples == 24 and data.class_names[0] == "class 0"
    options = dict(epoch=0, steps=3, batch_size=4, img_size=32, num_classes=3, repeats=3)
    full = [y.numpy() for _, y in train_dataset(data.train, **options)]
    resumed = [y.numpy() for _, y in train_dataset(data.train, start_step=1, **options)]
    np.testing.assert_array_equal(full[1:], resumed)
    labels = np.concatenate([y.numpy() for _, y in eval_dataset(data.val, 4, 32)])
    assert sorted(labels[labels >= 0]) == sorted(source.val.labels)


def test_tfds_dataset_on_disk(tmp_path):
    import tensorflow_datasets as tfds

    rng = np.random.default_rng(0)

    def split(count):
        images = rng.integers(0, 255, (count, 40, 48, 3), dtype=np.uint8)
        return tf.data.Dataset.from_tensor_slices({"image": images, "label": np.arange(count) % 3})

    features = tfds.features.FeaturesDict(
        {
            "image": tfds.features.Image(shape=(40, 48, 3)),
            "label": tfds.features.ClassLabel(names=["a", "b", "c"]),
        }
    )
    builder = tfds.dataset_builders.store_as_tfds_dataset(
        name="tiny_images",
        version="1.0.0",
        features=features,
        split_datasets={"train": split(20), "validation": split(7)},
        data_dir=str(tmp_path),
    )
    data = open_dataset(builder.data_dir)
    assert data.kind == "tfds" and data.class_names == ["a", "b", "c"]
    assert (data.train.num_examples, data.val.num_examples) == (20, 7)
    batches = list(train_dataset(data.train, 0, 2, 4, 32, 3, repeats=3))
    assert [x.shape for x, _ in batches] == [(4, 32, 32, 3)] * 2
    labels = np.concatenate([y.numpy() for _, y in eval_dataset(data.val, 4, 32)])
    assert (labels >= 0).sum() == 7


def test_augmentation_ops_and_mixing():
    image = tf.constant(np.random.default_rng(0).uniform(0, 255, (24, 24, 3)).round(), tf.float32)
    for op in augment._ops(image, tf.constant(9.0), tf.constant(-1.0)):
        out = op().numpy()
        assert out.shape == (24, 24, 3) and 0 <= out.min() and out.max() <= 255
        np.testing.assert_array_equal(out, out.round())  # PIL's integer pixel values
    assert augment.parse_rand_augment("rand-m9-mstd0.5-inc1") == (2, 9.0, 0.5)
    with pytest.raises(augment.LSNetError, match="--aa 'autoaug'"):
        augment.parse_rand_augment("autoaug")
    images = tf.stack([tf.fill((16, 16, 3), float(i)) for i in range(4)])
    for seed in range(6):
        mixed, targets = augment.mix_batch(
            images,
            tf.constant([0, 1, 2, 3]),
            tf.constant([seed, 0], tf.int64),
            4,
            augment.Augment(),
        )
        np.testing.assert_allclose(targets.numpy().sum(1), 1.0, rtol=1e-6)
        # the weight of the partner's class equals the share of the partner's pixels
        partner_share = mixed.numpy()[0].mean() / 3.0
        assert abs(targets.numpy()[0, 3] - 0.025 - 0.9 * partner_share) < 1e-5
    erased = augment.random_erasing(tf.zeros((32, 32, 3)), tf.constant([1, 2], tf.int64), 1.0)
    assert 0.02 <= float(tf.reduce_mean(tf.cast(erased != 0, tf.float32))) <= 1 / 3
