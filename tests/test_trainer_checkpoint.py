"""Checkpoints written the way the official `main.py` writes them: read safely, `model` or EMA.

The official trainer (jameslahm/lsnet main.py) saves, every epoch and for the best one,
`{"model", "optimizer", "lr_scheduler", "epoch", "model_ema", "scaler", "args"}` with `torch.save`:
the model and EMA state_dicts, the timm AdamW optimizer's and cosine scheduler's state dicts, the
native AMP scaler's state dict and `args`, the `argparse.Namespace` of its command line.
"""

import argparse
import os

import numpy as np
import pytest
from conftest import nhwc, run_model

import lsnet_keras
from lsnet_keras.cli import main
from lsnet_keras.model.loading import model_from_checkpoint
from lsnet_keras.weights.checkpoint import CheckpointError, read_checkpoint

torch = pytest.importorskip("torch")

EMA_SHIFT = 0.5  # the EMA weights differ from "model" by this much on every logit (head bias)


class Exploit:
    """Unpickling this runs os.system: the textbook malicious checkpoint."""

    def __reduce__(self):
        return (os.system, ("touch pwned",))


def official_args(**extra):
    """An argparse.Namespace like the official main.py's (a subset of its options, same types)."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="lsnet_t")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--epochs", type=int, default=300)
    parser.add_argument("--input-size", type=int, default=224)
    parser.add_argument("--model-ema", action="store_true", default=True)
    parser.add_argument("--model-ema-decay", type=float, default=0.99996)
    parser.add_argument("--opt", default="adamw")
    parser.add_argument("--opt-betas", type=float, nargs="+", default=None)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--lr-noise", type=float, nargs="+", default=None)
    parser.add_argument("--cutmix-minmax", type=float, nargs="+", default=None)
    parser.add_argument("--distillation-type", default="none")
    parser.add_argument("--data-path", default="~/imagenet")
    parser.add_argument("--output-dir", default="checkpoints/lsnet_t")
    args = parser.parse_args(["--lr-noise", "0.42", "0.9"])
    args.nb_classes, args.distributed, args.lr = 10, False, 1e-3 * 256 / 512
    vars(args).update(extra)
    return args


def official_checkpoint(state, args=None):
    """The dict main.py saves, with real optimizer / scaler state for `state`'s parameters."""
    model = {k: torch.from_numpy(np.asarray(v).copy()) for k, v in state.items()}
    ema = {k: v.clone() for k, v in model.items()}
    ema["head.l.bias"] += EMA_SHIFT
    params = [torch.nn.Parameter(v.clone()) for v in model.values() if v.is_floating_point()]
    optimizer = torch.optim.AdamW(params, lr=5e-4, weight_decay=0.025)
    sum(p.sum() for p in params).backward()
    optimizer.step()
    scheduler = {  # timm CosineLRScheduler.state_dict(): its plain attributes
        "param_group_field": "lr",
        "_initial_param_group_field": "initial_lr",
        "base_values": [5e-4],
        "metric": None,
        "t_in_epochs": True,
        "noise_range_t": None,
        "t_initial": 300,
        "lr_min": 1e-5,
        "warmup_t": 5,
        "warmup_steps": [9.9e-5],
    }
    return {
        "model": model,
        "optimizer": optimizer.state_dict(),
        "lr_scheduler": scheduler,
        "epoch": 7,
        "model_ema": ema,
        "scaler": torch.amp.GradScaler("cpu").state_dict(),
        "args": args or official_args(),
    }


@pytest.fixture(scope="module")
def trainer_checkpoint(golden, tmp_path_factory):
    path = tmp_path_factory.mktemp("official") / "checkpoint.pth"
    torch.save(official_checkpoint(golden("tiny_128")["state_dict"]), path)
    return path


def test_official_training_checkpoint_converts_to_golden_logits(trainer_checkpoint, golden, capsys):
    case = golden("tiny_128")
    checkpoint = read_checkpoint(trainer_checkpoint)
    assert (checkpoint.entry, checkpoint.wrappers) == ("model", ("model", "model_ema"))
    model = model_from_checkpoint(trainer_checkpoint, input_shape=128)
    assert f"{trainer_checkpoint}: loaded 'model' (use_ema" in capsys.readouterr().out
    logits = run_model(model, nhwc(case["input"]))
    assert np.abs(logits - case["logits"]).max() <= 1e-4
    lsnet_keras.load_weights(model, trainer_checkpoint, use_ema=True)
    assert f"{trainer_checkpoint}: loaded 'model_ema' (the EMA weights)" in capsys.readouterr().out
    ema_logits = run_model(model, nhwc(case["input"]))
    assert np.abs(ema_logits - (case["logits"] + EMA_SHIFT)).max() <= 1e-4


def test_ema_asked_of_a_checkpoint_without_one(golden, tmp_path, capsys):
    path = tmp_path / "plain.pth"
    torch.save({"model": official_checkpoint(golden("tiny_128")["state_dict"])["model"]}, path)
    with pytest.raises(CheckpointError, match="no 'model_ema' \\(entries: model\\)"):
        read_checkpoint(path, use_ema=True)
    command = ["convert", "--checkpoint", str(path), "--ema", "--output", str(tmp_path / "x.keras")]
    assert main(command) == 2  # --ema reaches the reader
    assert "no 'model_ema'" in capsys.readouterr().err
    assert not (tmp_path / "x.keras").exists()


def test_code_in_a_training_checkpoint_is_refused_not_run(golden, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.pth"
    args = official_args(payload=Exploit())  # hidden in the Namespace, the allowed type
    torch.save(official_checkpoint(golden("tiny_128")["state_dict"], args), path)
    with pytest.raises(CheckpointError, match="refused.*pickled code.*not executed") as err:
        read_checkpoint(path)
    assert "\n" not in str(err.value) and "system" in str(err.value)
    assert not (tmp_path / "pwned").exists()
