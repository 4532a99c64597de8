"""Quantization-aware training on Keras 3: fake-quant exactly where the int8 TFLite graph keeps
a tensor.

- `layers`: the primitives (FakeQuant, QConv, QChannelAffine, QPool, QLinear).
- `blocks`: the quantized LSNet blocks (SE, FFN, LKP, SKA, LSConv, Attention, Block).
- `qat_model`: `QATLSNet` and `quantize_model`, calibration.
- `conversion`: the convertibility check, the int8 converter, full-integer checks of the result.

Imports: `lsnet_keras.model` and the shared modules below it; nothing from litert or training.

Example:
    >>> import lsnet_keras
    >>> from lsnet_keras.quantization import quantize_model
    >>> qat = quantize_model(lsnet_keras.lsnet_t(num_classes=10, input_shape=64))
"""

from lsnet_keras.quantization.qat_model import is_qat_model, quantize_model

__all__ = ["is_qat_model", "quantize_model"]
