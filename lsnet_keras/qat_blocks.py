"""Quantization-aware blocks of LSNet's deployment form: SE, FFN, LKP, SKA, LSConv, attention.

Built from the QAT primitives of `lsnet_keras.qat_layers` (see there for where fake-quant goes
and why); each block computes what its deploy-form counterpart in `lsnet_keras.layers` does.

Example:
    >>> import numpy as np
    >>> from lsnet_keras.qat_blocks import QBlock
    >>> block = QBlock(64, 16, 2, kind="lsconv")
    >>> block(np.zeros((1, 8, 8, 64), "float32"), training=True).shape
    (1, 8, 8, 64)
"""

import numpy as np
from keras import ops

from lsnet_keras.config import attention_bias_index, make_divisible
from lsnet_keras.layers import BN_EPSILON, Attention, _pytorch_pad, serializable
from lsnet_keras.qat_layers import QChannelAffine, QConv, QuantLayer, quant_options

# LOGISTIC / SOFTMAX int8 outputs are fixed to scale 1/256, zero point -128 by the kernels:
# any other range would add a requantize op after them.
PROBABILITY_RANGE = (0.0, 255.0 / 256.0)
# Added to every attention bias (softmax ignores it): see QAttention.call.
SOFTMAX_SHIFT = 1e-6


@serializable
class QSqueezeExcite(QuantLayer):
    """SqueezeExcite: MEAN, 1x1 conv + ReLU, 1x1 conv, LOGISTIC (fixed range), MUL.

    Example:
        >>> QSqueezeExcite(64)(keras.ops.ones((1, 4, 4, 64))).shape
        (1, 4, 4, 64)
    """

    def __init__(self, dim, ratio=0.25, **kwargs):
        super().__init__(**kwargs)
        self.dim = dim
        self.ratio = ratio
        q = quant_options(self)
        self.mean_quant = self._fake_quant("mean_quant")
        self.fc1 = QConv(make_divisible(dim * ratio), activation="relu", name="fc1", **q)
        self.fc2 = QConv(dim, name="fc2", **q)
        self.gate_quant = self._fake_quant("gate_quant", PROBABILITY_RANGE)
        self.output_quant = self._fake_quant("output_quant")

    def build(self, input_shape):
        batch, channels = input_shape[0], input_shape[-1]
        self.fc1.build((batch, 1, 1, channels))
        self.fc2.build((batch, 1, 1, self.fc1.filters))
        for quant in (self.mean_quant, self.gate_quant, self.output_quant):
            quant.build(None)

    def call(self, x, training=None):
        gate = self.mean_quant(ops.mean(x, axis=(1, 2), keepdims=True), training=training)
        gate = self.fc2(self.fc1(gate, training=training), training=training)
        gate = self.gate_quant(ops.sigmoid(gate), training=training)
        return self.output_quant(x * gate, training=training)

    def set_deploy_weights(self, se):
        self.fc1.set_deploy_weights(se.fc1)
        self.fc2.set_deploy_weights(se.fc2)

    def get_config(self):
        config = super().get_config()
        config.update(dim=self.dim, ratio=self.ratio)
        return config


@serializable
class QFFN(QuantLayer):
    """FFN: 1x1 conv + ReLU, 1x1 conv (each with its output fake-quant).

    Example:
        >>> QFFN(16, 32)(keras.ops.zeros((1, 3, 3, 16))).shape
        (1, 3, 3, 16)
    """

    def __init__(self, dim, hidden, **kwargs):
        super().__init__(**kwargs)
        self.dim = dim
        self.hidden = hidden
        q = quant_options(self)
        self.pw1 = QConv(hidden, activation="relu", name="pw1", **q)
        self.pw2 = QConv(dim, name="pw2", **q)

    def build(self, input_shape):
        self.pw1.build(input_shape)
        self.pw2.build(self.pw1.compute_output_shape(input_shape))

    def call(self, x, training=None):
        return self.pw2(self.pw1(x, training=training), training=training)

    def set_deploy_weights(self, ffn):
        self.pw1.set_deploy_weights(ffn.pw1.conv)
        self.pw2.set_deploy_weights(ffn.pw2.conv)

    def get_config(self):
        config = super().get_config()
        config.update(dim=self.dim, hidden=self.hidden)
        return config


@serializable
class QLKP(QuantLayer):
    """LKP with its hand-written GroupNorm, every intermediate tensor fake-quantized.

    GroupNorm: MEAN, SUB, MUL (the square: TFLite has no int8 SQUARE), MEAN, ADD (epsilon),
    RSQRT, MUL, then the affine as a 1x1 depthwise convolution. Output is tap-major (see LKP).

    Example:
        >>> QLKP(64)(keras.ops.zeros((1, 6, 6, 64))).shape
        (1, 6, 6, 72)
    """

    STEPS = ("mean", "centered", "square", "variance", "variance_eps", "rsqrt", "normalized")

    def __init__(self, dim, large_kernel=7, **kwargs):
        super().__init__(**kwargs)
        self.dim = dim
        self.large_kernel = large_kernel
        self.weight_channels = dim // 8
        half = dim // 2
        q = quant_options(self)
        self.cv1 = QConv(half, activation="relu", name="cv1", **q)
        self.cv2 = QConv(half, large_kernel, depthwise=True, name="cv2", **q)
        self.cv3 = QConv(half, activation="relu", name="cv3", **q)
        self.cv4 = QConv(9 * self.weight_channels, name="cv4", **q)
        self.norm_quants = {step: self._fake_quant(f"norm_{step}_quant") for step in self.STEPS}
        self.norm_affine = QChannelAffine(name="norm_affine", **q)

    def build(self, input_shape):
        shape = input_shape
        for conv in (self.cv1, self.cv2, self.cv3, self.cv4):
            conv.build(shape)
            shape = conv.compute_output_shape(shape)
        for quant in self.norm_quants.values():
            quant.build(None)
        self.norm_affine.build(shape)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:3], 9 * self.weight_channels)

    def call(self, x, training=None):
        for conv in (self.cv1, self.cv2, self.cv3, self.cv4):
            x = conv(x, training=training)
        return self.norm_affine(self.group_norm(x, training), training=training)

    def group_norm(self, w, training=None):
        """GroupNorm without the affine, over (taps, height, width) of each weight channel."""

        def quant(step, t):
            return self.norm_quants[step](t, training=training)

        _, h, width, channels = ops.shape(w)
        grouped = ops.reshape(w, (-1, h * width, 9, self.weight_channels))
        mean = quant("mean", ops.mean(grouped, axis=(1, 2), keepdims=True))
        centered = quant("centered", grouped - mean)
        square = quant("square", centered * centered)
        var = quant("variance", ops.mean(square, axis=(1, 2), keepdims=True))
        inv_std = quant("rsqrt", ops.rsqrt(quant("variance_eps", var + BN_EPSILON)))
        normalized = quant("normalized", centered * inv_std)
        return ops.reshape(normalized, (-1, h, width, channels))

    def set_deploy_weights(self, lkp):
        for name in ("cv1", "cv2", "cv3"):
            getattr(self, name).set_deploy_weights(getattr(lkp, name).conv)
        self.cv4.set_deploy_weights(lkp.cv4)
        self.norm_affine.scale.assign(lkp.norm_gamma)
        self.norm_affine.shift.assign(lkp.norm_beta)

    def get_config(self):
        config = super().get_config()
        config.update(dim=self.dim, large_kernel=self.large_kernel)
        return config


@serializable
class QSKA(QuantLayer):
    """SKA (see `layers.SKA`) with each of the 9 products and 8 partial sums fake-quantized.

    Example:
        >>> x = keras.ops.ones((1, 4, 4, 16))
        >>> QSKA()([x, keras.ops.ones((1, 4, 4, 18))]).shape
        (1, 4, 4, 16)
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.product_quants = [self._fake_quant(f"product{k}_quant") for k in range(9)]
        self.sum_quants = [self._fake_quant(f"sum{k}_quant") for k in range(1, 9)]

    def build(self, input_shape):
        for quant in self.product_quants + self.sum_quants:
            quant.build(None)

    def compute_output_shape(self, input_shape):
        return input_shape[0]

    def call(self, inputs, training=None):
        x, weights = inputs
        _, h, w, channels = ops.shape(x)
        wc = ops.shape(weights)[-1] // 9
        padded = _pytorch_pad(x, 1)
        taps = ops.reshape(weights, (-1, h * w, 9, wc))
        out = None
        for k in range(9):
            kh, kw = divmod(k, 3)
            shifted = ops.reshape(
                padded[:, kh : kh + h, kw : kw + w, :], (-1, h * w, channels // wc, wc)
            )
            term = self.product_quants[k](shifted * taps[:, :, k : k + 1, :], training=training)
            out = term if out is None else self.sum_quants[k - 1](out + term, training=training)
        return ops.reshape(out, (-1, h, w, channels))


@serializable
class QLSConv(QuantLayer):
    """LSConv: SKA(x, LKP(x)), its BatchNorm as a 1x1 depthwise convolution, plus x.

    Example:
        >>> QLSConv(32)(keras.ops.zeros((1, 5, 5, 32))).shape
        (1, 5, 5, 32)
    """

    def __init__(self, dim, **kwargs):
        super().__init__(**kwargs)
        self.dim = dim
        q = quant_options(self)
        self.lkp = QLKP(dim, name="lkp", **q)
        self.ska = QSKA(name="ska", **q)
        self.bn = QChannelAffine(name="bn", **q)
        self.output_quant = self._fake_quant("output_quant")

    def build(self, input_shape):
        self.lkp.build(input_shape)
        self.ska.build(None)
        self.bn.build(input_shape)
        self.output_quant.build(None)

    def call(self, x, training=None):
        y = self.ska([x, self.lkp(x, training=training)], training=training)
        return self.output_quant(self.bn(y, training=training) + x, training=training)

    def set_deploy_weights(self, lsconv):
        self.lkp.set_deploy_weights(lsconv.lkp)
        gamma, beta, mean, var = (np.asarray(v, "float64") for v in lsconv.bn.weights)
        scale = gamma / np.sqrt(var + BN_EPSILON)
        self.bn.scale.assign(scale.astype("float32"))
        self.bn.shift.assign((beta - mean * scale).astype("float32"))

    def get_config(self):
        config = super().get_config()
        config.update(dim=self.dim)
        return config


@serializable
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

    def get_config(self):
        config = super().get_config()
        config.update(
            dim=self.dim,
            key_dim=self.key_dim,
            num_heads=self.num_heads,
            resolution=self.resolution,
            formulation=self.formulation,
        )
        return config


@serializable
class QBlock(QuantLayer):
    """One LSNet block in deploy form (see `layers.Block`), fake-quantized.

    Example:
        >>> QBlock(32, 16, 2, kind="repvgg")(keras.ops.zeros((1, 4, 4, 32))).shape
        (1, 4, 4, 32)
    """

    def __init__(
        self, dim, key_dim, num_heads, kind, resolution=None, formulation="matmul", **kwargs
    ):
        super().__init__(**kwargs)
        self.dim = dim
        self.key_dim = key_dim
        self.num_heads = num_heads
        self.kind = kind
        self.resolution = None if resolution is None else tuple(resolution)
        self.formulation = formulation
        q = quant_options(self)
        self.se = None
        self.residual_quant = None
        if kind == "repvgg":
            self.mixer = QConv(dim, 3, depthwise=True, name="mixer", **q)
            self.se = QSqueezeExcite(dim, name="se", **q)
        elif kind == "lsconv":
            self.mixer = QLSConv(dim, name="mixer", **q)
        else:
            self.mixer = QAttention(
                dim, key_dim, num_heads, resolution, formulation, name="mixer", **q
            )
            self.residual_quant = self._fake_quant("residual_quant")
        self.ffn = QFFN(dim, 2 * dim, name="ffn", **q)
        self.output_quant = self._fake_quant("output_quant")

    def build(self, input_shape):
        for layer in (self.mixer, self.se, self.ffn):
            if layer is not None:
                layer.build(input_shape)
        for quant in (self.residual_quant, self.output_quant):
            if quant is not None:
                quant.build(None)

    def call(self, x, training=None):
        mixed = self.mixer(x, training=training)
        if self.residual_quant is not None:
            x = self.residual_quant(x + mixed, training=training)
        else:
            x = mixed
        if self.se is not None:
            x = self.se(x, training=training)
        return self.output_quant(x + self.ffn(x, training=training), training=training)

    def set_deploy_weights(self, block):
        if self.kind == "repvgg":
            self.mixer.set_deploy_weights(block.mixer.conv.conv)
            self.se.set_deploy_weights(block.se)
        else:
            self.mixer.set_deploy_weights(block.mixer)
        self.ffn.set_deploy_weights(block.ffn)

    def get_config(self):
        config = super().get_config()
        config.update(
            dim=self.dim,
            key_dim=self.key_dim,
            num_heads=self.num_heads,
            kind=self.kind,
            resolution=self.resolution,
            formulation=self.formulation,
        )
        return config
