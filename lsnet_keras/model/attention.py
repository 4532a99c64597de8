"""Multi-head self-attention of stage 4, with the learned relative-position bias.

Example:
    >>> import numpy as np
    >>> from lsnet_keras.model.attention import Attention
    >>> Attention(64, 16, 2, resolution=(4, 4))(np.zeros((1, 4, 4, 64), "float32")).shape
    (1, 4, 4, 64)
"""

import keras
from keras import ops

from lsnet_keras.config import attention_bias_index
from lsnet_keras.model.conv import Conv2dBN
from lsnet_keras.model.ops import stats_dtype
from lsnet_keras.model.serialization import serializable
from lsnet_keras.weights.resize import bicubic_matrix


@serializable(
    "dim",
    "key_dim",
    "num_heads",
    "resolution",
    "deploy",
    "formulation",
    "fp16_safe",
    "table_resolution",
)
class Attention(keras.layers.Layer):
    """Multi-head self-attention with a learned relative-position bias (stage 4 of LSNet).

    qkv 1x1 Conv2dBN to [q | k | v] (each head a contiguous chunk), 3x3 depthwise Conv2dBN on q,
    `softmax(q k^T * key_dim^-0.5 + bias)`, ReLU, 1x1 Conv2dBN projection. The bias table
    `attention_biases` has shape (num_heads, h * w) for a (h, w) = `resolution` feature map and is
    indexed by the official (|dy|, |dx|) scheme. The residual is added by the Block.

    `fp16_safe=True` (the gpu target, whose GPU computes in float16) computes the same function
    with smaller intermediates: the scale multiplies q (the converter folds it into the depthwise
    conv's weights), so the unscaled product `q k^T`, key_dim**0.5 times larger, never exists.
    (TFLite's SOFTMAX subtracts each row's maximum itself, also on the GPU: the converter drops
    an explicit subtraction.)

    `table_resolution` (the detection form, as the official detection and segmentation code):
    the bias table is built for a fixed (h, w) grid (14x14 there) whatever the input, and its
    expanded (heads, N0, N0) bias is resized bicubically (PyTorch's rule, align_corners False)
    to the real (heads, N, N) on every call; at a fixed input size that is a constant, which
    the deploy form stores as is (`expanded_biases`, (heads, N, N): the TFLite quantizer leaves
    a resize of constants in the graph, as BATCH_MATMUL and FULLY_CONNECTED ops).

    Example:
        >>> Attention(64, 16, 2, resolution=(4, 4))(keras.ops.zeros((1, 4, 4, 64))).shape
        (1, 4, 4, 64)
    """

    FORMULATIONS = ("matmul", "elementwise")

    def __init__(
        self,
        dim,
        key_dim,
        num_heads,
        resolution,
        deploy=False,
        formulation="matmul",
        fp16_safe=False,
        table_resolution=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if formulation not in self.FORMULATIONS:
            raise ValueError(f"formulation must be one of {self.FORMULATIONS}, got {formulation!r}")
        self.formulation = formulation
        self.fp16_safe = fp16_safe
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
        self.table_resolution = None if table_resolution is None else tuple(table_resolution)
        grid = self.table_resolution or self.resolution
        self.table_size = grid[0] * grid[1]
        self.bias_index = attention_bias_index(grid)
        # (N, N0): resizes one axis of the expanded table to the real token count N.
        self.bias_resize = None
        self.stores_expanded = deploy and self.table_resolution is not None
        if self.table_resolution is not None:
            tokens = self.resolution[0] * self.resolution[1]
            self.bias_resize = bicubic_matrix(self.table_size, tokens)

    def build(self, input_shape):
        qk_channels = self.key_dim * self.num_heads
        self.qkv.build(input_shape)
        self.dw.build((*input_shape[:-1], qk_channels))
        self.proj.build((*input_shape[:-1], self.value_dim * self.num_heads))
        if self.stores_expanded:
            tokens = self.resolution[0] * self.resolution[1]
            self.expanded_biases = self.add_weight(
                name="expanded_biases", shape=(self.num_heads, tokens, tokens), initializer="zeros"
            )
            return
        self.attention_biases = self.add_weight(
            name="attention_biases", shape=(self.num_heads, self.table_size), initializer="zeros"
        )

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.dim)

    def call(self, x, training=None):
        nh, kd = self.num_heads, self.key_dim
        qkv = self.qkv(x, training=training)
        q = self.dw(qkv[..., : nh * kd], training=training)
        if self.fp16_safe:
            q = q * self.scale
        k = qkv[..., nh * kd : 2 * nh * kd]
        v = qkv[..., 2 * nh * kd :]
        bias = ops.cast(self.expanded_bias(), self.compute_dtype)
        if self.formulation == "matmul":
            out = self._matmul_attention(q, k, v, bias)
        else:
            out = self._elementwise_attention(q, k, v, bias)
        return self.proj(ops.relu(out), training=training)

    def expanded_bias(self):
        """The (heads, N, N) bias added to the attention scores (resized in the detection form).

        Example:
            >>> layer = Attention(64, 16, 2, resolution=(2, 3), table_resolution=(14, 14))
            >>> layer.build((1, 2, 3, 64))
            >>> tuple(layer.expanded_bias().shape)
            (2, 6, 6)
        """
        if self.stores_expanded:
            return self.expanded_biases
        table = self.attention_biases
        bias = ops.take(table, self.bias_index, axis=1)
        if self.bias_resize is None:
            return bias
        resize = ops.cast(self.bias_resize, table.dtype)
        return ops.matmul(ops.matmul(resize, bias), ops.transpose(resize))

    def _scaled(self, scores):
        """`scores * scale`, unless q carries the scale already (fp16_safe)."""
        return scores if self.fp16_safe else scores * self.scale

    def _softmax(self, scores):
        attn = ops.softmax(ops.cast(scores, stats_dtype(self.compute_dtype)), axis=-1)
        return ops.cast(attn, self.compute_dtype)

    def _matmul_attention(self, q, k, v, bias):
        """All heads at once with batched matmuls on (batch, heads, tokens, channels)."""
        _, h, w, _ = ops.shape(q)
        nh, kd, vd = self.num_heads, self.key_dim, self.value_dim
        q = ops.transpose(ops.reshape(q, (-1, h * w, nh, kd)), (0, 2, 1, 3))
        k = ops.transpose(ops.reshape(k, (-1, h * w, nh, kd)), (0, 2, 3, 1))
        v = ops.transpose(ops.reshape(v, (-1, h * w, nh, vd)), (0, 2, 1, 3))
        attn = self._softmax(self._scaled(ops.matmul(q, k)) + bias)
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
        sum_weight = 1.0 if self.fp16_safe else self.scale
        sum_channels = ops.full((1, 1, kd, 1), sum_weight, dtype=self.compute_dtype)
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
