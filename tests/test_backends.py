"""The backend matrix: LSNet under KERAS_BACKEND=jax and torch, each in its own process
(Keras picks its backend at import; this process runs TensorFlow).

Fast: the SKA gradient test and tests/test_backend_checks.py's fast checks. Slow: the tiny and
LSNet-T golden parity tests (training and deploy forms), the small-LSNet checks, `training.fit`
writing a .keras file that exports to TFLite here, and JAX DataParallel on two host devices
giving the weights one device gives.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from test_data import make_image_folder

ROOT = Path(__file__).resolve().parents[1]
BACKENDS = ["jax", "torch"]
SMALL = {"embed_dim": [16, 32, 48, 64], "depth": [1, 2, 1, 2], "num_heads": [1, 1, 1, 1]}


def run_python(backend, args, extra_env=None, timeout=900):
    """Run `python ARGS` from the repository root under `backend`; returns stdout+stderr."""
    env = {**os.environ, "KERAS_BACKEND": backend, "PYTHONPATH": str(ROOT), **(extra_env or {})}
    result = subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    return output


def run_pytest(backend, *selection):
    """Run pytest on `selection` under `backend`; every selected test must pass, none skip."""
    args = ["-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "ignore", *selection]
    output = run_python(backend, args)
    summary = output.strip().splitlines()[-1]
    assert " passed" in summary and "skipped" not in summary and "failed" not in summary, summary
    return summary


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
def test_fast_checks_under(backend):
    run_pytest(
        backend,
        "tests/test_layers.py::test_ska_gradients_match_the_official_kernel",
        "tests/test_backend_checks.py",
    )


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
def test_golden_parity_and_small_lsnet_under(backend):
    summary = run_pytest(
        backend,
        "-m",
        "slow or not slow",
        "-k",
        "tiny or lsnet_t_float32 or lsnet_t_288_bias_resize or small_lsnet",
        "tests/test_parity_goldens.py",
        "tests/test_backend_checks.py",
    )
    assert summary.startswith("10 passed"), summary


@pytest.mark.slow
def test_jax_data_parallel_on_two_devices_equals_one_device():
    code = f"""
import json, keras, numpy as np
from lsnet_keras.model.lsnet import LSNet
from lsnet_keras.training.keras_fit import data_parallel

assert len(keras.distribution.list_devices()) == 2
rng = np.random.default_rng(0)
images = rng.normal(size=(8, 64, 64, 3)).astype("float32")
targets = np.eye(3, dtype="float32")[np.arange(8) % 3]
keras.utils.set_random_seed(0)
initial = LSNet(**{SMALL!r}, num_classes=3, input_shape=64).get_weights()

def train(devices):
    keras.distribution.set_distribution(None)
    if devices:
        data_parallel(devices)
    model = LSNet(**{SMALL!r}, num_classes=3, input_shape=64)
    model.set_weights(initial)
    # SGD: Adam's m / sqrt(v) turns float32 rounding in near-zero gradients into whole steps
    loss = keras.losses.CategoricalCrossentropy(from_logits=True)
    model.compile(optimizer=keras.optimizers.SGD(0.05), loss=loss)
    model.fit(images, targets, batch_size=8, epochs=1, shuffle=False, verbose=0)
    return [keras.ops.convert_to_numpy(w) for w in model.weights]

one = train(None)
two = train(keras.distribution.list_devices())
change = max(float(np.abs(a - b).max()) for a, b in zip(one, initial))
diff = max(float(np.abs(a - b).max() / (1 + np.abs(a).max())) for a, b in zip(one, two))
print(json.dumps({{"change": change, "diff": diff}}))
"""
    flags = {"XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    output = run_python("jax", ["-c", code], flags)
    result = json.loads(next(ln for ln in output.splitlines() if ln.startswith('{"change"')))
    assert result["change"] > 1e-3, result  # the step moved the weights
    # relative to each variable's size (BatchNorm variances are far from 1): one step of two
    # shards sums gradients and batch statistics in another float32 order than one device,
    # 1.7e-6 apart on an Intel machine. Not more steps: each amplifies the rounding of the last
    # (6e-4 after three on that machine, 8e-5 on an AMD one), which says nothing of the sharding.
    assert result["diff"] <= 1e-5, result


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
def test_fit_command_writes_a_keras_file_that_exports(backend, tmp_path):
    import keras

    import lsnet_keras
    from lsnet_keras.model.loading import load_keras_model

    data = make_image_folder(tmp_path / "data", classes=3, per_class=4)
    output = tmp_path / f"{backend}.keras"
    command = ["-m", "training.fit", "--data-dir", data, "--model", json.dumps(SMALL)]
    command += ["--img-size", "64", "--epochs", "2", "--batch-size", "4"]
    flags = {"XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    log = run_python(backend, [*command, "--output", str(output)], flags)
    assert f"{backend} on {2 if backend == 'jax' else 1} device(s)" in log, log
    model = load_keras_model(output)
    images = np.random.default_rng(1).normal(size=(2, 64, 64, 3)).astype("float32")
    expected = keras.Model(model.input, model.output).predict(images, verbose=0)
    tflite = lsnet_keras.export_tflite(model, tmp_path / f"{backend}.tflite")
    from test_export import run_tflite

    assert np.abs(run_tflite(tflite, images) - expected).max() <= 1e-4
