"""Instructions per invoke of our exports and the other routes on XNNPACK's ARM kernels.

Every `.tflite` runs under qemu-aarch64 (`tflite/arm`) as an emulated Cortex-A55 and A76, one
thread, and the counting plugin gives its instructions, loads and stores per invoke, exactly
(the same on every machine and every run). The contenders share weights (the reference LSNet
with `randomize_(seed)` weights, as `benchmarks/mobile_latency.py`) and calibration images:

    ours fp32, fp16, dynamic, int8     `export_tflite` (the cpu target)
    litert-torch, litert-torch-int8,   the official PyTorch model through litert-torch and its
    aeq-int8                           two int8 routes (`benchmarks/litert_torch_routes.py`)

The instruction floor beside them: the model's MACs (`contenders.count_macs`) over 16 per
SDOT (int8: 16 int8 MACs per 128-bit dot-product instruction) and over 4 per FMLA (fp32).
Counts are not cycles: they do not see caches (hence the loads and stores), and an A55 is an
in-order core that issues fewer of them per cycle than an A76.

Usage:
    python benchmarks/arm_cost.py                     # LSNet-T/S/B on A55 and A76
    python benchmarks/arm_cost.py --variants lsnet_t --cores a76 --quick   # ours only

Writes `benchmarks/results/arm_cost.json` (or --json) and prints markdown tables.
"""

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import contenders as c  # noqa: E402
import litert_torch_routes as routes  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from mobile_latency import check_input, export_all, machine_info, write_results  # noqa: E402

from lsnet_keras.errors import LSNetError  # noqa: E402
from tflite.arm.run import CORES, run_on_arm  # noqa: E402

DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "arm_cost.json"
MACS_PER_INSTRUCTION = {"int8": 16, "fp32": 4}  # SDOT, FMLA on 128-bit vectors
OTHER_INT8 = ("litert-torch-int8", "aeq-int8")
TARGETS = {  # LSNet-T, instructions per invoke, each core
    "int8_vs_best_other_int8": ("tflite-int8", "best-other-int8", 0.5),
    "fp32_vs_litert_torch": ("tflite-fp32", "litert-torch", 0.8),
}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", nargs="+", default=["lsnet_t", "lsnet_s", "lsnet_b"])
    parser.add_argument("--cores", nargs="+", default=["a55", "a76"], choices=list(CORES))
    parser.add_argument("--quick", action="store_true", help="ours fp32 and int8 only")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON)
    return parser.parse_args(argv)


def model_input(path, x_nchw):
    """The check image as `path` takes it: its layout (ours NHWC, litert-torch's NCHW), and
    quantized with its input's scale and zero point if that is an integer tensor."""
    from ai_edge_litert.interpreter import Interpreter

    detail = Interpreter(model_path=str(path)).get_input_details()[0]
    x = x_nchw if detail["shape"][1] == 3 else x_nchw.transpose(0, 2, 3, 1)
    dtype = np.dtype(detail["dtype"])
    if dtype.kind in "iu":
        scale, zero_point = detail["quantization"]
        info = np.iinfo(dtype)
        x = np.clip(np.round(x / scale) + zero_point, info.min, info.max)
    return np.ascontiguousarray(x, dtype=dtype)


def model_output(run, path, shape):
    """The run's first output in real units (dequantized if integer), as `shape`."""
    from ai_edge_litert.interpreter import Interpreter

    detail = Interpreter(model_path=str(path)).get_output_details()[0]
    y = run.outputs[0].astype(np.float64)
    if np.dtype(detail["dtype"]).kind in "iu":
        scale, zero_point = detail["quantization"]
        y = (y - zero_point) * scale
    return y.reshape(shape)


def bench_variant(variant, args, workdir, litert_python):
    """Export every contender of `variant` and count it on every core: its JSON record."""
    print(f"== {variant}: exporting", flush=True)
    reference = c.reference_model(variant, seed=args.seed)
    folded = c.fold_conv_bn(reference)
    models = export_all(variant, reference, folded, workdir, litert_python, onnx=False)
    if args.quick:
        models = {n: models[n] for n in ("tflite-fp32", "tflite-int8")}
    x = check_input(args.seed)
    with torch.inference_mode():
        y = reference(torch.from_numpy(x)).numpy()
    macs = sum(c.count_macs(folded).values())
    record = {"macs": macs, "models": {}, "floor": {}}
    for core in args.cores:
        record["floor"][core] = {k: macs / v for k, v in MACS_PER_INSTRUCTION.items()}
    for name, info in models.items():
        entry = {k: v for k, v in info.items() if k != "path"}
        if "skipped" in info:
            record["models"][name] = entry
            continue
        entry["cores"] = {}
        for core in args.cores:
            start = time.perf_counter()
            try:
                run = run_on_arm(info["path"], [model_input(info["path"], x)], core)
            except LSNetError as err:  # one contender that fails must not lose the run
                entry = {**entry, "skipped": str(err)}
                break
            print(
                f"   {name:18} {core}: {run.instructions / 1e6:9.1f} M instructions "
                f"({time.perf_counter() - start:.0f} s)",
                flush=True,
            )
            entry["cores"][core] = {
                "instructions": run.instructions,
                "loads": run.loads,
                "stores": run.stores,
                "max_abs_diff": float(np.abs(model_output(run, info["path"], y.shape) - y).max()),
            }
        record["models"][name] = entry
    record["ratios"] = ratios(record, args.cores)
    return record


def instructions(record, name, core):
    if name == "best-other-int8":
        found = [instructions(record, n, core) for n in OTHER_INT8]
        found = [n for n in found if n is not None]
        return min(found) if found else None
    entry = record["models"].get(name, {})
    return entry.get("cores", {}).get(core, {}).get("instructions")


def ratios(record, cores):
    """{target: {core: {"ratio", "target", "met"}}} where both sides were counted."""
    found = {}
    for target, (ours, theirs, limit) in TARGETS.items():
        for core in cores:
            a, b = instructions(record, ours, core), instructions(record, theirs, core)
            if a is not None and b is not None:
                ratio = a / b
                found.setdefault(target, {})[core] = {
                    "ratio": ratio,
                    "target": limit,
                    "met": ratio <= limit,
                }
    return found


def markdown(results):
    lines = []
    cores = results["cores"]
    for variant, record in results["variants"].items():
        lines += [
            f"\n### {variant} 224, instructions per invoke (millions), 1 thread\n",
            "| model | " + " | ".join(f"{CORES[k].title} (loads, stores)" for k in cores) + " |",
            "|---|" + "---|" * len(cores),
        ]
        for name, entry in record["models"].items():
            if "skipped" in entry:
                lines.append(f"| {name} | skipped: {entry['skipped'][:80]} |")
                continue
            cells = []
            for core in cores:
                counts = entry["cores"][core]
                cells.append(
                    f"{counts['instructions'] / 1e6:.1f} ({counts['loads'] / 1e6:.1f}, "
                    f"{counts['stores'] / 1e6:.1f})"
                )
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        for kind, per in MACS_PER_INSTRUCTION.items():
            floor = [f"{record['floor'][core][kind] / 1e6:.1f}" for core in cores]
            lines.append(f"| floor {kind} (MACs / {per}) | " + " | ".join(floor) + " |")
        for target, per_core in record["ratios"].items():
            ours, theirs, limit = TARGETS[target]
            cells = [
                f"{CORES[k].title}: {v['ratio']:.2f}x ({'met' if v['met'] else 'NOT met'})"
                for k, v in per_core.items()
            ]
            lines.append(f"\n{ours} / {theirs} (target <= {limit}x): " + ", ".join(cells))
    return "\n".join(lines)


def main(argv=None):
    args = parse_args(argv)
    started = time.time()
    litert_python = None if args.quick else routes.litert_torch_python()
    results = {"machine": machine_info(), "cores": args.cores, "variants": {}}
    results["cores_described"] = {
        k: {"title": CORES[k].title, "note": CORES[k].note} for k in args.cores
    }
    with tempfile.TemporaryDirectory(prefix="arm_cost_") as workdir:
        for variant in args.variants:
            results["variants"][variant] = bench_variant(
                variant, args, Path(workdir), litert_python
            )
    write_results(results, markdown, args.json, started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
