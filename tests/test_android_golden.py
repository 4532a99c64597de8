"""The Android path end to end: `lsnet export --android-assets`, then the Kotlin core reproduces
the library's input tensor and top-5 for both app models (android_demo/core/GOLDEN.md)."""

import os
import subprocess

import numpy as np
import pytest
from PIL import Image

from lsnet_keras.cli import main
from lsnet_keras.litert.graph import read_graph
from lsnet_keras.litert.runtime import TFLiteClassifier

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


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


def test_assets_take_raw_pixels_and_carry_labels(assets):
    assert sorted(os.listdir(assets)) == ["labels.txt", "lsnet_fp16.tflite", "lsnet_int8.tflite"]
    assert len((assets / "labels.txt").read_text().splitlines()) == 1000
    for name in ("lsnet_fp16.tflite", "lsnet_int8.tflite"):
        graph = read_graph((assets / name).read_bytes())
        image = graph.tensors[graph.inputs[0]]
        assert image.dtype == "uint8" and image.shape == (1, 64, 64, 3)
        assert image.scale in ((), (1.0,)) and image.zero_point in ((), (0,))
        assert "labels.txt" in (assets / name).read_bytes()[-200_000:].decode("latin-1")


@pytest.mark.slow
def test_kotlin_core_reproduces_python_goldens(assets, tmp_path):
    image = tmp_path / "photo.png"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, size=(90, 120, 3)).astype("uint8")).save(image)
    golden_dirs = []
    for name in ("lsnet_fp16.tflite", "lsnet_int8.tflite"):
        folder = tmp_path / name.replace(".tflite", "")
        assert (
            main(["android-golden", str(assets / name), str(image), "--output", str(folder)]) == 0
        )
        assert TFLiteClassifier(assets / name).num_classes == 1000
        golden_dirs.append(str(folder))
    result = subprocess.run(
        ["bash", os.path.join(ROOT, "android_demo", "core", "test.sh")],
        env={**os.environ, "LSNET_GOLDEN_DIR": os.pathsep.join(golden_dirs)},
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "SKIPPED" not in result.stdout and result.stdout.strip().endswith("0 failed")
