"""The LSNet block: token mixer (RepVGGDW + SE, LSConv or Attention), then a residual FFN.

Example:
    >>> import numpy as np
    >>> from lsnet_keras.model.block import Block
    >>> block = Block(dim=64, key_dim=16, num_heads=2, kind="lsconv")
    >>> block(np.zeros((1, 16, 16, 64), "float32")).shape
    (1, 16, 16, 64)
"""

import keras

from lsnet_keras.model.attention import Attention
from lsnet_keras.model.conv import FFN, RepVGGDW, SqueezeExcite
from lsnet_keras.model.ops import build_sublayers
from lsnet_keras.model.serialization import serializable
from lsnet_keras.model.ska import LSConv


@serializable(
    "dim",
    "key_dim",
    "num_heads",
    "kind",
    "resolution",
    "deploy",
    "formulation",
    "fp16_safe",
    "table_resolution",
)
class Block(keras.layers.Layer):
    """One LSNet block: token mixer, optional SE, then a residual FFN (hidden = 2 * dim).

    `kind` is "repvgg" (RepVGGDW + SqueezeExcite; even block indices), "lsconv" (odd indices
    of stages 1-3) or "attention" (odd indices of stage 4, residual); `formulation` picks how
    attention is computed (see Attention) and `fp16_safe` makes every mixer keep float16-safe
    intermediates (the gpu target; same function, see Attention, LKP and SqueezeExcite).
    `table_resolution` is Attention's (the detection form's fixed bias grid).

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
        fp16_safe=False,
        table_resolution=None,
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
        self.fp16_safe = fp16_safe
        self.table_resolution = None if table_resolution is None else tuple(table_resolution)
        policy = self.dtype_policy
        self.se = None
        if kind == "repvgg":
            self.mixer = RepVGGDW(dim, deploy=deploy, name="mixer", dtype=policy)
            self.se = SqueezeExcite(dim, fp16_safe=fp16_safe, name="se", dtype=policy)
        elif kind == "lsconv":
            self.mixer = LSConv(dim, deploy=deploy, fp16_safe=fp16_safe, name="mixer", dtype=policy)
        else:
            self.mixer = Attention(
                dim,
                key_dim,
                num_heads,
                resolution,
                deploy=deploy,
                formulation=formulation,
                fp16_safe=fp16_safe,
                table_resolution=table_resolution,
                name="mixer",
                dtype=policy,
            )
        self.ffn = FFN(dim, 2 * dim, deploy=deploy, name="ffn", dtype=policy)

    def build(self, input_shape):
        build_sublayers(input_shape, self.mixer, self.se, self.ffn)

    def compute_output_shape(self, input_shape):
        return input_shape

    def call(self, x, training=None):
        mixed = self.mixer(x, training=training)
        x = x + mixed if self.kind == "attention" else mixed
        if self.se is not None:
            x = self.se(x)
        return x + self.ffn(x, training=training)
