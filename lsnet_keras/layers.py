"""Keras 3 layers of LSNet, channels-last, written only with ops TFLite maps to builtins.

Every tensor stays at most 4-D, every convolution pads like PyTorch (symmetrically), and each
layer has a `deploy` form (BatchNorm folded, RepVGG branches fused) that `reparameterize` fills.

Example:
    >>> import numpy as np
    >>> from lsnet_keras.layers import Block
    >>> block = Block(dim=64, key_dim=16, num_heads=2, kind="lsconv")
    >>> block(np.zeros((1, 16, 16, 64), "float32")).shape
    (1, 16, 16, 64)
"""

import keras
from keras import ops

from lsnet_keras.config import attention_bias_index, make_divisible

BN_EPSILON = 1e-5
BN_MOMENTUM = 0.9  # PyTorch's momentum=0.1
serializable = keras.saving.register_keras_serializable(package="lsnet")


def _pytorch_pad(x, pad):
    """Zero-pad height and width by `pad` on every side, as PyTorch's `padding=pad`."""
    return ops.pad(x, [[0, 0], [pad, pad], [pad, pad], [0, 0]]) if pad else x


def _crop(x, top, left, height, width):
    """`x[:, top:top + height, left:left + width, :]` whose gradient is a zero PAD.

    Same forward (one STRIDED_SLICE); TensorFlow's generic StridedSliceGrad is about 25 times
    slower than the slice on CPU and took a fifth of an LSNet-T training step through SKA.
    """

    @ops.custom_gradient
    def crop(x):
        _, full_height, full_width, _ = ops.shape(x)
        rows = [top, full_height - top - height]
        columns = [left, full_width - left - width]

        def gradient(*upstream, **_):
            return ops.pad(upstream[0], [[0, 0], rows, columns, [0, 0]])

        return x[:, top : top + height, left : left + width, :], gradient

    return crop(x)


def _tap(taps, k):
    """`taps[:, :, k:k + 1, :]` of (batch, pixels, 9, channels) weights, gradient a zero PAD."""

    @ops.custom_gradient
    def tap(taps):
        def gradient(*upstream, **_):
            return ops.pad(upstream[0], [[0, 0], [0, 0], [k, 8 - k], [0, 0]])

        return taps[:, :, k : k + 1, :], gradient

    return tap(taps)


def _stats_dtype(compute_dtype):
    """Normalization statistics and softmax run in float32 at least (float16 overflows)."""
    return "float64" if compute_dtype == "float64" else "float32"


def _batch_norm(name, dtype):
    return keras.layers.BatchNormalization(
        epsilon=BN_EPSILON, momentum=BN_MOMENTUM, name=name, dtype=dtype
    )


def _depthwise_7x7_as_columns(x, kernel, bias):
    """A stride-1 7x7 depthwise conv (padding 3) as 7x3, 7x3 and 7x1 depthwise convs on
    shifted views of the padded input, summed.

    Same function, same weights; XNNPACK runs 7x7 depthwise through a generic path about 5
    times slower than these three (measured on LSNet-T's LKP at 14x14x64, fp32 and int8).
    """
    width = ops.shape(x)[2]
    padded = _pytorch_pad(x, 3)
    out = bias
    for first, last in ((0, 3), (3, 6), (6, 7)):
        view = padded[:, :, first : first + width + last - first - 1, :]
        out = out + ops.depthwise_conv(view, kernel[:, first:last], padding="valid")
    return out


@serializable
class Conv2dBN(keras.layers.Layer):
    """Convolution without bias followed by BatchNorm (official `Conv2d_BN`).

    Stride-1 convolutions use `same` padding (symmetric for odd kernels); strided ones pad
    explicitly so even-sized inputs are padded like PyTorch, not like Keras `same`.
    With `deploy=True` the layer is a single convolution with bias.

    Example:
        >>> Conv2dBN(32, kernel_size=3, strides=2)(keras.ops.zeros((1, 8, 8, 3))).shape
        (1, 4, 4, 32)
    """

    def __init__(self, filters, kernel_size=1, strides=1, depthwise=False, deploy=False, **kwargs):
        super().__init__(**kwargs)
        self.filters = filters
        self.kernel_size = kernel_size
        self.strides = strides
        self.depthwise = depthwise
        self.deploy = deploy
        padding = "same" if strides == 1 else "valid"
        self.pad = 0 if strides == 1 else kernel_size // 2
        common = {"strides": strides, "padding": padding, "use_bias": deploy}
        if depthwise:
            self.conv = keras.layers.DepthwiseConv2D(
                kernel_size, name="conv", dtype=self.dtype_policy, **common
            )
        else:
            self.conv = keras.layers.Conv2D(
                filters, kernel_size, name="conv", dtype=self.dtype_policy, **common
            )
        self.bn = None if deploy else _batch_norm("bn", self.dtype_policy)

    def call(self, x, training=None):
        if self._uses_column_strips(x):
            if not self.conv.built:
                self.conv.build(x.shape)
            return _depthwise_7x7_as_columns(x, self.conv.kernel, self.conv.bias)
        x = self.conv(_pytorch_pad(x, self.pad))
        return x if self.bn is None else self.bn(x, training=training)

    def _uses_column_strips(self, x):
        """Deploy-form 7x7 stride-1 depthwise on maps at least 7 wide (narrower maps would
        give strips that see only padding, whose all-zero outputs break int8 calibration)."""
        width = x.shape[2]
        wide_enough = width is None or width >= 7
        deploy_7x7 = self.deploy and self.depthwise and self.kernel_size == 7
        return deploy_7x7 and self.strides == 1 and wide_enough

    def get_config(self):
        config = super().get_config()
        config.update(
            filters=self.filters,
            kernel_size=self.kernel_size,
            strides=self.strides,
            depthwise=self.depthwise,
            deploy=self.deploy,
        )
        return config


@serializable
class RepVGGDW(keras.layers.Layer):
    """3x3 depthwise Conv2dBN + 1x1 depthwise Conv2dBN + identity; one 3x3 conv when deployed.

    Example:
        >>> RepVGGDW(16)(keras.ops.zeros((1, 5, 5, 16))).shape
        (1, 5, 5, 16)
    """

    def __init__(self, dim, deploy=False, **kwargs):
        super().__init__(**kwargs)
        self.dim = dim
        self.deploy = deploy
        self.conv = Conv2dBN(
            dim, 3, depthwise=True, deploy=deploy, name="conv", dtype=self.dtype_policy
        )
        self.conv1 = (
            None
            if deploy
            else Conv2dBN(dim, 1, depthwise=True, name="conv1", dtype=self.dtype_policy)
        )

    def call(self, x, training=None):
        if self.conv1 is None:
            return self.conv(x)
        return self.conv(x, training=training) + self.conv1(x, training=training) + x

    def get_config(self):
        config = super().get_config()
        config.update(dim=self.dim, deploy=self.deploy)
        return config


@serializable
class SqueezeExcite(keras.layers.Layer):
    """timm's SqueezeExcite: mean over space, 1x1 conv, ReLU, 1x1 conv, sigmoid gate.

    Example:
        >>> SqueezeExcite(64)(keras.ops.ones((1, 4, 4, 64))).shape
        (1, 4, 4, 64)
    """

    def __init__(self, dim, ratio=0.25, **kwargs):
        super().__init__(**kwargs)
        self.dim = dim
        self.ratio = ratio
        hidden = make_divisible(dim * ratio)
        self.fc1 = keras.layers.Conv2D(hidden, 1, name="fc1", dtype=self.dtype_policy)
        self.fc2 = keras.layers.Conv2D(dim, 1, name="fc2", dtype=self.dtype_policy)

    def call(self, x):
        gate = ops.mean(x, axis=(1, 2), keepdims=True)
        gate = self.fc2(ops.relu(self.fc1(gate)))
        return x * ops.sigmoid(gate)

    def get_config(self):
        config = super().get_config()
        config.update(dim=self.dim, ratio=self.ratio)
        return config


@serializable
class FFN(keras.layers.Layer):
    """1x1 Conv2dBN to `hidden`, ReLU, 1x1 Conv2dBN back to `dim` (the residual is the Block's).

    Example:
        >>> FFN(16, 32)(keras.ops.zeros((1, 3, 3, 16))).shape
        (1, 3, 3, 16)
    """

    def __init__(self, dim, hidden, deploy=False, **kwargs):
        super().__init__(**kwargs)
        self.dim = dim
        self.hidden = hidden
        self.deploy = deploy
        self.pw1 = Conv2dBN(hidden, deploy=deploy, name="pw1", dtype=self.dtype_policy)
        self.pw2 = Conv2dBN(dim, deploy=deploy, name="pw2", dtype=self.dtype_policy)

    def call(self, x, training=None):
        return self.pw2(ops.relu(self.pw1(x, training=training)), training=training)

    def get_config(self):
        config = super().get_config()
        config.update(dim=self.dim, hidden=self.hidden, deploy=self.deploy)
        return config


@serializable
class LKP(keras.layers.Layer):
    """Large-kernel perception: predicts per-pixel 3x3 kernels for SKA.

    cv1 (1x1) -> ReLU -> cv2 (7x7 depthwise) -> cv3 (1x1) -> ReLU -> cv4 (1x1, bias) -> GroupNorm
    with `dim // 8` groups of 9 taps each, normalized over (taps, height, width).

    The output is laid out tap-major: channel `k * (dim // 8) + j` is tap k of weight channel j
    (the official layout is `j * 9 + k`; the weight mapping permutes cv4 and the norm to match).
    Tap-major keeps each tap a contiguous slice and the norm a 4-D reshape.

    Example:
        >>> LKP(64)(keras.ops.zeros((1, 6, 6, 64))).shape
        (1, 6, 6, 72)
    """

    def __init__(self, dim, large_kernel=7, deploy=False, **kwargs):
        super().__init__(**kwargs)
        self.dim = dim
        self.large_kernel = large_kernel
        self.deploy = deploy
        self.weight_channels = dim // 8
        half = dim // 2
        self.cv1 = Conv2dBN(half, deploy=deploy, name="cv1", dtype=self.dtype_policy)
        self.cv2 = Conv2dBN(
            half, large_kernel, depthwise=True, deploy=deploy, name="cv2", dtype=self.dtype_policy
        )
        self.cv3 = Conv2dBN(half, deploy=deploy, name="cv3", dtype=self.dtype_policy)
        self.cv4 = keras.layers.Conv2D(
            9 * self.weight_channels, 1, name="cv4", dtype=self.dtype_policy
        )

    def build(self, input_shape):
        channels = 9 * self.weight_channels
        self.norm_gamma = self.add_weight(name="norm_gamma", shape=(channels,), initializer="ones")
        self.norm_beta = self.add_weight(name="norm_beta", shape=(channels,), initializer="zeros")

    def call(self, x, training=None):
        x = ops.relu(self.cv1(x, training=training))
        x = ops.relu(self.cv3(self.cv2(x, training=training), training=training))
        return self.group_norm(self.cv4(x))

    def group_norm(self, w):
        """GroupNorm over (taps, height, width) of each weight channel, in at most 4-D."""
        _, h, width, channels = ops.shape(w)
        grouped = ops.reshape(
            ops.cast(w, _stats_dtype(self.compute_dtype)), (-1, h * width, 9, self.weight_channels)
        )
        mean = ops.mean(grouped, axis=(1, 2), keepdims=True)
        centered = grouped - mean
        var = ops.mean(centered * centered, axis=(1, 2), keepdims=True)
        normalized = ops.reshape(centered * ops.rsqrt(var + BN_EPSILON), (-1, h, width, channels))
        normalized = ops.cast(normalized, self.compute_dtype)
        return normalized * self.norm_gamma + self.norm_beta

    def get_config(self):
        config = super().get_config()
        config.update(dim=self.dim, large_kernel=self.large_kernel, deploy=self.deploy)
        return config


@serializable
class SKA(keras.layers.Layer):
    """Small-kernel aggregation: a 3x3 convolution whose kernel differs at every pixel.

    `out[b, h, w, c] = sum_k x[b, h + kh - 1, w + kw - 1, c] * weights[b, h, w, k * wc + c % wc]`
    with zero padding, no kernel flip, `wc = channels // 8` and `k = kh * 3 + kw` (tap-major
    weights, see LKP). Channel c shares weight channel `c % wc`, as in the official kernel.
    Built from PAD, STRIDED_SLICE, RESHAPE, MUL and ADD on tensors of at most 4-D.

    Example:
        >>> x = keras.ops.ones((1, 4, 4, 16))
        >>> SKA()([x, keras.ops.ones((1, 4, 4, 18))]).shape
        (1, 4, 4, 16)
    """

    def call(self, inputs):
        x, weights = inputs
        _, h, w, channels = ops.shape(x)
        wc = ops.shape(weights)[-1] // 9
        padded = _pytorch_pad(x, 1)
        taps = ops.reshape(weights, (-1, h * w, 9, wc))
        out = None
        for k in range(9):
            kh, kw = divmod(k, 3)
            shifted = ops.reshape(_crop(padded, kh, kw, h, w), (-1, h * w, channels // wc, wc))
            term = shifted * _tap(taps, k)
            out = term if out is None else out + term
        return ops.reshape(out, (-1, h, w, channels))


@serializable
class LSConv(keras.layers.Layer):
    """LS convolution: `bn(ska(x, lkp(x))) + x`.

    Example:
        >>> LSConv(32)(keras.ops.zeros((1, 5, 5, 32))).shape
        (1, 5, 5, 32)
    """

    def __init__(self, dim, deploy=False, **kwargs):
        super().__init__(**kwargs)
        self.dim = dim
        self.deploy = deploy
        self.lkp = LKP(dim, deploy=deploy, name="lkp", dtype=self.dtype_policy)
        self.ska = SKA(name="ska", dtype=self.dtype_policy)
        self.bn = _batch_norm("bn", self.dtype_policy)

    def call(self, x, training=None):
        return self.bn(self.ska([x, self.lkp(x, training=training)]), training=training) + x

    def get_config(self):
        config = super().get_config()
        config.update(dim=self.dim, deploy=self.deploy)
        return config


@serializable
class Attention(keras.layers.Layer):
    """Multi-head self-attention with a learned relative-position bias (stage 4 of LSNet).

    qkv 1x1 Conv2dBN to [q | k | v] (each head a contiguous chunk), 3x3 depthwise Conv2dBN on q,
    `softmax(q k^T * key_dim^-0.5 + bias)`, ReLU, 1x1 Conv2dBN projection. The bias table
    `attention_biases` has shape (num_heads, h * w) for a (h, w) = `resolution` feature map and is
    indexed by the official (|dy|, |dx|) scheme. The residual is added by the Block.

    Example:
        >>> Attention(64, 16, 2, resolution=(4, 4))(keras.ops.zeros((1, 4, 4, 64))).shape
        (1, 4, 4, 64)
    """

    FORMULATIONS = ("matmul", "elementwise")

    def __init__(
        self, dim, key_dim, num_heads, resolution, deploy=False, formulation="matmul", **kwargs
    ):
        super().__init__(**kwargs)
        if formulation not in self.FORMULATIONS:
            raise ValueError(f"formulation must be one of {self.FORMULATIONS}, got {formulation!r}")
        self.formulation = formulation
        self.dim = dim
        self.key_dim = key_dim
        self.num_heads = num_heads
        self.resolution = tuple(resolution)
        self.deploy = deploy
        self.value_dim = int(dim / (key_dim * num_heads) * key_dim)
        self.scale = key_dim**-0.5
        qk_channels = key_dim * num_heads
        self.qkv = Conv2dBN(
            2 * qk_channels + self.value_dim * num_heads,
            deploy=deploy,
            name="qkv",
            dtype=self.dtype_policy,
        )
        self.dw = Conv2dBN(
            qk_channels, 3, depthwise=True, deploy=deploy, name="dw", dtype=self.dtype_policy
        )
        self.proj = Conv2dBN(dim, deploy=deploy, name="proj", dtype=self.dtype_policy)
        self.bias_index = attention_bias_index(self.resolution)

    def build(self, input_shape):
        h, w = self.resolution
        self.attention_biases = self.add_weight(
            name="attention_biases", shape=(self.num_heads, h * w), initializer="zeros"
        )

    def call(self, x, training=None):
        nh, kd = self.num_heads, self.key_dim
        qkv = self.qkv(x, training=training)
        q = self.dw(qkv[..., : nh * kd], training=training)
        k = qkv[..., nh * kd : 2 * nh * kd]
        v = qkv[..., 2 * nh * kd :]
        bias = ops.take(self.attention_biases, self.bias_index, axis=1)
        bias = ops.cast(bias, self.compute_dtype)
        if self.formulation == "matmul":
            out = self._matmul_attention(q, k, v, bias)
        else:
            out = self._elementwise_attention(q, k, v, bias)
        return self.proj(ops.relu(out), training=training)

    def _softmax(self, scores):
        attn = ops.softmax(ops.cast(scores, _stats_dtype(self.compute_dtype)), axis=-1)
        return ops.cast(attn, self.compute_dtype)

    def _matmul_attention(self, q, k, v, bias):
        """All heads at once with batched matmuls on (batch, heads, tokens, channels)."""
        _, h, w, _ = ops.shape(q)
        nh, kd, vd = self.num_heads, self.key_dim, self.value_dim
        q = ops.transpose(ops.reshape(q, (-1, h * w, nh, kd)), (0, 2, 1, 3))
        k = ops.transpose(ops.reshape(k, (-1, h * w, nh, kd)), (0, 2, 3, 1))
        v = ops.transpose(ops.reshape(v, (-1, h * w, nh, vd)), (0, 2, 1, 3))
        attn = self._softmax(ops.matmul(q, k) * self.scale + bias)
        return ops.reshape(ops.transpose(ops.matmul(attn, v), (0, 2, 1, 3)), (-1, h, w, nh * vd))

    def _elementwise_attention(self, q, k, v, bias):
        """Per head, with broadcast products and reductions over H/W-like axes only.

        For accelerators without batched matmul and with 1-D softmax (Coral Edge TPU): every
        tensor has at most 3 non-unit dimensions at batch 1; scores (1, N, N, kd) are summed by
        a 1x1 convolution with constant weights, each row gets its own 1-D softmax, and the
        weighted sum over tokens is a MEAN over axis 2 times N.
        """
        _, h, w, _ = ops.shape(q)
        n = h * w
        kd, vd = self.key_dim, self.value_dim
        sum_channels = ops.full((1, 1, kd, 1), self.scale, dtype=self.compute_dtype)
        heads = []
        for head in range(self.num_heads):
            q_h = ops.reshape(q[..., head * kd : (head + 1) * kd], (-1, n, 1, kd))
            k_h = ops.reshape(k[..., head * kd : (head + 1) * kd], (-1, 1, n, kd))
            scores = ops.conv(q_h * k_h, sum_channels)  # (batch, n, n, 1)
            scores = scores + ops.reshape(bias[head], (1, n, n, 1))
            rows = [self._softmax(ops.reshape(scores[:, i], (-1, n))) for i in range(n)]
            attn = ops.reshape(ops.stack(rows, axis=1), (-1, n, n, 1))
            v_h = ops.reshape(v[..., head * vd : (head + 1) * vd], (-1, 1, n, vd))
            heads.append(ops.mean(attn * v_h, axis=2) * float(n))  # (batch, n, vd)
        return ops.reshape(ops.concatenate(heads, axis=-1), (-1, h, w, self.num_heads * vd))

    def get_config(self):
        config = super().get_config()
        config.update(
            dim=self.dim,
            key_dim=self.key_dim,
            num_heads=self.num_heads,
            resolution=self.resolution,
            deploy=self.deploy,
            formulation=self.formulation,
        )
        return config


@serializable
class Block(keras.layers.Layer):
    """One LSNet block: token mixer, optional SE, then a residual FFN (hidden = 2 * dim).

    `kind` is "repvgg" (RepVGGDW + SqueezeExcite; even block indices), "lsconv" (odd indices
    of stages 1-3) or "attention" (odd indices of stage 4, residual); `formulation` picks how
    attention is computed (see Attention).

    Example:
        >>> Block(32, 16, 2, kind="repvgg")(keras.ops.zeros((1, 4, 4, 32))).shape
        (1, 4, 4, 32)
    """

    KINDS = ("repvgg", "lsconv", "attention")

    def __init__(
        self,
        dim,
        key_dim,
        num_heads,
        kind,
        resolution=None,
        deploy=False,
        formulation="matmul",
        **kwargs,
    ):
        super().__init__(**kwargs)
        if kind not in self.KINDS:
            raise ValueError(f"Block kind must be one of {self.KINDS}, got {kind!r}")
        self.dim = dim
        self.key_dim = key_dim
        self.num_heads = num_heads
        self.kind = kind
        self.resolution = None if resolution is None else tuple(resolution)
        self.deploy = deploy
        self.formulation = formulation
        policy = self.dtype_policy
        self.se = None
        if kind == "repvgg":
            self.mixer = RepVGGDW(dim, deploy=deploy, name="mixer", dtype=policy)
            self.se = SqueezeExcite(dim, name="se", dtype=policy)
        elif kind == "lsconv":
            self.mixer = LSConv(dim, deploy=deploy, name="mixer", dtype=policy)
        else:
            self.mixer = Attention(
                dim,
                key_dim,
                num_heads,
                resolution,
                deploy=deploy,
                formulation=formulation,
                name="mixer",
                dtype=policy,
            )
        self.ffn = FFN(dim, 2 * dim, deploy=deploy, name="ffn", dtype=policy)

    def call(self, x, training=None):
        mixed = self.mixer(x, training=training)
        x = x + mixed if self.kind == "attention" else mixed
        if self.se is not None:
            x = self.se(x)
        return x + self.ffn(x, training=training)

    def get_config(self):
        config = super().get_config()
        config.update(
            dim=self.dim,
            key_dim=self.key_dim,
            num_heads=self.num_heads,
            kind=self.kind,
            resolution=self.resolution,
            deploy=self.deploy,
            formulation=self.formulation,
        )
        return config


@serializable
class BNLinear(keras.layers.Layer):
    """BatchNorm1d then Linear (official `BN_Linear`), the classifier on pooled features.

    With `deploy=True` the BatchNorm is folded into the Dense layer.

    Example:
        >>> BNLinear(10)(keras.ops.zeros((2, 64))).shape
        (2, 10)
    """

    def __init__(self, units, deploy=False, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.deploy = deploy
        self.bn = None if deploy else _batch_norm("bn", self.dtype_policy)
        self.linear = keras.layers.Dense(units, name="linear", dtype=self.dtype_policy)

    def call(self, x, training=None):
        if self.bn is not None:
            x = self.bn(x, training=training)
        return self.linear(x)

    def get_config(self):
        config = super().get_config()
        config.update(units=self.units, deploy=self.deploy)
        return config
