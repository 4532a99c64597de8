"""`python -m tflite.arm.run MODEL.tflite`: run a model on XNNPACK's ARM kernels under
qemu-aarch64 and count the instructions, loads and stores of one invoke, exactly.

The arm64 Python, the aarch64 ai-edge-litert wheel and the counting plugin come from
`bash tflite/arm/setup.sh` (run once as root; `arm_home` calls it, a no-op once built).
Each emulated core gets its own path prefix (`qemu-aarch64 -L`) with an ARM /proc/cpuinfo and
/sys/devices/system/cpu holding its MIDR and features: XNNPACK's CPU detection would crash on
the host's x86 /proc/cpuinfo otherwise, and the MIDR is what it picks core-tuned kernels by.

Counts are for the emulated core's instruction stream, not cycles: they do not see caches or
pipelines. Loads and stores are QEMU's memory operations (a 16-byte vector access counts as
two 8-byte ones).

Example:
    $ python -m tflite.arm.run lsnet_t_int8.tflite --core a55 --core a76
    core     instructions         loads        stores  max |arm - x86|
    a55        52,018,704    18,469,366     2,128,996  0
    a76        38,805,439    18,496,183     2,112,211  0
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from lsnet_keras.errors import LSNetError, run_command
from lsnet_keras.io import atomic_path, check_outputs, require_file

HERE = Path(__file__).resolve().parent
SETUP = HERE / "setup.sh"
GUEST = HERE / "guest_invoke.py"
ARMV82_FEATURES = (
    "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop "
    "asimddp"
)


@dataclass(frozen=True)
class Core:
    """An emulated core: the qemu CPU model whose instructions it runs, and what its
    /proc/cpuinfo says (MIDR fields and the features its kernel reports)."""

    title: str
    qemu_cpu: str
    implementer: int
    variant: int
    part: int
    revision: int
    features: str
    note: str = ""

    @property
    def midr(self):
        return (
            (self.implementer << 24)
            | (self.variant << 20)
            | (0xF << 16)
            | (self.part << 4)
            | self.revision
        )

    def cpuinfo(self):
        return (
            "processor\t: 0\n"
            "BogoMIPS\t: 50.00\n"
            f"Features\t: {self.features}\n"
            f"CPU implementer\t: {self.implementer:#x}\n"
            "CPU architecture: 8\n"
            f"CPU variant\t: {self.variant:#x}\n"
            f"CPU part\t: {self.part:#05x}\n"
            f"CPU revision\t: {self.revision}\n\n"
        )


CORES = {
    "a53": Core("Cortex-A53 r0p4", "cortex-a53", 0x41, 0x0, 0xD03, 4,
                "fp asimd evtstrm aes pmull sha1 sha2 crc32 cpuid"),
    "a55": Core("Cortex-A55 r1p0", "cortex-a76", 0x41, 0x1, 0xD05, 0, ARMV82_FEATURES,
                "qemu 7.2 has no A55 model: A76's instruction set (the same ARMv8.2 with "
                "dot product and fp16 arithmetic) runs under an A55 MIDR, which is what "
                "XNNPACK picks its A55-tuned kernels by"),
    "a76": Core("Cortex-A76 r4p1", "cortex-a76", 0x41, 0x4, 0xD0B, 1, ARMV82_FEATURES),
}  # fmt: skip
PREFIX_ENTRIES = ("bin", "etc", "lib", "opt", "sbin", "usr", "var")


@dataclass
class ArmRun:
    """One model on one emulated core: the outputs of its last invoke (interpreter output
    order) and the cost of one invoke (the least of the repeats; the marks' own cost is
    subtracted)."""

    core: str
    instructions: int
    loads: int
    stores: int
    outputs: list
    repeats: list


def arm_home():
    """The folder `setup.sh` builds (run here; a no-op once built). Raises LSNetError.

    Example:
        >>> (arm_home() / "libinsn_count.so").exists()  # doctest: +SKIP
        True
    """
    proc = subprocess.run(["bash", str(SETUP)], capture_output=True, text=True)
    if proc.returncode != 0:
        lines = proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"]
        raise LSNetError(f"ARM emulation set-up ({SETUP}) failed: {lines[-1]}")
    return Path(proc.stdout.strip().splitlines()[-1])


def core_prefix(home, core):
    """The `-L` prefix of `core` under `home`: the arm64 tree's folders as links, plus that
    core's /proc/cpuinfo and /sys/devices/system/cpu. Made once, atomically."""
    prefix = home / "cores" / core
    if prefix.exists():
        return prefix
    spec = CORES[core]
    work = Path(tempfile.mkdtemp(prefix=f"{core}.", dir=home))
    for entry in PREFIX_ENTRIES:
        (work / entry).symlink_to(home / "tree" / entry)
    (work / "proc").mkdir()
    (work / "proc" / "cpuinfo").write_text(spec.cpuinfo())
    cpus = work / "sys" / "devices" / "system" / "cpu"
    (cpus / "cpu0" / "regs" / "identification").mkdir(parents=True)
    for name in ("possible", "present", "online"):
        (cpus / name).write_text("0\n")
    (cpus / "cpu0" / "regs" / "identification" / "midr_el1").write_text(f"{spec.midr:#018x}\n")
    (home / "cores").mkdir(exist_ok=True)
    try:
        work.rename(prefix)
    except OSError:  # made meanwhile by another process
        if not prefix.exists():
            raise
    return prefix


def run_on_arm(model_path, inputs, core="a76", *, repeats=2, threads=1, memory=True, timeout=1800):
    """Run `model_path` on `core` (a key of CORES) with `inputs` (arrays in the interpreter's
    input order, of its dtypes and shapes); count one invoke. `memory=False` leaves loads and
    stores uncounted (0), which makes the emulation several times faster.

    Raises:
        LSNetError: unknown core, missing file, or the emulated run failed (its last line).

    Example:
        >>> run = run_on_arm("lsnet_t_int8.tflite", [x], core="a55")  # doctest: +SKIP
        >>> run.instructions, run.outputs[0].shape  # doctest: +SKIP
        (52012345, (1, 1000))
    """
    if core not in CORES:
        raise LSNetError(f"core must be one of {', '.join(CORES)}, got {core!r}")
    require_file(model_path, "TFLite model")
    home = arm_home()
    prefix = core_prefix(home, core)
    with tempfile.TemporaryDirectory(prefix="arm_run_") as tmp:
        tmp = Path(tmp)
        np.savez(tmp / "inputs.npz", **{f"input_{i}": np.asarray(a) for i, a in enumerate(inputs)})
        command = [
            "qemu-aarch64",
            "-L", str(prefix),
            "-cpu", CORES[core].qemu_cpu,
            "-plugin", f"{home / 'libinsn_count.so'},out={tmp / 'counts.txt'}"
            + ("" if memory else ",memory=off"),
            str(prefix / "usr" / "bin" / "python3.11"), str(GUEST),
            str(Path(model_path).resolve()), str(tmp / "inputs.npz"), str(tmp / "outputs.npz"),
            str(repeats), str(threads),
        ]  # fmt: skip
        env = {"PATH": os.environ.get("PATH", "/usr/bin"), "LANG": "C.UTF-8"}
        env["PYTHONNOUSERSITE"] = env["PYTHONDONTWRITEBYTECODE"] = "1"
        try:
            proc = subprocess.run(command, capture_output=True, text=True, env=env, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise LSNetError(f"{model_path} on {core}: not done within {timeout} s") from None
        if proc.returncode != 0 or not (tmp / "outputs.npz").exists():
            lines = proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"]
            raise LSNetError(f"{model_path} on {core}: the emulated run failed: {lines[-1]}")
        counts = np.loadtxt(tmp / "counts.txt", dtype=np.int64, ndmin=2)
        with np.load(tmp / "outputs.npz") as saved:
            outputs = [saved[f"output_{i}"] for i in range(len(saved.files))]
    per_invoke = counts[1:] - counts[0]  # the first region is the marks alone
    best = per_invoke[np.argmin(per_invoke[:, 0])]
    return ArmRun(core, *(int(v) for v in best), outputs, per_invoke.tolist())


def x86_outputs(model_path, inputs, threads=1):
    """The same invoke on this machine's ai-edge-litert (x86 XNNPACK), for comparison."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(model_path), num_threads=threads)
    interpreter.allocate_tensors()
    for detail, array in zip(interpreter.get_input_details(), inputs, strict=True):
        interpreter.set_tensor(detail["index"], array)
    interpreter.invoke()
    return [interpreter.get_tensor(d["index"]) for d in interpreter.get_output_details()]


def random_inputs(model_path, seed=0):
    """Seeded inputs for every input of `model_path`: float N(0, 1), integers over their
    range."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(model_path))
    rng = np.random.default_rng(seed)
    inputs = []
    for detail in interpreter.get_input_details():
        shape, dtype = tuple(detail["shape"]), np.dtype(detail["dtype"])
        if dtype.kind == "f":
            inputs.append(rng.standard_normal(shape).astype(dtype))
        else:
            info = np.iinfo(dtype)
            inputs.append(rng.integers(info.min, info.max, shape, endpoint=True, dtype=dtype))
    return inputs


def _table(rows):
    lines = [f"{'core':6} {'instructions':>14} {'loads':>13} {'stores':>13}  max |arm - x86|"]
    for row in rows:
        lines.append(
            f"{row['core']:6} {row['instructions']:>14,} {row['loads']:>13,} "
            f"{row['stores']:>13,}  {row['max_abs_diff']:.3g}"
        )
    return "\n".join(lines)


def _main(args):
    if args.json:
        check_outputs([args.json], args.force)
    require_file(args.model, "TFLite model")
    inputs = [np.load(path) for path in args.input] if args.input else random_inputs(args.model)
    reference = x86_outputs(args.model, inputs, args.threads)
    rows = []
    for core in args.core or ["a76"]:
        run = run_on_arm(args.model, inputs, core, repeats=args.repeats, threads=args.threads)
        diff = max(
            float(np.abs(a.astype(np.float64) - b.astype(np.float64)).max())
            for a, b in zip(run.outputs, reference, strict=True)
        )
        row = asdict(run)
        del row["outputs"]
        rows.append({**row, "title": CORES[core].title, "max_abs_diff": diff})
    print(_table(rows))
    if args.json:
        with atomic_path(args.json, overwrite=args.force) as tmp, open(tmp, "w") as f:
            json.dump({"model": args.model, "threads": args.threads, "runs": rows}, f, indent=2)
    return 0


def main(argv=None):
    """`python -m tflite.arm.run MODEL.tflite [--core a76 ...]`: 0 done, 2 error.

    Example:
        >>> main(["missing.tflite"])
        2
    """
    parser = argparse.ArgumentParser(
        prog="python -m tflite.arm.run", description=__doc__.splitlines()[0]
    )
    parser.add_argument("model", help="the .tflite file")
    parser.add_argument(
        "--core", action="append", choices=list(CORES), help="emulated core (repeatable; a76)"
    )
    parser.add_argument(
        "--input", action="append", metavar="NPY", help="one .npy per model input (random)"
    )
    parser.add_argument("--repeats", type=int, default=2, help="counted invokes (2)")
    parser.add_argument("--threads", type=int, default=1, help="interpreter threads (1)")
    parser.add_argument("--json", metavar="OUT", help="also write the counts as JSON")
    parser.add_argument("--force", action="store_true", help="replace an existing --json file")
    args = parser.parse_args(sys.argv[1:] if argv is None else list(argv))
    return run_command("python -m tflite.arm.run", _main, args)


if __name__ == "__main__":
    sys.exit(main())
