"""Keras vs the PyTorch reference (tests/torch_lsnet.py, itself equal to the goldens) for the
variants the goldens do not cover numerically: LSNet-S, LSNet-B and the distill heads, at 224
and at another size. Random but realistic weights (see torch_lsnet.randomize_).

In float64 both sides compute the exact function, so they must agree to 1e-8 whatever the
depth; in float32 the Keras model is held to 1e-3 of the logits' range (float32 rounding grows
with depth: about 1e-3 on LSNet-B's logits, as the shared README notes).
"""

import numpy as np
import pytest
import torch
import torch_lsnet  # noqa: E402
from conftest import nhwc, run_model

import lsnet_keras

CASES = [
    ("lsnet_s", 224),
    ("lsnet_b", 224),
    ("lsnet_t_distill", 224),
    ("lsnet_s_distill", 192),
    ("lsnet_b_distill", 160),
    ("lsnet_t", 256),
]


def reference_and_inputs(variant, size, seed):
    reference = torch_lsnet.build_variant(variant, img_size=size)
    torch_lsnet.randomize_(reference, seed)
    reference.eval()
    x = np.random.default_rng(seed).normal(size=(2, 3, size, size)).astype("float32")
    state = {k: v.numpy() for k, v in reference.state_dict().items()}
    return reference, x, state


@pytest.mark.slow
@pytest.mark.parametrize("variant, size", CASES)
def test_keras_equals_torch_reference(variant, size, float64_policy):
    reference, x, state = reference_and_inputs(variant, size, seed=size)
    with torch.no_grad():
        expected = reference.double()(torch.from_numpy(x).double()).numpy()
    model = lsnet_keras.build_variant(variant, input_shape=size)
    lsnet_keras.load_weights(model, state, source="torch reference")
    logits = np.asarray(model(nhwc(x).astype("float64")))
    assert np.abs(logits - expected).max() <= 1e-8
    deployed = lsnet_keras.reparameterize(model)
    assert np.abs(np.asarray(deployed(nhwc(x).astype("float64"))) - expected).max() <= 1e-8


@pytest.mark.slow
@pytest.mark.parametrize("variant, size", [("lsnet_b", 224), ("lsnet_s_distill", 192)])
def test_keras_float32_close_to_torch_reference(variant, size):
    reference, x, state = reference_and_inputs(variant, size, seed=size)
    with torch.no_grad():
        expected = reference(torch.from_numpy(x)).numpy()
    model = lsnet_keras.build_variant(variant, input_shape=size)
    lsnet_keras.load_weights(model, state, source="torch reference")
    scale = np.abs(expected).max()
    for form in (model, lsnet_keras.reparameterize(model)):
        logits = run_model(form, nhwc(x))
        assert np.abs(logits - expected).max() <= 1e-3 * max(1.0, scale)
        assert (logits.argmax(-1) == expected.argmax(-1)).all()
