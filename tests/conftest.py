"""Shared fixtures: Keras models built from the golden cases, quiet TensorFlow logs."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from goldens import load_case  # noqa: E402

import lsnet_keras  # noqa: E402


def keras_model_for(config, **kwargs):
    """A Keras LSNet with the architecture of a golden case / torch reference config."""
    return lsnet_keras.LSNet(
        config["embed_dim"],
        config["depth"],
        config["num_heads"],
        key_dim=config.get("key_dim", (16, 16, 16, 16)),
        num_classes=config["num_classes"],
        distillation=config.get("distillation", False),
        input_shape=config["img_size"],
        **kwargs,
    )


def nhwc(x):
    return np.ascontiguousarray(np.asarray(x).transpose(0, 2, 3, 1))


def nchw(x):
    return np.asarray(x).transpose(0, 3, 1, 2)


def with_features(model):
    """The model's outputs plus [patch_embed, stage1..stage4] as one Keras model."""
    names = ["patch_embed_4", "stage1", "stage2", "stage3", "stage4"]
    outputs = [model.output] + [model.get_layer(n).output for n in names]
    return keras.Model(model.input, outputs)


def gradients(loss, inputs):
    """d loss(*inputs) / d inputs as NumPy arrays, by the active Keras backend's autodiff.

    `loss` maps backend tensors to a scalar with keras.ops; JAX differentiates it jitted.
    """
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        tensors = [tf.constant(a) for a in inputs]
        with tf.GradientTape() as tape:
            tape.watch(tensors)
            value = loss(*tensors)
        grads = tape.gradient(value, tensors)
    elif backend == "jax":
        import jax

        grads = jax.jit(jax.grad(lambda args: loss(*args)))([jax.numpy.asarray(a) for a in inputs])
    elif backend == "torch":
        import torch

        tensors = [torch.tensor(a, requires_grad=True) for a in inputs]
        loss(*tensors).backward()
        grads = [t.grad for t in tensors]
    else:
        raise ValueError(f"no gradient helper for Keras backend {backend!r}")
    return [keras.ops.convert_to_numpy(g) for g in grads]


@pytest.fixture
def float64_policy():
    """Build and run models in float64 for the duration of a test."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("float64")
    yield
    keras.config.set_dtype_policy(previous)


@pytest.fixture(scope="session")
def golden():
    """load_case, cached per session."""
    cache = {}

    def get(name):
        if name not in cache:
            cache[name] = load_case(name)
        return cache[name]

    return get
