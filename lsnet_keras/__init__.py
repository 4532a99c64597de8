"""lsnet-keras: LSNet ("See Large, Focus Small", CVPR 2025) in Keras 3, for TFLite on mobile.

Example:
    >>> import lsnet_keras
    >>> model = lsnet_keras.lsnet_t(weights=None)
    >>> deploy = lsnet_keras.reparameterize(model)
"""

from lsnet_keras import layers  # noqa: F401  (registers the layers for keras.models.load_model)
from lsnet_keras.checkpoint import CheckpointError, read_state_dict
from lsnet_keras.model import LSNet, build_variant, lsnet_b, lsnet_s, lsnet_t
from lsnet_keras.reparam import reparameterize
from lsnet_keras.weights import export_state_dict, load_weights

__all__ = [
    "CheckpointError",
    "LSNet",
    "build_variant",
    "export_state_dict",
    "load_weights",
    "lsnet_b",
    "lsnet_s",
    "lsnet_t",
    "read_state_dict",
    "reparameterize",
]
__version__ = "0.1.0"
