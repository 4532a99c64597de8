"""The official (timm) training augmentation, written with TensorFlow ops for `tf.data`.

Per image: random resized crop (scale 0.08-1, ratio 3/4-4/3; JPEGs decode only the crop),
bicubic resize, horizontal flip, RandAugment `rand-m9-mstd0.5-inc1` (the 15 timm ops, each
applied with probability 0.5, magnitude ~ N(9, 0.5) clipped to 0..10, fill = mean pixel),
normalize, random erasing (probability 0.25, per-pixel normal noise). Per batch: Mixup 0.8 /
CutMix 1.0 (one of the two per batch, switch probability 0.5) on label-smoothed targets.

Every random draw is stateless and keyed by the example's (seed, epoch, position), so an epoch
is the same however many devices share it and after a resume.

Example:
    >>> import tensorflow as tf
    >>> from lsnet_keras.training.augment import Augment, train_transform
    >>> image = tf.io.encode_png(tf.zeros((40, 60, 3), tf.uint8))
    >>> train_transform(image, tf.constant([0, 1], tf.int64), 32, Augment()).shape
    TensorShape([32, 32, 3])
"""

import dataclasses
import math
import re

import tensorflow as tf

from lsnet_keras.config import IMAGENET_MEAN, IMAGENET_STD
from lsnet_keras.errors import LSNetError

FILL = tuple(min(255, round(255 * m)) for m in IMAGENET_MEAN)  # timm's img_mean (124, 116, 104)
MAX_LEVEL = 10.0


@dataclasses.dataclass(frozen=True)
class Augment:
    """Augmentation settings; the defaults are the official recipe.

    Example:
        >>> Augment(rand_augment="none", mixup=0.0, cutmix=0.0).mixing
        False
    """

    rand_augment: str = "rand-m9-mstd0.5-inc1"
    reprob: float = 0.25
    mixup: float = 0.8
    cutmix: float = 1.0
    mixup_prob: float = 1.0
    switch_prob: float = 0.5
    smoothing: float = 0.1

    @property
    def mixing(self):
        return self.mixup_prob > 0 and (self.mixup > 0 or self.cutmix > 0)


def parse_rand_augment(spec):
    """timm's `rand-m9-mstd0.5-inc1` -> (num_ops, magnitude, magnitude_std); None for "none".

    Example:
        >>> parse_rand_augment("rand-m9-mstd0.5-inc1")
        (2, 9.0, 0.5)
    """
    if spec in (None, "", "none"):
        return None
    parts = spec.split("-")
    found = [re.fullmatch(r"(mstd|inc|m|n)([0-9]+(?:\.[0-9]+)?)", part) for part in parts[1:]]
    settings = {"n": 2.0, "m": 9.0, "mstd": 0.0, "inc": 0.0}
    if parts[0] == "rand" and all(found):
        settings.update((match.group(1), float(match.group(2))) for match in found)
    if settings["inc"] != 1.0:
        raise LSNetError(f"--aa {spec!r}: expected rand-m<M>[-n<N>][-mstd<S>]-inc1 or none")
    return int(settings["n"]), settings["m"], settings["mstd"]


def _split(seed, count):
    return tf.unstack(tf.random.experimental.stateless_split(seed, count))


def _uniform(seed, minval=0.0, maxval=1.0, shape=()):
    return tf.random.stateless_uniform(shape, seed, minval, maxval)


def decode_image(encoded):
    """Any image TensorFlow decodes (JPEG, PNG, GIF first frame, BMP, WebP) -> uint8 RGB.

    Example:
        >>> decode_image(tf.io.encode_png(tf.zeros((4, 6, 1), tf.uint8))).shape
        TensorShape([4, 6, 3])
    """
    image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
    image.set_shape((None, None, 3))
    return image


def decode_random_crop(encoded, seed, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)):
    """Decode a random crop (area `scale`, aspect `ratio`); JPEGs decode only the window.

    Example:
        >>> encoded = tf.io.encode_jpeg(tf.zeros((40, 60, 3), tf.uint8))
        >>> crop = decode_random_crop(encoded, tf.constant([0, 1], tf.int64))
        >>> crop.dtype, crop.shape[-1]
        (tf.uint8, 3)
    """

    def window(shape):
        begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
            shape,
            bounding_boxes=tf.constant([[[0.0, 0.0, 1.0, 1.0]]]),
            seed=seed,
            min_object_covered=0.0,
            aspect_ratio_range=ratio,
            area_range=scale,
            max_attempts=10,
            use_image_if_no_bounding_boxes=True,
        )
        return begin, size

    def jpeg():
        begin, size = window(tf.io.extract_jpeg_shape(encoded))
        crop = tf.stack([begin[0], begin[1], size[0], size[1]])
        return tf.io.decode_and_crop_jpeg(encoded, crop, channels=3)

    def other():
        image = decode_image(encoded)
        begin, size = window(tf.shape(image))
        return tf.slice(image, begin, size)

    return tf.cond(tf.io.is_jpeg(encoded), jpeg, other)


# RandAugment ops on float32 RGB in [0, 255] with integer values, as PIL's uint8 images.
def _gray(image):
    return tf.round(tf.tensordot(image, tf.constant([0.299, 0.587, 0.114]), axes=1))[..., None]


def _blend(degenerate, image, factor):
    """PIL ImageEnhance: degenerate + factor * (image - degenerate), clipped and truncated."""
    return tf.floor(tf.clip_by_value(degenerate + factor * (image - degenerate), 0.0, 255.0))


def _affine(image, transform):
    """PIL `Image.transform(AFFINE)` (output -> input mapping), bilinear, filled with FILL."""
    fill = tf.constant(FILL, tf.float32)
    moved = tf.raw_ops.ImageProjectiveTransformV3(
        images=(image - fill)[None],
        transforms=tf.cast(tf.concat([transform, [0.0, 0.0]], 0)[None], tf.float32),
        output_shape=tf.shape(image)[:2],
        fill_value=0.0,
        interpolation="BILINEAR",
        fill_mode="CONSTANT",
    )[0]
    return tf.clip_by_value(tf.round(moved + fill), 0.0, 255.0)


def _rotate(image, degrees):
    height, width = tf.unstack(tf.cast(tf.shape(image)[:2], tf.float32))
    angle = -degrees * math.pi / 180.0
    cos, sin = tf.cos(angle), tf.sin(angle)
    cx, cy = (width - 1) / 2, (height - 1) / 2
    return _affine(
        image, tf.stack([cos, sin, cx - cos * cx - sin * cy, -sin, cos, cy + sin * cx - cos * cy])
    )


def _sharpness(image, factor):
    kernel = tf.constant([[1.0, 1.0, 1.0], [1.0, 5.0, 1.0], [1.0, 1.0, 1.0]]) / 13.0
    kernel = tf.tile(kernel[:, :, None, None], [1, 1, 3, 1])
    smooth = tf.round(tf.nn.depthwise_conv2d(image[None], kernel, [1, 1, 1, 1], "VALID")[0])
    inner = tf.pad(tf.ones_like(smooth), [[1, 1], [1, 1], [0, 0]]) > 0
    degenerate = tf.where(inner, tf.pad(smooth, [[1, 1], [1, 1], [0, 0]]), image)
    return _blend(degenerate, image, factor)


def _auto_contrast(image):
    low = tf.reduce_min(image, axis=(0, 1))
    high = tf.reduce_max(image, axis=(0, 1))
    scale = 255.0 / tf.maximum(high - low, 1.0)
    stretched = tf.floor(tf.clip_by_value((image - low) * scale, 0.0, 255.0))
    return tf.where(high > low, stretched, image)


def _equalize_channel(channel):
    """PIL ImageOps.equalize on one channel of integer values 0..255."""
    values = tf.cast(channel, tf.int32)
    histogram = tf.math.bincount(tf.reshape(values, [-1]), minlength=256, maxlength=256)
    last = tf.gather(histogram, tf.reduce_max(tf.where(histogram > 0)))
    step = (tf.reduce_sum(histogram) - last) // 255
    lut = (tf.cumsum(histogram, exclusive=True) + step // 2) // tf.maximum(step, 1)
    lut = tf.clip_by_value(lut, 0, 255)
    return tf.where(step > 0, tf.cast(tf.gather(lut, values), tf.float32), channel)


def _equalize(image):
    return tf.stack([_equalize_channel(image[..., c]) for c in range(3)], axis=-1)


def _ops(image, level, sign):
    """The 15 ops of timm's `_RAND_INCREASING_TRANSFORMS`, with their level -> argument rules."""
    fraction = level / MAX_LEVEL
    enhance = 1.0 + sign * fraction * 0.9
    shear = sign * fraction * 0.3
    height, width = tf.unstack(tf.cast(tf.shape(image)[:2], tf.float32))
    shift = sign * fraction * 0.45
    posterize_shift = 8.0 - (4.0 - tf.floor(fraction * 4.0))
    solarize_threshold = 256.0 - tf.floor(fraction * 256.0)
    return [
        lambda: _auto_contrast(image),
        lambda: _equalize(image),
        lambda: 255.0 - image,
        lambda: _rotate(image, sign * fraction * 30.0),
        lambda: tf.floor(image / 2.0**posterize_shift) * 2.0**posterize_shift,
        lambda: tf.where(image < solarize_threshold, image, 255.0 - image),
        lambda: tf.where(
            image < 128.0, tf.minimum(image + tf.floor(fraction * 110.0), 255.0), image
        ),
        lambda: _blend(tf.tile(_gray(image), [1, 1, 3]), image, enhance),
        lambda: _blend(tf.floor(tf.reduce_mean(_gray(image)) + 0.5), image, enhance),
        lambda: _blend(tf.zeros_like(image), image, enhance),
        lambda: _sharpness(image, enhance),
        lambda: _affine(image, tf.stack([1.0, shear, 0.0, 0.0, 1.0, 0.0])),
        lambda: _affine(image, tf.stack([1.0, 0.0, 0.0, shear, 1.0, 0.0])),
        lambda: _affine(image, tf.stack([1.0, 0.0, shift * width, 0.0, 1.0, 0.0])),
        lambda: _affine(image, tf.stack([1.0, 0.0, 0.0, 0.0, 1.0, shift * height])),
        lambda: image,  # the op was not applied (probability 0.5)
    ]


def rand_augment(image, seed, num_ops=2, magnitude=9.0, magnitude_std=0.5):
    """timm RandAugment (increasing ops) on float32 RGB in [0, 255]; stateless.

    Example:
        >>> rand_augment(tf.fill((8, 8, 3), 100.0), tf.constant([1, 2], tf.int64)).shape
        TensorShape([8, 8, 3])
    """
    count = len(_ops(image, 0.0, 1.0)) - 1
    for op_seed in _split(seed, num_ops):
        choice, apply, level, sign = _split(op_seed, 4)
        index = tf.random.stateless_uniform((), choice, 0, count, tf.int32)
        index = tf.where(_uniform(apply) < 0.5, index, count)
        level = magnitude + magnitude_std * tf.random.stateless_normal((), level)
        level = tf.clip_by_value(level, 0.0, MAX_LEVEL)
        sign = tf.where(_uniform(sign) < 0.5, -1.0, 1.0)
        image = tf.switch_case(index, _ops(image, level, sign))
        image.set_shape((None, None, 3))
    return image


def normalize(image):
    """[0, 255] RGB -> ImageNet-normalized float32 (as `lsnet_keras.preprocess.normalize`).

    Example:
        >>> [round(float(v), 3) for v in normalize(tf.fill((1, 1, 3), 255.0))[0, 0]]
        [2.249, 2.429, 2.64]
    """
    mean = tf.constant(IMAGENET_MEAN) * 255.0
    return (image - mean) / (tf.constant(IMAGENET_STD) * 255.0)


def random_erasing(image, seed, probability=0.25):
    """timm RandomErasing (mode "pixel", one box, 10 attempts) on a normalized image.

    Example:
        >>> random_erasing(tf.zeros((16, 16, 3)), tf.constant([0, 3], tf.int64), 1.0).shape
        TensorShape([16, 16, 3])
    """
    height, width = image.shape[0], image.shape[1]
    coin, area_seed, ratio_seed, top_seed, left_seed, noise_seed = _split(seed, 6)
    area = _uniform(area_seed, 0.02, 1 / 3, (10,)) * height * width
    aspect = tf.exp(_uniform(ratio_seed, math.log(0.3), math.log(1 / 0.3), (10,)))
    box_h = tf.cast(tf.round(tf.sqrt(area * aspect)), tf.int32)
    box_w = tf.cast(tf.round(tf.sqrt(area / aspect)), tf.int32)
    fits = (box_h < height) & (box_w < width)
    first = tf.argmax(tf.cast(fits, tf.int32))
    box_h, box_w = tf.gather(box_h, first), tf.gather(box_w, first)
    top = tf.cast(_uniform(top_seed) * tf.cast(height - box_h + 1, tf.float32), tf.int32)
    left = tf.cast(_uniform(left_seed) * tf.cast(width - box_w + 1, tf.float32), tf.int32)
    rows = tf.range(height)[:, None, None]
    cols = tf.range(width)[None, :, None]
    inside = (rows >= top) & (rows < top + box_h) & (cols >= left) & (cols < left + box_w)
    erase = (_uniform(coin) < probability) & tf.reduce_any(fits) & inside
    return tf.where(erase, tf.random.stateless_normal(tf.shape(image), noise_seed), image)


def train_transform(encoded, seed, size, augment):
    """Encoded image bytes -> one augmented, normalized (size, size, 3) float32 image.

    Example:
        >>> png = tf.io.encode_png(tf.zeros((20, 30, 3), tf.uint8))
        >>> train_transform(png, tf.constant([4, 2], tf.int64), 16, Augment()).dtype
        tf.float32
    """
    crop_seed, flip_seed, aa_seed, erase_seed = _split(seed, 4)
    image = decode_random_crop(encoded, crop_seed)
    image = tf.image.resize(image, (size, size), method="bicubic", antialias=True)
    image = tf.clip_by_value(tf.round(image), 0.0, 255.0)
    image = tf.where(_uniform(flip_seed) < 0.5, tf.image.flip_left_right(image), image)
    policy = parse_rand_augment(augment.rand_augment)
    if policy:
        image = rand_augment(image, aa_seed, *policy)
    image = normalize(image)
    image.set_shape((size, size, 3))
    if augment.reprob > 0:
        image = random_erasing(image, erase_seed, augment.reprob)
    return image


def smooth_targets(labels, num_classes, smoothing):
    """Integer labels -> label-smoothed one-hot targets (timm's off = smoothing / K).

    Example:
        >>> smooth_targets(tf.constant([1]), 4, 0.1).numpy().round(3).tolist()
        [[0.025, 0.925, 0.025, 0.025]]
    """
    off = smoothing / num_classes
    return tf.one_hot(labels, num_classes, on_value=1.0 - smoothing + off, off_value=off)


def _beta(seed, alpha):
    x, y = _split(seed, 2)
    a = tf.random.stateless_gamma((), x, alpha)
    return a / (a + tf.random.stateless_gamma((), y, alpha))


def mix_batch(images, labels, seed, num_classes, augment):
    """timm Mixup/CutMix in "batch" mode: one lambda per batch, partner = the reversed batch.

    Returns the mixed images and soft targets (label smoothing included).

    Example:
        >>> x, y = mix_batch(tf.zeros((4, 8, 8, 3)), tf.constant([0, 1, 2, 3]),
        ...                  tf.constant([0, 0], tf.int64), 4, Augment())
        >>> y.shape
        TensorShape([4, 4])
    """
    targets = smooth_targets(labels, num_classes, augment.smoothing)
    if not augment.mixing:
        return images, targets
    apply_seed, switch_seed, lam_seed, y_seed, x_seed = _split(seed, 5)
    apply = _uniform(apply_seed) < augment.mixup_prob
    if augment.mixup > 0 and augment.cutmix > 0:
        use_cutmix = _uniform(switch_seed) < augment.switch_prob
        lam = tf.where(use_cutmix, _beta(lam_seed, augment.cutmix), _beta(lam_seed, augment.mixup))
    else:
        use_cutmix = tf.constant(augment.cutmix > 0)
        lam = _beta(lam_seed, augment.cutmix if augment.cutmix > 0 else augment.mixup)
    lam = tf.where(apply, lam, 1.0)
    partner = images[::-1]
    height, width = images.shape[1], images.shape[2]
    ratio = tf.sqrt(1.0 - lam)
    cut_h = tf.cast(height * ratio, tf.int32)
    cut_w = tf.cast(width * ratio, tf.int32)
    cy = tf.random.stateless_uniform((), y_seed, 0, height, tf.int32)
    cx = tf.random.stateless_uniform((), x_seed, 0, width, tf.int32)
    y0, y1 = (
        tf.clip_by_value(cy - cut_h // 2, 0, height),
        tf.clip_by_value(cy + cut_h // 2, 0, height),
    )
    x0, x1 = (
        tf.clip_by_value(cx - cut_w // 2, 0, width),
        tf.clip_by_value(cx + cut_w // 2, 0, width),
    )
    rows = tf.range(height)[None, :, None, None]
    cols = tf.range(width)[None, None, :, None]
    box = (rows >= y0) & (rows < y1) & (cols >= x0) & (cols < x1)
    cut_lam = 1.0 - tf.cast((y1 - y0) * (x1 - x0), tf.float32) / (height * width)
    cutmix = use_cutmix & apply
    images = tf.where(cutmix, tf.where(box, partner, images), lam * images + (1.0 - lam) * partner)
    lam = tf.where(cutmix, cut_lam, lam)
    return images, lam * targets + (1.0 - lam) * targets[::-1]
