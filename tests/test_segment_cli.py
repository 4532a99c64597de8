"""`lsnet segment`: overlay and raw class-map pictures at the image's own size, and its errors."""

import json

import numpy as np
import pytest
from PIL import Image
from test_detection import randomized
from test_segmentation import TINY

import lsnet_keras
from lsnet_keras.cli import main
from lsnet_keras.litert.metadata import read_metadata
from lsnet_keras.segmentation.run import open_segmenter, overlay


@pytest.fixture(scope="module")
def segmenter_file(tmp_path_factory):
    folder = tmp_path_factory.mktemp("segment")
    model = randomized(lsnet_keras.LSNetSemanticFPN(**TINY, num_classes=7, input_shape=(64, 96)))
    model.save(folder / "seg.keras")
    rng = np.random.default_rng(0)
    for name, size in (("wide.png", (130, 70)), ("tall.jpg", (50, 90))):
        Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(
            folder / name
        )
    return folder


def test_one_image_writes_overlay_mask_and_json(segmenter_file, tmp_path, capsys):
    model, image = str(segmenter_file / "seg.keras"), str(segmenter_file / "wide.png")
    out = {"output": tmp_path / "o.png", "mask": tmp_path / "m.png", "json": tmp_path / "s.json"}
    argv = ["segment", model, image, *[a for k, v in out.items() for a in (f"--{k}", str(v))]]
    assert main(argv) == 0
    mask = Image.open(out["mask"])
    assert mask.mode == "L" and mask.size == (130, 70)
    classes = np.asarray(mask)
    # the class map of the original size: logits resized to it, not the stretched 64x96
    expected = open_segmenter(model).segment(Image.open(image).convert("RGB"))
    np.testing.assert_array_equal(classes, expected)
    assert classes.max() < 7
    drawn = np.asarray(Image.open(out["output"]))
    np.testing.assert_array_equal(drawn, np.asarray(overlay(Image.open(image), classes)))
    record = json.loads(out["json"].read_text())[0]
    assert record["size"] == [130, 70] and abs(sum(c["share"] for c in record["classes"]) - 1) < 0.1
    assert "wide.png: 130x70" in capsys.readouterr().out
    assert main(argv) == 2  # exists: refused without --force
    assert main([*argv, "--force"]) == 0


def test_several_images_go_to_folders(segmenter_file, tmp_path):
    images = [str(segmenter_file / "wide.png"), str(segmenter_file / "tall.jpg")]
    argv = ["segment", str(segmenter_file / "seg.keras"), *images, "--mask", str(tmp_path)]
    assert main(argv) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tall_mask.png", "wide_mask.png"]
    assert Image.open(tmp_path / "tall_mask.png").size == (50, 90)


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--mask", "{tmp}/m.jpg"], "--mask {tmp}/m.jpg: a picture file (.png)"),
        (["--output", "{tmp}/o.txt"], "--output {tmp}/o.txt: a picture file"),
        (["--output", "{tmp}/same.png", "--mask", "{tmp}/same.png"], "the same file"),
    ],
)
def test_bad_outputs_are_one_line(segmenter_file, tmp_path, capsys, extra, message):
    extra = [a.format(tmp=tmp_path) for a in extra]
    argv = ["segment", str(segmenter_file / "seg.keras"), str(segmenter_file / "wide.png")]
    assert main(argv + extra) == 2
    assert message.format(tmp=tmp_path) in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_a_classifier_is_not_a_segmenter(hostile_files, segmenter_file, capsys):
    assert main(["segment", hostile_files["keras"], str(segmenter_file / "wide.png")]) == 2
    err = capsys.readouterr().err
    assert "is not a segmenter" in err and len(err.strip().splitlines()) == 1


def test_export_command_writes_the_mediapipe_form(segmenter_file, tmp_path, capsys):
    output = tmp_path / "seg.tflite"
    argv = ["export", str(segmenter_file / "seg.keras"), "--output", str(output)]
    assert main([*argv, "--precision", "int8", "--calibration", str(segmenter_file)]) == 0
    out = capsys.readouterr().out
    assert "calibrating on 2 images" in out and "logits at 1/8 out" in out
    assert read_metadata(output.read_bytes())["labels"] == [f"class {i}" for i in range(7)]
    assert main([*argv, "--force", "--include-preprocessing"]) == 2
    assert "is a segmenter" in capsys.readouterr().err


def test_tflite_segmenter_gives_the_keras_class_map(segmenter_file, tmp_path, capsys):
    """The exported fp32 file through the same stretch, resize and argmax: Keras' class map
    (on all pixels but near-ties), and `lsnet segment` takes it as it takes the .keras."""
    from lsnet_keras.litert.segmenter_export import export_segmenter
    from lsnet_keras.model.loading import load_keras_model

    exported = tmp_path / "seg.tflite"
    export_segmenter(load_keras_model(segmenter_file / "seg.keras"), exported)
    image = Image.open(segmenter_file / "wide.png").convert("RGB")
    ours = open_segmenter(exported).segment(image)
    keras_map = open_segmenter(segmenter_file / "seg.keras").segment(image)
    assert ours.shape == (70, 130) and (ours == keras_map).mean() >= 0.999
    mask = tmp_path / "mask.png"
    assert (
        main(["segment", str(exported), str(segmenter_file / "wide.png"), "--mask", str(mask)]) == 0
    )
    np.testing.assert_array_equal(np.asarray(Image.open(mask)), ours)


def test_a_tflite_classifier_is_not_a_segmenter(segmenter_file, tmp_path, capsys):
    classifier = tmp_path / "classifier.tflite"
    lsnet_keras.export_tflite(lsnet_keras.lsnet_t(num_classes=10, input_shape=64), classifier)
    assert main(["segment", str(classifier), str(segmenter_file / "wide.png")]) == 2
    err = capsys.readouterr().err
    assert "not a segmenter" in err and len(err.strip().splitlines()) == 1
