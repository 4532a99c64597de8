"""From a trained QAT model to a full-integer TFLite graph: the convertibility check, the
converter, and the check that the result has no float op and no requantize op.

`lsnet_keras.litert.export.export_tflite` uses these for a `QATLSNet`; call them directly to
convert a QAT function of your own.

Example:
    >>> from lsnet_keras.quantization.conversion import integer_violations
    >>> integer_violations(lsnet_keras.export_tflite(qat, precision="int8"))  # doctest: +SKIP
    ([], [])
"""

from lsnet_keras.model.reparam import TARGET_ATTENTION
from lsnet_keras.quantization.qat_model import QuantizationError


def check_convertible(qat_model, target, io="float32"):
    """Raise QuantizationError unless `qat_model` can convert for `target` and `io` as it is.

    Example:
        >>> check_convertible(quantize_model(lsnet_keras.lsnet_t(input_shape=64)), "cpu")
        Traceback (most recent call last):
        ...
        lsnet_keras.quantization.qat_model.QuantizationError: lsnet_t_qat: ... ranges never set ...
    """
    if TARGET_ATTENTION[target] != qat_model.attention_formulation:
        raise QuantizationError(
            f"{qat_model.name} was quantized for target {qat_model.target} "
            f"({qat_model.attention_formulation} attention): quantize_model(..., target="
            f"{target!r}) and fine-tune for --target {target}"
        )
    head = None
    if qat_model.include_top and not qat_model.features_only:
        head = qat_model.get_layer("head")
    if head is not None and not head.quantize and io != "float32":
        raise QuantizationError(
            f"{qat_model.name}: the head is float (float_layers), so are the logits: io float32"
        )
    missing = qat_model.uncalibrated()
    if missing:
        raise QuantizationError(
            f"{qat_model.name}: {len(missing)} activation ranges never set (e.g. {missing[0]}): "
            "train or calibrate the QAT model first"
        )


def qat_converter(function, input_shape, input_type="float32", output_type="float32"):
    """A TFLite converter of a fake-quantized model: full-integer from its fake-quant ranges.

    `function` maps a float32 image batch to the outputs in inference mode; `input_shape` is
    static (batch included); `input_type` / `output_type` are float32, int8 or uint8. Only
    TFLITE_BUILTINS is requested: with TFLITE_BUILTINS_INT8 the converter demands a
    representative dataset even for a QAT graph, so full-integer is checked on the result
    (`integer_violations`). Dense weights stay per tensor, as `QLinear` fake-quantizes them.

    Example:
        >>> converter = qat_converter(qat, (1, 64, 64, 3), "int8", "int8")  # doctest: +SKIP
        >>> int8_bytes = converter.convert()  # doctest: +SKIP
    """
    import tensorflow as tf

    spec = tf.TensorSpec(input_shape, tf.float32, name="image")
    concrete = tf.function(function, input_signature=[spec]).get_concrete_function()
    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete])
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    converter._experimental_disable_per_channel_quantization_for_dense_layers = True
    types = {"float32": tf.float32, "int8": tf.int8, "uint8": tf.uint8}
    converter.inference_input_type = types[input_type]
    converter.inference_output_type = types[output_type]
    return converter


def integer_violations(model_bytes):
    """What keeps a converted graph from being full-integer: float ops and requantize ops.

    Returns (float_ops, requantize_ops) as lists of "index:OP" strings. A QUANTIZE or
    DEQUANTIZE converting the graph's float input or output is not counted; one inside the
    graph is a float op (it feeds or ends a float island) if it touches a float tensor, and a
    requantize (two fake-quant ranges that do not match) if it maps int8 to int8.

    Example:
        >>> integer_violations(export_tflite(qat, precision="int8"))  # doctest: +SKIP
        ([], [])
    """
    from lsnet_keras.litert.graph import read_graph

    graph = read_graph(model_bytes)
    edges = set(graph.inputs) | set(graph.outputs)
    float_ops, requantize = [], []
    for op in graph.operators:
        tensors = [graph.tensors[i] for i in op.inputs + op.outputs if i >= 0]
        label = f"{op.index}:{op.name}"
        is_float = any(t.dtype in ("float32", "float16") for t in tensors)
        if op.name in ("QUANTIZE", "DEQUANTIZE") and edges & set(op.inputs + op.outputs):
            continue
        if is_float:
            float_ops.append(label)
        elif op.name == "QUANTIZE":
            requantize.append(label)
    return float_ops, requantize
