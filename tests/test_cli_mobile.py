"""`lsnet export`, `lsnet predict` and `lsnet edgetpu-check` as a user runs them."""

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from lsnet_keras.cli import main

TINY = ["--img-size", "64"]


@pytest.fixture(scope="module")
def tiny_keras(tmp_path_factory):
    import lsnet_keras

    folder = tmp_path_factory.mktemp("models")
    model = lsnet_keras.LSNet(
        (32, 64, 96, 128), (2, 2, 2, 2), (2, 2, 2, 2), num_classes=1000, input_shape=64
    )
    path = folder / "tiny.keras"
    model.save(path)
    return path


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for i, size in enumerate([(80, 64), (64, 100), (120, 90)]):
        pixels = rng.integers(0, 256, size=(*size, 3)).astype("uint8")
        Image.fromarray(pixels).save(folder / f"image{i}.png")
    (folder / "notes.txt").write_text("not an image")
    return folder


@pytest.fixture(scope="module")
def exported(tiny_keras, images, tmp_path_factory):
    folder = tmp_path_factory.mktemp("tflite")
    paths = {}
    for name, extra in {
        "fp32": ["--precision", "fp32"],
        "int8": ["--precision", "int8", "--io", "uint8", "--calibration", str(images)],
        "edgetpu": ["--precision", "int8", "--target", "edgetpu", "--io", "uint8"],
    }.items():
        paths[name] = folder / f"{name}.tflite"
        assert main(["export", str(tiny_keras), "--output", str(paths[name]), *extra]) == 0
    return paths


def lsnet(*argv):
    return subprocess.run(
        [sys.executable, "-m", "lsnet_keras.cli", *argv],
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_export_command_prints_only_its_own_lines(tiny_keras, tmp_path):
    output = tmp_path / "quiet.tflite"
    result = lsnet("export", str(tiny_keras), "--precision", "int8", "--output", str(output))
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # no oneDNN / CUDA / converter / XNNPACK lines
    assert result.stdout.splitlines() == [
        "calibrating on the built-in generated set (pass --calibration DIR for real images)",
        f"wrote {output} ({output.stat().st_size / 1e6:.1f} MB, int8, target cpu)",
    ]


@pytest.mark.parametrize("name", ["fp32", "int8"])
def test_predict_prints_top5_and_latency(name, exported, images):
    result = lsnet(
        "predict", str(exported[name]), str(images / "image0.png"), str(images / "image1.png")
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # no TensorFlow / XNNPACK logging
    lines = result.stdout.splitlines()
    assert any(line.endswith(" ms") and "image1.png" in line for line in lines)
    scored = [line for line in lines if line.startswith("  ")]
    assert len(scored) == 10  # top-5 for each of two images
    assert (
        "tench" in result.stdout
        or "goldfish" in result.stdout
        or all(len(line.split()) >= 2 for line in scored)
    )


PREDICT_ALONE = """
import sys
sys.argv = ["lsnet", *sys.argv[1:]]  # as the console script starts
from lsnet_keras import cli
status = cli.main(sys.argv[1:])
print("loaded:", sorted({"keras", "tensorflow"} & set(sys.modules)))
sys.exit(status)
"""


def test_predict_never_loads_tensorflow(exported, images):
    """`lsnet predict` needs only the LiteRT runtime: no seconds spent importing TensorFlow."""
    argv = ["predict", str(exported["int8"]), str(images / "image0.png")]
    result = subprocess.run(
        [sys.executable, "-c", PREDICT_ALONE, *argv], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "loaded: []"


def test_export_without_calibration_says_it_uses_the_builtin_set(tiny_keras, tmp_path, capsys):
    output = tmp_path / "m.tflite"
    assert main(["export", str(tiny_keras), "--precision", "int8", "--output", str(output)]) == 0
    assert "built-in generated set" in capsys.readouterr().out


def test_edgetpu_check_exit_codes(exported, capsys):
    assert main(["edgetpu-check", str(exported["edgetpu"])]) == 0
    assert "all ops map to the Edge TPU" in capsys.readouterr().out
    assert main(["edgetpu-check", str(exported["fp32"])]) == 1
    assert "blockers" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["predict", "{missing}", "{image}"], "model file not found"),
        (["predict", "{corrupt}", "{image}"], "not a loadable .tflite model"),
        (["predict", "{fp32}", "{text}"], "not a readable image"),
        (["predict", "{fp32}", "{nothing}"], "image file not found"),
        (
            [
                "export",
                "{keras}",
                "--precision",
                "int8",
                "--calibration",
                "{empty}",
                "--output",
                "{out}",
            ],
            "no images",
        ),
        (["export", "{missing_keras}", "--output", "{out}"], "model file not found"),
        (["edgetpu-check", "{corrupt}"], "not a"),
        (["predict", "{fp32}", "{image}", "--delegate", "edgetpu"], "cannot load the Edge TPU"),
    ],
)
def test_bad_inputs_fail_with_one_line(
    argv, message, exported, images, tiny_keras, tmp_path, capsys
):
    """In process through `main` (the command boundary is the console's; tests/test_hostile_cli.py
    runs such lines in subprocesses too)."""
    corrupt = tmp_path / "corrupt.tflite"
    corrupt.write_bytes(b"\x00" * 64)
    (tmp_path / "empty").mkdir()
    values = {
        "missing": tmp_path / "missing.tflite",
        "image": images / "image0.png",
        "corrupt": corrupt,
        "fp32": exported["fp32"],
        "text": images / "notes.txt",
        "nothing": tmp_path / "nothing.png",
        "keras": tiny_keras,
        "empty": tmp_path / "empty",
        "out": tmp_path / "out.tflite",
        "missing_keras": tmp_path / "missing.keras",
    }
    status = main([arg.format(**values) for arg in argv])
    stderr = capsys.readouterr().err
    assert status == 2, stderr
    [line] = stderr.strip().splitlines()
    assert line.startswith("lsnet ") and message in line
    assert not (tmp_path / "out.tflite").exists()
