"""Hostile inputs to every command: one error line, a non-zero exit, no traceback, nothing left.

One table of cases (`CASES`): each is a command line with placeholders for the session's bad
files, the exit status and a piece of the one error line expected. The default suite runs the
table in-process through each command's `main` (argparse, the command boundary and the library
code are the real ones; seconds in all); the `slow` suite runs the same table through the real
commands in subprocesses, plus signals and the heavier cases.
"""

import contextlib
import io
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from goldens import REFERENCE_DIR
from PIL import Image
from safetensors.numpy import load_file, save_file

import lsnet_keras
from lsnet_keras import cli, preprocess
from lsnet_keras import io as lsnet_io
from lsnet_keras.training.data import open_dataset
from training import evaluate as evaluate_cli
from training import fit as fit_cli
from training import qat as qat_cli
from training import train as train_cli

TINY_CHECKPOINT = REFERENCE_DIR / "tiny_128.safetensors"
ROOT = Path(__file__).resolve().parents[1]
PROGRAMS = {
    "lsnet": (cli.main, ["-m", "lsnet_keras.cli"]),
    "train": (train_cli.main, ["-m", "training.train"]),
    "evaluate": (evaluate_cli.main, ["-m", "training.evaluate"]),
    "qat": (qat_cli.main, ["-m", "training.qat"]),
    "fit": (fit_cli.main, ["-m", "training.fit"]),
}

# (program, argv, exit status, text in the error line). {name}: a file of `hostile_files`
# (conftest.py); {out}: an empty folder that must stay empty.
CASES = [
    # options, refused where they are parsed
    ("lsnet", "convert --checkpoint {ckpt} --output {out}/a.keras --img-size 0", 2, "--img-size"),
    ("lsnet", "convert --checkpoint {ckpt} --output {out}/a.keras --img-size -5", 2, "got -5"),
    ("lsnet", "convert --checkpoint {ckpt} --output {out}/a.keras --img-size 100000", 2, "1344"),
    ("lsnet", "convert --checkpoint {ckpt} --output {out}/a.keras --img-size x", 2, "'x'"),
    ("lsnet", "convert --checkpoint {ckpt} --output {out}/a.tflite", 2, "must end in .keras"),
    ("lsnet", "convert --checkpoint {ckpt} --output {out}/a.keras --variant lsnet_x", 2, "lsnet_x"),
    ("lsnet", "export {keras} --output {out}/x.keras", 2, "must end in .tflite"),
    ("lsnet", "export --variant lsnet_x --output {out}/x.tflite", 2, "unknown variant"),
    ("lsnet", "export {keras} --output {out}/x.tflite --precision int4", 2, "invalid choice"),
    ("lsnet", "predict {tflite} {ok_png} --top-k 0", 2, "--top-k"),
    ("lsnet", "predict {tflite} {ok_png} --top-k 3", 2, "the model has 2 classes"),
    ("lsnet", "predict {tflite} {ok_png} --threads 0", 2, "--threads"),
    ("lsnet", "predict {tflite} {ok_png} --threads -3", 2, "--threads"),
    ("lsnet", "pipeline --threads 0 --output-dir {out}/p", 2, "--threads"),
    ("lsnet", "pipeline --runs 0 --output-dir {out}/p", 2, "--runs"),
    ("lsnet", "pipeline --variant lsnet_x --output-dir {out}/p", 2, "unknown variant"),
    ("lsnet", "frobnicate", 2, "invalid choice"),
    ("train", "--data-dir {data} --output-dir {out}/t --epochs 0", 2, "--epochs"),
    ("train", "--data-dir {data} --output-dir {out}/t --batch-size 0", 2, "--batch-size"),
    ("train", "--data-dir {data} --output-dir {out}/t --img-size 0", 2, "--img-size"),
    ("train", "--data-dir {data} --output-dir {out}/t --model lsnet_x", 2, "unknown variant"),
    ("train", "--data-dir {data} --output-dir {out}/t --model [1]", 2, "JSON object"),
    ("train", "--data-dir {data} --output-dir {out}/t --lr -1", 2, "--lr"),
    ("train", "--data-dir {data} --output-dir {out}/t --lr nan", 2, "--lr"),
    ("train", "--data-dir {data} --output-dir {out}/t --repeated-aug 0", 2, "--repeated-aug"),
    ("train", "--data-dir {data} --output-dir {out}/t --distill-alpha 2", 2, "--distill-alpha"),
    ("evaluate", "--data-dir {data} --model {tflite} --batch-size 0", 2, "--batch-size"),
    ("evaluate", "--data-dir {data} --model {tflite} --json {out}/m.txt", 2, "must end in .json"),
    # files, checked where they are opened
    ("lsnet", "predict {folder} {ok_png}", 2, "is a folder, not a model file"),
    ("lsnet", "predict {out}/missing.tflite {ok_png}", 2, "model file not found"),
    ("lsnet", "predict {nchw_tflite} {ok_png}", 2, "1x3x16x16; expected one RGB image"),
    ("lsnet", "predict {gray_tflite} {ok_png}", 2, "1x16x16x1; expected one RGB image"),
    ("lsnet", "predict {flat_tflite} {ok_png}", 2, "input is 1x12; expected one RGB"),
    ("lsnet", "predict {keras} {ok_png}", 2, "not a loadable .tflite"),
    ("lsnet", "predict {tflite} {ok_png} --labels {out}/missing.txt", 2, "labels file not found"),
    ("lsnet", "predict {tflite} {ok_png} --labels {folder}", 2, "is a folder, not a labels"),
    ("lsnet", "predict {tflite} {ok_png} --labels {binary}", 2, "not a UTF-8 text file"),
    ("lsnet", "predict {tflite} {huge_png}", 2, "over the limit of"),
    ("lsnet", "predict {tflite} {thin_png}", 2, "aspect ratio over 50:1"),
    ("lsnet", "predict {tflite} {folder}", 2, "is a folder, not an image file"),
    ("lsnet", "predict {tflite} {text_png}", 2, "not a readable image"),
    ("lsnet", "predict {tflite} {truncated_png}", 2, "not a readable image"),
    ("lsnet", "predict {tflite} {fifo_png}", 2, "not a regular file"),
    ("lsnet", "android-golden {tflite} {huge_png} --output {out}/g", 2, "over the limit"),
    ("lsnet", "android-golden {tflite} {ok_png} --output {golden}", 2, "already exists"),
    ("lsnet", "edgetpu-check {folder}", 2, "is a folder"),
    ("lsnet", "convert --checkpoint {folder} --output {out}/a.keras", 2, "is a folder"),
    ("lsnet", "convert --checkpoint {garbage_pth} --output {out}/a.keras", 2, "not executed"),
    ("lsnet", "convert --checkpoint {evil_pth} --output {out}/a.keras", 2, "posix.system"),
    ("lsnet", "convert --checkpoint {bf16_pth} --output {out}/a.keras", 0, ""),
    ("lsnet", "convert --checkpoint {nan_st} --output {out}/a.keras", 2, "NaN or infinite"),
    ("lsnet", "convert --checkpoint {int_st} --output {out}/a.keras", 2, "int32 values"),
    ("lsnet", "export {not_lsnet} --output {out}/x.tflite", 2, "not an LSNet"),
    ("lsnet", "export {nan_keras} --output {out}/x.tflite", 2, "NaN or infinite"),
    (
        "lsnet",
        "export {keras} --output {out}/x.tflite --precision int8 --calibration {ok_png}",
        2,
        "is a file, not a calibration folder",
    ),
    (
        "lsnet",
        "export {keras} --output {out}/x.tflite --precision int8 --calibration {big_dir}",
        2,
        "over the limit",
    ),
    ("evaluate", "--data-dir {ok_png} --model {tflite}", 2, "is a file, not a data folder"),
    ("evaluate", "--data-dir {data} --model {folder}", 2, "is a folder, not a model file"),
    ("evaluate", "--data-dir {data} --model {not_lsnet}", 2, "not an LSNet"),
    ("evaluate", "--data-dir {three_classes} --model {tflite}", 2, "but the dataset has 3"),
    ("evaluate", "--data-dir {data} --model {tflite} --json {existing}", 2, "already exists"),
    ("train", "--data-dir {ok_png} --output-dir {out}/t", 2, "is a file, not a data folder"),
    # a second hostile pass: the training commands' other options and files, junk models
    ("train", "--data-dir {data} --output-dir {out}/t --aa bogus", 2, "--aa 'bogus'"),
    ("train", "--data-dir {data} --output-dir {out}/t --strategy tpu", 2, "--strategy tpu"),
    ("train", "--data-dir {data} --output-dir {out}/t --batch-size 2 --num-classes 1", 2, "< 2"),
    (
        "train",
        "--data-dir {data} --output-dir {out}/t --batch-size 2 --finetune {junk_keras}",
        2,
        "zip",
    ),
    (
        "train",
        "--data-dir {data} --output-dir {out}/t --batch-size 2 --finetune {junk_pth}",
        2,
        "PyTorch",
    ),
    ("qat", "--data-dir {data} --output-dir {out}/q", 2, "--finetune is required"),
    ("fit", "--data-dir {data} --output {out}/x.keras --img-size 0", 2, "--img-size"),
    ("fit", "--data-dir {data} --output {out}/x.keras --batch-size 0", 2, "--batch-size"),
    ("fit", "--data-dir {data} --output {out}/x.keras --epochs -1", 2, "--epochs"),
    ("fit", "--data-dir {data} --output {out}/x.keras --lr nan", 2, "--lr"),
    ("fit", "--data-dir {data} --output {out}/x.keras --model lsnet_x", 2, "unknown variant"),
    ("fit", "--data-dir {data} --output {out}/x.txt", 2, "must end in .keras"),
    ("fit", "--data-dir {out}/missing --output {out}/x.keras", 2, "data folder not found"),
    ("fit", "--data-dir {data} --output {out}/x.keras", 2, "more than the 4 training images"),
    (
        "fit",
        "--data-dir {data} --output {out}/x.keras --batch-size 2 --finetune {junk_pth}",
        2,
        "PyTorch",
    ),
    ("lsnet", "convert --weights {junk_pth} --output {out}/a.keras", 2, "not a readable PyTorch"),
    ("lsnet", "convert --checkpoint {ckpt} --output {ok_png}/a.keras", 2, "is a file, not a"),
    ("lsnet", "export {junk_keras} --output {out}/x.tflite", 2, "a .keras file is a zip"),
    ("lsnet", "export {keras} --android-assets {ok_png}", 2, "is a file, not a folder"),
    ("lsnet", "pipeline --output-dir {ok_png}", 2, "is a file, not a folder"),
    ("evaluate", "--data-dir {data} --model {junk_keras}", 2, "a .keras file is a zip"),
]
# Cases that build and run a model: only in the slow, subprocess half.
HEAVY = {"bf16_pth", "nan_st", "int_st", "nan_keras", "big_dir"}
HEAVY_OPTIONS = ("--strategy tpu", "--finetune")  # a TPU resolver; data scan + torch / Keras


def _case_id(case):
    return f"{case[0]}:{case[1].split(' --output')[0][:60]}"


def _expand(argv, files, out):
    return [part.format(out=out, **files) for part in argv.split()]


def _our_error_lines(stderr):
    """Lines of our one-line errors (TensorFlow and LiteRT may log other lines today)."""
    return [line for line in stderr.splitlines() if ": error: " in line]


def _check(program, code, message, status, stderr, out):
    ours = _our_error_lines(stderr)
    assert status == code, stderr[-2000:]
    assert "Traceback" not in stderr, stderr[-2000:]
    assert "weights_only=False" not in stderr and "likely succeed" not in stderr
    left = sorted(p.name for p in Path(out).rglob("*"))
    if code == 0:
        assert ours == [] and left, stderr[-2000:]
        return
    assert len(ours) == 1, stderr[-2000:]
    prefix = "lsnet" if program == "lsnet" else f"python -m training.{program}: error: "
    assert ours[0].startswith(prefix) and message in ours[0], ours[0]
    assert left == [], f"left behind: {left}"


def _in_process(program, argv):
    """(exit status, stderr) of `main(argv)` run here."""
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
        try:
            status = PROGRAMS[program][0](argv)
        except SystemExit as exit_:
            status = exit_.code
    return status, stderr.getvalue()


IN_PROCESS = [
    case
    for case in CASES
    if not any(f"{{{name}}}" in case[1] for name in HEAVY)
    and not any(option in case[1] for option in HEAVY_OPTIONS)
]


@pytest.mark.parametrize("case", IN_PROCESS, ids=_case_id)
def test_catalogue_in_process(case, hostile_files, tmp_path):
    program, argv, code, message = case
    status, stderr = _in_process(program, _expand(argv, hostile_files, tmp_path))
    _check(program, code, message, status, stderr, tmp_path)


def _subprocess(program, argv, timeout=300):
    env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run(
        [sys.executable, *PROGRAMS[program][1], *argv],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env=env,
    )


def test_one_real_command_line(hostile_files, tmp_path):
    """The console boundary itself, in a subprocess: exit status 2, one line, nothing left."""
    argv = _expand("predict {tflite} {huge_png}", hostile_files, tmp_path)
    result = _subprocess("lsnet", argv, timeout=120)
    _check("lsnet", 2, "over the limit of", result.returncode, result.stderr, tmp_path)


@pytest.fixture(scope="session")
def subprocess_runs(heavy_files, tmp_path_factory):
    """{case: (finished process, its output folder)} for every case of the catalogue, run
    through the real commands as many at a time as there are cores (most start TensorFlow)."""
    folders = {case: tmp_path_factory.mktemp("case") for case in CASES}

    def run(case):
        program, argv, _, _ = case
        return _subprocess(program, _expand(argv, heavy_files, folders[case]))

    with ThreadPoolExecutor(os.cpu_count() or 2) as pool:
        return {case: (done, folders[case]) for case, done in zip(CASES, pool.map(run, CASES))}


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_catalogue_in_subprocesses(case, subprocess_runs):
    program, _, code, message = case
    done, out = subprocess_runs[case]
    _check(program, code, message, done.returncode, done.stderr, out)


@pytest.mark.slow
@pytest.mark.parametrize(
    "name, status, marker",
    [("SIGINT", 130, "RANDOM weights"), ("SIGTERM", 143, "exported")],
)
def test_stopped_pipeline_exits_quietly(name, status, marker, tmp_path):
    """Ctrl-C (SIGTERM) while working, or after the first export: exit 130 (143), no
    traceback, and no file of the job left to block a rerun."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="3")
    argv = ["pipeline", "--img-size", "64", "--runs", "1", "--output-dir", str(tmp_path / "p")]
    process = subprocess.Popen(
        [sys.executable, *PROGRAMS["lsnet"][1], *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=env,
    )
    for line in process.stdout:  # past the imports and into the job
        if marker in line:
            break
    process.send_signal(getattr(signal, name))
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == status, stderr[-2000:]
    assert "Traceback" not in stderr and _our_error_lines(stderr) == []
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_temporary_files_of_killed_runs_are_removed(tmp_path):
    child = subprocess.Popen(["true"])
    child.wait()
    stale = tmp_path / f".model.tmp-{child.pid}.tflite"
    live = tmp_path / f".model.tmp-{os.getppid()}.tflite"  # a running process: kept
    stale.write_bytes(b"half")
    live.write_bytes(b"busy")
    with lsnet_io.atomic_path(tmp_path / "model.tflite") as tmp:
        Path(tmp).write_bytes(b"whole")
    assert sorted(p.name for p in tmp_path.iterdir()) == [live.name, "model.tflite"]


def test_a_job_failing_part_way_leaves_nothing_to_block_a_rerun(tmp_path):
    before = tmp_path / "kept.txt"
    before.write_text("from an earlier run")
    paths = [tmp_path / "a.tflite", tmp_path / "b.tflite", before]
    with pytest.raises(KeyboardInterrupt):
        with lsnet_io.outputs_removed_on_failure(paths):
            paths[0].write_bytes(b"done")
            raise KeyboardInterrupt
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept.txt"]
    lsnet_io.refuse_existing(paths[:2])  # a rerun is not refused


def test_image_modes_convert_like_pillow(tmp_path):
    """16-bit gray keeps its high byte (as TensorFlow's decoder does); other modes are
    Pillow's own conversion to RGB."""
    rng = np.random.default_rng(1)
    rgb = Image.fromarray(rng.integers(0, 256, (12, 10, 3), dtype=np.uint8))
    sixteen = rng.integers(0, 65536, (12, 10)).astype(np.uint16)
    Image.fromarray(sixteen).save(tmp_path / "gray16.png")
    loaded = np.asarray(preprocess.load_image(tmp_path / "gray16.png"))
    np.testing.assert_array_equal(loaded, np.repeat((sixteen >> 8)[..., None], 3, -1))
    for mode, name in [
        ("P", "p.png"),
        ("CMYK", "c.jpg"),
        ("RGBA", "a.png"),
        ("LA", "la.png"),
        ("L", "l.png"),
        ("1", "b.png"),
    ]:
        rgb.convert(mode).save(tmp_path / name)
        with Image.open(tmp_path / name) as image:
            expected = np.asarray(image.convert("RGB"))
        np.testing.assert_array_equal(
            np.asarray(preprocess.load_image(tmp_path / name)), expected, err_msg=mode
        )


def test_half_precision_checkpoints_load_as_float32(tmp_path):
    import ml_dtypes

    state = load_file(TINY_CHECKPOINT)
    for dtype in (np.float16, ml_dtypes.bfloat16):
        path = tmp_path / f"{np.dtype(dtype).name}.safetensors"
        save_file(
            {k: v.astype(dtype) if v.dtype.kind == "f" else v for k, v in state.items()}, path
        )
        loaded = lsnet_keras.read_state_dict(path)
        assert {v.dtype.name for k, v in loaded.items() if state[k].dtype.kind == "f"} == {
            "float32"
        }


def test_data_scan_skips_loops_and_bad_entries(hostile_files, tmp_path):
    """A link loop, a broken link, a pipe and a 400-megapixel image: skipped and counted,
    never followed forever nor decoded."""
    data = tmp_path / "data"
    for split in ("train", "val"):
        for name in ("a", "b"):
            folder = data / split / name
            folder.mkdir(parents=True)
            os.link(hostile_files["ok_png"], folder / "0.png")
    os.symlink("..", data / "train" / "a" / "up")
    os.symlink("/nonexistent.png", data / "train" / "a" / "gone.png")
    os.mkfifo(data / "train" / "b" / "pipe.png")
    os.link(hostile_files["huge_png"], data / "train" / "b" / "huge.png")
    started = time.monotonic()
    found = open_dataset(data)
    assert time.monotonic() - started < 60
    assert found.train.num_examples == 2 and found.val.num_examples == 2
    reasons = sorted(reason.split(" (")[0] for _, reason in found.train.skipped)
    assert reasons == [
        "image too large",
        "not a regular file",
        "not a regular file",
        "symbolic link loop",
    ]
