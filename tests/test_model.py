"""The model as a user trains and embeds it: fit, gradients, mixed precision, feature maps."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import lsnet_keras

TINY = {"embed_dim": (32, 64, 96, 128), "depth": (2, 2, 2, 2), "num_heads": (2, 2, 2, 2)}


def tiny_model(**kwargs):
    return lsnet_keras.LSNet(**TINY, num_classes=4, input_shape=64, **kwargs)


def test_gradients_reach_every_trainable_weight():
    # 128 px: stage 4 is 2x2, so attention has more than one token to attend to
    model = lsnet_keras.LSNet(**TINY, num_classes=4, input_shape=128, distillation=True)
    x = np.random.default_rng(0).normal(size=(2, 128, 128, 3)).astype("float32")
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(tf.square(model(x, training=True)))
    grads = tape.gradient(loss, model.trainable_weights)
    dead = [w.path for w, g in zip(model.trainable_weights, grads) if g is None]
    assert not dead
    zero = [w.path for w, g in zip(model.trainable_weights, grads) if not np.any(np.asarray(g))]
    assert not zero, zero


@pytest.mark.slow
def test_fit_lowers_the_loss():
    keras.utils.set_random_seed(0)
    model = tiny_model()
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 64, 64, 3)).astype("float32")
    y = np.arange(16) % 4
    x += y[:, None, None, None] * 0.5  # learnable signal
    model.compile(
        keras.optimizers.AdamW(1e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    history = model.fit(x, y, batch_size=8, epochs=6, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]


@pytest.mark.slow
def test_mixed_float16_trains_with_float32_outputs_in_range():
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_float16")
    try:
        model = tiny_model()
        assert model.get_layer("blocks4_3").mixer.qkv.conv.compute_dtype == "float16"
        model.compile(
            keras.optimizers.AdamW(1e-3),
            keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        )
        x = np.random.default_rng(1).normal(size=(8, 64, 64, 3)).astype("float32")
        history = model.fit(x, np.arange(8) % 4, batch_size=4, epochs=2, verbose=0)
        assert np.isfinite(history.history["loss"]).all()
        assert np.isfinite(np.asarray(model(x[:2]), dtype="float32")).all()
    finally:
        keras.config.set_dtype_policy(previous)


def test_features_only_gives_four_strided_stages():
    model = lsnet_keras.lsnet_t(features_only=True, input_shape=(256, 192))
    shapes = [tuple(o.shape[1:]) for o in model.outputs]
    assert shapes == [(32, 24, 64), (16, 12, 128), (8, 6, 256), (4, 3, 384)]


def test_include_top_false_returns_the_last_feature_map():
    model = lsnet_keras.lsnet_s(include_top=False, input_shape=160)
    assert model.output_shape == (None, 3, 3, 448)


def test_any_static_size_and_odd_sizes_run():
    for size in [(72, 56), (65, 65)]:
        model = lsnet_keras.LSNet(**TINY, num_classes=4, input_shape=size)
        assert model(np.zeros((1, *size, 3), "float32")).shape == (1, 4)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"input_shape": (64, 64, 1)}, "input_shape"),
        ({"embed_dim": (30, 64, 96, 128)}, "divisible by 8"),
        ({"depth": (1, 2, 3)}, "4 entries"),
    ],
)
def test_bad_arguments_are_named(kwargs, message):
    config = {**TINY, "num_classes": 4, "input_shape": 64, **kwargs}
    with pytest.raises(ValueError, match=message):
        lsnet_keras.LSNet(**config)


def test_unknown_variant_lists_the_known_ones():
    with pytest.raises(ValueError, match="lsnet_b_distill"):
        lsnet_keras.build_variant("lsnet_x")
