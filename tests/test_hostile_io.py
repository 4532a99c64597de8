"""Hostile conditions around the commands (issue 16, second part): Ctrl-C while TensorFlow is
still importing, a read-only output folder, a full disk, oversized images inside TFRecord /
TFDS data, and gpu_check's errors.

The default suite runs in-process cases (each well under a second, on the catalogue's session
files in conftest.py); the `slow` suite starts the real commands in subprocesses (signals,
full-disk exports). A read-only folder and a full disk are real: a read-only tmpfs and a 1 MiB
tmpfs filled to the last block (root ignores permission bits, so chmod would prove nothing);
where mounting is not permitted those tests are skipped, saying so.
"""

import errno
import io
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image
from test_hostile_cli import PROGRAMS, ROOT, _in_process, _our_error_lines

from lsnet_keras import errors
from lsnet_keras import io as lsnet_io
from lsnet_keras.errors import LSNetError, WriteError
from lsnet_keras.litert import gpu_check
from lsnet_keras.training.data import eval_dataset, open_dataset, train_dataset


def _mount_tmpfs(path, options):
    """Mount a tmpfs at `path`; None when done, else why it could not be."""
    if shutil.which("mount") is None:
        return "no mount command"
    command = ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)]
    result = subprocess.run(command, capture_output=True, text=True)
    return None if result.returncode == 0 else result.stderr.strip() or "mount failed"


def _unmount(path):
    subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False)


@pytest.fixture(scope="session")
def read_only_dir(tmp_path_factory):
    """A folder no write reaches: chmod 0o555 for a user; for root (which ignores permission
    bits) a read-only tmpfs, else an immutable folder (chattr +i)."""
    path = tmp_path_factory.mktemp("read_only")
    if os.geteuid() != 0:
        path.chmod(0o555)
        yield path
        path.chmod(0o755)
        return
    why = _mount_tmpfs(path, "ro,size=64k")
    if why is None:
        yield path
        _unmount(path)
        return
    chattr = subprocess.run(["chattr", "+i", str(path)], capture_output=True, text=True)
    if chattr.returncode != 0:
        pytest.skip(
            "running as root, which ignores permission bits, and neither a read-only mount "
            f"({why}) nor chattr +i ({chattr.stderr.strip()}) is permitted here"
        )
    yield path
    subprocess.run(["chattr", "-i", str(path)], check=False)


@pytest.fixture(scope="session")
def full_disk(tmp_path_factory):
    """A folder on a 1 MiB tmpfs filled to the last block by `filler`: every write of file
    data fails with ENOSPC (a real full disk)."""
    path = tmp_path_factory.mktemp("full_disk")
    why = _mount_tmpfs(path, "size=1m")
    if why is not None:
        pytest.skip(f"a full disk is a small tmpfs here, and mounting one is not permitted: {why}")
    descriptor = os.open(path / "filler", os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            os.write(descriptor, b"\0" * 4096)
    except OSError as err:
        assert err.errno == errno.ENOSPC
    finally:
        os.close(descriptor)
    yield path
    _unmount(path)


def _files(folder):
    return sorted(str(p.relative_to(folder)) for p in Path(folder).rglob("*"))


def _one_error(status, stderr, *texts):
    ours = _our_error_lines(stderr)
    assert status == 2 and "Traceback" not in stderr, stderr[-2000:]
    assert len(ours) == 1 and all(text in ours[0] for text in texts), ours


# ------------------------------------------------------------------ read-only folder, full disk

# (program, argv): every writer refuses a read-only --output up front, naming the output.
READ_ONLY = [
    ("lsnet", "convert --checkpoint {ckpt} --output {ro}/a.keras"),
    ("lsnet", "export {keras} --output {ro}/x.tflite"),
    ("lsnet", "export {keras} --android-assets {ro}/assets"),
    ("lsnet", "android-golden {tflite} {ok_png} --output {ro}/golden"),
    ("lsnet", "pipeline --output-dir {ro}/out"),
    ("evaluate", "--data-dir {data} --model {tflite} --json {ro}/metrics.json"),
    ("train", "--data-dir {data} --output-dir {ro}/run"),
    ("qat", "--data-dir {data} --output-dir {ro}/run --finetune {keras}"),
    ("fit", "--data-dir {data} --output {ro}/model.keras"),
]


@pytest.mark.parametrize("program, argv", READ_ONLY, ids=[f"{p}:{a[:24]}" for p, a in READ_ONLY])
def test_read_only_output_folder_is_one_line(program, argv, hostile_files, read_only_dir):
    argv = [part.format(ro=read_only_dir, **hostile_files) for part in argv.split()]
    status, stderr = _in_process(program, argv)
    _one_error(status, stderr, f"{read_only_dir}/", "cannot write it", str(read_only_dir))
    assert _files(read_only_dir) == []


# (program, argv, the file named): the write fails on the disk; nothing of it is left.
FULL_DISK = [
    ("evaluate", "--data-dir {data} --model {tflite} --json {full}/m.json", "m.json"),
    ("train", "--data-dir {data} --output-dir {full}/run --batch-size 2", "train_index.json"),
]


@pytest.mark.parametrize("program, argv, named", FULL_DISK, ids=[c[0] for c in FULL_DISK])
def test_full_disk_is_one_line_and_leaves_nothing(program, argv, named, hostile_files, full_disk):
    argv = [part.format(full=full_disk, **hostile_files) for part in argv.split()]
    status, stderr = _in_process(program, argv)
    _one_error(status, stderr, named, "cannot write it: No space left on device")
    assert _files(full_disk) == ["filler"]


def test_atomic_write_on_a_full_disk(full_disk):
    target = full_disk / "model.tflite"
    with pytest.raises(WriteError, match=f"{target}: cannot write it: No space left") as raised:
        with lsnet_io.atomic_path(target) as tmp, open(tmp, "wb") as f:
            f.write(b"\1" * 2**20)
    assert isinstance(raised.value, OSError)  # `except OSError` of library users still works
    assert _files(full_disk) == ["filler"]


def test_other_errors_inside_an_atomic_write_keep_their_type(tmp_path):
    """Reading an input inside the block is not reported as a failed write."""
    with pytest.raises(FileNotFoundError):
        with lsnet_io.atomic_path(tmp_path / "out.json"):
            open(tmp_path / "missing.txt").read()
    assert _files(tmp_path) == []


def _file_size_limit(limit):
    def apply():  # in the child: writes past `limit` bytes fail with EFBIG instead of killing
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


def _run(program, argv, preexec_fn=None):
    env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="3")
    command = [sys.executable, *PROGRAMS[program][1], *argv]
    return subprocess.run(
        command, capture_output=True, text=True, cwd=ROOT, env=env, preexec_fn=preexec_fn
    )


@pytest.mark.slow
def test_convert_on_a_full_disk(hostile_files, tmp_path_factory):
    """A filled tmpfs where mounting is permitted, else a file size limit (EFBIG) in the child."""
    folder = tmp_path_factory.mktemp("full")
    limit = None
    if _mount_tmpfs(folder, "size=64k") is None:
        (folder / "filler").write_bytes(b"\0" * 60 * 1024)  # what is left: less than the model
        expected = ["filler"]
    else:
        limit, expected = _file_size_limit(16 * 1024), []
    try:
        argv = ["convert", "--checkpoint", hostile_files["ckpt"], "--output", f"{folder}/a.keras"]
        result = _run("lsnet", argv, limit)
        why = "No space left on device" if limit is None else "File too large"
        _one_error(result.returncode, result.stderr, f"{folder}/a.keras: cannot write it: {why}")
        assert _files(folder) == expected
    finally:
        _unmount(folder)


@pytest.mark.slow
def test_export_on_a_full_disk(hostile_files, full_disk):
    """(A file size limit cannot stand in here: the TFLite converter writes its own temporary
    SavedModel first, and that write would fail instead.)"""
    for argv in (
        ["export", hostile_files["keras"], "--output", f"{full_disk}/x.tflite"],
        ["export", hostile_files["keras"], "--android-assets", f"{full_disk}/assets"],
    ):
        result = _run("lsnet", argv)
        _one_error(result.returncode, result.stderr, "cannot write it: No space left on device")
        assert _files(full_disk) == ["filler"]


# ------------------------------------------------------------------ Ctrl-C during the imports


def test_how_a_command_is_recognized():
    started = errors.started_as_command
    assert started(["/venv/bin/lsnet", "export"], ["python3", "/venv/bin/lsnet", "export"])
    assert started(["-m"], ["python", "-m", "lsnet_keras.cli", "convert"])
    assert started(["-m"], ["python", "-W", "ignore", "-X", "dev", "-m", "training.evaluate"])
    assert started(["-m"], ["python", "-mtraining.train"])
    assert not started(["-m"], ["python", "-m", "pytest", "-m", "training.train"])
    assert not started(["app.py", "-m", "training.train"], ["python", "app.py"])
    assert not started(["-c"], ["python", "-c", "import lsnet_keras"])
    # this process (pytest) imported lsnet_keras as a library: its Ctrl-C is untouched
    assert errors.quiet_interrupts_if_command() is False
    assert signal.getsignal(signal.SIGINT) is not errors._interrupted


def _maps(pid):
    try:
        return Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return ""


COMMANDS = {
    "lsnet": ["{venv}/lsnet", "convert", "--checkpoint", "{ckpt}", "--output", "{out}/a.keras"],
    "cli": [*PROGRAMS["lsnet"][1], "export", "--variant", "lsnet_t", "--output", "{out}/a.tflite"],
    "train": [*PROGRAMS["train"][1], "--data-dir", "{data}", "--output-dir", "{out}/run"],
    "evaluate": [*PROGRAMS["evaluate"][1], "--data-dir", "{data}", "--model", "{keras}"],
}


# Native libraries mapped as the import goes: numpy's core (early in `import keras`), then
# TensorFlow's session bindings (midway through TensorFlow; Keras' own import follows).
MOMENTS = {"numpy-loaded": "_multiarray_umath", "tensorflow-midway": "_pywrap_tf_session"}


@pytest.mark.slow
@pytest.mark.parametrize("moment", list(MOMENTS))
@pytest.mark.parametrize("command", list(COMMANDS))
def test_ctrl_c_while_tensorflow_imports(command, moment, hostile_files, tmp_path):
    """SIGINT at two moments of the Keras / TensorFlow import (seen in /proc/PID/maps): exit
    130, no traceback, no error line, no output of the job, nothing written."""
    venv = os.path.dirname(sys.executable)
    if command == "lsnet" and not os.path.exists(f"{venv}/lsnet"):
        pytest.skip(f"no lsnet console script next to {sys.executable} (pip install -e .)")
    argv = [a.format(venv=venv, out=tmp_path, **hostile_files) for a in COMMANDS[command]]
    env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="3")
    program = argv if command == "lsnet" else [sys.executable, *argv]
    process = subprocess.Popen(
        program, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env
    )
    deadline = time.monotonic() + 120
    while MOMENTS[moment] not in _maps(process.pid):
        assert process.poll() is None and time.monotonic() < deadline, "no import seen"
        time.sleep(0.002)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr[-2000:]
    assert "Traceback" not in stderr and _our_error_lines(stderr) == [], stderr[-2000:]
    assert stdout == "" and _files(tmp_path) == []


@pytest.mark.parametrize("name, status", [("SIGINT", 130), ("SIGTERM", 143)])
def test_signal_while_the_litert_runtime_imports(name, status, hostile_files, tmp_path):
    """A signal inside ai-edge-litert's native import used to surface as its ImportError
    ("initialization failed") and read "no TFLite runtime"; held, it exits 130 / 143."""
    argv = [*PROGRAMS["lsnet"][1], "predict", hostile_files["tflite"], hostile_files["ok_png"]]
    env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="3")
    process = subprocess.Popen(
        [sys.executable, *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=env,
    )
    deadline = time.monotonic() + 120
    while "_pywrap_litert_interpreter_wrapper" not in _maps(process.pid):
        assert process.poll() is None and time.monotonic() < deadline, "no import seen"
        time.sleep(0.001)
    process.send_signal(getattr(signal, name))
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == status, stderr[-2000:]
    assert "Traceback" not in stderr and _our_error_lines(stderr) == [], stderr[-2000:]
    assert stdout == ""


# ------------------------------------------------------------------ images inside records


def _encoded(image, format_):
    buffer = io.BytesIO()
    image.save(buffer, format_)
    return buffer.getvalue()


def _huge_jpeg_header():
    """A 16x16 JPEG whose header says 60000x60000: decoding it would need 10 GB."""
    data = bytearray(_encoded(Image.new("RGB", (16, 16), (200, 30, 30)), "JPEG"))
    start = data.index(b"\xff\xc0")  # SOF0: length (2), precision (1), height (2), width (2)
    data[start + 5 : start + 9] = (60000).to_bytes(2, "big") * 2
    return bytes(data)


def _write_records(path, examples):
    with tf.io.TFRecordWriter(str(path)) as writer:
        for encoded, label in examples:
            feature = {
                "image/encoded": tf.train.Feature(bytes_list=tf.train.BytesList(value=[encoded])),
                "image/class/label": tf.train.Feature(int64_list=tf.train.Int64List(value=[label])),
            }
            example = tf.train.Example(features=tf.train.Features(feature=feature))
            writer.write(example.SerializeToString())


@pytest.fixture(scope="module")
def records(tmp_path_factory, hostile_files):
    """TFRecord shards with good 40x50 PNGs and three images refused from their header:
    400 megapixels (a 50 kB PNG), a 60000x60000 JPEG header and a 1x2000 strip."""
    folder = tmp_path_factory.mktemp("records")
    ok = Path(hostile_files["ok_png"]).read_bytes()
    huge = Path(hostile_files["huge_png"]).read_bytes()
    thin = Path(hostile_files["thin_png"]).read_bytes()
    train = [(ok, 0), (huge, 1), (ok, 1), (_huge_jpeg_header(), 0), (thin, 1), (ok, 0)]
    _write_records(folder / "train-00000-of-00001", train)
    _write_records(folder / "validation-00000-of-00001", [(ok, 0), (huge, 1), (ok, 1)])
    return folder


def test_oversized_record_images_are_skipped_and_counted(records):
    data = open_dataset(records)  # no dataset.json: the records are counted, headers checked
    assert (data.train.num_examples, data.val.num_examples) == (3, 2)
    reasons = sorted(why for _, why in data.train.skipped)
    assert len(reasons) == 3 and all(r.startswith("image too large") for r in reasons), reasons
    assert "aspect ratio over 50:1" in reasons[0] and "89,478,485" in reasons[1]
    for _ in range(2):  # read again (every epoch): the same records, noted once
        labels = [int(label) for _, label in data.val.records().as_numpy_iterator()]
        assert labels == [0, 1] and len(data.val.skipped) == 1
    batches = [y.numpy() for _, y in eval_dataset(data.val, 2, 32)]
    assert np.concatenate(batches).tolist() == [0, 1]


def test_evaluate_reports_the_skipped_records(records, hostile_files, capsys):
    argv = ["--data-dir", str(records), "--model", hostile_files["tflite"]]
    status = PROGRAMS["evaluate"][0](argv)
    out = capsys.readouterr().out
    assert status == 0 and "(2 images)" in out and "skipped 1 " in out, out
    assert "val record (image too large" in out


@pytest.mark.slow
def test_training_batches_never_decode_oversized_records(records):
    data = open_dataset(records)
    batches = list(train_dataset(data.train, 0, steps=3, batch_size=2, img_size=32, num_classes=2))
    assert [tuple(x.shape) for x, _ in batches] == [(2, 32, 32, 3)] * 3


@pytest.mark.slow
def test_tfds_records_over_the_aspect_ratio_are_skipped(tmp_path):
    import tensorflow_datasets as tfds

    shapes = [(40, 48), (1, 60), (40, 48)]  # the middle one is 60:1

    def images():
        for i, (height, width) in enumerate(shapes):
            yield {"image": np.full((height, width, 3), 100, np.uint8), "label": i % 2}

    signature = {
        "image": tf.TensorSpec((None, None, 3), tf.uint8),
        "label": tf.TensorSpec((), tf.int64),
    }
    split = tf.data.Dataset.from_generator(images, output_signature=signature)
    features = tfds.features.FeaturesDict(
        {
            "image": tfds.features.Image(shape=(None, None, 3)),
            "label": tfds.features.ClassLabel(names=["a", "b"]),
        }
    )
    builder = tfds.dataset_builders.store_as_tfds_dataset(
        name="thin_images",
        version="1.0.0",
        features=features,
        split_datasets={"train": split, "validation": split},
        data_dir=str(tmp_path),
    )
    data = open_dataset(builder.data_dir)
    labels = [int(label) for _, label in data.val.records().as_numpy_iterator()]
    assert labels == [0, 0] and len(data.val.skipped) == 1
    assert "aspect ratio over 50:1" in data.val.skipped[0][1]


# ------------------------------------------------------------------ gpu_check


def test_gpu_check_file_errors_are_lsnet_errors(tmp_path, hostile_files):
    junk = tmp_path / "junk.tflite"
    junk.write_bytes(b"not a model")
    for path, expected in [
        (tmp_path / "missing.tflite", "TFLite model file not found"),
        (tmp_path, "is a folder, not a TFLite model file"),
        (junk, "no TFL3 identifier"),
    ]:
        with pytest.raises(LSNetError, match=expected):
            gpu_check.check_gpu(str(path))
    with pytest.raises(LSNetError, match="accelerator must be one of .* got 'tpu'"):
        gpu_check.litert_outputs(hostile_files["tflite"], np.zeros((1, 16, 16, 3)), "tpu")


@pytest.mark.slow
def test_gpu_check_bad_inputs_name_the_model(hostile_files):
    """Inputs that do not fit are found by the LiteRT child, on the CPU (no GPU needed)."""
    model = hostile_files["tflite"]
    with pytest.raises(LSNetError, match=f"^{model}: input .* does not fit the model's"):
        gpu_check.check_gpu(model, [np.zeros((5, 5), np.float32)])
