"""Exported models on tflite-runtime 2.14 with NumPy < 2, the Coral / Raspberry Pi stack.

Every export (each precision, int8 I/O type, --include-preprocessing, the Edge TPU graph) is run
by tflite-runtime 2.14 in its own virtualenv (`tflite_runtime_python`: tflite-runtime needs
NumPy < 2, the main environment has NumPy 2) and by ai-edge-litert here, on the same input
tensors. What "the same outputs" can mean:

- reference kernels (OpResolverType.BUILTIN_REF): identical outputs, integer and float alike;
  this pins the graph's meaning (op versions, quantization parameters) across the two runtimes;
- default kernels (what an app gets): the optimized int8 kernels and XNNPACK round differently
  from release to release, and on this small random-weight model one step of rounding early on
  moves the logits by up to ~20 output steps (as far as ai-edge-litert's own default kernels are
  from its reference ones). So float graphs must agree to float rounding, and int8 graphs must
  stay as close to the reference-kernel output in tflite-runtime as in ai-edge-litert;
- dynamic range: the hybrid kernels quantize activations at run time and that arithmetic
  changed after 2.14 (the first hybrid CONV_2D differs by one step in a few values, even with
  reference kernels), so it must stay as close to the fp32 model as in ai-edge-litert.

`lsnet predict` is also run in that virtualenv (lsnet_keras through PYTHONPATH, no Keras).
The virtualenv is built once under ~/.cache/lsnet-keras and reused; if it cannot be built, the
test fails.
"""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from ai_edge_litert.interpreter import Interpreter, OpResolverType
from conftest import keras_model_for
from PIL import Image

import lsnet_keras
from lsnet_keras.litert.calibration import builtin_images
from lsnet_keras.litert.export import export_tflite
from lsnet_keras.litert.runtime import TFLiteClassifier, softmax
from lsnet_keras.preprocess import eval_crop, load_image

pytestmark = pytest.mark.slow  # eight exports: about a minute

REPO = Path(__file__).resolve().parents[1]
RUNNER = Path(__file__).parent / "consumers" / "tflite_runtime_run.py"
VENV_NAME = "venv-tflite-runtime-2.14"
# tflite-runtime 2.14.0 has wheels up to CPython 3.11 (cp311 manylinux2014_x86_64), none later.
RUNTIME_REQUIREMENTS = ["tflite-runtime==2.14.0", "numpy<2", "pillow"]
RUNTIME_PYTHON_VERSIONS = ("3.11", "3.10", "3.9", "3.8")
KERNELS = {"default": OpResolverType.AUTO, "reference": OpResolverType.BUILTIN_REF}
EXPORTS = {
    "fp32": {},
    "fp16": {"precision": "fp16"},
    "dynamic": {"precision": "dynamic"},
    "int8": {"precision": "int8"},
    "int8_io_int8": {"precision": "int8", "io": "int8"},
    "int8_io_uint8": {"precision": "int8", "io": "uint8"},
    "int8_preprocessing": {"precision": "int8", "io": "uint8", "include_preprocessing": True},
    "edgetpu": {"precision": "int8", "target": "edgetpu", "io": "uint8"},
}
FLOAT_GRAPHS = ("fp32", "fp16")
INT8_GRAPHS = ("int8", "int8_io_int8", "int8_io_uint8", "int8_preprocessing", "edgetpu")
# Where outputs cannot be identical (see the module docstring): tflite-runtime's mean deviation
# from the reference output may be at most this multiple of ai-edge-litert's, plus 1% of the
# largest fp32 logit. Measured over 8 image sets: at most 1.7 (dynamic), 1.4 (int8).
DEVIATION_RATIO = 2.0


def clean_env(**extra):
    """The environment without the main interpreter's paths, for the tflite-runtime venv."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    return {**env, **extra}


def base_python():
    """A CPython that tflite-runtime 2.14 has wheels for: this one, else python3.11 ... 3.8."""
    if sys.version_info[:2] <= (3, 11):
        return sys.executable
    for version in RUNTIME_PYTHON_VERSIONS:
        found = shutil.which(f"python{version}")
        if found:
            return found
    pytest.fail(
        f"cannot build the tflite-runtime 2.14 virtualenv: tflite-runtime 2.14.0 has no wheels "
        f"after CPython 3.11; this is {sys.version.split()[0]} and no python3.11 (... 3.8) "
        f"is on PATH"
    )


def probe(python):
    """None if `python` runs tflite-runtime 2.14.0 with NumPy < 2 and no ai-edge-litert."""
    code = (
        "import importlib.util, numpy, tflite_runtime.interpreter\n"
        "from importlib.metadata import version\n"
        "assert version('tflite-runtime') == '2.14.0', version('tflite-runtime')\n"
        "assert int(numpy.__version__.split('.')[0]) < 2, numpy.__version__\n"
        "assert importlib.util.find_spec('ai_edge_litert') is None, 'ai-edge-litert is installed'\n"
        "assert importlib.util.find_spec('keras') is None, 'keras is installed'\n"
    )
    try:
        done = subprocess.run(
            [str(python), "-c", code], capture_output=True, text=True, timeout=120, env=clean_env()
        )
    except OSError as err:
        return str(err)
    return done.stderr[-2000:] if done.returncode else None


@pytest.fixture(scope="session")
def tflite_runtime_python():
    """Python of a virtualenv with tflite-runtime 2.14.0, NumPy < 2 and Pillow, built once.

    Built beside its final place and renamed into it, so an interrupted build is never reused.
    """
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "lsnet-keras"
    venv = cache / VENV_NAME
    python = venv / "bin" / "python"
    base = base_python()
    stamp = "\n".join([os.path.realpath(base), *RUNTIME_REQUIREMENTS]) + "\n"
    stamp_file = venv / "lsnet-stamp.txt"
    if stamp_file.is_file() and stamp_file.read_text() == stamp and probe(python) is None:
        return python
    cache.mkdir(parents=True, exist_ok=True)
    building = cache / f"{VENV_NAME}.building-{os.getpid()}"
    shutil.rmtree(building, ignore_errors=True)
    steps = [
        [base, "-m", "venv", str(building)],
        [str(building / "bin" / "python"), "-m", "pip", "install", "-q", *RUNTIME_REQUIREMENTS],
    ]
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True, timeout=1200, env=clean_env())
        if done.returncode:
            shutil.rmtree(building, ignore_errors=True)
            pytest.fail(
                f"cannot build the tflite-runtime 2.14 virtualenv {venv}: {' '.join(step)} "
                f"failed:\n{done.stderr[-4000:]}"
            )
    problem = probe(building / "bin" / "python")
    if problem:
        shutil.rmtree(building, ignore_errors=True)
        pytest.fail(f"the tflite-runtime 2.14 virtualenv is not as required:\n{problem}")
    (building / "lsnet-stamp.txt").write_text(stamp)
    shutil.rmtree(venv, ignore_errors=True)
    try:
        building.rename(venv)
    except OSError:  # another test run renamed its own build into place first
        shutil.rmtree(building, ignore_errors=True)
    return python


@pytest.fixture(scope="module")
def exported(golden, tmp_path_factory):
    """{name: path} of every export of the golden tiny_128 LSNet (10 classes, 128 x 128)."""
    case = golden("tiny_128")
    model = keras_model_for(case["config"])
    lsnet_keras.load_weights(model, case["state_dict"], source="tiny_128")
    folder = tmp_path_factory.mktemp("exports")
    paths = {}
    for name, options in EXPORTS.items():
        paths[name] = folder / f"{name}.tflite"
        export_tflite(model, paths[name], **options)
    return paths


@pytest.fixture(scope="module")
def inputs(exported):
    """{name: (N, H, W, 3) input tensors}: generated photos (not the calibration set), fed as
    `TFLiteClassifier.input_tensor` feeds each model (normalized, quantized or raw pixels)."""
    pixels = builtin_images(3, 128, seed=1)
    tensors = {}
    for name, path in exported.items():
        classifier = TFLiteClassifier(path, num_threads=1)
        tensors[name] = np.concatenate([classifier.input_tensor(p) for p in pixels])
    return tensors


def litert_outputs(path, tensors, resolver):
    """ai-edge-litert's outputs, fed one tensor at a time on one thread (as the runner is)."""
    interpreter = Interpreter(
        model_path=str(path), num_threads=1, experimental_op_resolver_type=resolver
    )
    interpreter.allocate_tensors()
    (source,), (sink,) = interpreter.get_input_details(), interpreter.get_output_details()
    outputs = []
    for tensor in tensors:
        interpreter.set_tensor(source["index"], tensor[None])
        interpreter.invoke()
        outputs.append(interpreter.get_tensor(sink["index"])[0].copy())
    return np.stack(outputs)


@pytest.fixture(scope="module")
def outputs(tflite_runtime_python, exported, inputs, tmp_path_factory):
    """{"versions": ..., "tflite-runtime": {name: result}, "litert": {name: {kernels: array}}}."""
    folder = tmp_path_factory.mktemp("tflite_runtime")
    names = list(exported)
    np.savez(folder / "inputs.npz", **{f"model_{i}": inputs[n] for i, n in enumerate(names)})
    command = [str(tflite_runtime_python), str(RUNNER), "--inputs", str(folder / "inputs.npz")]
    command += ["--output", str(folder / "result.json"), *[str(exported[n]) for n in names]]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, env=clean_env())
    if done.returncode:
        pytest.fail(f"{RUNNER.name} failed in tflite-runtime 2.14:\n{done.stderr[-4000:]}")
    result = json.loads((folder / "result.json").read_text())
    litert = {
        name: {k: litert_outputs(exported[name], inputs[name], r) for k, r in KERNELS.items()}
        for name in names
    }
    runtime = {name: result["results"][str(exported[name])] for name in names}
    return {"versions": result["versions"], "tflite-runtime": runtime, "litert": litert}


def runtime_output(outputs, name, kernels):
    result = outputs["tflite-runtime"][name]
    assert "error" not in result, f"{name} does not load in tflite-runtime 2.14: {result['error']}"
    return np.array(result[kernels]["outputs"], dtype=result[kernels]["dtype"])


def logit_scale(outputs):
    """The largest |logit| of the fp32 model on the test images (ai-edge-litert, reference)."""
    return float(np.abs(outputs["litert"]["fp32"]["reference"]).max())


def dequantized(path, values):
    """Output values in real units (float outputs as they are)."""
    details = TFLiteClassifier(path).output
    scale, zero_point = details["quantization"]
    values = values.astype("float64")
    return (values - zero_point) * scale if scale else values


def test_the_virtualenv_is_the_coral_pi_stack(outputs):
    versions = outputs["versions"]
    assert versions["tflite-runtime"] == "2.14.0"
    assert int(versions["numpy"].split(".")[0]) < 2


@pytest.mark.parametrize("name", list(EXPORTS))
def test_every_export_loads_and_runs_in_tflite_runtime_2_14(name, outputs, inputs):
    for kernels in KERNELS:
        got = runtime_output(outputs, name, kernels)
        expected = outputs["litert"][name][kernels]
        assert got.dtype == expected.dtype and got.shape == expected.shape == (3, 10)
        assert np.isfinite(got.astype("float64")).all()


@pytest.mark.parametrize("name", FLOAT_GRAPHS + INT8_GRAPHS)
def test_reference_kernels_give_identical_outputs(name, outputs):
    got = runtime_output(outputs, name, "reference")
    expected = outputs["litert"][name]["reference"]
    if got.dtype == np.float32:
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)
    else:
        np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("name", FLOAT_GRAPHS)
def test_float_graphs_agree_with_default_kernels(name, outputs):
    got = runtime_output(outputs, name, "default")
    expected = outputs["litert"][name]["default"]
    # XNNPACK's float kernels sum in another order from release to release: float rounding only
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5 * max(1.0, logit_scale(outputs)))


@pytest.mark.parametrize(
    "name, kernels",
    [("dynamic", "default"), ("dynamic", "reference")] + [(n, "default") for n in INT8_GRAPHS],
)
def test_rounding_differences_stay_as_small_as_on_ai_edge_litert(name, kernels, outputs, exported):
    """Mean distance to the reference output (the graph's reference-kernel output, identical in
    both runtimes; the fp32 graph's for dynamic range), in real units: tflite-runtime's kernels
    must not stray further from it than ai-edge-litert's do (times DEVIATION_RATIO)."""
    if name == "dynamic":
        reference = outputs["litert"]["fp32"]["reference"].astype("float64")
    else:
        reference = dequantized(exported[name], outputs["litert"][name]["reference"])
    runtime = dequantized(exported[name], runtime_output(outputs, name, kernels))
    litert = dequantized(exported[name], outputs["litert"][name][kernels])
    runtime_error, litert_error = (np.abs(x - reference).mean() for x in (runtime, litert))
    bound = DEVIATION_RATIO * litert_error + 0.01 * logit_scale(outputs)
    assert runtime_error <= bound, (runtime_error, litert_error)


def test_dynamic_range_graph_keeps_op_versions_of_tflite_runtime_2_14(exported):
    """FULLY_CONNECTED v12 (float with per-channel int8 weights) is unknown to 2.14: the export
    quantizes dense weights per tensor (see lsnet_keras.litert.export)."""
    from lsnet_keras.litert.graph import read_graph

    graph = read_graph(exported["dynamic"].read_bytes())
    versions = {op.name: op.version for op in graph.operators}
    assert versions["FULLY_CONNECTED"] < 12, versions


@pytest.mark.parametrize("name", ["fp32", "int8_io_uint8"])
def test_predict_cli_runs_on_tflite_runtime(name, tflite_runtime_python, exported, tmp_path):
    image_path = tmp_path / "photo.png"
    Image.fromarray(builtin_images(1, 200, seed=2)[0][:, :150]).save(image_path)  # 150 x 200
    model = exported[name]
    done = subprocess.run(
        [str(tflite_runtime_python), "-m", "lsnet_keras.cli", "predict", str(model)]
        + [str(image_path)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env=clean_env(PYTHONPATH=str(REPO)),
    )
    assert done.returncode == 0, done.stderr[-4000:]
    lines = done.stdout.splitlines()
    assert lines[0].startswith(f"{model}: tflite-runtime, input 1x128x128x3 "), lines[0]
    assert re.fullmatch(rf"{re.escape(str(image_path))}: \d+\.\d ms", lines[1]), lines[1]
    top = [re.fullmatch(r" +([01]\.\d{4})  (\S.*)", line) for line in lines[2:]]
    assert len(top) == 5 and all(top), lines
    printed = [float(match.group(1)) for match in top]
    assert printed == sorted(printed, reverse=True)
    if name == "fp32":  # float kernels agree to rounding: the same probabilities as here
        classifier = TFLiteClassifier(model, num_threads=1)
        pixels = eval_crop(load_image(image_path), classifier.height, classifier.width)
        scores, _ = classifier.run(classifier.input_tensor(pixels))
        expected = np.sort(softmax(scores))[::-1][:5]
        np.testing.assert_allclose(printed, expected, atol=6e-5)
