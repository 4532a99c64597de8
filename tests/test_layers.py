"""Each layer against a NumPy reference of the official semantics, and its config round trip."""

import keras
import numpy as np
import pytest
from conftest import gradients

from lsnet_keras import layers as L


def ska_reference(x, w):
    """The official SKA kernel in NumPy, NCHW: x (b, c, h, w), w (b, wc, 9, h, w)."""
    b, c, h, width = x.shape
    wc = w.shape[1]
    padded = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    out = np.zeros_like(x)
    for channel in range(c):
        for kh in range(3):
            for kw in range(3):
                tap = padded[:, channel, kh : kh + h, kw : kw + width]
                out[:, channel] += tap * w[:, channel % wc, kh * 3 + kw]
    return out


def to_tap_major(w):
    """Official (b, wc, 9, h, w) kernels -> the Keras layout (b, h, w, 9 * wc), tap-major."""
    b, wc, taps, h, width = w.shape
    return w.transpose(0, 3, 4, 2, 1).reshape(b, h, width, taps * wc)


@pytest.mark.parametrize("shape", [(2, 16, 5, 7), (1, 64, 8, 8), (1, 24, 3, 3)])
def test_ska_matches_official_kernel(shape):
    rng = np.random.default_rng(0)
    x = rng.normal(size=shape).astype("float32")
    w = rng.normal(size=(shape[0], shape[1] // 8, 9, *shape[2:])).astype("float32")
    ours = L.SKA()([x.transpose(0, 2, 3, 1), to_tap_major(w)])
    assert np.abs(np.asarray(ours).transpose(0, 3, 1, 2) - ska_reference(x, w)).max() < 1e-5


def test_ska_gradients_match_the_official_kernel():
    """SKA's slices carry a custom gradient (a zero PAD, for speed): it must be the true one
    on every Keras backend (each calls the gradient function its own way)."""
    rng = np.random.default_rng(2)
    b, c, h, width = 2, 16, 5, 6
    x = rng.normal(size=(b, c, h, width)).astype("float32")
    w = rng.normal(size=(b, c // 8, 9, h, width)).astype("float32")
    upstream = rng.normal(size=(b, c, h, width)).astype("float32")
    expected_x, expected_w = np.zeros((b, c, h + 2, width + 2), "float32"), np.zeros_like(w)
    padded = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    for channel in range(c):
        for k in range(9):
            kh, kw = divmod(k, 3)
            window = (slice(None), channel, slice(kh, kh + h), slice(kw, kw + width))
            expected_x[window] += upstream[:, channel] * w[:, channel % 2, k]
            expected_w[:, channel % 2, k] += upstream[:, channel] * padded[window]
    upstream_nhwc = upstream.transpose(0, 2, 3, 1)

    def loss(x, w):
        return keras.ops.sum(L.SKA()([x, w]) * keras.ops.convert_to_tensor(upstream_nhwc))

    grad_x, grad_w = gradients(loss, [x.transpose(0, 2, 3, 1), to_tap_major(w)])
    assert np.abs(grad_x.transpose(0, 3, 1, 2) - expected_x[:, :, 1:-1, 1:-1]).max() < 1e-4
    assert np.abs(grad_w - to_tap_major(expected_w)).max() < 1e-4


def test_ska_uses_interleaved_channel_sharing():
    # Only weight channel 1 is non-zero: channels c with c % wc == 1 respond, no others.
    x = np.ones((1, 16, 3, 3), "float32")
    w = np.zeros((1, 2, 9, 3, 3), "float32")
    w[:, 1, 4] = 1.0  # centre tap of weight channel 1
    out = np.asarray(L.SKA()([x.transpose(0, 2, 3, 1), to_tap_major(w)]))
    responding = np.flatnonzero(out[0, 1, 1])
    assert responding.tolist() == list(range(1, 16, 2))


def test_lkp_group_norm_matches_torch_definition():
    rng = np.random.default_rng(1)
    lkp = L.LKP(32)
    lkp(np.zeros((1, 6, 5, 32), "float32"))  # builds the affine parameters (ones, zeros)
    x = rng.normal(size=(2, 6, 5, 36)).astype("float32") * 3 + 1
    ours = np.asarray(lkp.group_norm(keras.ops.convert_to_tensor(x)))
    groups = x.reshape(2, 30, 9, 4)  # tap-major: group j is [..., :, j]
    mean = groups.mean(axis=(1, 2), keepdims=True)
    var = groups.var(axis=(1, 2), keepdims=True)
    expected = ((groups - mean) / np.sqrt(var + 1e-5)).reshape(x.shape)
    assert np.abs(ours - expected).max() < 1e-5


def test_strided_conv_pads_like_pytorch():
    # On an even input a stride-2 3x3 conv must see one zero row/column on *each* side.
    layer = L.Conv2dBN(1, 3, strides=2, deploy=True)
    x = np.arange(16, dtype="float32").reshape(1, 4, 4, 1)
    layer(x)
    kernel = np.zeros((3, 3, 1, 1), "float32")
    kernel[0, 0] = 1.0  # picks the top-left neighbour: x[2i-1, 2j-1], zero at i=0 or j=0
    layer.conv.kernel.assign(kernel)
    layer.conv.bias.assign(np.zeros(1, "float32"))
    out = np.asarray(layer(x))[0, :, :, 0]
    assert out.tolist() == [[0.0, 0.0], [0.0, 5.0]]


LAYERS = [
    (L.Conv2dBN(8, 3, strides=2, depthwise=True), (1, 8, 8, 8)),
    (L.RepVGGDW(8), (1, 5, 5, 8)),
    (L.SqueezeExcite(16), (1, 4, 4, 16)),
    (L.FFN(8, 16), (1, 4, 4, 8)),
    (L.LKP(16), (1, 4, 4, 16)),
    (L.LSConv(16), (1, 4, 4, 16)),
    (L.Attention(32, 16, 2, resolution=(3, 3)), (1, 3, 3, 32)),
    (L.Block(32, 16, 2, kind="attention", resolution=(3, 3)), (1, 3, 3, 32)),
    (L.Block(16, 16, 2, kind="repvgg"), (1, 4, 4, 16)),
    (L.BNLinear(5), (2, 16)),
]


@pytest.mark.parametrize("layer, shape", LAYERS, ids=lambda v: getattr(v, "name", ""))
def test_layer_config_round_trip(layer, shape):
    x = np.random.default_rng(2).normal(size=shape).astype("float32")
    layer(x)
    clone = type(layer).from_config(layer.get_config())
    clone(x)
    clone.set_weights(layer.get_weights())
    assert np.allclose(clone(x), layer(x), atol=1e-6)
    serialized = keras.saving.serialize_keras_object(layer)
    assert serialized["registered_name"].startswith("lsnet>")


def test_block_rejects_unknown_kind():
    with pytest.raises(ValueError, match="kind must be one of"):
        L.Block(16, 16, 2, kind="conv")


def test_deployed_7x7_depthwise_split_is_the_same_convolution():
    layer = L.Conv2dBN(16, 7, depthwise=True, deploy=True)
    x = np.random.default_rng(3).normal(size=(2, 9, 6, 16)).astype("float32")
    layer(x)  # builds; the deploy form runs 7x3 + 7x3 + 7x1 column strips
    kernel = np.random.default_rng(4).normal(size=(7, 7, 16, 1)).astype("float32")
    layer.conv.kernel.assign(kernel)
    layer.conv.bias.assign(np.arange(16, dtype="float32"))
    split = np.asarray(layer(x))
    plain = np.asarray(layer.conv(x))  # one 7x7 conv, `same` (= symmetric 3) padding
    assert np.abs(split - plain).max() < 1e-4
