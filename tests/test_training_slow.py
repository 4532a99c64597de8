"""Distributed and fault-tolerant training, in fresh processes: MirroredStrategy on two logical
CPUs vs one device, a two-process MultiWorkerMirroredStrategy on 127.0.0.1, SIGKILL + --resume,
and mixed precision. Marked slow (run in CI with `pytest -m slow`)."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
import tensorflow as tf
from test_data import make_image_folder
from test_training import TINY, tiny_config

from lsnet_keras.training.trainer import train

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore:You are using a softmax over axis"),
]
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALL = {**TINY, "depth": (1, 1, 1, 1)}  # fresh processes trace the model anew: keep it small
SMALL_JSON = json.dumps(SMALL)
PLAIN_FLAGS = ["--aa", "none", "--reprob", "0", "--mixup", "0", "--cutmix", "0"]


def cli(data_dir, output_dir, *extra):
    """The `python -m training.train` command for a tiny, fast-learning run."""
    return [
        sys.executable, "-m", "training.train", "--data-dir", str(data_dir),
        "--output-dir", str(output_dir), "--model", SMALL_JSON, "--batch-size", "8",
        "--img-size", "32", "--lr", "1.0", "--warmup-epochs", "0", *PLAIN_FLAGS, *extra,
    ]  # fmt: skip


def environment(**extra):
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": REPO, **extra}


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    return make_image_folder(tmp_path_factory.mktemp("data"), classes=4, per_class=12)


MIRRORED_SCRIPT = """
import json, sys
from lsnet_keras.training.distribute import make_strategy
from lsnet_keras.training.trainer import train
mirrored = make_strategy("mirrored", cpu_replicas=2)  # before any other TensorFlow work
import tensorflow as tf
from test_training import TINY, tiny_config
tf.config.experimental.enable_op_determinism()
data, out = sys.argv[1], sys.argv[2]
small = {**TINY, "depth": (1, 1, 1, 1)}
options = dict(model=small, epochs=1, sync_bn=True, repeated_aug=3, lr=0.1, model_ema=False)
one = train(tiny_config(data, out + "/one", **options))
two = train(tiny_config(data, out + "/two", **options), mirrored)
print(json.dumps({"replicas": mirrored.num_replicas_in_sync, "one": one, "two": two}))
"""


def test_mirrored_two_cpus_matches_one_device(images, tmp_path):
    """Same global batch of 8 (2 x 4 on two replicas, BatchNorm synchronized): same weights."""
    env = environment(PYTHONPATH=os.pathsep.join([REPO, os.path.join(REPO, "tests")]))
    done = subprocess.run(
        [sys.executable, "-c", MIRRORED_SCRIPT, images, str(tmp_path)],
        env=env, capture_output=True, text=True, timeout=400,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["replicas"] == 2
    assert result["one"][0]["train_loss"] == pytest.approx(result["two"][0]["train_loss"], abs=1e-3)
    one = keras.models.load_model(str(tmp_path / "one" / "final.keras")).get_weights()
    two = keras.models.load_model(str(tmp_path / "two" / "final.keras")).get_weights()
    from lsnet_keras.training.recipe import build_model

    start = build_model(SMALL, 4, 32)[0].get_weights()
    moved = np.sqrt(sum(np.sum((a - s) ** 2) for a, s in zip(one, start)))
    differ = np.sqrt(sum(np.sum((a - b) ** 2) for a, b in zip(one, two)))
    print(f"MirroredStrategy 2 CPUs vs 1 device: |diff| {differ:.3g}, |update| {moved:.3g}")
    assert differ < 2e-3 * moved  # lr 0.1: Adam steps of 1.6e-3, 6 steps


def free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def test_multiworker_two_processes(images, tmp_path):
    cluster = {"worker": [f"127.0.0.1:{port}" for port in free_ports(2)]}
    command = cli(images, tmp_path / "out", "--epochs", "1", "--strategy", "multiworker")
    workers = []
    began = time.time()
    for index in range(2):
        config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
        log = open(tmp_path / f"worker{index}.log", "w")
        process = subprocess.Popen(
            command, env=environment(TF_CONFIG=config), stdout=log, stderr=subprocess.STDOUT
        )
        workers.append(process)
    try:
        codes = [worker.wait(timeout=300) for worker in workers]
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
    seconds = time.time() - began
    logs = [open(tmp_path / f"worker{i}.log").read() for i in range(2)]
    assert codes == [0, 0], logs[0][-2000:] + logs[1][-2000:]
    print(f"MultiWorkerMirroredStrategy, 2 processes: {seconds:.0f} s")
    assert "CollectiveAllReduceStrategy: 2 replica(s)" in logs[0]
    history = json.load(open(tmp_path / "out" / "history.json"))
    assert [h["step"] for h in history] == [6]
    saved = os.listdir(tmp_path / "out" / "checkpoints")
    assert "ckpt-6.index" in saved and not [n for n in saved if n.startswith(".worker")]
    assert keras.models.load_model(str(tmp_path / "out" / "final.keras")).output_shape == (None, 4)


def wait_for_checkpoint(directory, name, process, timeout):
    """True once `directory`'s checkpoint state names `name` (the files are written before
    the state, so a checkpoint is committed only when the state points at it)."""
    end = time.time() + timeout
    while time.time() < end and process.poll() is None:
        latest = tf.train.latest_checkpoint(str(directory))
        if latest is not None and latest.endswith(name):
            return True
        time.sleep(0.02)
    return False


def test_sigkill_mid_epoch_then_resume_matches_an_uninterrupted_run(images, tmp_path):
    """2 epochs x 6 steps, checkpoints every 4 steps: killed after step 8 (epoch 2, step 2)."""
    flags = ["--epochs", "2", "--save-every", "4", "--deterministic"]
    killed = subprocess.Popen(
        cli(images, tmp_path / "run", *flags),
        env=environment(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        assert wait_for_checkpoint(tmp_path / "run" / "checkpoints", "ckpt-8", killed, 300)
        killed.send_signal(signal.SIGKILL)
        assert killed.wait(timeout=30) == -signal.SIGKILL
    finally:
        if killed.poll() is None:
            killed.kill()
    latest = tf.train.latest_checkpoint(str(tmp_path / "run" / "checkpoints"))
    assert latest.endswith("ckpt-8"), latest  # inside epoch 2 (the next save is step 12)
    resumed = subprocess.run(
        cli(images, tmp_path / "run", *flags, "--resume"),
        env=environment(), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    step = int(latest.rsplit("-", 1)[1])
    assert f"step {step} (epoch 2, step {step - 6} of 6)" in resumed.stdout
    history = json.load(open(tmp_path / "run" / "history.json"))
    assert [(h["epoch"], h["step"]) for h in history] == [(0, 6), (1, 12)]
    reference = subprocess.run(
        cli(images, tmp_path / "reference", *flags),
        env=environment(), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert reference.returncode == 0, reference.stderr[-3000:]
    expected = json.load(open(tmp_path / "reference" / "history.json"))
    assert [h["train_loss"] for h in history] == [h["train_loss"] for h in expected]
    for name in ("final.keras", "final_ema.keras"):
        mine = keras.models.load_model(str(tmp_path / "run" / name)).get_weights()
        theirs = keras.models.load_model(str(tmp_path / "reference" / name)).get_weights()
        for a, b in zip(mine, theirs):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("precision", ["mixed_bfloat16", "mixed_float16"])
def test_mixed_precision(images, tmp_path, precision):
    history = train(tiny_config(images, tmp_path, epochs=2, precision=precision))
    assert np.isfinite(history[-1]["train_loss"]) and np.isfinite(history[-1]["val_loss"])
    assert keras.mixed_precision.global_policy().name == "float32"
    model = keras.models.load_model(str(tmp_path / "final.keras"))
    assert model.compute_dtype == "float32"  # the exported model is float32 again


def test_fine_tune_a_keras_model_with_hard_distillation(images, tmp_path):
    """Student fine-tuned from a .keras (a new distillation head), hard labels from a teacher."""
    from lsnet_keras.model.lsnet import LSNet

    teacher = str(tmp_path / "teacher.keras")
    LSNet(**SMALL, num_classes=4, input_shape=32).save(teacher)
    config = tiny_config(images, tmp_path / "out", model=SMALL, finetune=teacher, teacher=teacher)
    history = train(config)
    assert np.isfinite(history[0]["train_loss"])
    student = keras.models.load_model(str(tmp_path / "out" / "final.keras"))
    assert student.distillation and student.output_shape == (None, 4)


def test_readme_fine_tune_command_on_the_official_lsnet_t_pth(tmp_path):
    """The README one-liner on the released LSNet-T weights (as lsnet_t.pth: {"model": ...}),
    shortened to one epoch at 96 px; then the evaluate one-liner on best.keras."""
    import torch
    from goldens import REFERENCE_DIR

    from lsnet_keras.weights.checkpoint import read_state_dict

    state = read_state_dict(str(REFERENCE_DIR / "lsnet_t_224.safetensors"))
    torch.save(
        {"model": {k: torch.from_numpy(v) for k, v in state.items()}}, tmp_path / "lsnet_t.pth"
    )
    photos = make_image_folder(tmp_path / "photos", classes=3, per_class=11)
    command = [sys.executable, "-m", "training.train", "--data-dir", photos, "--finetune"]
    command += ["lsnet_t.pth", "--epochs", "1", "--batch-size", "16", "--output-dir", "runs/photos"]
    done = subprocess.run(
        command + ["--img-size", "96"],
        cwd=tmp_path, env=environment(), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "lsnet_t: weights from lsnet_t.pth; new head for 3 classes" in done.stdout
    evaluate = [sys.executable, "-m", "training.evaluate", "--data-dir", photos]
    done = subprocess.run(
        evaluate + ["--model", "runs/photos/best.keras"],
        cwd=tmp_path, env=environment(), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "(12 images)" in done.stdout
