"""Training recipes end to end on generated images: learning, outputs, evaluation, fine-tuning,
distillation and the NaN stop (tiny LSNet, 32 px, a few dozen images)."""

import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf
from test_data import add_bad_files, make_image_folder

from lsnet_keras.training.augment import Augment
from lsnet_keras.training.config import TrainConfig, TrainingError
from lsnet_keras.training.data import open_dataset
from lsnet_keras.training.evaluation import evaluate_model
from lsnet_keras.training.recipe import WarmupCosine, scaled_lr, unit_axes
from lsnet_keras.training.trainer import train
from training import evaluate as evaluate_cli
from training import train as train_cli

# Stage 4 of a 32 px input is 1x1: attention over one token (Keras warns about the softmax).
pytestmark = pytest.mark.filterwarnings("ignore:You are using a softmax over axis")
# One block of each kind: RepVGG (stages 1-4), LSConv (stage 3), attention (stage 4).
TINY = {"embed_dim": (32, 64, 96, 128), "depth": (1, 1, 2, 2), "num_heads": (2, 2, 2, 2)}
PLAIN = Augment(rand_augment="none", reprob=0.0, mixup=0.0, cutmix=0.0)


def tiny_config(data_dir, output_dir, **overrides):
    """A run that learns the generated colors in a few dozen steps."""
    settings = dict(
        model=TINY,
        epochs=1,
        batch_size=8,
        img_size=32,
        lr=1.0,
        warmup_epochs=0,
        augment=PLAIN,
        repeated_aug=1,
        save_every=4,
        verbose=False,
    )
    settings.update(overrides)
    return TrainConfig(str(data_dir), str(output_dir), **settings)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """5 epochs of 6 steps, EMA decay 0.9 so the EMA model moves too."""
    root = make_image_folder(tmp_path_factory.mktemp("data"), classes=4, per_class=12)
    add_bad_files(root)
    out = tmp_path_factory.mktemp("run")
    history = train(tiny_config(root, out, epochs=5, ema_decay=0.9))
    return root, str(out), history


@pytest.mark.slow
def test_a_short_run_lowers_the_loss(run):
    _, out, history = run
    assert [h["step"] for h in history] == [6, 12, 18, 24, 30]
    assert history[-1]["val_loss"] < history[0]["val_loss"] - 0.3
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert history[-1]["val_top1"] >= 0.75 and history[-1]["val_top5"] == 1.0
    assert 0.0 <= history[-1]["ema_val_top1"] <= 1.0
    saved = json.load(open(os.path.join(out, "history.json")))
    assert [h["epoch"] for h in saved] == [0, 1, 2, 3, 4]
    assert tf.train.latest_checkpoint(os.path.join(out, "checkpoints")).endswith("ckpt-30")


@pytest.mark.slow
def test_outputs_load_with_keras_and_evaluate(run):
    root, out, history = run
    model = keras.models.load_model(os.path.join(out, "final.keras"))
    assert model.output_shape == (None, 4)
    metrics = evaluate_model(model, open_dataset(root, splits=("val",)).val, batch_size=5)
    assert metrics["count"] == 16
    assert metrics["top1"] == pytest.approx(history[-1]["val_top1"])
    for name in ("best.keras", "final_ema.keras"):
        assert keras.models.load_model(os.path.join(out, name)).output_shape == (None, 4)
    with open(os.path.join(out, "curves.png"), "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    for name in ("train", "validation"):
        assert any(f.startswith("events.") for f in os.listdir(os.path.join(out, "logs", name)))
    config = json.load(open(os.path.join(out, "config.json")))
    assert config["peak_lr"] == pytest.approx(scaled_lr(1.0, 8))
    assert config["steps_per_epoch"] == 6


@pytest.mark.slow
def test_evaluate_command_keras_and_tflite(run, tmp_path, capsys):
    from lsnet_keras.litert.export import export_tflite

    root, out, history = run
    keras_file = os.path.join(out, "final.keras")
    assert evaluate_cli.main(["--data-dir", root, "--model", keras_file]) == 0
    printed = capsys.readouterr().out
    assert f"top-1 {100 * history[-1]['val_top1']:.2f}%" in printed and "(16 images)" in printed
    tflite_file = str(tmp_path / "final.tflite")
    export_tflite(keras.models.load_model(keras_file), tflite_file)
    report = str(tmp_path / "metrics.json")
    assert evaluate_cli.main(["--data-dir", root, "--model", tflite_file, "--json", report]) == 0
    assert json.load(open(report))["top1"] == pytest.approx(history[-1]["val_top1"])


@pytest.mark.slow
def test_fine_tune_official_pth_checkpoint_with_frozen_backbone(tmp_path):
    """A new 3-class head on an official-format .pth ({"model": state_dict}, 7 classes); the
    frozen backbone keeps the checkpoint's weights."""
    import torch

    from lsnet_keras.model.lsnet import LSNet
    from lsnet_keras.weights.mapping import export_state_dict

    source = LSNet(**TINY, num_classes=7, input_shape=32)
    state = {
        k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in export_state_dict(source).items()
    }
    checkpoint = str(tmp_path / "official.pth")
    torch.save({"model": state}, checkpoint)
    root = make_image_folder(tmp_path / "data", classes=3, per_class=8)
    command = ["--data-dir", root, "--output-dir", str(tmp_path / "out"), "--finetune", checkpoint]
    command += ["--epochs", "1", "--batch-size", "8", "--img-size", "32", "--warmup-epochs", "0"]
    assert train_cli.main(command + ["--freeze-backbone", "--repeated-aug", "1"]) == 0
    history = json.load(open(tmp_path / "out" / "history.json"))
    assert len(history) == 1 and np.isfinite(history[0]["train_loss"])
    tuned = keras.models.load_model(str(tmp_path / "out" / "final.keras"))
    assert tuned.output_shape == (None, 3)
    for name in ("patch_embed_0", "blocks2_0", "blocks4_1"):
        for mine, theirs in zip(tuned.get_layer(name).weights, source.get_layer(name).weights):
            np.testing.assert_array_equal(mine.numpy(), theirs.numpy())
    assert not np.allclose(tuned.get_layer("head").linear.kernel.numpy(), 0.0)


@pytest.mark.slow
def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(run, tmp_path):
    root, _, _ = run
    config = tiny_config(root, tmp_path, lr=1e35, clip_grad=0.0, save_every=1, model_ema=False)
    with pytest.raises(TrainingError, match=r"the loss is (nan|inf) at step (\d+)") as caught:
        train(config)
    message = str(caught.value)
    assert "\n" not in message
    latest = tf.train.latest_checkpoint(str(tmp_path / "checkpoints"))
    assert latest and message.endswith(f"last good checkpoint: {latest}")
    reader = tf.train.load_checkpoint(latest)
    for name in reader.get_variable_to_shape_map():
        if "model/" in name and reader.get_variable_to_dtype_map()[name].is_floating:
            assert np.isfinite(reader.get_tensor(name)).all(), name


@pytest.mark.slow
def test_missing_train_extra_is_a_one_line_error(run, tmp_path, monkeypatch):
    """Without tensorboard (or matplotlib) training stops before any work, naming the extra."""
    from lsnet_keras.training import run_setup

    monkeypatch.setattr(run_setup, "TRAIN_EXTRA", ("tensorboard", "lsnet_no_such_package"))
    root, _, _ = run
    with pytest.raises(TrainingError) as caught:
        train(tiny_config(root, tmp_path))
    assert str(caught.value) == (
        "training needs lsnet_no_such_package (logs and curves): pip install 'lsnet-keras[train]'"
    )
    assert not (tmp_path / "checkpoints").exists()


def test_command_line_errors_are_one_line(tmp_path, capsys):
    args = ["--data-dir", str(tmp_path / "missing"), "--output-dir", str(tmp_path / "out")]
    assert train_cli.main(args) == 2
    assert capsys.readouterr().err == (
        f"python -m training.train: error: {tmp_path / 'missing'}: data folder not found\n"
    )
    make_image_folder(tmp_path / "data", classes=2, per_class=2)
    args = ["--data-dir", str(tmp_path / "data"), "--output-dir", str(tmp_path / "out")]
    assert train_cli.main(args + ["--batch-size", "64"]) == 2
    assert "fewer than one batch of 64: lower --batch-size" in capsys.readouterr().err
    assert evaluate_cli.main(["--data-dir", str(tmp_path / "data"), "--model", "nope.keras"]) == 2
    assert capsys.readouterr().err == (
        "python -m training.evaluate: error: nope.keras: model file not found\n"
    )


def test_schedule_and_clipping_axes():
    schedule = WarmupCosine(4e-3, steps_per_epoch=10, epochs=300, warmup_epochs=5)
    assert float(schedule(0)) == pytest.approx(1e-6)
    assert float(schedule(19)) == pytest.approx(1e-6 + (4e-3 - 1e-6) / 5)  # epoch 1
    last = 1e-5 + (4e-3 - 1e-5) * (1 + np.cos(np.pi * 299 / 300)) / 2
    assert float(schedule(2999)) == pytest.approx(last, rel=1e-4)
    from lsnet_keras.model.lsnet import LSNet

    axes = unit_axes(LSNet(**TINY, num_classes=4, input_shape=32))
    assert axes["blocks1_0/mixer/conv/conv/kernel"] == (0, 1)  # depthwise
    assert axes["blocks1_0/ffn/pw1/conv/kernel"] == (0, 1, 2)
    assert axes["blocks4_3/mixer/attention_biases"] == (1,)
    assert axes["head/linear/kernel"] == (0,)
    assert axes["head/bn/gamma"] is None


def test_build_model_by_variant_name_and_errors():
    from lsnet_keras.errors import LSNetError
    from lsnet_keras.training.recipe import build_model

    model, note = build_model("lsnet_t", 5, 32, distillation=True)
    assert model.name == "lsnet_t_distill" and model.output_shape == (None, 5)
    assert note == "lsnet_t_distill: random init (official rules)"
    with pytest.raises(LSNetError, match=r"^--model: expected lsnet_t, .* got 'lsnet_x'$"):
        build_model("lsnet_x", 5, 32)
    with pytest.raises(LSNetError, match=r"^--model: not LSNet architecture arguments"):
        build_model({"embed_dims": [8]}, 5, 32)


def test_qat_command_shares_seed_and_determinism_with_train(monkeypatch):
    from training import qat as qat_cli

    calls = []
    determinism = lambda: calls.append("ops")  # noqa: E731
    monkeypatch.setattr(tf.config.experimental, "enable_op_determinism", determinism)
    monkeypatch.setattr(keras.utils, "set_random_seed", lambda seed: calls.append(seed))
    monkeypatch.setattr(qat_cli, "qat_config", lambda args: args)

    class FakeTrainer:
        def __init__(self, args, strategy):
            calls.append(("fit", args.finetune, type(strategy).__name__))

        def fit(self):
            calls.append("fitted")

    monkeypatch.setattr(qat_cli, "QATTrainer", FakeTrainer)
    argv = ["--data-dir", "d", "--finetune", "f.keras", "--output-dir", "o", "--seed", "7"]
    assert qat_cli.main([*argv, "--deterministic"]) == 0
    assert calls == [7, "ops", ("fit", "f.keras", "_DefaultDistributionStrategy"), "fitted"]
