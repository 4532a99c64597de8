"""Quantization-aware attention of stage 4 (the deploy form's `Attention`, per target layout).

Example:
    >>> import numpy as np
    >>> from lsnet_keras.quantization.attention import QAttention
    >>> layer = QAttention(64, 16, 2, resolution=(4, 4))
    >>> layer(np.zeros((1, 4, 4, 64), "float32"), training=True).shape
    (1, 4, 4, 64)
"""

from keras import ops

from lsnet_keras.config import attention_bias_index
from lsnet_keras.model.attention import Attention
from lsnet_keras.model.serialization import serializable
from lsnet_keras.quantization.layers import PROBABILITY_RANGE, QConv, QuantLayer, quant_options

# Added to every attention bias (softmax ignores it): see QAttention.call.
SOFTMAX_SHIFT = 1e-6


@serializable("dim", "key_dim", "num_heads", "resolution", "formulation")
class QAttention(QuantLayer):
    """Attention (see `layers.Attention`), fake-quantized for its formulation.

    The key_dim^-0.5 scale is folded into the q convolution. "matmul": BATCH_MATMUL, ADD (bias),
    SOFTMAX, BATCH_MATMUL, RELU. "elementwise" (Edge TPU), per head: MUL, CONV_2D (sum over
    channels), ADD (bias), one 1-D SOFTMAX per row, MUL, MEAN; the token count N of the
    `mean * N` is folded into the projection's kernel (ReLU commutes with it).

    Example:
        >>> QAttention(64, 16, 2, resolution=(4, 4))(keras.ops.zeros((1, 4, 4, 64))).shape
        (1, 4, 4, 64)
    """

    HEAD_STEPS = ("product", "scores", "biased", "weighted")

    def __init__(self, dim, key_dim, num_heads, resolution, formulation="matmul", **kwargs):
        super().__init__(**kwargs)
        if formulation not in Attention.FORMULATIONS:
            raise ValueError(
                f"formulation must be one of {Attention.FORMULATIONS}, got {formulation!r}"
            )
        self.dim = dim
        self.key_dim = key_dim
        self.num_heads = num_heads
        self.resolution = tuple(resolution)
        self.formulation = formulation
        self.value_dim = int(dim / (key_dim * num_heads) * key_dim)
        self.bias_index = attention_bias_index(self.resolution)
        tokens = self.resolution[0] * self.resolution[1]
        qk = key_dim * num_heads
        q = quant_options(self)
        self.qkv = QConv(2 * qk + self.value_dim * num_heads, name="qkv", **q)
        self.dw = QConv(qk, 3, depthwise=True, output_scale=key_dim**-0.5, name="dw", **q)
        input_scale = float(tokens) if formulation == "elementwise" else 1.0
        self.proj = QConv(dim, input_scale=input_scale, name="proj", **q)
        steps = ["scores", "biased"]
        if formulation == "elementwise":  # per head; "context" is after the CONCATENATION
            steps = [f"{step}{h}" for h in range(num_heads) for step in self.HEAD_STEPS]
        self.step_quants = {step: self._fake_quant(f"{step}_quant") for step in steps}
        self.context_quant = self._fake_quant("context_quant")
        self.softmax_quant = self._fake_quant("softmax_quant", PROBABILITY_RANGE)
        self.relu_quant = self._fake_quant("relu_quant")

    def build(self, input_shape):
        h, w = self.resolution
        self.attention_biases = self.add_weight(
            name="attention_biases", shape=(self.num_heads, h * w), initializer="zeros"
        )
        batch = input_shape[0]
        self.qkv.build(input_shape)
        self.dw.build((batch, h, w, self.key_dim * self.num_heads))
        self.proj.build((batch, h, w, self.value_dim * self.num_heads))
        quants = [self.softmax_quant, self.relu_quant, self.context_quant]
        for quant in quants + list(self.step_quants.values()):
            quant.build(None)

    def call(self, x, training=None):
        nh, kd = self.num_heads, self.key_dim
        qkv = self.qkv(x, training=training)
        q = self.dw(qkv[..., : nh * kd], training=training)
        k = qkv[..., nh * kd : 2 * nh * kd]
        v = qkv[..., 2 * nh * kd :]
        bias = ops.take(self.attention_biases, self.bias_index, axis=1)
        # Softmax ignores a constant shift; this one keeps the bias ADD in the graph when the
        # table is all zero (as initialized): the converter would fold `x + 0` and merge the two
        # fake-quants around it into one that breaks its same-scale check after slicing.
        bias = self._constant(bias + SOFTMAX_SHIFT)
        if self.formulation == "matmul":
            out = self._matmul_attention(q, k, v, bias, training)
        else:
            out = self._elementwise_attention(q, k, v, bias, training)
        return self.proj(self.relu_quant(ops.relu(out), training=training), training=training)

    def _quant(self, head, step, x, training):
        """Fake-quant `x` at `step` of `head` (None: all heads at once, the matmul form)."""
        return self.step_quants[step + ("" if head is None else str(head))](x, training=training)

    def _matmul_attention(self, q, k, v, bias, training):
        _, h, w, _ = ops.shape(q)
        nh, kd, vd = self.num_heads, self.key_dim, self.value_dim
        q = ops.transpose(ops.reshape(q, (-1, h * w, nh, kd)), (0, 2, 1, 3))
        k = ops.transpose(ops.reshape(k, (-1, h * w, nh, kd)), (0, 2, 3, 1))
        v = ops.transpose(ops.reshape(v, (-1, h * w, nh, vd)), (0, 2, 1, 3))
        scores = self._quant(None, "scores", ops.matmul(q, k), training)
        scores = self._quant(None, "biased", scores + bias, training)
        attn = self.softmax_quant(ops.softmax(scores, axis=-1), training=training)
        context = self.context_quant(ops.matmul(attn, v), training=training)
        return ops.reshape(ops.transpose(context, (0, 2, 1, 3)), (-1, h, w, nh * vd))

    def _elementwise_attention(self, q, k, v, bias, training):
        _, h, w, _ = ops.shape(q)
        n = h * w
        kd, vd = self.key_dim, self.value_dim
        sum_channels = self._weight(ops.ones((1, 1, kd, 1), dtype=self.compute_dtype), axis=3)
        heads = []
        for head in range(self.num_heads):
            q_h = ops.reshape(q[..., head * kd : (head + 1) * kd], (-1, n, 1, kd))
            k_h = ops.reshape(k[..., head * kd : (head + 1) * kd], (-1, 1, n, kd))
            product = self._quant(head, "product", q_h * k_h, training)
            scores = self._quant(head, "scores", ops.conv(product, sum_channels), training)
            scores = scores + ops.reshape(bias[head], (1, n, n, 1))
            scores = self._quant(head, "biased", scores, training)
            rows = [
                self.softmax_quant(
                    ops.softmax(ops.reshape(scores[:, i], (-1, n))), training=training
                )
                for i in range(n)
            ]
            attn = ops.reshape(ops.stack(rows, axis=1), (-1, n, n, 1))
            v_h = ops.reshape(v[..., head * vd : (head + 1) * vd], (-1, 1, n, vd))
            weighted = self._quant(head, "weighted", attn * v_h, training)
            heads.append(ops.mean(weighted, axis=2))  # (batch, n, vd); N is folded into proj
        heads = self.context_quant(heads, training=training)  # one scale for the CONCATENATION
        return ops.reshape(ops.concatenate(heads, axis=-1), (-1, h, w, self.num_heads * vd))

    def set_deploy_weights(self, attention):
        for name in ("qkv", "dw", "proj"):
            getattr(self, name).set_deploy_weights(getattr(attention, name).conv)
        self.attention_biases.assign(attention.attention_biases)
