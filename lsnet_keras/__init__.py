"""lsnet-keras: LSNet ("See Large, Focus Small", CVPR 2025) in Keras 3, for TFLite on mobile.

Example:
    >>> import lsnet_keras
    >>> model = lsnet_keras.lsnet_t(weights=None)
    >>> deployed = lsnet_keras.reparameterize(model)

On a TFLite-only machine (tflite-runtime, no Keras) only `lsnet_keras.litert.runtime`,
`lsnet_keras.preprocess` and `lsnet predict` are available.
"""

__version__ = "0.1.0"

from lsnet_keras.errors import (
    interrupts_held,
    quiet_interrupts_if_command,
    started_as_command,
    started_as_lsnet_command,
)

# `lsnet ...` and `python -m training.*` run this import first: there, Ctrl-C during the slow
# Keras import below exits quietly with 130 (a library user's program is not changed).
quiet_interrupts_if_command()

from contextlib import nullcontext  # noqa: E402

from lsnet_keras.console import native_logs_silenced  # noqa: E402

if started_as_lsnet_command():
    # The `lsnet` command imports what each subcommand uses, inside its command boundary:
    # `lsnet predict` never loads TensorFlow, and a bad option is refused before it loads.
    __all__ = []
else:
    try:
        # TensorFlow's import notices (oneDNN, CUDA) stay off screen; in a command, a Ctrl-C
        # during the import ends it quietly once the import is done (`interrupts_held`)
        held = interrupts_held(SystemExit(130)) if started_as_command() else nullcontext()
        with held, native_logs_silenced():
            import keras  # noqa: F401
    except ImportError:  # a TFLite-only install (Coral, Raspberry Pi): the runtime modules only
        __all__ = []
    else:
        from lsnet_keras import layers  # noqa: F401  (registers layers for keras.models.load_model)
        from lsnet_keras.litert.export import export_tflite
        from lsnet_keras.model.lsnet import LSNet, build_variant, lsnet_b, lsnet_s, lsnet_t
        from lsnet_keras.model.reparam import reparameterize
        from lsnet_keras.model.retinanet import (
            LSNetRetinaNet,
            lsnet_b_retinanet,
            lsnet_s_retinanet,
            lsnet_t_retinanet,
        )
        from lsnet_keras.model.semantic_fpn import (
            LSNetSemanticFPN,
            lsnet_b_semfpn,
            lsnet_s_semfpn,
            lsnet_t_semfpn,
        )
        from lsnet_keras.quantization.qat_model import quantize_model
        from lsnet_keras.weights.checkpoint import CheckpointError, read_state_dict
        from lsnet_keras.weights.mapping import export_state_dict, load_weights

        __all__ = [
            "CheckpointError",
            "LSNet",
            "LSNetRetinaNet",
            "LSNetSemanticFPN",
            "build_variant",
            "export_state_dict",
            "export_tflite",
            "load_weights",
            "lsnet_b",
            "lsnet_b_retinanet",
            "lsnet_b_semfpn",
            "lsnet_s",
            "lsnet_s_retinanet",
            "lsnet_s_semfpn",
            "lsnet_t",
            "lsnet_t_retinanet",
            "lsnet_t_semfpn",
            "quantize_model",
            "read_state_dict",
            "reparameterize",
        ]
