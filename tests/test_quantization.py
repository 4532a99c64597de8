"""QAT: each block's int8 TFLite graph agrees with its Keras QAT form, full-integer graphs for
cpu and edgetpu, the float path, options, save / load / fit, and the export CLI."""

import keras
import numpy as np
import pytest
from conftest import keras_model_for, nhwc, run_model

import lsnet_keras
from lsnet_keras.cli import main as cli_main
from lsnet_keras.errors import LSNetError
from lsnet_keras.litert.edgetpu_check import check_edgetpu
from lsnet_keras.litert.export import ExportError, export_tflite
from lsnet_keras.litert.graph import read_graph
from lsnet_keras.quantization import blocks as qb
from lsnet_keras.quantization import layers as q
from lsnet_keras.quantization.attention import QAttention
from lsnet_keras.quantization.conversion import integer_violations, qat_converter
from lsnet_keras.quantization.qat_model import (
    QATLSNet,
    QuantizationError,
    calibrate,
    quantize_model,
)

TINY = {"embed_dim": (32, 64, 96, 128), "depth": (2, 2, 2, 2), "num_heads": (2, 2, 2, 2)}


def tiny_lsnet(size=64, seed=0):
    keras.utils.set_random_seed(seed)
    return lsnet_keras.LSNet(**TINY, num_classes=10, input_shape=size)


def images(count, size, seed=0):
    """Normalized-looking inputs inside the model's fixed input range."""
    rng = np.random.default_rng(seed)
    return rng.normal(0, 1, (count, size, size, 3)).clip(-2.1, 2.6).astype("float32")


def run_int8(model_bytes, inputs):
    """Dequantized outputs of an int8-I/O model and the output scale (one image at a time)."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=model_bytes)
    interpreter.allocate_tensors()
    (source,), (sink,) = interpreter.get_input_details(), interpreter.get_output_details()
    in_scale, in_zero = source["quantization"]
    out_scale, out_zero = sink["quantization"]
    outputs = []
    for x in inputs:
        quantized = np.clip(np.round(x / in_scale + in_zero), -128, 127).astype("int8")
        interpreter.set_tensor(source["index"], quantized[None])
        interpreter.invoke()
        outputs.append(interpreter.get_tensor(sink["index"])[0])
    return (np.stack(outputs).astype("float32") - out_zero) * out_scale, out_scale


def assert_agrees(model_bytes, keras_model, inputs, max_steps=5):
    """>= 99% of outputs within one quantization step of the QAT Keras model, none above 5."""
    outputs, scale = run_int8(model_bytes, inputs)
    steps = np.abs(outputs - run_model(keras_model, inputs)) / scale
    within = float(np.mean(steps <= 1 + 1e-3))
    assert within >= 0.99 and steps.max() <= max_steps, (within, steps.max())
    return within, float(steps.max())


def assert_full_integer(model_bytes, weights=("int8",)):
    """No float op, no requantize; every tensor between the edges is int8 (or int32 bias)."""
    assert integer_violations(model_bytes) == ([], [])
    graph = read_graph(model_bytes)
    inner = {
        graph.tensors[i].dtype
        for op in graph.operators
        if op.name not in ("QUANTIZE", "DEQUANTIZE")
        for i in op.inputs + op.outputs
        if i >= 0
    }
    assert inner <= {"int8", "int32", *weights}, inner
    return graph


def block_model(layer, shape):
    inputs = keras.Input(shape)
    return keras.Model(inputs, layer(q.FakeQuant((-3.0, 3.0))(inputs)))


def attention(formulation, zero_bias=False):
    layer = QAttention(64, 16, 2, (3, 3), formulation, name=f"attention_{formulation}")
    layer.build((None, 3, 3, 64))
    if not zero_bias:  # zero biases (the official init) are the corner case SOFTMAX_SHIFT covers
        layer.attention_biases.assign(np.random.default_rng(1).normal(size=(2, 9)))
    return layer


BLOCKS = {
    "conv_stride2_relu": (lambda: q.QConv(16, 3, strides=2, activation="relu"), (16, 16, 8)),
    "depthwise_7x7": (lambda: q.QConv(8, 7, depthwise=True), (12, 12, 8)),
    "squeeze_excite": (lambda: qb.QSqueezeExcite(32), (8, 8, 32)),
    "ffn": (lambda: qb.QFFN(32, 64), (8, 8, 32)),
    "lkp_groupnorm": (lambda: qb.QLKP(32), (8, 8, 32)),
    "lsconv_ska": (lambda: qb.QLSConv(32), (8, 8, 32)),
    "attention_matmul": (lambda: attention("matmul"), (3, 3, 64)),
    "attention_elementwise": (lambda: attention("elementwise"), (3, 3, 64)),
    "attention_elementwise_zero_bias": (lambda: attention("elementwise", True), (3, 3, 64)),
    "block_repvgg": (lambda: qb.QBlock(32, 16, 2, "repvgg"), (6, 6, 32)),
    "pool_and_head": (lambda: keras.Sequential([q.QPool(), q.QLinear(10)]), (4, 4, 64)),
    "conv_4bit_weights": (lambda: q.QConv(16, 3, weight_bits=4), (8, 8, 8)),
}


@pytest.mark.parametrize("name", sorted(BLOCKS))
def test_each_block_converts_full_integer_and_agrees(name):
    make, shape = BLOCKS[name]
    keras.utils.set_random_seed(0)
    model = block_model(make(), shape)
    x = np.random.default_rng(0).normal(size=(24, *shape)).astype("float32")
    calibrate(model, x[:16])
    model_bytes = qat_converter(model, (1, *shape), "int8", "int8").convert()
    graph = assert_full_integer(model_bytes, weights=("int4",) if "4bit" in name else ())
    assert "SQUARE" not in graph.op_counts()  # no int8 kernel: the GroupNorm squares by MUL
    assert_agrees(model_bytes, model, x[16:])


@pytest.mark.parametrize(
    "make, shape, op",
    [(lambda: qb.QSqueezeExcite(32), (4, 4, 32), "LOGISTIC"), (attention, (3, 3, 64), "SOFTMAX")],
)
def test_logistic_and_softmax_outputs_keep_their_fixed_int8_range(make, shape, op):
    model = block_model(make() if op == "LOGISTIC" else make("matmul"), shape)
    calibrate(model, np.random.default_rng(0).normal(size=(4, *shape)).astype("float32"))
    graph = read_graph(qat_converter(model, (1, *shape), "int8", "int8").convert())
    (found,) = [o for o in graph.operators if o.name == op]
    out = graph.tensors[found.outputs[0]]
    assert (out.scale, out.zero_point) == ((1 / 256,), (-128,))


@pytest.fixture(scope="module")
def qat_models():
    """Calibrated QAT forms of one tiny LSNet (64 px) for cpu and edgetpu."""
    model = tiny_lsnet(64)
    calibration = images(8, 64)
    return {
        target: quantize_model(model, target=target, calibration=calibration)
        for target in ("cpu", "edgetpu")
    }


def test_cpu_graph_is_full_integer_with_the_expected_ops(qat_models):
    model_bytes = export_tflite(qat_models["cpu"], precision="int8", io="int8")
    graph = assert_full_integer(model_bytes)
    ops = graph.op_counts()
    for name in ("BATCH_MATMUL", "SOFTMAX", "LOGISTIC", "RSQRT", "MEAN", "FULLY_CONNECTED"):
        assert name in ops, name
    assert "QUANTIZE" not in ops and "DEQUANTIZE" not in ops
    assert graph.tensors[graph.inputs[0]].dtype == graph.tensors[graph.outputs[0]].dtype == "int8"


@pytest.mark.slow
@pytest.mark.parametrize("io", ["uint8", "int8"])
def test_edgetpu_graph_passes_the_checker(qat_models, io):
    model_bytes = export_tflite(qat_models["edgetpu"], precision="int8", target="edgetpu", io=io)
    graph = assert_full_integer(model_bytes) if io == "int8" else read_graph(model_bytes)
    assert "BATCH_MATMUL" not in graph.op_counts()
    assert graph.tensors[graph.inputs[0]].dtype == io
    report = check_edgetpu(model_bytes)
    assert report.ok and not report.blockers and report.first_fallback_index is None


@pytest.mark.slow
def test_uint8_pixels_are_normalized_by_int8_ops(qat_models):
    from lsnet_keras.preprocess import normalize

    qat = qat_models["cpu"]
    model_bytes = export_tflite(qat, precision="int8", io="uint8")
    graph = read_graph(model_bytes)
    image = graph.tensors[graph.inputs[0]]
    assert (image.dtype, image.scale, image.zero_point) == ("uint8", (1.0,), (0,))
    assert integer_violations(model_bytes) == ([], [])
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=model_bytes)
    interpreter.allocate_tensors()
    (source,), (sink,) = interpreter.get_input_details(), interpreter.get_output_details()
    pixels = np.random.default_rng(0).integers(0, 256, (2, 64, 64, 3)).astype("uint8")
    scale, zero = sink["quantization"]
    for image_pixels, expected in zip(pixels, run_model(qat, normalize(pixels))):
        interpreter.set_tensor(source["index"], image_pixels[None])
        interpreter.invoke()
        got = (interpreter.get_tensor(sink["index"])[0].astype("float32") - zero) * scale
        # a random LSNet amplifies rounding differences: this checks wiring, not agreement
        assert np.corrcoef(got, expected)[0, 1] > 0.9


@pytest.mark.slow
def test_float_path_is_the_deploy_model(golden):
    """All fake-quant off: the QAT model computes the deploy model (golden tiny weights)."""
    case = golden("tiny_128")
    model = keras_model_for(case["config"])
    lsnet_keras.load_weights(model, case["state_dict"], source="tiny_128")
    x = nhwc(case["input"])
    for target in ("cpu", "edgetpu"):
        qat = quantize_model(model, target=target)
        for layer in qat._flatten_layers():
            if isinstance(layer, q.FakeQuant):
                layer.enabled = False
            elif hasattr(layer, "quantize"):
                layer.quantize = False  # float weights
        np.testing.assert_allclose(run_model(qat, x), case["logits"], atol=1e-4)


@pytest.mark.slow
def test_float_layers_stay_float_in_the_graph():
    model = tiny_lsnet(64)
    qat = quantize_model(model, float_layers=["head", "blocks4_*"], calibration=images(4, 64))
    assert not qat.get_layer("head").quantize and not qat.get_layer("blocks4_3").quantize
    assert qat.get_layer("blocks3_3").quantize
    with pytest.raises(QuantizationError, match="the head is float"):
        export_tflite(qat, precision="int8", io="int8")
    float_ops, requantize = integer_violations(export_tflite(qat, precision="int8"))
    names = {op.split(":")[1] for op in float_ops}
    assert {"FULLY_CONNECTED", "BATCH_MATMUL", "SOFTMAX", "DEQUANTIZE", "QUANTIZE"} <= names
    assert requantize == []


@pytest.mark.slow
def test_options_and_errors_are_one_line(qat_models):
    model = tiny_lsnet(64)
    with pytest.raises(QuantizationError, match="matches no block nor the head"):
        quantize_model(model, float_layers=["patch_embed_0"])
    with pytest.raises(QuantizationError, match="weight_bits"):
        quantize_model(model, weight_bits=3)
    with pytest.raises(QuantizationError, match="int4"):
        quantize_model(model, target="edgetpu", weight_bits=4)
    with pytest.raises(QuantizationError, match="already a QAT model"):
        quantize_model(qat_models["cpu"])
    with pytest.raises(QuantizationError, match="ranges never set"):
        export_tflite(quantize_model(model), precision="int8")
    with pytest.raises(QuantizationError, match="quantized for target cpu"):
        export_tflite(qat_models["cpu"], precision="int8", target="edgetpu")
    with pytest.raises(ExportError, match="--precision int8"):
        export_tflite(qat_models["cpu"], precision="fp16")
    with pytest.raises(ExportError, match="no --calibration"):
        export_tflite(qat_models["cpu"], precision="int8", calibration=np.zeros((1, 64, 64, 3)))
    for error in (QuantizationError, ExportError):
        assert issubclass(error, LSNetError)


@pytest.mark.slow
def test_fit_save_load_and_cli_export(tmp_path, capsys):
    model = tiny_lsnet(32)
    qat = quantize_model(model, target="edgetpu")
    assert len(qat.uncalibrated()) == len([f for f in qat.fake_quants() if not f.fixed_range])
    qat.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x, y = images(16, 32), np.arange(16) % 10
    qat.fit(x, y, batch_size=8, epochs=1, verbose=0)
    assert qat.uncalibrated() == []
    path = tmp_path / "qat.keras"
    qat.save(path)
    loaded = keras.models.load_model(path)
    assert isinstance(loaded, QATLSNet) and loaded.target == "edgetpu"
    np.testing.assert_array_equal(run_model(loaded, x), run_model(qat, x))

    output = tmp_path / "qat_int8.tflite"
    argv = ["export", str(path), "--precision", "int8", "--target", "edgetpu", "--io", "uint8"]
    assert cli_main(argv + ["--output", str(output)]) == 0
    assert cli_main(["edgetpu-check", str(output)]) == 0
    printed = capsys.readouterr().out
    assert "0 blockers" in printed and "QAT model: int8 from its trained ranges" in printed
    graph = read_graph(output.read_bytes())
    assert graph.tensors[graph.inputs[0]].dtype == "uint8"
