"""The README's main job, `lsnet pipeline`, end to end (at 64 px to keep it short)."""

import json
import os

import numpy as np
import pytest
from hub_server import closed_port_endpoint

from lsnet_keras.cli import main
from lsnet_keras.litert.calibration import builtin_images
from lsnet_keras.litert.xnnpack import xnnpack_partitions
from lsnet_keras.model.lsnet import build_variant
from lsnet_keras.pipeline import format_report, input_noise_floor, realistic_random_weights
from lsnet_keras.preprocess import normalize
from lsnet_keras.quantization.conversion import integer_violations


def test_input_noise_floor_is_zero_without_noise_and_grows_with_it():
    model = build_variant("lsnet_t", input_shape=64)
    realistic_random_weights(model, normalize(builtin_images(4, 64, seed=2)))
    pixels = builtin_images(4, 64, seed=1)
    assert input_noise_floor(model, pixels, levels=0) == {
        "max_abs_diff": 0.0,
        "max_rel_diff": 0.0,
        "top1_agreement": 1.0,
    }
    one, eight = (input_noise_floor(model, pixels, levels=n) for n in (1, 8))
    assert 0 < one["max_rel_diff"] < eight["max_rel_diff"]


def _report(weights):
    model = {
        "size_mb": 12.6,
        "ops": 608,
        "max_rel_diff_vs_keras": 0.02,
        "top1_agreement_vs_keras": 0.875,
        "latency": {"1": {"median_ms": 3.14}},
    }
    return {
        "variant": "lsnet_t",
        "weights": weights,
        "img_size": 224,
        "keras_input_noise_floor": {"max_rel_diff": 0.5, "top1_agreement": 0.25},
        "models": {"int8": model},
        "gpu": {"fully_accelerated": True, "max_abs_diff": 3.0, "output_scale": 12.0},
        "edgetpu": {"summary": "10 ops, 10 map to the Edge TPU, 0 blockers"},
    }


def test_report_puts_quantized_rows_beside_the_noise_floor():
    text = format_report(_report("random")).splitlines()
    assert text[2] == f"int8         |  12.6 |  608 | {0.02:28.2e} |         88% |      3.1"
    assert text[3].startswith(f"noise floor  |       |      | {0.5:28.2e} |         25% |")
    assert text[4].startswith("random weights are chaotic")
    assert text[5] == (
        "GPU: fully accelerated, max |GPU - CPU| = 3 (2.50e-01 of max|logit|;"
        " compare with the noise floor)"
    )
    assert text[6] == "Edge TPU: 10 ops, 10 map to the Edge TPU, 0 blockers"
    with_checkpoint = format_report(_report("lsnet_t.pth"))
    assert "chaotic" not in with_checkpoint and "noise floor  |" in with_checkpoint


@pytest.mark.slow
def test_pipeline_exports_verifies_reports_and_keeps_existing_files(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", closed_port_endpoint())  # as in CI: no hub, random weights
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    out = tmp_path / "out"
    command = ["pipeline", "--img-size", "64", "--runs", "2", "--threads", "1"]
    command += ["--output-dir", str(out)]
    assert main(command) == 0
    printed = capsys.readouterr().out
    assert "RANDOM weights" in printed and "random weights are chaotic" in printed
    report = json.loads((out / "lsnet_t_report.json").read_text())
    models = report["models"]
    assert list(models) == ["fp32", "int8", "fp16_gpu", "int8_edgetpu"]
    for name, entry in models.items():
        assert os.path.basename(entry["path"]) == f"lsnet_t_{name}.tflite"
        assert np.isfinite(entry["max_rel_diff_vs_keras"])
        data = open(entry["path"], "rb").read()
        assert entry["size_mb"] == round(len(data) / 1e6, 2)
        assert entry["latency"]["1"]["min_ms"] > 0
        assert f"\n{name:12} | {entry['size_mb']:5.1f} | {entry['ops']:4d} |" in printed
        if name == "int8_edgetpu":
            assert integer_violations(data) == ([], [])
        if name == "int8":  # the cpu target: float islands, all inside one XNNPACK partition
            assert xnnpack_partitions(data).partitions == 1
    assert models["fp32"]["max_rel_diff_vs_keras"] < 1e-3
    assert models["fp32"]["top1_agreement_vs_keras"] == 1.0
    floor = report["keras_input_noise_floor"]
    assert 0 < floor["max_rel_diff"] and 0 <= floor["top1_agreement"] <= 1
    assert f"noise floor  |       |      | {floor['max_rel_diff']:28.2e}" in printed
    assert report["edgetpu"]["ok"] and "0 blockers" in report["edgetpu"]["summary"]
    assert "GPU: " in printed

    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    assert main(command) == 2  # without --force: refused before any work, nothing touched
    error = capsys.readouterr().err.strip()
    assert error.endswith("already exists; pass --force (overwrite=True) to replace")
    assert "\n" not in error
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before
