"""The Keras layers of LSNet, by their public names (defined in `lsnet_keras.model`).

All are registered for `keras.models.load_model` as `lsnet>Name`.

Example:
    >>> import numpy as np
    >>> from lsnet_keras.layers import Block
    >>> block = Block(dim=64, key_dim=16, num_heads=2, kind="lsconv")
    >>> block(np.zeros((1, 16, 16, 64), "float32")).shape
    (1, 16, 16, 64)
"""

from lsnet_keras.model.attention import Attention
from lsnet_keras.model.block import Block
from lsnet_keras.model.conv import FFN, BNLinear, Conv2dBN, RepVGGDW, SqueezeExcite
from lsnet_keras.model.fpn import LSNetFPN
from lsnet_keras.model.retina_head import RetinaHead
from lsnet_keras.model.ska import LKP, SKA, LSConv

__all__ = [
    "FFN",
    "LKP",
    "SKA",
    "Attention",
    "Block",
    "BNLinear",
    "Conv2dBN",
    "LSConv",
    "LSNetFPN",
    "RepVGGDW",
    "RetinaHead",
    "SqueezeExcite",
]
