"""Edge TPU checker on small Keras models converted to TF Lite (full-integer int8 and float)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from lsnet_keras.errors import LSNetError
from lsnet_keras.litert.edgetpu_check import EdgeTpuCheckError, check_edgetpu, format_report
from lsnet_keras.litert.edgetpu_rules import MAX_OP_VERSION, SUPPORTED_OPS


def to_tflite(model, quantize=True, float_io=False):
    """Convert with the converter settings the Edge TPU export uses (full-integer int8)."""
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if quantize:
        shape = tuple(model.inputs[0].shape)
        rng = np.random.default_rng(0)

        def representative():
            for _ in range(4):
                yield [rng.uniform(-1, 1, shape).astype(np.float32)]

        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        if not float_io:
            converter.inference_input_type = tf.int8
            converter.inference_output_type = tf.int8
    return converter.convert()


def cnn(batch=1):
    x = keras.Input((16, 16, 3), batch_size=batch)
    y = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(x)
    z = keras.layers.DepthwiseConv2D(3, padding="same")(y)
    y = keras.layers.ReLU()(keras.layers.Add()([y, z]))
    y = keras.layers.GlobalAveragePooling2D()(y)
    return keras.Model(x, keras.layers.Dense(10)(y))


@pytest.fixture(scope="module")
def cnn_int8():
    return to_tflite(cnn())


def ops(report):
    return [r.op for r in report.ops]


def test_int8_cnn_maps_entirely(cnn_int8, tmp_path):
    path = tmp_path / "cnn.tflite"
    path.write_bytes(cnn_int8)
    report = check_edgetpu(path)
    assert ops(report) == ["CONV_2D", "DEPTHWISE_CONV_2D", "ADD", "MEAN", "FULLY_CONNECTED"]
    assert report.blockers == [] and report.model_errors == [] and report.ok
    assert report.first_fallback_index is None and report.mapped_fraction == 1.0
    assert all(r.status == "maps" and r.on_edgetpu for r in report.ops)
    text = format_report(report)
    summary = "5 ops, 5 map to the Edge TPU, 0 blockers; all ops map to the Edge TPU"
    assert text.splitlines()[-1] == summary
    assert "1x16x16x3 -> 1x16x16x8" in text


def test_float_io_conversions_at_the_edges_are_allowed():
    report = check_edgetpu(to_tflite(cnn(), float_io=True))
    assert ops(report)[0] == "QUANTIZE" and ops(report)[-1] == "DEQUANTIZE"
    assert [r.status for r in report.ops] == ["boundary"] + ["maps"] * 5 + ["boundary"]
    assert report.ok and report.mapped == 5 and report.first_fallback_index is None


def test_batch_matmul_between_activations_blocks_and_starts_the_fallback():
    x = keras.Input((8, 8, 8), batch_size=1)
    q = keras.layers.Reshape((64, 8))(keras.layers.Conv2D(8, 1)(x))
    k = keras.layers.Reshape((64, 8))(keras.layers.Conv2D(8, 1)(x))
    attention = keras.layers.Reshape((8, 8, 64))(keras.ops.einsum("bnc,bmc->bnm", q, k))
    report = check_edgetpu(to_tflite(keras.Model(x, keras.layers.Conv2D(4, 1)(attention))))
    index = ops(report).index("BATCH_MATMUL")
    assert [b.index for b in report.blockers] == [index]
    assert report.blockers[0].reasons == ["not in the Edge TPU supported-operations table"]
    assert report.first_fallback_index == index
    after = report.ops[index + 1 :]
    assert after and all(r.status == "maps" and not r.on_edgetpu for r in after)
    assert report.mapped == index and not report.ok
    last = format_report(report).splitlines()[-1]
    assert last.endswith(f"1 blocker; first CPU fallback at op #{index} (BATCH_MATMUL)")


def test_two_dimensional_softmax_blocks_but_one_dimensional_maps():
    x = keras.Input((4, 4, 3), batch_size=1)
    per_pixel = keras.layers.Softmax()(keras.layers.Conv2D(8, 1)(x))
    report = check_edgetpu(to_tflite(keras.Model(x, per_pixel)))
    assert ops(report) == ["CONV_2D", "SOFTMAX"]
    (blocker,) = report.blockers
    assert blocker.op == "SOFTMAX" and blocker.reasons == [
        "input 1x4x4x8 is not 1-D (Coral table: only 1-D softmax)"
    ]
    assert report.first_fallback_index == 1 and report.mapped == 1

    x = keras.Input((16,), batch_size=1)
    one_d = keras.layers.Softmax()(keras.layers.Dense(10)(x))
    assert check_edgetpu(to_tflite(keras.Model(x, one_d))).ok


def test_float_model_blocks_on_float_ops():
    report = check_edgetpu(to_tflite(cnn(), quantize=False))
    assert len(report.blockers) == len(report.ops) == 5
    assert all("float32" in r.reasons[0] for r in report.blockers)
    assert report.first_fallback_index == 0 and report.mapped == 0


def test_four_dimensions_larger_than_one_block():
    report = check_edgetpu(to_tflite(cnn(batch=2)))
    first = report.ops[0]
    assert first.status == "blocks" and report.first_fallback_index == 0
    assert any("more than 3 dimensions > 1" in reason for reason in first.reasons)
    assert any("batch 2" in reason for reason in first.reasons)


def test_op_rules_from_the_coral_table():
    x = keras.Input((8, 8, 6), batch_size=1)
    strided = x[:, ::2, :, :]  # STRIDED_SLICE with stride 2
    mean_z = keras.ops.mean(keras.layers.Conv2D(6, 1)(strided), axis=-1)  # 6 channels: not 4k
    report = check_edgetpu(to_tflite(keras.Model(x, mean_z)))
    reasons = {r.op: " ".join(r.reasons) for r in report.blockers}
    assert "strides [1, 2, 1, 1] are not all 1" in reasons["STRIDED_SLICE"]
    assert "not a multiple of 4" in reasons["MEAN"]


def test_op_newer_than_the_compiler_rejects_the_model(cnn_int8, monkeypatch):
    monkeypatch.setitem(MAX_OP_VERSION, "ADD", 1)
    report = check_edgetpu(cnn_int8)
    assert report.model_errors and "ADD v2 is newer than v1" in report.model_errors[0]
    assert [b.op for b in report.blockers] == ["ADD"] and report.mapped == 0
    assert "would reject the model" in format_report(report).splitlines()[-1]


def test_rule_tables_are_consistent():
    assert set(SUPPORTED_OPS) <= set(MAX_OP_VERSION)
    assert "BATCH_MATMUL" not in SUPPORTED_OPS and "HARD_SWISH" not in SUPPORTED_OPS


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "not a TensorFlow Lite model"),
        (b"this is not a flatbuffer at all", "not a TensorFlow Lite model"),
        (b"\x10\x00\x00\x00TFL3" + b"\xff" * 40, "corrupt TensorFlow Lite flatbuffer"),
    ],
)
def test_unreadable_files_raise_a_one_line_error(content, message, tmp_path):
    path = tmp_path / "bad.tflite"
    path.write_bytes(content)
    with pytest.raises(EdgeTpuCheckError, match=message) as info:
        check_edgetpu(path)
    assert isinstance(info.value, LSNetError)
    assert "\n" not in str(info.value) and str(path) in str(info.value)


def test_truncated_model_and_missing_file(cnn_int8, tmp_path):
    with pytest.raises(EdgeTpuCheckError, match="corrupt"):
        check_edgetpu(cnn_int8[: len(cnn_int8) // 3])
    with pytest.raises(EdgeTpuCheckError, match="file not found"):
        check_edgetpu(tmp_path / "missing.tflite")


def test_option_rules_read_the_schema_option_objects():
    """The rules read the option objects `read_graph` gives (the schema's object API)."""
    from types import SimpleNamespace

    from lsnet_keras.litert.edgetpu_rules import OP_RULES
    from lsnet_keras.litert.graph import schema

    def op(options, shape=(1, 4, 4, 8)):
        tensor = SimpleNamespace(shape=shape, constant=False)
        return SimpleNamespace(options=options, inputs=[tensor], outputs=[tensor])

    conv = schema.Conv2DOptionsT()
    conv.dilationHFactor, conv.dilationWFactor = 2, 1
    assert "dilation 2x1 differs" in OP_RULES["CONV_2D"](op(conv))[0]
    concat = schema.ConcatenationOptionsT()
    concat.fusedActivationFunction = schema.ActivationFunctionType.RELU
    assert "fused activation" in OP_RULES["CONCATENATION"](op(concat))[0]
    pack = schema.PackOptionsT()
    pack.axis = 0
    assert "batch dimension" in OP_RULES["PACK"](op(pack))[0]
    fully_connected = schema.FullyConnectedOptionsT()
    fully_connected.weightsFormat = 1
    assert "default format" in OP_RULES["FULLY_CONNECTED"](op(fully_connected, (1, 8)))[0]
