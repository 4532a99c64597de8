"""`lsnet pipeline --task detect`, the detector's main job, end to end (128 px, golden weights)."""

import json

import numpy as np
import pytest
from dense_goldens import DENSE_DIR

from lsnet_keras.cli import main
from lsnet_keras.detection.pipeline import match_with_keras
from lsnet_keras.detection.postprocess import Detections

WEIGHTS = str(DENSE_DIR / "retinanet_lsnet_t.safetensors")
POSTPROCESS = "CUSTOM:TFLite_Detection_PostProcess"


def test_match_with_keras_needs_label_and_overlap():
    keras = Detections(
        np.float32([[0, 0, 10, 10], [20, 20, 40, 40]]), np.float32([0.9, 0.5]), np.int64([1, 2])
    )
    shifted = Detections(
        np.float32([[1, 1, 11, 11], [20, 20, 40, 40]]), np.float32([0.8, 0.5]), np.int64([1, 3])
    )
    result = match_with_keras(shifted, keras)
    assert result == {"keras_detections": 2, "matched": 1, "max_score_diff": pytest.approx(0.1)}
    assert match_with_keras(shifted, keras, min_score=0.95)["keras_detections"] == 0


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--variant", "lsnet_t_distill"], "the detectors are lsnet_t, lsnet_s, lsnet_b"),
        (["--img-size", "100"], "multiples of 32"),
        (["--calibration", "missing-folder"], "missing-folder"),
    ],
)
def test_detect_pipeline_bad_options(extra, message, tmp_path, capsys):
    argv = [
        "pipeline",
        "--task",
        "detect",
        "--weights",
        "random",
        "--output-dir",
        str(tmp_path / "o"),
    ]
    assert main([*argv, *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_classifier_commands_refuse_a_rectangle(tmp_path, capsys):
    argv = [
        "export",
        "--variant",
        "lsnet_t",
        "--img-size",
        "64",
        "96",
        "--output",
        str(tmp_path / "x.tflite"),
    ]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "classifiers take square inputs" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x.tflite").exists()


@pytest.mark.slow
def test_detect_pipeline_exports_verifies_reports_and_keeps_existing_files(tmp_path, capsys):
    out = tmp_path / "out"
    command = ["pipeline", "--task", "detect", "--weights", WEIGHTS, "--img-size", "128"]
    command += ["--runs", "2", "--threads", "1", "--output-dir", str(out)]
    assert main(command) == 0
    printed = capsys.readouterr().out
    report = json.loads((out / "lsnet_t_retinanet_report.json").read_text())
    models = report["models"]
    assert list(models) == ["fp32", "int8", "fp16_gpu", "int8_edgetpu"]
    assert report["img_size"] == [128, 128] and report["keras_detections_at_0.05"] > 20
    for name, entry in models.items():
        assert (out / f"lsnet_t_retinanet_{name}.tflite").is_file()
        assert entry["latency"]["1"]["min_ms"] > 0 and entry["keras_detections"] > 10
        assert f"\n{name:12} | {entry['size_mb']:5.1f} | {entry['ops']:4d} |" in printed
    # fp32 finds what Keras finds (scores packed 1e-5 apart: one may swap at the 100 cut)
    fp32 = models["fp32"]
    assert fp32["matched"] >= fp32["keras_detections"] - 2 and fp32["max_score_diff"] < 1e-4
    assert models["fp16_gpu"]["matched"] >= 0.8 * models["fp16_gpu"]["keras_detections"]
    assert report["gpu"].get("fully_accelerated"), report["gpu"]
    assert report["edgetpu"]["blockers"] == sorted(["DEQUANTIZE", "DEQUANTIZE", POSTPROCESS])
    assert "Edge TPU: " in printed and "GPU (fp16 network" in printed

    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    assert main(command) == 2  # without --force: refused before any work, nothing touched
    error = capsys.readouterr().err.strip()
    assert error.endswith("already exists; pass --force (overwrite=True) to replace")
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before
