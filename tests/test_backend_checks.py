"""Backend-neutral checks of the Keras model: run here under the default backend (TensorFlow)
and, by tests/test_backends.py, in subprocesses under KERAS_BACKEND=jax and torch.

Fast: one LSConv block (SKA and its custom gradients) trains with `model.fit` and survives a
`.keras` round trip. Slow: a small LSNet with every block kind (RepVGG, LSConv, attention)
does the same, reparameterizes to the same function and gives the same stage outputs as its
`features_only` twin loaded from its weights.
"""

import keras
import numpy as np
import pytest
from conftest import run_model

import lsnet_keras
from lsnet_keras.layers import Block

# depth 2 in stages 2 and 4: blocks 1 there are LSConv (SKA) and attention
SMALL = {"embed_dim": [16, 32, 48, 64], "depth": [1, 2, 1, 2], "num_heads": [1, 1, 1, 1]}
STAGES = ["stage1", "stage2", "stage3", "stage4"]


def fit(model, images, steps=4):
    """`steps` full-batch SGD steps on fixed data; returns the losses."""
    model.compile(
        optimizer=keras.optimizers.SGD(0.05),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    labels = np.arange(len(images)) % 3
    history = model.fit(
        images, labels, batch_size=len(images), epochs=steps, shuffle=False, verbose=0
    )
    return history.history["loss"]


def assert_round_trip(model, images, path):
    model.save(path)
    restored = keras.models.load_model(path)
    expected = run_model(model, images)
    assert np.abs(run_model(restored, images) - expected).max() <= 1e-6


def test_lsconv_block_trains_and_round_trips(tmp_path):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 16))
    x = Block(16, 16, 1, kind="lsconv")(inputs)
    outputs = keras.layers.Dense(3)(keras.layers.GlobalAveragePooling2D()(x))
    model = keras.Model(inputs, outputs)
    images = np.random.default_rng(0).normal(size=(6, 8, 8, 16)).astype("float32")
    losses = fit(model, images)
    assert np.isfinite(losses).all() and losses[-1] < losses[0], losses
    assert_round_trip(model, images, tmp_path / f"block_{keras.backend.backend()}.keras")


@pytest.fixture(scope="module")
def trained():
    """(model, images, losses): the small LSNet after 4 deterministic SGD steps."""
    keras.utils.set_random_seed(0)
    model = lsnet_keras.LSNet(**SMALL, num_classes=3, input_shape=64)
    images = np.random.default_rng(0).normal(size=(8, 64, 64, 3)).astype("float32")
    return model, images, fit(model, images)


@pytest.mark.slow
def test_small_lsnet_trains_and_round_trips(trained, tmp_path):
    model, images, losses = trained
    assert np.isfinite(losses).all() and losses[-1] < losses[0], losses
    assert_round_trip(model, images, tmp_path / f"small_{keras.backend.backend()}.keras")


@pytest.mark.slow
def test_small_lsnet_reparameterize_and_features_only(trained):
    model, images, _ = trained
    expected = run_model(model, images)
    deployed = lsnet_keras.reparameterize(model)
    assert np.abs(run_model(deployed, images) - expected).max() <= 1e-4
    features = lsnet_keras.LSNet(**SMALL, num_classes=3, input_shape=64, features_only=True)
    state = lsnet_keras.export_state_dict(model)
    backbone = {k: v for k, v in state.items() if not k.startswith("head")}
    lsnet_keras.load_weights(features, backbone, source="trained backbone")
    stages = keras.Model(model.input, [model.get_layer(n).output for n in STAGES])
    for ours, theirs in zip(run_model(features, images), run_model(stages, images)):
        assert np.abs(ours - theirs).max() <= 1e-5
