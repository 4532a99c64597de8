"""`lsnet convert` end to end, and `.keras` files that load in a fresh process."""

import subprocess
import sys

import numpy as np
import pytest
from conftest import keras_model_for, nhwc, run_model

import lsnet_keras
from lsnet_keras.cli import main

LOAD_AND_RUN = """
import sys, numpy as np, keras, lsnet_keras
for model_path, input_path, output_path in zip(*[iter(sys.argv[1:])] * 3):
    model = keras.models.load_model(model_path)
    np.save(output_path, keras.ops.convert_to_numpy(model(np.load(input_path), training=False)))
"""


def outputs_in_fresh_process(jobs, folder):
    """{model path: outputs} of saved models, each loaded and run on its inputs (`jobs`: model
    path -> inputs) in one new Python process."""
    argv = []
    for i, (path, inputs) in enumerate(jobs.items()):
        np.save(folder / f"inputs_{i}.npy", inputs)
        argv += [str(path), str(folder / f"inputs_{i}.npy"), str(folder / f"outputs_{i}.npy")]
    command = [sys.executable, "-c", LOAD_AND_RUN, *argv]
    subprocess.run(command, check=True, capture_output=True, timeout=300)
    return {path: np.load(folder / f"outputs_{i}.npy") for i, path in enumerate(jobs)}


@pytest.fixture(scope="module")
def tiny_files(golden, tmp_path_factory):
    """The tiny golden weights as .safetensors (as shipped) and as an official-style .pth."""
    import torch

    case = golden("tiny_128")
    folder = tmp_path_factory.mktemp("checkpoints")
    pth = folder / "tiny.pth"
    torch.save(
        {"model": {k: torch.from_numpy(v.copy()) for k, v in case["state_dict"].items()}}, pth
    )
    from goldens import REFERENCE_DIR

    return case, {"pth": pth, "safetensors": REFERENCE_DIR / "tiny_128.safetensors"}


@pytest.fixture(scope="module")
def fresh_outputs(tiny_files, golden, tmp_path_factory):
    """{file name: outputs} of .keras files loaded and run in one new Python process: `lsnet
    convert` of both checkpoint formats in both forms (tiny_128), and `Model.save` of the
    distilled golden model in both forms (tiny_distill_128)."""
    case, files = tiny_files
    folder = tmp_path_factory.mktemp("fresh")
    converted = []
    for kind in ("pth", "safetensors"):
        for deploy in (False, True):
            converted.append(folder / f"{kind}_{deploy}.keras")
            argv = ["convert", "--checkpoint", str(files[kind]), "--output", str(converted[-1])]
            argv += ["--img-size", "128", *(["--deploy"] if deploy else [])]
            assert main(argv) == 0, (kind, deploy)
    distilled = golden("tiny_distill_128")
    model = keras_model_for(distilled["config"])
    lsnet_keras.load_weights(model, distilled["state_dict"], source="golden")
    forms = {
        f"distill_{deploy}.keras": form
        for deploy, form in enumerate((model, lsnet_keras.reparameterize(model)))
    }
    for name, form in forms.items():
        form.save(folder / name)
    inputs = {"tiny": nhwc(case["input"]), "distill": nhwc(distilled["input"])}
    jobs = {path: inputs["tiny"] for path in converted}
    jobs.update({folder / name: inputs["distill"] for name in forms})
    outputs = {path.name: out for path, out in outputs_in_fresh_process(jobs, folder).items()}
    return outputs, forms, inputs


def test_convert_then_load_in_fresh_process(fresh_outputs, tiny_files):
    """Both checkpoint formats, training and deployment forms: each converted .keras file loads
    in a new process and gives the golden logits."""
    outputs, _, _ = fresh_outputs
    case, _ = tiny_files
    for kind in ("pth", "safetensors"):
        for deploy in (False, True):
            logits = outputs[f"{kind}_{deploy}.keras"]
            assert np.abs(logits - case["logits"]).max() <= 1e-4, (kind, deploy)


def test_keras_round_trip_training_and_deploy_forms(fresh_outputs):
    outputs, forms, inputs = fresh_outputs
    for name, form in forms.items():
        assert np.array_equal(outputs[name], run_model(form, inputs["distill"])), name


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


@pytest.mark.slow
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
