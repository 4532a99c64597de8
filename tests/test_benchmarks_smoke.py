"""Smoke check of benchmarks/mobile_latency.py: it runs end to end and writes complete JSON.

Speed is never asserted (a shared CI machine): only that every contender was exported and timed
(or, for the optional litert-torch routes, whose venv the benchmark installs from PyPI, skipped
with a reason) and that the fields the README table is built from are there. ONNX Runtime comes
with the dev extra, so its two contenders must run.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "mobile_latency.py"
OURS = ["tflite-fp32", "tflite-fp16", "tflite-dynamic", "tflite-int8"]
ONNX = ["onnxruntime", "onnxruntime-int8"]
# the litert-torch venv (its fp32, PT2E int8 and ai-edge-quantizer int8)
OPTIONAL = ["litert-torch", "litert-torch-int8", "aeq-int8"]
EVERY = OURS + ["torch-eager", "torch-eager-folded"] + ONNX + OPTIONAL
STATS = ["median_ms", "min_ms", "p90_ms", "runs"]


@pytest.mark.slow
def test_mobile_latency_quick_writes_complete_json(tmp_path):
    out = tmp_path / "latency.json"
    command = [sys.executable, str(SCRIPT), "--quick", "--variants", "lsnet_t", "--threads", "1"]
    command += ["--runs", "3", "--json", str(out)]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "| lsnet_t | 1 | tflite-fp32 |" in result.stdout

    data = json.loads(out.read_text())
    assert data["machine"]["cpu"] and data["versions"]["tensorflow"]
    assert set(data["contenders"]) == set(EVERY)
    record = data["variants"]["lsnet_t"]
    timed = record["latency"]["1"]
    for name in EVERY:
        model = record["models"][name]
        if name in OPTIONAL and "skipped" in model:
            assert name not in timed and model["skipped"], name  # skipped, with its reason
            continue
        assert all(timed[name][key] > 0 for key in STATS), name
        assert timed[name]["runs"] == 3
        assert model["size_bytes"] > 0 and sum(model["op_counts"].values()) > 0, name
        assert "max_abs_diff" in model and "top1_agrees" in model, name
        if name.startswith("tflite"):  # our cpu exports run in one XNNPACK partition
            assert model["xnnpack"] == {"partitions": 1, "outside": {}}, name
    for name in ["tflite-fp32", "torch-eager-folded", "onnxruntime", "litert-torch"]:
        if name in timed:  # the float contenders compute the reference's function
            assert record["models"][name]["max_abs_diff_over_logit_range"] < 1e-2, name
    assert record["total_macs"] == sum(record["macs"].values()) > 2e8
    assert record["gemm_1thread"]["mac_per_s"] > 0 and record["floor_ms"] > 0
    assert record["gemm_int8_1thread"]["mac_per_s"] > 0 and record["floor_int8_ms"] > 0
    for key in data["targets"]:
        check = data["targets"][key]
        assert "skipped" in check or {"ratio", "ratio_of_mins", "target", "pass"} <= set(check)


def test_cache_sweep_effect_times_both_cases(tmp_path):
    import tensorflow as tf

    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        import breakdown
    finally:
        sys.path.remove(str(REPO / "benchmarks"))

    weights = tf.constant(tf.random.normal((64, 64)))
    function = tf.function(
        lambda x: tf.matmul(x, weights), input_signature=[tf.TensorSpec((1, 64), tf.float32)]
    )
    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [function.get_concrete_function()], function
    )
    path = tmp_path / "matmul.tflite"
    path.write_bytes(converter.convert())

    result = breakdown.cache_sweep_effect(path, runs=4, sweep_megabytes=1)
    assert result["sweep_megabytes"] == 1
    for case in ("consecutive", "after_sweep"):
        assert result[case]["runs"] == 4 and result[case]["median_ms"] > 0, case
