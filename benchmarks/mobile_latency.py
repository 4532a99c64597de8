"""Batch-1 224x224 CPU latency of our TFLite exports vs the alternatives, on the same weights.

For each variant (LSNet-T/S/B) and thread count, in one process and one run:

* ours: `export_tflite` fp32, fp16, dynamic and int8, run by ai_edge_litert (XNNPACK);
* PyTorch eager CPU of the reference (`tests/torch_lsnet.py`), as written and Conv+BN-folded;
* ONNX Runtime on the ONNX export of the (folded) reference, and on its static int8 QDQ
  quantization (`onnxruntime-int8`, same calibration images as our int8);
* `litert-torch` 0.10's conversion of the (folded) reference, run like ours, and the two int8
  routes from it: litert-torch's PT2E int8 quantizer and ai-edge-quantizer's static int8
  recipe on its fp32 .tflite (`benchmarks/litert_torch_routes.py`, same calibration images).

See `benchmarks/contenders.py` for what each contender is exactly. The contenders of one
(variant, threads) group are timed interleaved in rounds, so machine load hits them alike;
compare ratios within one run, not absolute numbers across machines.

The compute floor is the model's MACs (`contenders.count_macs`) divided by the single-thread
fp32 GEMM rate of XNNPACK (a 1024^3 FULLY_CONNECTED run by ai_edge_litert, timed interleaved
in every 1-thread group; NumPy/OpenBLAS's rate is reported for context). It is a lower bound:
it runs every MAC at big-GEMM speed and ignores memory traffic (the single-thread read
bandwidth is reported too: batch-1 stage-4 layers stream their weights). Its int8 twin is the
same MACs over the rate of the same GEMM quantized to int8, timed in the same groups.

For every `.tflite` the run records how XNNPACK delegates it (`xnnpack`: the number of delegate
partitions and the ops left to TFLite's own kernels, `lsnet_keras.litert.xnnpack`).

Every contender's logits on one image are compared with the reference's (`max_abs_diff`):
the float contenders must agree; quantized ones are only reported (with `randomize_` weights
the network is far more sensitive to quantization than a trained one).

`--breakdown` also times pieces of the first variant's fp32 and int8 TFLite alone (segments,
and the parts of one block of each kind; see `breakdown.layer_breakdown`), and the whole fp32
model right after another invoke vs right after a cache sweep (`breakdown.cache_sweep_effect`).

Usage:
    python benchmarks/mobile_latency.py                      # T/S/B, 1 and 2 threads
    python benchmarks/mobile_latency.py --quick              # LSNet-T, few runs (smoke check)
    python benchmarks/mobile_latency.py --variants lsnet_t --threads 1 --runs 50 --breakdown

Writes `benchmarks/results/mobile_latency.json` (or --json) and prints markdown tables.
"""

import argparse
import importlib.metadata
import importlib.util
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import breakdown  # noqa: E402
import contenders as c  # noqa: E402
import litert_torch_routes as routes  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from lsnet_keras.litert.calibration import builtin_images  # noqa: E402
from lsnet_keras.preprocess import normalize  # noqa: E402

DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "mobile_latency.json"
TARGETS = {  # LSNet-T at 1 thread, on medians
    "fp32_vs_litert_torch": ("tflite-fp32", "litert-torch", 0.8),
    "int8_vs_litert_torch": ("tflite-int8", "litert-torch", 0.4),
    "fp32_vs_floor": ("tflite-fp32", "floor", 1.25),
    "int8_vs_fastest_other_int8": ("tflite-int8", "fastest-other-int8", 0.5),
    "int8_vs_int8_floor": ("tflite-int8", "floor-int8", 3.0),
    "dynamic_vs_fp32": ("tflite-dynamic", "tflite-fp32", 0.4),
    **{f"int8_vs_{r.replace('-', '_')}": ("tflite-int8", r, 0.5) for r in c.INT8_ROUTES},
}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", nargs="+", default=["lsnet_t", "lsnet_s", "lsnet_b"])
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--runs", type=int, help="timed invokes per contender (default 30)")
    parser.add_argument("--rounds", type=int, default=10, help="interleaving rounds")
    parser.add_argument("--quick", action="store_true", help="LSNet-T only, 5 runs")
    parser.add_argument("--seed", type=int, default=0, help="randomize_ seed of the weights")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON)
    parser.add_argument("--models-dir", type=Path, help="keep the exported models here")
    parser.add_argument(
        "--no-install", action="store_true", help="skip the litert-torch routes if no venv"
    )
    parser.add_argument(
        "--breakdown", action="store_true", help="also time pieces of the first variant"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.variants = ["lsnet_t"]
        args.runs = args.runs or 5
        args.rounds = min(args.rounds, 2)
    args.runs = args.runs or 30
    args.rounds = max(1, min(args.rounds, args.runs))
    return args


def write_results(results, markdown, path, started):
    """Finish a benchmark run: load and wall time into `results`, its `markdown(results)`
    tables printed and kept, everything written to `path` as JSON."""
    results["machine"]["load_average_end"] = os.getloadavg()
    results["wall_s"] = round(time.time() - started, 1)
    results["markdown"] = markdown(results)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(results["markdown"])
    print(f"\nwrote {path} ({results['wall_s']:.0f} s)")


def machine_info():
    cpuinfo = Path("/proc/cpuinfo")
    names = [
        line.split(":", 1)[1].strip()
        for line in (cpuinfo.read_text().splitlines() if cpuinfo.exists() else [])
        if line.startswith("model name")
    ]
    return {
        "cpu": names[0] if names else platform.processor(),
        "logical_cpus": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "load_average_start": os.getloadavg(),
    }


def versions(litert_python):
    found = {}
    for name in ("tensorflow", "keras", "torch", "onnx", "onnxruntime", "ai-edge-litert", "numpy"):
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = None
    venv = ("litert-torch", "ai-edge-quantizer", "torchao", "torch", "ai-edge-litert")
    found["litert-torch venv"] = None
    if litert_python is not None:
        code = (
            "import importlib.metadata as m, json; "
            f"print(json.dumps([m.version(n) for n in {venv!r}]))"
        )
        out = subprocess.run([str(litert_python), "-c", code], capture_output=True, text=True)
        found["litert-torch venv"] = dict(zip(venv, json.loads(out.stdout))) if out.stdout else None
    return found


def export_all(variant, reference, folded, workdir, litert_python, onnx=True):
    """Export every file-based contender (the ONNX ones if `onnx`); {name: {"path",
    "export_s", ...} or {"skipped": why}}."""
    state = {k: v.numpy() for k, v in reference.state_dict().items()}
    jobs = {f"tflite-{p}": partial(c.export_ours, state, variant, p) for p in c.PRECISIONS}
    models = {}
    # our int8 export's calibration set (export_tflite's default), NCHW for the torch routes
    calibration = normalize(builtin_images(32, 224, seed=0)).transpose(0, 3, 1, 2)
    if onnx and all(importlib.util.find_spec(m) for m in ("onnx", "onnxruntime")):
        jobs["onnxruntime"] = partial(c.export_onnx, folded)
        onnx_path = workdir / f"{variant}-onnxruntime.onnx"
        jobs["onnxruntime-int8"] = partial(
            c.export_onnx_int8, onnx_path, calibration_nchw=calibration
        )
    elif onnx:
        for name in ("onnxruntime", "onnxruntime-int8"):
            models[name] = {
                "skipped": "onnx / onnxruntime not installed: pip install -c "
                "requirements/lock.txt -e '.[bench]'"
            }
    if litert_python is not None:
        python, fp32_path = litert_python, workdir / f"{variant}-litert-torch.tflite"
        jobs["litert-torch"] = partial(routes.export_litert_torch, folded, variant, python=python)
        jobs["litert-torch-int8"] = partial(
            routes.export_litert_torch_int8,
            folded,
            variant,
            python=python,
            calibration_nchw=calibration,
        )
        jobs["aeq-int8"] = partial(
            routes.export_aeq_int8, fp32_path, python=python, calibration_nchw=calibration
        )
    else:
        for name in routes.NAMES:
            models[name] = {
                "skipped": "litert-torch venv unavailable (install failed or --no-install)"
            }
    for name, export in jobs.items():
        onnx = name.startswith("onnxruntime")
        path = workdir / f"{variant}-{name}.{'onnx' if onnx else 'tflite'}"
        start = time.perf_counter()
        try:
            export(path)
            seconds = round(time.perf_counter() - start, 1)
            ops = c.onnx_op_counts(path) if onnx else c.tflite_op_counts(path)
        except Exception as err:  # one failed contender must not lose the whole run
            models[name] = {"skipped": f"export failed: {type(err).__name__}: {err}"[:2000]}
            continue
        models[name] = {
            "path": path,
            "export_s": seconds,
            "size_bytes": path.stat().st_size,
            "op_counts": ops,
        }
        if not onnx:
            models[name]["xnnpack"] = c.tflite_partitions(path)
    return models


def make_timers(models, reference, folded, threads, x):
    timers = [c.torch_timer("torch-eager", reference, threads, x)]
    timers.append(c.torch_timer("torch-eager-folded", folded, threads, x))
    for name, info in models.items():
        if "path" not in info:
            continue
        factory = c.onnx_timer if name.startswith("onnxruntime") else c.tflite_timer
        timers.append(factory(name, info["path"], threads, x))
    return timers


def check_input(seed):
    """One natural-looking image (the built-in calibration generator), normalized, NCHW."""
    image = normalize(builtin_images(1, 224, seed=seed + 1000))
    return np.ascontiguousarray(image.transpose(0, 3, 1, 2), dtype="float32")


def gemm_record(stats):
    """Median and best MAC/s of a GEMM timer's statistics."""
    return {
        **stats,
        "mac_per_s": c.GEMM_SIZE**3 / (stats["median_ms"] / 1e3),
        "best_mac_per_s": c.GEMM_SIZE**3 / (stats["min_ms"] / 1e3),
    }


def bench_variant(variant, args, workdir, litert_python, gemm_paths):
    """Export, check and time every contender of one variant; the variant's JSON record."""
    print(f"== {variant}: exporting", flush=True)
    reference = c.reference_model(variant, args.seed)
    folded = c.fold_conv_bn(reference)
    macs = c.count_macs(folded)
    models = export_all(variant, reference, folded, workdir, litert_python)
    for name, module in (("torch-eager", reference), ("torch-eager-folded", folded)):
        models[name] = {"size_bytes": c.state_bytes(module), "op_counts": c.module_counts(module)}
    x = check_input(args.seed)
    with torch.inference_mode():
        expected = reference(torch.from_numpy(x)).numpy().reshape(-1)
    scale = float(np.abs(expected).max())
    latency = {}
    for threads in args.threads:
        print(f"== {variant}: timing at {threads} thread(s)", flush=True)
        timers = make_timers(models, reference, folded, threads, x)
        if threads == 1:
            timers += [c.tflite_timer(name, path, 1) for name, path in gemm_paths.items()]
        for timer in timers:  # outputs vs the reference: the same weights everywhere
            info = models.get(timer.name)
            if info is not None and "max_abs_diff" not in info:
                out = timer.output()
                info["max_abs_diff"] = float(np.abs(out - expected).max())
                info["max_abs_diff_over_logit_range"] = info["max_abs_diff"] / scale
                info["top1_agrees"] = bool(out.argmax() == expected.argmax())
        latency[str(threads)] = c.run_interleaved(timers, args.runs, args.rounds)
        del timers
    for info in models.values():
        info.pop("path", None)
    record = {"macs": macs, "total_macs": sum(macs.values()), "logits_abs_max": scale}
    record["models"] = models
    record["latency"] = latency
    if "1" in latency:
        for gemm, suffix in (("gemm", ""), ("gemm-int8", "_int8")):
            rate = record[f"{gemm.replace('-', '_')}_1thread"] = gemm_record(latency["1"].pop(gemm))
            record[f"floor{suffix}_ms"] = record["total_macs"] / rate["mac_per_s"] * 1e3
            record[f"floor{suffix}_best_ms"] = record["total_macs"] / rate["best_mac_per_s"] * 1e3
    return record


def check_targets(results):
    """Ratios and pass/fail of the issue's targets for LSNet-T at 1 thread.

    Pass/fail is on medians; `ratio_of_mins` (floor: from the fastest GEMM run) is the same
    ratio on the least-disturbed runs, for a machine shared with other work.
    """
    record = results["variants"].get("lsnet_t", {})
    one = record.get("latency", {}).get("1")
    if one is None:
        return {"skipped": "needs lsnet_t at 1 thread"}
    medians = {name: stats["median_ms"] for name, stats in one.items()}
    mins = {name: stats["min_ms"] for name, stats in one.items()}
    medians["floor"], mins["floor"] = record["floor_ms"], record["floor_best_ms"]
    medians["floor-int8"] = record["floor_int8_ms"]
    mins["floor-int8"] = record["floor_int8_best_ms"]
    others = [name for name in c.INT8_ROUTES if name in medians]
    if others:
        fastest = min(others, key=medians.get)
        medians["fastest-other-int8"] = medians[fastest]
        mins["fastest-other-int8"] = min(mins[name] for name in others)
    checks = {}
    for key, (ours, theirs, limit) in TARGETS.items():
        if ours not in medians or theirs not in medians:
            missing = theirs if ours in medians else ours
            why = record["models"].get(missing, {}).get("skipped", "not timed")
            checks[key] = {"skipped": f"{missing} did not run: {why}"}
            continue
        ratio = medians[ours] / medians[theirs]
        checks[key] = {
            "ratio": ratio,
            "ratio_of_mins": mins[ours] / mins[theirs],
            "target": f"<= {limit}",
            "pass": ratio <= limit,
        }
        if theirs == "fastest-other-int8":
            checks[key]["fastest"] = fastest
    return checks


def xnnpack_markdown(results):
    """How XNNPACK delegates each .tflite: partitions and the ops it leaves to TFLite."""
    lines = ["", "XNNPACK delegation of each .tflite (best: 1 partition, nothing outside):", ""]
    lines += ["| variant | model | partitions | ops outside XNNPACK |", "|---|---|---|---|"]
    for variant, record in results["variants"].items():
        for name, info in record["models"].items():
            if "xnnpack" in info:
                outside = info["xnnpack"]["outside"]
                names = ", ".join(f"{n} {op}" for op, n in sorted(outside.items())) or "none"
                lines.append(f"| {variant} | {name} | {info['xnnpack']['partitions']} | {names} |")
    return lines


def markdown(results):
    """The latency table, the compute-floor table and the target checks, as markdown."""
    lines = [
        "| variant | threads | contender | median ms | min ms | p90 ms | vs litert-torch "
        "| size MB | ops |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    order = list(c.OURS) + list(c.THEIRS)
    for variant, record in results["variants"].items():
        for threads, group in record["latency"].items():
            base = group.get("litert-torch", {}).get("median_ms")
            for name in sorted(group, key=order.index):
                s, info = group[name], record["models"][name]
                ratio = f"{s['median_ms'] / base:.2f}x" if base else "-"
                ops = sum(info["op_counts"].values())
                lines.append(
                    f"| {variant} | {threads} | {name} | {s['median_ms']:.2f} | {s['min_ms']:.2f}"
                    f" | {s['p90_ms']:.2f} | {ratio} | {info['size_bytes'] / 1e6:.1f} | {ops} |"
                )
    skipped = [
        f"- {variant} {name}: {info['skipped']}"
        for variant, record in results["variants"].items()
        for name, info in record["models"].items()
        if "skipped" in info
    ]
    if skipped:
        lines += ["", "Skipped contenders (not timed):", "", *skipped]
    lines += xnnpack_markdown(results)
    lines += [
        "",
        "Compute floor = MACs / XNNPACK fp32 GEMM rate (1 thread), from the medians "
        "(and from the fastest GEMM run vs the fastest fp32 run):",
        "",
        "| variant | MMACs | GEMM GMAC/s | floor ms | tflite-fp32 ms | fp32 / floor |",
        "|---|---|---|---|---|---|",
    ]
    for variant, record in results["variants"].items():
        if "floor_ms" not in record:
            continue
        gemm = record["gemm_1thread"]
        fp32 = record["latency"]["1"].get("tflite-fp32", {"median_ms": np.nan, "min_ms": np.nan})
        lines.append(
            f"| {variant} | {record['total_macs'] / 1e6:.0f} "
            f"| {gemm['mac_per_s'] / 1e9:.1f} ({gemm['best_mac_per_s'] / 1e9:.1f}) "
            f"| {record['floor_ms']:.2f} ({record['floor_best_ms']:.2f}) "
            f"| {fp32['median_ms']:.2f} ({fp32['min_ms']:.2f}) "
            f"| {fp32['median_ms'] / record['floor_ms']:.2f}x "
            f"({fp32['min_ms'] / record['floor_best_ms']:.2f}x) |"
        )
    lines += [
        "",
        "int8 floor = MACs / XNNPACK int8 GEMM rate (the same GEMM quantized, 1 thread):",
        "",
        "| variant | int8 GEMM GMAC/s | int8 floor ms | tflite-int8 ms | int8 / int8 floor |",
        "|---|---|---|---|---|",
    ]
    for variant, record in results["variants"].items():
        if "floor_int8_ms" not in record:
            continue
        gemm = record["gemm_int8_1thread"]
        int8 = record["latency"]["1"].get("tflite-int8", {"median_ms": np.nan, "min_ms": np.nan})
        lines.append(
            f"| {variant} | {gemm['mac_per_s'] / 1e9:.1f} ({gemm['best_mac_per_s'] / 1e9:.1f}) "
            f"| {record['floor_int8_ms']:.2f} ({record['floor_int8_best_ms']:.2f}) "
            f"| {int8['median_ms']:.2f} ({int8['min_ms']:.2f}) "
            f"| {int8['median_ms'] / record['floor_int8_ms']:.2f}x "
            f"({int8['min_ms'] / record['floor_int8_best_ms']:.2f}x) |"
        )
    lines += ["", "Targets (LSNet-T, 1 thread; pass/fail on medians):", ""]
    for key, check in results["targets"].items():
        if isinstance(check, dict) and "ratio" in check:
            verdict = "pass" if check["pass"] else "FAIL"
            fastest = f", fastest: {check['fastest']}" if "fastest" in check else ""
            lines.append(
                f"- {key}: {check['ratio']:.2f} (target {check['target']}, ratio of mins "
                f"{check['ratio_of_mins']:.2f}{fastest}): {verdict}"
            )
        else:
            lines.append(f"- {key}: {check}")
    if "breakdown" in results:
        variant = results["breakdown"]["variant"]
        lines += ["", f"Breakdown ({variant}, pieces timed alone, 1 thread, medians):", ""]
        rate = results["variants"][variant].get("gemm_int8_1thread", {}).get("mac_per_s", np.nan)
        lines.append(breakdown.breakdown_markdown(results["breakdown"]["rows"], rate))
        sweep = results["breakdown"]["fp32_cache_sweep"]
        lines += [
            "",
            f"Whole {variant} fp32 model, 1 thread: "
            f"{sweep['consecutive']['median_ms']:.2f} ms right after another invoke, "
            f"{sweep['after_sweep']['median_ms']:.2f} ms right after reading "
            f"{sweep['sweep_megabytes']} MB (caches flushed).",
        ]
    return "\n".join(lines)


def main(argv=None):
    args = parse_args(argv)
    started = time.time()
    litert_python = routes.litert_torch_python(install=not args.no_install)
    results = {
        "machine": machine_info(),
        "versions": versions(litert_python),
        "settings": {
            "batch": 1,
            "image_size": 224,
            "threads": args.threads,
            "runs": args.runs,
            "rounds": args.rounds,
            "seed": args.seed,
            "gemm": f"{c.GEMM_SIZE}^3 fp32 and int8 FULLY_CONNECTED, ai_edge_litert XNNPACK, "
            "1 thread",
            "macs": c.count_macs.__doc__.split("\n\n")[1].strip(),
        },
        "contenders": {name: c.DESCRIPTIONS[name] for name in c.OURS + c.THEIRS},
        "variants": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        workdir = args.models_dir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        gemm_paths = {
            "gemm": c.gemm_tflite(workdir / "gemm.tflite"),
            "gemm-int8": c.gemm_int8_tflite(workdir / "gemm-int8.tflite"),
        }
        results["numpy_gemm_1thread_mac_per_s"] = c.numpy_gemm_rate()
        results["read_bandwidth_1thread_bytes_per_s"] = c.read_bandwidth()
        for variant in args.variants:
            results["variants"][variant] = bench_variant(
                variant, args, workdir, litert_python, gemm_paths
            )
        if args.breakdown:
            variant = args.variants[0]
            print(f"== {variant}: breakdown", flush=True)
            reference = c.reference_model(variant, args.seed)
            state = {k: v.numpy() for k, v in reference.state_dict().items()}
            rows = breakdown.layer_breakdown(state, variant, workdir / "breakdown", runs=args.runs)
            sweep = breakdown.cache_sweep_effect(
                workdir / f"{variant}-tflite-fp32.tflite", args.runs
            )
            results["breakdown"] = {"variant": variant, "rows": rows, "fp32_cache_sweep": sweep}
    results["targets"] = check_targets(results)
    write_results(results, markdown, args.json, started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
