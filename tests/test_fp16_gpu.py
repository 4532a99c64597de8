"""fp16 on the GPU: the gpu target's fp16-safe layout computes the same function (fast, fp32),
keeps GroupNorm finite where the plain layout overflows float16, and a trained LSNet meets the
fp16 targets on the LiteRT GPU and on XNNPACK fp16 (slow: trains on scikit-learn's digits).

The GPU checks need the GPU stack (`bash tflite/setup_gpu.sh`): without it they fail, unless
LSNET_SKIP_GPU=1 is set to skip them on purpose.
"""

import os
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from lsnet_keras import LSNet
from lsnet_keras.litert.fp16_check import TARGETS, compare, extreme_pixels, fp16_report
from lsnet_keras.litert.gpu_check import litert_outputs
from lsnet_keras.model.reparam import with_target_layout
from lsnet_keras.model.ska import LKP
from lsnet_keras.preprocess import normalize

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

SMALL = {"embed_dim": (32, 64, 96, 128), "depth": (1, 2, 2, 2), "num_heads": (2, 2, 2, 2)}


def skip_without_gpu():
    if os.environ.get("LSNET_SKIP_GPU") == "1":
        pytest.skip("LSNET_SKIP_GPU=1: LiteRT GPU checks skipped on purpose")


def test_gpu_layout_is_the_same_function_in_fp32():
    """Every block kind (SE, LKP GroupNorm, 2x2 attention), on plain and 100x inputs."""
    keras.utils.set_random_seed(0)
    deployed = LSNet(**SMALL, num_classes=10, input_shape=96, deploy=True)
    gpu = with_target_layout(deployed, "gpu")
    assert gpu.fp16_safe and not deployed.fp16_safe
    x = np.random.default_rng(0).normal(size=(2, 96, 96, 3)).astype("float32")
    for scale in (1.0, 100.0):
        expected, actual = np.asarray(deployed(x * scale)), np.asarray(gpu(x * scale))
        np.testing.assert_allclose(actual, expected, atol=2e-5 * np.abs(expected).max())


@pytest.mark.parametrize("magnitude", [1e-4, 1.0, 1e4])
def test_fp16_safe_group_norm_equals_the_plain_one(magnitude):
    """Exactly GroupNorm, also for groups far below sqrt(eps) (the floor) and far above."""
    w = np.random.default_rng(1).normal(size=(1, 5, 5, 72)).astype("float32") * magnitude
    plain, safe = LKP(64), LKP(64, fp16_safe=True)
    for layer in (plain, safe):
        layer.build((1, 5, 5, 64))
        layer.norm_gamma.assign(np.linspace(0.5, 2, 72))
    expected, actual = np.asarray(plain.group_norm(w)), np.asarray(safe.group_norm(w))
    np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=1e-4)


def test_compare_counts_nonfinite_outputs_and_flipped_classes():
    reference = np.array([[3.0, 1.0], [1.0, 3.0], [2.0, 0.0]])
    actual = np.array([[3.0, 1.1], [3.5, 3.0], [np.nan, 0.0]])
    figures = compare(reference, actual, ["black"])
    assert figures["top1_agreement"] == 0.5
    assert figures["max_relative_error"] == pytest.approx(2.5 / 3)
    assert figures["extreme_relative_error"] == {"black": np.inf} and figures["nonfinite"] == 1
    assert sorted(extreme_pixels(4)) == [
        "black",
        "noise_0",
        "noise_1",
        "noise_2",
        "noise_3",
        "white",
    ]


def lkp_fp16_tflite(fp16_safe, path):
    """An fp16 .tflite of one deployed LKP whose GroupNorm inputs reach about 1000."""
    keras.utils.set_random_seed(0)
    layer = LKP(16, deploy=True, fp16_safe=fp16_safe)
    inputs = keras.Input((8, 8, 16), batch_size=1)
    model = keras.Model(inputs, layer(inputs))
    layer.cv4.kernel.assign(layer.cv4.kernel * 300.0)
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.target_spec.supported_types = [tf.float16]
    path.write_bytes(converter.convert())
    return model, str(path)


def group_norm_input(lkp, x):
    """max |cv4 output| per image: what the LKP's GroupNorm sees."""
    hidden = keras.ops.relu(lkp.cv1(x))
    hidden = keras.ops.relu(lkp.cv3(lkp.cv2(hidden)))
    return np.abs(np.asarray(lkp.cv4(hidden))).reshape(len(x), -1).max(axis=1)


@pytest.mark.slow
def test_group_norm_is_wrong_in_float16_on_the_gpu_only_in_the_plain_layout(tmp_path):
    skip_without_gpu()
    x = np.random.default_rng(0).uniform(0, 3, size=(2, 8, 8, 16)).astype("float32")
    plain, plain_path = lkp_fp16_tflite(False, tmp_path / "plain.tflite")
    safe, safe_path = lkp_fp16_tflite(True, tmp_path / "safe.tflite")
    expected = np.asarray(plain(x))
    np.testing.assert_allclose(np.asarray(safe(x)), expected, atol=1e-4)
    assert group_norm_input(plain.layers[1], x).max() > 256  # its square exceeds float16's 65504
    plain_on_gpu = litert_outputs(plain_path, x, "gpu")  # var = inf: rsqrt 0, the norm all 0
    assert np.abs(plain_on_gpu - expected).max() > 0.5 * np.abs(expected).max()
    on_gpu = litert_outputs(safe_path, x, "gpu")
    assert np.all(np.isfinite(on_gpu))
    np.testing.assert_allclose(on_gpu, expected, atol=0.05 * np.abs(expected).max())


@pytest.fixture(scope="module")
def trained_96():
    """The benchmarks' small LSNet trained 4 epochs on digits at 96 px (stage 4: 2x2 tokens)."""
    pytest.importorskip("sklearn")
    import qat_vs_ptq

    train_x, train_y, test_x, test_y = qat_vs_ptq.digits(96)
    one_hot = np.eye(10, dtype="float32")[train_y]
    model = qat_vs_ptq.fit(qat_vs_ptq.small_lsnet(96), train_x, one_hot, 4, 2e-3)
    top1 = np.mean(np.argmax(model.predict(normalize(test_x), verbose=0), -1) == test_y)
    return model, test_x, top1


@pytest.mark.slow
def test_trained_network_meets_the_fp16_targets_on_gpu_and_xnnpack(trained_96):
    skip_without_gpu()
    model, test_x, top1 = trained_96
    assert top1 >= 0.9  # a trained network: fp16 on random weights says nothing
    report = fp16_report(model, test_x)
    assert report["held_out"] == 450 and len(report["extremes"]) == 6
    for accelerator, figures in report["accelerators"].items():
        assert figures["top1_agreement"] >= TARGETS["top1_agreement"], (accelerator, figures)
        assert figures["median_relative_error"] <= TARGETS["median_relative_error"], figures
        assert figures["nonfinite"] == 0, (accelerator, figures)
        assert figures["meets_targets"]
