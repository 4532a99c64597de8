"""litert.xnnpack: the partition report, and the float islands and float depthwise weights that
keep a graph in one XNNPACK partition while computing the same function."""

import numpy as np
import pytest
import tensorflow as tf

from lsnet_keras.litert.export import convert_for_cpu
from lsnet_keras.litert.graph import read_graph
from lsnet_keras.litert.xnnpack import (
    float_depthwise_weights,
    float_islands_in_integer_model,
    xnnpack_partitions,
)

RNG = np.random.default_rng(0)
QKV = tf.constant(RNG.normal(size=(1, 1, 16, 48)).astype("float32") * 0.3)
DEPTHWISE = tf.constant(RNG.normal(size=(3, 3, 128, 1)).astype("float32"))
SAMPLES = [RNG.normal(size=(1, 4, 4, 16)).astype("float32") for _ in range(16)]


def attention_and_norm(x):
    """A 16-token attention head with a position bias, then a normalization by rsqrt."""
    qkv = tf.nn.conv2d(x, QKV, 1, "VALID")
    q, k, v = (tf.reshape(qkv[..., i : i + 16], (1, 16, 16)) for i in (0, 16, 32))
    scores = tf.matmul(q, k, transpose_b=True) * 0.25 + tf.range(16, dtype=tf.float32) / 16
    out = tf.nn.relu(tf.matmul(tf.nn.softmax(scores), v))
    var = tf.reduce_mean(out * out, axis=1, keepdims=True)
    return tf.reshape(out * tf.math.rsqrt(var + 1e-5), (1, 4, 4, 16))


def converter(function, shape, precision):
    spec = tf.TensorSpec(shape, tf.float32)
    concrete = tf.function(function, input_signature=[spec]).get_concrete_function()
    result = tf.lite.TFLiteConverter.from_concrete_functions([concrete])
    result.optimizations = [tf.lite.Optimize.DEFAULT]
    if precision == "int8":
        result.representative_dataset = lambda: ([x] for x in SAMPLES)
        result.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    return result


def run(model_bytes, x):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=model_bytes)
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
    interpreter.invoke()
    return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])


def mean_error(model_bytes):
    """Mean absolute error of a converted `attention_and_norm` against TensorFlow, on SAMPLES."""
    errors = [np.abs(run(model_bytes, x) - attention_and_norm(x).numpy()).mean() for x in SAMPLES]
    return float(np.mean(errors))


@pytest.fixture(scope="module")
def int8_graphs():
    plain = converter(attention_and_norm, (1, 4, 4, 16), "int8").convert()
    islands = convert_for_cpu(converter(attention_and_norm, (1, 4, 4, 16), "int8"), "int8")
    return plain, islands


def test_the_report_names_what_xnnpack_leaves_out(int8_graphs):
    report = xnnpack_partitions(int8_graphs[0])
    assert report.partitions > 1 and report.nodes == len(read_graph(int8_graphs[0]).operators)
    assert {"SOFTMAX", "RSQRT", "RELU"} <= set(report.outside), report.summary()
    assert report.summary().startswith(f"{report.partitions} XNNPACK partition(s), ")


def test_float_islands_give_one_partition_and_the_same_function(int8_graphs):
    plain, islands = int8_graphs
    report = xnnpack_partitions(islands)
    assert (report.partitions, report.outside) == (1, {}), report.summary()
    floats = {op.name for op in read_graph(islands).operators if op.name != "DEQUANTIZE"}
    assert {"BATCH_MATMUL", "SOFTMAX", "RSQRT", "RELU"} <= floats
    # the int8 rounding left is that of the convolution and the elementwise ops
    assert mean_error(islands) <= 1.1 * mean_error(plain)


def test_islands_in_an_integer_model_give_one_partition_and_the_same_function(int8_graphs):
    """The rewrite for already-integer (QAT) graphs: DEQUANTIZE, float op, QUANTIZE back."""
    plain = int8_graphs[0]
    rewritten = float_islands_in_integer_model(plain)
    report = xnnpack_partitions(rewritten)
    assert (report.partitions, report.outside) == (1, {}), report.summary()
    before, after = read_graph(plain), read_graph(rewritten)
    floats = {op.name for op in after.operators if after.tensors[op.outputs[0]].dtype == "float32"}
    assert {"BATCH_MATMUL", "SOFTMAX", "RSQRT", "RELU"} <= floats
    # the int8 tensors around the islands keep their scales: only float twins were added
    kept = {t.name: (t.dtype, t.scale, t.zero_point) for t in before.tensors}
    assert all(
        kept[t.name] == (t.dtype, t.scale, t.zero_point) for t in after.tensors if t.name in kept
    )
    assert mean_error(rewritten) <= 1.1 * mean_error(plain)
    assert float_islands_in_integer_model(rewritten) == rewritten  # nothing left to rewrite


def test_float_depthwise_weights_are_the_hybrid_weights_dequantized():
    def depthwise(x):
        return tf.nn.depthwise_conv2d(x, DEPTHWISE, (1, 1, 1, 1), "SAME")

    hybrid = converter(depthwise, (1, 8, 8, 128), "dynamic").convert()
    assert set(xnnpack_partitions(hybrid).outside) == {"DEPTHWISE_CONV_2D"}
    fixed = float_depthwise_weights(hybrid)
    report = xnnpack_partitions(fixed)
    assert (report.partitions, report.outside) == (1, {}), report.summary()
    before, after = read_graph(hybrid), read_graph(fixed)
    (op,) = [op for op in after.operators if op.name == "DEPTHWISE_CONV_2D"]
    weights = after.constant(op.inputs[1])
    quantized = before.tensors[before.operators[0].inputs[1]]
    scale = np.asarray(quantized.scale, "float32")
    assert weights.dtype == "float32"
    np.testing.assert_allclose(weights, before.constant(quantized.index) * scale, rtol=1e-6)
    np.testing.assert_allclose(weights, DEPTHWISE.numpy().transpose(3, 0, 1, 2), atol=scale.max())
    x = RNG.normal(size=(1, 8, 8, 128)).astype("float32")
    dequantized = tf.constant(weights.transpose(1, 2, 3, 0))
    same = tf.nn.depthwise_conv2d(x, dequantized, (1, 1, 1, 1), "SAME").numpy()
    np.testing.assert_allclose(run(fixed, x), same, atol=1e-4)


STEM = tf.constant(RNG.normal(size=(3, 3, 3, 16)).astype("float32") * 0.3)
MIX = tf.constant(RNG.normal(size=(1, 1, 16, 16)).astype("float32") * 0.3)
IMAGES = [RNG.normal(size=(1, 8, 8, 3)).astype("float32") for _ in range(16)]


def stem_and_ska(x):
    """An RGB convolution, a 16-channel one, elementwise ops in an `ska` scope, a convolution."""
    a = tf.nn.relu(tf.nn.conv2d(x, STEM, 1, "SAME"))
    b = tf.nn.conv2d(a, MIX, 1, "SAME")
    with tf.name_scope("mixer/ska"):
        c = a * b + a[:, 1:2] * b[:, :, 1:2]
    return tf.nn.conv2d(c, MIX, 1, "SAME")


def test_speed_islands_keep_the_rgb_conv_and_lsconv_scopes_float():
    spec = tf.TensorSpec((1, 8, 8, 3), tf.float32)
    concrete = tf.function(stem_and_ska, input_signature=[spec]).get_concrete_function()
    conv = tf.lite.TFLiteConverter.from_concrete_functions([concrete])
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = lambda: ([x] for x in IMAGES)
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    model_bytes = convert_for_cpu(conv, "int8")
    graph = read_graph(model_bytes)
    dtypes = {}
    for op in graph.operators:
        dtypes.setdefault(op.name, set()).add(graph.tensors[op.outputs[0]].dtype)
    # the RGB conv float, the 16-channel ones int8; the scope's MUL and ADD float
    assert dtypes["CONV_2D"] == {"float32", "int8"}
    assert [op.name for op in graph.operators].count("CONV_2D") == 3
    assert dtypes["MUL"] == dtypes["ADD"] == {"float32"}
    report = xnnpack_partitions(model_bytes)
    assert (report.partitions, report.outside) == (1, {}), report.summary()
    x = IMAGES[0]
    expected = stem_and_ska(x).numpy()
    assert np.abs(run(model_bytes, x) - expected).max() <= 0.05 * np.abs(expected).max()
