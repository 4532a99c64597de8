"""The Android path end to end: `lsnet export --android-assets`, then the Kotlin core reproduces
the library's crop, input tensor and top-5 for both app models (android_demo/core/GOLDEN.md)."""

import json
import os
import subprocess

import numpy as np
import pytest

from lsnet_keras.cli import main
from lsnet_keras.litert.graph import read_graph
from lsnet_keras.litert.metadata import read_metadata
from lsnet_keras.litert.runtime import TFLiteClassifier
from lsnet_keras.preprocess import CROP_FRACTION

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# A 201x150 cut of the official preprocess.png, committed with the Kotlin crop fixtures.
PHOTO = os.path.join(ROOT, "android_demo", "core", "src", "test", "resources", "crop", "photo.png")
APP_MODELS = ("lsnet_fp16.tflite", "lsnet_int8.tflite")


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    import lsnet_keras

    folder = tmp_path_factory.mktemp("assets")
    model = lsnet_keras.LSNet(
        (32, 64, 96, 128), (2, 2, 2, 2), (2, 2, 2, 2), num_classes=1000, input_shape=64
    )
    model.save(folder / "tiny.keras")
    argv = ["export", str(folder / "tiny.keras"), "--android-assets", str(folder / "assets")]
    assert main(argv) == 0
    return folder / "assets"


def test_assets_take_raw_pixels_and_carry_labels_and_crop(assets):
    assert sorted(os.listdir(assets)) == ["labels.txt", *APP_MODELS]
    assert len((assets / "labels.txt").read_text().splitlines()) == 1000
    for name in APP_MODELS:
        data = (assets / name).read_bytes()
        graph = read_graph(data)
        image = graph.tensors[graph.inputs[0]]
        assert image.dtype == "uint8" and image.shape == (1, 64, 64, 3)
        assert image.scale in ((), (1.0,)) and image.zero_point in ((), (0,))
        assert "labels.txt" in data[-200_000:].decode("latin-1")
        assert read_metadata(data)["crop_fraction"] == CROP_FRACTION == 0.875


def test_crop_fraction_gives_the_official_resize():
    # The app resizes the shorter side to floor(size / crop_fraction); Python to int(256/224*size).
    sizes = np.arange(1, 4097)
    assert all(int(s / CROP_FRACTION) == int(256 / 224 * s) for s in sizes.tolist())


def test_golden_refuses_a_model_without_the_crop(tmp_path, capsys):
    # A converter-made model with no metadata: the app would refuse it, so the golden does too.
    model = os.path.join(os.path.dirname(PHOTO), "..", "golden", "tiny_float", "model.tflite")
    argv = ["android-golden", model, PHOTO, "--output", str(tmp_path / "golden")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "model.tflite: the model has no TFLITE_METADATA" in err
    assert not (tmp_path / "golden").exists()


@pytest.mark.slow
def test_kotlin_core_reproduces_python_goldens(assets, tmp_path):
    golden_dirs = []
    for name in APP_MODELS:
        folder = tmp_path / name.replace(".tflite", "")
        argv = ["android-golden", str(assets / name), PHOTO, "--output", str(folder)]
        assert main(argv) == 0
        golden_dirs.append(folder)
    result = subprocess.run(
        ["bash", os.path.join(ROOT, "android_demo", "core", "test.sh")],
        env={**os.environ, "LSNET_GOLDEN_DIR": os.pathsep.join(map(str, golden_dirs))},
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "SKIPPED" not in result.stdout and result.stdout.strip().endswith("0 failed")
    for name, folder in zip(APP_MODELS, golden_dirs):
        # The Kotlin test printed what its crop of the photo measured against Python's.
        crop_lines = [
            line for line in result.stdout.splitlines() if f"crop of {folder.name}: " in line
        ]
        assert len(crop_lines) == 1
        print(crop_lines[0])
        classifier = TFLiteClassifier(assets / name)
        shape = (1, classifier.height, classifier.width, 3)
        dtype = np.dtype(classifier.input["dtype"])
        kotlin = np.fromfile(folder / "kotlin_input.bin", dtype).reshape(shape)
        python = np.fromfile(folder / "expected_input.bin", dtype).reshape(shape)
        # Same model, Kotlin's tensor from the photo: Python's top-5, in order.
        scores, _ = classifier.run(kotlin)
        expected = json.loads((folder / "expected_top5.json").read_text())["indices"]
        assert np.argsort(-np.asarray(scores, "float64"), kind="stable")[:5].tolist() == expected
        print(f"{name}: {int((kotlin != python).sum())} of {kotlin.size} input values differ")
