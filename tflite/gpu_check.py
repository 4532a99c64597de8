"""`python -m tflite.gpu_check MODEL.tflite`: is the model fully accelerated on the LiteRT GPU
(WebGPU; lavapipe Vulkan on a machine without a GPU), and how far are its outputs from the CPU's?

Set up the Vulkan stack once with `bash tflite/setup_gpu.sh`. Logic: `lsnet_keras.litert.gpu_check`.

Example:
    $ python -m tflite.gpu_check lsnet_t_fp16.tflite --json report.json
"""

import argparse
import json
import sys

from lsnet_keras.io import atomic_path, check_outputs
from lsnet_keras.litert.gpu_check import check_gpu


def _verdict(path, report):
    if report["fully_accelerated"]:
        head = f"{path}: fully accelerated"
    else:
        count = len(report["unsupported_ops"])
        head = f"{path}: NOT fully accelerated ({count} op(s) the GPU delegate refuses)"
    lines = [f"{head} on {report['accelerator']}, {report['precision']}"]
    lines += [f"  unsupported: {op}" for op in report["unsupported_ops"]]
    which = "gpu" if report["gpu_run"] == "gpu" else "gpu+cpu"
    lines.append(
        f"  max |{which} - cpu| = {report['max_abs_diff']:.3g} (output scale "
        f"{report['output_scale']:.3g}, tolerance {report['tolerance']:.3g}): "
        + ("close" if report["close"] else "TOO FAR")
    )
    if len(report["outputs"]) > 1:
        worst = max(report["outputs"], key=lambda o: o["max_abs_diff"])
        lines[-1] += f" (worst output: {worst['name']})"
    return "\n".join(lines)


def main(argv=None):
    """`python -m tflite.gpu_check MODEL.tflite`: 0 fully accelerated and close, 1 not, 2 error.

    Example:
        >>> main(["missing.tflite"])
        2
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = argparse.ArgumentParser(
        prog="python -m tflite.gpu_check", description=__doc__.splitlines()[0]
    )
    parser.add_argument("model", help="the .tflite file")
    parser.add_argument("--json", metavar="OUT", help="also write the full report as JSON")
    parser.add_argument("--force", action="store_true", help="replace an existing --json file")
    parser.add_argument(
        "--rtol",
        type=float,
        default=1e-2,
        help="max |gpu - cpu| allowed, relative to max |cpu output| (1e-2)",
    )
    parser.add_argument("--fp32", action="store_true", help="force fp32 GPU math (default fp16)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random inputs")
    args = parser.parse_args(argv)
    try:
        if args.json:
            check_outputs([args.json], args.force)  # before the run
        report = check_gpu(args.model, seed=args.seed, rtol=args.rtol, fp32=args.fp32)
        if args.json:  # atomically: a failed write leaves no partial report
            with atomic_path(args.json, overwrite=args.force) as tmp, open(tmp, "w") as f:
                json.dump({"model": args.model, **report}, f, indent=2)
    except ValueError as err:  # our one-line errors (LSNetError, WriteError) are ValueErrors
        print(f"gpu_check: error: {err}", file=sys.stderr)
        return 2
    if report["error"]:
        print(f"gpu_check: error: {args.model}: {report['error']}", file=sys.stderr)
        return 2
    print(_verdict(args.model, report))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
