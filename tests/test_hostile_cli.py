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
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import keras
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
from training import train as train_cli

TINY_CHECKPOINT = REFERENCE_DIR / "tiny_128.safetensors"
ROOT = Path(__file__).resolve().parents[1]
PROGRAMS = {
    "lsnet": (cli.main, ["-m", "lsnet_keras.cli"]),
    "train": (train_cli.main, ["-m", "training.train"]),
    "evaluate": (evaluate_cli.main, ["-m", "training.evaluate"]),
}
TINY = {"embed_dim": (8, 8, 8, 8), "depth": (1, 1, 1, 1), "num_heads": (1, 1, 1, 1)}
SIZE = 32

# (program, argv, exit status, text in the error line). {name}: a file of `hostile_files`;
# {out}: an empty folder that must stay empty.
CASES = [
    # options, refused where they are parsed
    ("lsnet", "convert --checkpoint {ckpt} --output {out}/a.keras --img-size 0", 2, "--img-size"),
    ("lsnet", "convert --checkpoint {ckpt} --output {out}/a.keras --img-size -5", 2, "got -5"),
    ("lsnet", "convert --checkpoint {ckpt} --output {out}/a.keras --img-size 100000", 2, "1024"),
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
]
# Cases that build and run a model: only in the slow, subprocess half.
HEAVY = {"bf16_pth", "nan_st", "int_st", "nan_keras", "big_dir"}


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


def _tflite(model, path):
    import tensorflow as tf

    path.write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    return path


def _tiny_lsnet(num_classes):
    return lsnet_keras.LSNet(**TINY, num_classes=num_classes, input_shape=SIZE)


@pytest.fixture(scope="session")
def hostile_files(tmp_path_factory):
    """Every bad (and a few good) input of the catalogue, built once."""
    root = tmp_path_factory.mktemp("hostile")
    files = {"folder": root / "a_folder", "ckpt": TINY_CHECKPOINT}
    files["folder"].mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)).save(root / "ok.png")
    files["ok_png"] = root / "ok.png"
    files["huge_png"] = root / "huge.png"
    Image.new("1", (20000, 20000)).save(files["huge_png"])  # 400 megapixels, 50 kB
    files["thin_png"] = root / "thin.png"
    Image.new("L", (1, 2000)).save(files["thin_png"])
    files["text_png"] = root / "text.png"
    files["text_png"].write_text("not an image")
    files["truncated_png"] = root / "truncated.png"
    files["truncated_png"].write_bytes(files["ok_png"].read_bytes()[:100])
    files["fifo_png"] = root / "fifo.png"
    os.mkfifo(files["fifo_png"])
    files["binary"] = root / "labels.bin"
    files["binary"].write_bytes(b"\xff\xfe\x00\x80")
    files["big_dir"] = root / "big_dir"
    files["big_dir"].mkdir()
    os.link(files["huge_png"], files["big_dir"] / "huge.png")
    files["existing"] = root / "existing.json"
    files["existing"].write_text("{}")
    files["golden"] = root / "golden"  # an earlier run's golden files: kept without --force
    files["golden"].mkdir()
    (files["golden"] / "meta.json").write_text("{}")
    # models: a 2-class LSNet .keras, 2-class .tflite classifiers of several input layouts
    files["keras"] = root / "tiny.keras"
    _tiny_lsnet(2).save(files["keras"])
    layouts = {"": (16, 16, 3), "nchw": (3, 16, 16), "gray": (16, 16, 1), "flat": (12,)}
    for name, shape in layouts.items():
        other = keras.Sequential(
            [keras.Input(shape), keras.layers.Flatten(), keras.layers.Dense(2)]
        )
        files[f"{name}_tflite".lstrip("_")] = _tflite(other, root / f"{name or 'rgb'}.tflite")
    files["not_lsnet"] = root / "dense.keras"
    other.save(files["not_lsnet"])
    # checkpoints
    state = load_file(TINY_CHECKPOINT)
    first = sorted(k for k, v in state.items() if v.dtype.kind == "f")[0]
    files["nan_st"] = root / "nan.safetensors"
    save_file({**state, first: np.full_like(state[first], np.nan)}, files["nan_st"])
    files["int_st"] = root / "int.safetensors"
    save_file({**state, first: state[first].astype("int32")}, files["int_st"])
    files["bf16_pth"] = root / "bf16.pth"  # written by `heavy_files` (imports torch)
    files["nan_keras"] = root / "nan.keras"  # written by `heavy_files`
    files["garbage_pth"] = root / "garbage.pth"
    files["garbage_pth"].write_bytes(pickle.dumps({"a": 1}, protocol=4))
    files["evil_pth"] = root / "evil.pth"
    files["evil_pth"].write_bytes(pickle.dumps({"a": _Evil()}, protocol=2))
    # data: two (and three) classes of readable images
    for key, classes in (("data", "ab"), ("three_classes", "abc")):
        files[key] = root / key
        for split in ("train", "val"):
            for name in classes:
                (files[key] / split / name).mkdir(parents=True)
                for i in range(2):
                    os.link(files["ok_png"], files[key] / split / name / f"{i}.png")
    return {key: str(value) for key, value in files.items()}


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


@pytest.fixture(scope="session")
def heavy_files(hostile_files):
    """`hostile_files` plus those that take seconds to make: a bfloat16 .pth, NaN weights."""
    import torch

    state = load_file(TINY_CHECKPOINT)
    half = {k: torch.from_numpy(v.copy()) for k, v in state.items()}
    half = {k: v.to(torch.bfloat16) if v.is_floating_point() else v for k, v in half.items()}
    torch.save(half, hostile_files["bf16_pth"])
    broken = _tiny_lsnet(2)
    broken.weights[0].assign(np.full(broken.weights[0].shape, np.nan, "float32"))
    broken.save(hostile_files["nan_keras"])
    return hostile_files


def _in_process(program, argv):
    """(exit status, stderr) of `main(argv)` run here."""
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
        try:
            status = PROGRAMS[program][0](argv)
        except SystemExit as exit_:
            status = exit_.code
    return status, stderr.getvalue()


IN_PROCESS = [case for case in CASES if not any(f"{{{name}}}" in case[1] for name in HEAVY)]


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


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_catalogue_in_subprocesses(case, heavy_files, tmp_path):
    program, argv, code, message = case
    result = _subprocess(program, _expand(argv, heavy_files, tmp_path))
    _check(program, code, message, result.returncode, result.stderr, tmp_path)


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
