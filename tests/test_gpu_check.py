"""`tflite/gpu_check.py` on small converted models: fully GPU-accelerated or not, and how close.

Needs the GPU stack (`bash tflite/setup_gpu.sh` and the `ai-edge-litert` wheel): without it
these tests fail, unless LSNET_SKIP_GPU=1 is set to skip them on purpose.
"""

import os
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo root, for `tflite`
from tflite.gpu_check import check_gpu, main  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:Statistics for quantized inputs")


def convert(model_or_function, path, int8_io=None):
    """Write a builtins-only .tflite of a Keras model or tf.function; full int8 if int8_io."""
    if isinstance(model_or_function, keras.Model):
        converter = tf.lite.TFLiteConverter.from_keras_model(model_or_function)
    else:
        concrete = model_or_function.get_concrete_function()
        converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete])
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if int8_io:
        rng = np.random.default_rng(0)
        shape = model_or_function.input_shape[1:]
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: (
            [rng.random((1, *shape), dtype=np.float32)] for _ in range(16)
        )
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = converter.inference_output_type = int8_io
    path.write_bytes(converter.convert())
    return str(path)


def small_cnn():
    """conv + relu + add + mean + dense: all GPU ops."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(inputs)
    x = keras.layers.Add()([x, keras.layers.Conv2D(8, 1)(inputs)])
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(5)(x))


@tf.function(input_signature=[tf.TensorSpec((1, 8, 8, 4), tf.float32)])
def with_gather_nd(x):
    """GATHER_ND, which the LiteRT GPU delegate does not support."""
    return tf.gather_nd(tf.nn.relu(x), [[0, 1], [0, 2]]) * 2.0


@tf.function(
    input_signature=[tf.TensorSpec((1, 8, 8, 4), tf.float32), tf.TensorSpec((1, 4), tf.float32)]
)
def two_inputs(image, shift):
    """Inputs of different shapes: the check must feed each buffer its own input."""
    return tf.reduce_mean(tf.nn.relu(image), axis=[1, 2]) * 3.0 + shift


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gpu_models")
    cnn = small_cnn()
    return {
        "cnn": convert(cnn, tmp / "cnn.tflite"),
        "uint8": convert(cnn, tmp / "cnn_uint8.tflite", int8_io=tf.uint8),
        "int8": convert(cnn, tmp / "cnn_int8.tflite", int8_io=tf.int8),
        "gather_nd": convert(with_gather_nd, tmp / "gather_nd.tflite"),
        "two_inputs": convert(two_inputs, tmp / "two_inputs.tflite"),
    }


@pytest.fixture(scope="module")
def gpu(models):
    """check_gpu, once the GPU stack is known to work (else fail, or skip with LSNET_SKIP_GPU=1)."""
    if os.environ.get("LSNET_SKIP_GPU") == "1":
        pytest.skip("LSNET_SKIP_GPU=1: LiteRT GPU checks skipped on purpose")
    error = check_gpu(models["cnn"])["error"]
    if error:
        pytest.fail(f"LiteRT GPU unusable: {error} (setup: bash tflite/setup_gpu.sh)")
    return check_gpu


def test_float_model_is_fully_accelerated_and_close(gpu, models):
    report = gpu(models["cnn"])
    assert report["fully_accelerated"] and report["ok"], report
    assert report["unsupported_ops"] == [] and report["gpu_run"] == "gpu"
    assert report["output_scale"] > 0.1
    assert report["max_abs_diff"] <= 1e-2 * report["output_scale"]
    assert "WebGPU" in report["accelerator"]


def test_fp32_gpu_math_is_closer_than_fp16(gpu, models):
    report = gpu(models["cnn"], fp32=True)
    assert report["fully_accelerated"] and report["precision"] == "fp32"
    assert report["max_abs_diff"] <= 1e-5 * report["output_scale"]


@pytest.mark.parametrize("io", ["uint8", "int8"])
def test_integer_model_runs_dequantized_on_gpu(gpu, models, io):
    report = gpu(models[io])
    assert report["fully_accelerated"] and report["ok"], report
    assert report["inputs"][0]["dtype"] == io
    assert report["max_abs_diff"] <= report["tolerance"]


def test_real_float_inputs_are_quantized_for_integer_models(gpu, models):
    image = np.random.default_rng(1).random((1, 16, 16, 3), dtype=np.float32)
    as_list = gpu(models["uint8"], [image])
    (name,) = [i["name"] for i in as_list["inputs"]]  # Keras numbers tensor names globally
    as_dict = gpu(models["uint8"], {name: image})
    assert as_list["ok"] and as_dict["max_abs_diff"] == as_list["max_abs_diff"]
    with pytest.raises(ValueError, match="do not match"):
        gpu(models["uint8"], {"nope": image})


def test_inputs_reach_their_own_buffers(gpu, models):
    report = gpu(models["two_inputs"])
    assert report["ok"], report
    name = {len(i["shape"]): i["name"] for i in report["inputs"]}  # rank -> input name
    given = {name[4]: np.ones((1, 8, 8, 4), np.float32), name[2]: np.zeros((1, 4), np.float32)}
    in_order = [given[i["name"]] for i in report["inputs"]]
    for inputs in (given, in_order):
        assert gpu(models["two_inputs"], inputs)["output_scale"] == pytest.approx(3.0)


def test_unsupported_op_is_not_fully_accelerated(gpu, models):
    report = gpu(models["gather_nd"])
    assert report["fully_accelerated"] is False and report["ok"] is False
    assert any(op.startswith("GATHER_ND") for op in report["unsupported_ops"])
    assert report["gpu_run"] == "gpu+cpu" and report["close"]


def test_cli_exit_codes(gpu, models, tmp_path, capsys):
    assert main([models["cnn"], "--json", str(tmp_path / "r.json")]) == 0
    assert '"fully_accelerated": true' in (tmp_path / "r.json").read_text()
    assert main([models["gather_nd"]]) == 1
    assert "NOT fully accelerated" in capsys.readouterr().out
    assert main([models["cnn"], "--rtol", "1e-9"]) == 1


def test_cli_json_is_never_overwritten_without_force(gpu, models, tmp_path, capsys):
    report = tmp_path / "r.json"
    report.write_text("earlier")
    assert main([models["cnn"], "--json", str(report)]) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith("gpu_check: error:") and "already exists" in line
    assert report.read_text() == "earlier"
    assert main([models["cnn"], "--json", str(report), "--force"]) == 0
    assert '"fully_accelerated": true' in report.read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json"]


def test_cli_bad_files(tmp_path, capsys):
    (tmp_path / "junk.tflite").write_bytes(b"not a model at all")
    assert main([str(tmp_path / "missing.tflite")]) == 2
    assert main([str(tmp_path / "junk.tflite")]) == 2
    err = capsys.readouterr().err
    assert "file not found" in err and "not a TFLite flatbuffer" in err
    assert "Traceback" not in err
