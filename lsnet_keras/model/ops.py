"""Tensor helpers shared by the float layers (model/) and the QAT layers (quantization/).

All are `keras.ops` on channels-last tensors of at most 4-D, so they run on every Keras backend
and convert to TFLite builtins.

Example:
    >>> import numpy as np
    >>> pytorch_pad(np.ones((1, 2, 2, 1), "float32"), 1).shape
    TensorShape([1, 4, 4, 1])
"""

import keras
from keras import ops

BN_EPSILON = 1e-5
BN_MOMENTUM = 0.9  # PyTorch's momentum=0.1


def pytorch_pad(x, pad):
    """Zero-pad height and width by `pad` on every side, as PyTorch's `padding=pad`."""
    return ops.pad(x, [[0, 0], [pad, pad], [pad, pad], [0, 0]]) if pad else x


def _upstream(args, upstream):
    """The output gradient handed to a `keras.ops.custom_gradient` gradient function.

    TensorFlow and JAX pass it positionally; PyTorch passes the forward's inputs positionally
    and the output gradient as `upstream=` (taking `args[0]` there pads the input instead).
    """
    return args[0] if upstream is None else upstream


def crop(x, top, left, height, width):
    """`x[:, top:top + height, left:left + width, :]` whose gradient is a zero PAD.

    Same forward (one STRIDED_SLICE); TensorFlow's generic StridedSliceGrad is about 25 times
    slower than the slice on CPU and took a fifth of an LSNet-T training step through SKA.
    """

    @ops.custom_gradient
    def forward(x):
        _, full_height, full_width, _ = ops.shape(x)
        rows = [top, full_height - top - height]
        columns = [left, full_width - left - width]

        def gradient(*args, upstream=None, **_):
            return ops.pad(_upstream(args, upstream), [[0, 0], rows, columns, [0, 0]])

        return x[:, top : top + height, left : left + width, :], gradient

    return forward(x)


def tap(taps, k):
    """`taps[:, :, k:k + 1, :]` of (batch, pixels, 9, channels) weights, gradient a zero PAD."""

    @ops.custom_gradient
    def forward(taps):
        def gradient(*args, upstream=None, **_):
            return ops.pad(_upstream(args, upstream), [[0, 0], [0, 0], [k, 8 - k], [0, 0]])

        return taps[:, :, k : k + 1, :], gradient

    return forward(taps)


def ska_products(x, weights):
    """SKA's 9 per-tap products, each (batch, h * w, channels // wc, wc), tap k = kh * 3 + kw.

    Product k is `x` zero-padded by 1 and shifted by (kh, kw), times slice k of the tap-major
    `weights` (batch, h, w, 9 * wc); channel c uses weight channel `c % wc`. The float SKA sums
    them; the QAT one fake-quantizes each product and each partial sum.

    Example:
        >>> import numpy as np
        >>> x, weights = np.ones((1, 4, 4, 16), "float32"), np.ones((1, 4, 4, 18), "float32")
        >>> [tuple(p.shape) for p in ska_products(x, weights)][0]
        (1, 16, 8, 2)
    """
    _, h, w, channels = ops.shape(x)
    wc = ops.shape(weights)[-1] // 9
    padded = pytorch_pad(x, 1)
    taps = ops.reshape(weights, (-1, h * w, 9, wc))
    for k in range(9):
        kh, kw = divmod(k, 3)
        shifted = ops.reshape(crop(padded, kh, kw, h, w), (-1, h * w, channels // wc, wc))
        yield shifted * tap(taps, k)


def stats_dtype(compute_dtype):
    """Normalization statistics and softmax run in float32 at least (float16 overflows)."""
    return "float64" if compute_dtype == "float64" else "float32"


def build_sublayers(input_shape, *layers):
    """Build each layer (None: absent) for `input_shape`, without tracing any call.

    The composite layers build their parts this way and state their output shape
    (`compute_output_shape`), so a functional LSNet is assembled from shapes alone: Keras would
    otherwise trace every nested `call` to find them, which made building LSNet-T take seconds.
    """
    for layer in layers:
        if layer is not None:
            layer.build(input_shape)


def batch_norm(name, dtype):
    """BatchNormalization with PyTorch's epsilon and momentum."""
    return keras.layers.BatchNormalization(
        epsilon=BN_EPSILON, momentum=BN_MOMENTUM, name=name, dtype=dtype
    )


def depthwise_7x7_as_columns(x, kernel, bias):
    """A stride-1 7x7 depthwise conv (padding 3) as 7x3, 7x3 and 7x1 depthwise convs on
    shifted views of the padded input, summed.

    Same function, same weights; XNNPACK runs 7x7 depthwise through a generic path about 5
    times slower than these three (measured on LSNet-T's LKP at 14x14x64, fp32 and int8).
    """
    width = ops.shape(x)[2]
    padded = pytorch_pad(x, 3)
    out = bias
    for first, last in ((0, 3), (3, 6), (6, 7)):
        view = padded[:, :, first : first + width + last - first - 1, :]
        out = out + ops.depthwise_conv(view, kernel[:, first:last], padding="valid")
    return out
