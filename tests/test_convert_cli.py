"""`lsnet convert` end to end, and `.keras` files that load in a fresh process."""

import subprocess
import sys

import numpy as np
import pytest
from conftest import keras_model_for, nhwc

import lsnet_keras
from lsnet_keras.cli import main

LOAD_AND_RUN = """
import sys, numpy as np, keras, lsnet_keras
model = keras.models.load_model(sys.argv[1])
np.save(sys.argv[3], model.predict(np.load(sys.argv[2]), verbose=0))
"""


def outputs_in_fresh_process(model_path, inputs, tmp_path):
    np.save(tmp_path / "inputs.npy", inputs)
    subprocess.run(
        [
            sys.executable,
            "-c",
            LOAD_AND_RUN,
            str(model_path),
            str(tmp_path / "inputs.npy"),
            str(tmp_path / "outputs.npy"),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    return np.load(tmp_path / "outputs.npy")


@pytest.fixture(scope="module")
def tiny_files(golden, tmp_path_factory):
    """The tiny golden weights as .safetensors (as shipped) and as an official-style .pth."""
    torch = pytest.importorskip("torch")
    case = golden("tiny_128")
    folder = tmp_path_factory.mktemp("checkpoints")
    pth = folder / "tiny.pth"
    torch.save(
        {"model": {k: torch.from_numpy(v.copy()) for k, v in case["state_dict"].items()}}, pth
    )
    from goldens import REFERENCE_DIR

    return case, {"pth": pth, "safetensors": REFERENCE_DIR / "tiny_128.safetensors"}


@pytest.mark.parametrize("kind", ["pth", "safetensors"])
@pytest.mark.parametrize("deploy", [False, True])
def test_convert_then_load_in_fresh_process(kind, deploy, tiny_files, tmp_path):
    case, files = tiny_files
    output = tmp_path / "tiny.keras"
    argv = [
        "convert",
        "--checkpoint",
        str(files[kind]),
        "--output",
        str(output),
        "--img-size",
        "128",
    ]
    assert main(argv + (["--deploy"] if deploy else [])) == 0
    logits = outputs_in_fresh_process(output, nhwc(case["input"]), tmp_path)
    assert np.abs(logits - case["logits"]).max() <= 1e-4


def test_convert_refuses_overwrite_and_leaves_no_partial_file(tiny_files, tmp_path, capsys):
    _, files = tiny_files
    output = tmp_path / "tiny.keras"
    output.write_text("precious")
    argv = ["convert", "--checkpoint", str(files["pth"]), "--output", str(output)]
    assert main(argv) == 2
    assert "already exists" in capsys.readouterr().err
    assert output.read_text() == "precious"
    broken = tmp_path / "broken.pth"
    broken.write_bytes(files["pth"].read_bytes()[:5000])
    assert (
        main(["convert", "--checkpoint", str(broken), "--output", str(tmp_path / "b.keras")]) == 2
    )
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not a readable PyTorch checkpoint" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.pth", "tiny.keras"]


def test_wrong_variant_exits_with_one_line(tiny_files, tmp_path):
    _, files = tiny_files
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "lsnet_keras.cli",
            "convert",
            "--variant",
            "lsnet_t",
            "--checkpoint",
            str(files["safetensors"]),
            "--output",
            str(tmp_path / "x.keras"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2
    # exactly our one line: no Python traceback and no TensorFlow C++ logging around it
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("lsnet convert: error:") and "does not fit the model" in line


def test_keras_round_trip_training_and_deploy_forms(golden, tmp_path):
    case = golden("tiny_distill_128")
    model = keras_model_for(case["config"])
    lsnet_keras.load_weights(model, case["state_dict"], source="golden")
    for form in (model, lsnet_keras.reparameterize(model)):
        path = tmp_path / f"{form.name}_{form.deploy}.keras"
        form.save(path)
        expected = form.predict(nhwc(case["input"]), verbose=0)
        assert np.array_equal(
            outputs_in_fresh_process(path, nhwc(case["input"]), tmp_path), expected
        )
