"""`lsnet detect` and the detector paths of `lsnet convert` / `lsnet export`: outputs, JSON and
one-line errors."""

import json

import numpy as np
import pytest
from PIL import Image
from test_detection import randomized, tiny_detector

import lsnet_keras
from lsnet_keras.cli import main
from lsnet_keras.detection.letterbox import boxes_to_original, letterbox


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("detect")
    randomized(tiny_detector()).save(folder / "tiny.keras")
    lsnet_keras.lsnet_t(num_classes=10, input_shape=64).save(folder / "classifier.keras")
    rng = np.random.default_rng(0)
    for name, size in (("wide.png", (200, 90)), ("tall.jpg", (60, 150))):
        Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(
            folder / name
        )
    return folder


def test_detect_writes_json_and_pictures(files, tmp_path, capsys):
    images = [str(files / "wide.png"), str(files / "tall.jpg")]
    argv = ["detect", str(files / "tiny.keras"), *images, "--score-threshold", "0.05"]
    out = tmp_path / "out.json"
    assert main(argv + ["--json", str(out), "--output", str(tmp_path)]) == 0
    records = json.loads(out.read_text())
    assert [r["image"] for r in records] == images
    for record, size in zip(records, ((200, 90), (60, 150))):
        for found in record["detections"]:
            assert set(found) == {"box", "score", "label", "category_id", "name"}
            x1, y1, x2, y2 = found["box"]
            assert 0 <= x1 <= x2 <= size[0] and 0 <= y1 <= y2 <= size[1]
            assert found["score"] >= 0.05 and found["category_id"] is None
    assert Image.open(tmp_path / "wide_detections.png").size == (200, 90)
    # nothing is overwritten without --force
    assert main(argv + ["--json", str(out)]) == 2
    assert "exists" in capsys.readouterr().err


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--score-threshold", "2"], "--score-threshold"),
        (["--output", "picture.txt"], "a picture file"),
    ],
)
def test_detect_bad_options(files, extra, message, capsys):
    argv = ["detect", str(files / "tiny.keras"), str(files / "wide.png"), *extra]
    try:
        status = main(argv)
    except SystemExit as stop:  # refused by the option parser
        status = stop.code
    assert status == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_detect_refuses_a_classifier_and_missing_images(files, capsys):
    assert main(["detect", str(files / "classifier.keras"), str(files / "wide.png")]) == 2
    assert "not a detector" in capsys.readouterr().err
    assert main(["detect", str(files / "tiny.keras"), str(files / "missing.png")]) == 2
    assert "missing.png" in capsys.readouterr().err


def test_letterbox_round_trip():
    image = Image.new("RGB", (640, 480), (10, 20, 30))
    fitted = letterbox(image, 256, 384)
    assert fitted.scale == 0.5333333333333333 and fitted.content == (256, 341)
    assert np.allclose(fitted.pixels[0, 0], (10, 20, 30), atol=1e-3)
    assert np.allclose(fitted.pixels[0, 383], (123.675, 116.28, 103.53))
    box = boxes_to_original(np.array([[0.0, 0.0, 341.33, 256.0]]), fitted)
    assert np.allclose(box, [[0, 0, 640, 480]], atol=0.01)
