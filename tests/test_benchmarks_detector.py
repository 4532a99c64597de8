"""Smoke check of benchmarks/detector_latency.py: it runs end to end and writes complete JSON.

Speed is never asserted (a shared CI machine). `--quick` is one 128x128 group; only fp32 is
exported here, which keeps the run to a few minutes on 2 cores (litert-torch's PT2E int8
conversions of the detector take minutes each): every part of both contenders, the
post-processing cost and the fp32 ratios. The litert-torch contenders are optional (their venv
is installed from PyPI by the benchmark): skipped with a reason, or timed.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "detector_latency.py"
OURS = ["ours/fp32/backbone", "ours/fp32/network", "ours/fp32/full"]
THEIRS = ["litert-torch/fp32/backbone", "litert-torch/fp32/network"]
STATS = ["median_ms", "min_ms", "p90_ms", "runs"]


@pytest.mark.slow
def test_detector_latency_quick_writes_complete_json(tmp_path):
    out = tmp_path / "detector_latency.json"
    command = [sys.executable, str(SCRIPT), "--quick", "--precisions", "fp32", "--runs", "3"]
    command += ["--json", str(out)]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "| ours | fp32 | network |" in result.stdout
    assert "ours/fp32/full exported" in result.stderr  # progress goes to stderr

    data = json.loads(out.read_text())
    assert data["machine"]["cpu"] and data["versions"]["tensorflow"]
    assert data["machine"]["cpu"] in data["markdown"]
    assert set(data["contenders"]) == {"ours", "litert-torch"}
    (record,) = data["groups"]
    assert record["variant"] == "lsnet_t" and record["size"] == [128, 128]
    timed = record["latency"]["1"]
    for name in OURS + THEIRS:
        model = record["models"][name]
        if name in THEIRS and "skipped" in model:
            assert name not in timed and model["skipped"], name  # skipped, with its reason
            continue
        assert all(timed[name][key] > 0 for key in STATS) and timed[name]["runs"] == 3, name
        assert model["size_bytes"] > 0 and sum(model["op_counts"].values()) > 0, name
        assert model["export_s"] > 0 and model["xnnpack"]["partitions"] >= 1, name
        if name.endswith("network"):  # float networks compute the official model's function
            assert model["max_abs_diff_scores"] < 1e-3, name
            assert model["scores_above_threshold"] >= 0, name
    assert record["models"]["ours/fp32/full"]["detections"] >= 0
    for name in OURS:  # our cpu exports run in one XNNPACK partition
        outside = {"TFLite_Detection_PostProcess": 1} if name.endswith("full") else {}
        assert record["models"][name]["xnnpack"] == {"partitions": 1, "outside": outside}, name
    assert set(record["postprocess"]["1"]["fp32"]) == {"median_ms", "min_ms"}
    ratios = record["ratios"]["1"]
    assert set(ratios) == {"backbone_fp32", "backbone_int8", "network_int8", "network_fp32"}
    for key in ("backbone_int8", "network_int8"):  # int8 was not exported
        assert "skipped" in ratios[key], key
    for key in ("backbone_fp32", "network_fp32"):
        ran = all(name in timed for name in THEIRS)
        assert ({"ratio", "ratio_of_mins", "target", "pass"} <= set(ratios[key])) == ran, key
