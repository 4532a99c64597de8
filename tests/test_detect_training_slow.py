"""Fine-tuning detectors for real: the loss against MMDetection's own `RetinaHead.loss`,
SIGKILL + --resume equal to an uninterrupted run, and fine-tuning an 80-class MMDetection
checkpoint on 3 classes. Marked slow (run in CI with `pytest -m slow`)."""

import json
import signal
import subprocess
import sys

import keras
import numpy as np
import pytest
from goldens import REFERENCE_DIR
from test_parity_mmdet import REFERENCE, mmdet_python
from test_training_slow import environment, wait_for_checkpoint

from lsnet_keras.detection.targets import detection_loss, image_anchors
from lsnet_keras.model.retinanet import LSNetRetinaNet
from lsnet_keras.training.detection import (
    PRIOR_PROBABILITY,
    build_detector,
)
from lsnet_keras.training.shapes import write_shapes_dataset
from lsnet_keras.weights.hub import read_weights

pytestmark = pytest.mark.slow

TINY = {"embed_dim": (32, 64, 96, 128), "depth": (1, 1, 1, 1), "num_heads": (2, 2, 2, 2)}


def test_loss_equals_mmdetection(tmp_path):
    """Random head outputs for a batch of two 128x192 images with 3 and 5 boxes of 3 classes:
    our assignment, targets and losses give MMDetection's `RetinaHead.loss` figures."""
    rng = np.random.default_rng(4)
    model = LSNetRetinaNet(**TINY, num_classes=3, input_shape=(128, 192))
    sizes = model.level_sizes()
    outputs, torch_layout = {}, {}
    for i, (h, w) in enumerate(sizes):
        outputs[f"cls_score_{i}"] = rng.normal(-2, 1.5, (2, h, w, 27)).astype("float32")
        outputs[f"bbox_pred_{i}"] = rng.normal(0, 0.3, (2, h, w, 36)).astype("float32")
        for key in (f"cls_score_{i}", f"bbox_pred_{i}"):
            torch_layout[key] = outputs[key].transpose(0, 3, 1, 2)
    boxes = np.zeros((2, 5, 4), "float32")
    labels = np.full((2, 5), -1, "int32")
    for b, count in enumerate((3, 5)):
        corner = rng.uniform(0, [150, 90], size=(count, 2))
        size = rng.uniform(6, 80, size=(count, 2))
        boxes[b, :count] = np.concatenate([corner, np.minimum(corner + size, [192, 128])], 1)
        labels[b, :count] = rng.integers(0, 3, count)
        torch_layout[f"gt_bboxes_{b}"] = boxes[b, :count]
        torch_layout[f"gt_labels_{b}"] = labels[b, :count].astype("int64")
    np.savez(tmp_path / "loss.in.npz", image_shape=np.array([128, 192]), **torch_layout)
    manifest = {"cases": [{"name": "loss", "task": "loss", "input": str(tmp_path / "loss.in.npz"),
                           "output": str(tmp_path / "loss.out.npz")}]}  # fmt: skip
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    command = [mmdet_python(), str(REFERENCE / "run_mmdet.py"), str(tmp_path / "manifest.json")]
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    expected = np.load(tmp_path / "loss.out.npz")
    cls, box = detection_loss(outputs, boxes, labels, image_anchors(sizes), num_classes=3)
    assert float(cls) == pytest.approx(float(expected["loss_cls"]), rel=1e-5)
    assert float(box) == pytest.approx(float(expected["loss_bbox"]), rel=1e-5)


def detect_command(data, output, *extra):
    return [
        sys.executable, "-m", "training.detect", "--data-dir", str(data), "--output-dir",
        str(output), "--model", json.dumps(TINY), "--img-size", "64", "--batch-size", "8",
        "--epochs", "2", "--lr", "1e-3", "--warmup-steps", "3", "--decay-epochs", "2",
        "--save-every", "4", "--deterministic", *extra,
    ]  # fmt: skip


def test_sigkill_mid_epoch_then_resume_matches_an_uninterrupted_run(tmp_path):
    """2 epochs x 6 steps, checkpoints every 4 steps: killed after step 8 (epoch 2, step 2)."""
    data = tmp_path / "data"
    write_shapes_dataset(data, {"train": 48, "val": 8}, size=64)
    whole = subprocess.run(detect_command(data, tmp_path / "whole"), env=environment(),
                           capture_output=True, text=True, timeout=600)  # fmt: skip
    assert whole.returncode == 0, whole.stderr[-3000:]
    killed = subprocess.Popen(detect_command(data, tmp_path / "run"), env=environment(),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        assert wait_for_checkpoint(tmp_path / "run" / "checkpoints", "ckpt-8", killed, 300)
        killed.send_signal(signal.SIGKILL)
        assert killed.wait(timeout=30) == -signal.SIGKILL
    finally:
        if killed.poll() is None:
            killed.kill()
    assert not (tmp_path / "run" / "final.keras").exists()
    resumed = subprocess.run(detect_command(data, tmp_path / "run", "--resume"), env=environment(),
                             capture_output=True, text=True, timeout=600)  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "step 8 (epoch 2, step 2 of 6)" in resumed.stdout
    one = keras.models.load_model(tmp_path / "whole" / "final.keras").get_weights()
    two = keras.models.load_model(tmp_path / "run" / "final.keras").get_weights()
    for a, b in zip(one, two):
        np.testing.assert_array_equal(a, b)
    history = [
        json.loads((tmp_path / run / "history.json").read_text()) for run in ("whole", "run")
    ]
    assert [h["val_mAP"] for h in history[0]] == [h["val_mAP"] for h in history[1]]


def test_a_coco_checkpoint_fine_tunes_on_three_classes():
    """The 80-class MMDetection checkpoint of the shared goldens on a 3-class dataset: every
    weight loaded but the classifier, which starts at MMDetection's prior (p = 0.01)."""
    checkpoint = REFERENCE_DIR / "dense" / "retinanet_lsnet_t.safetensors"
    detector = build_detector("lsnet_t", 3, (128, 128), finetune=str(checkpoint))
    state, _ = read_weights(str(checkpoint))
    head = detector.head
    np.testing.assert_array_equal(
        np.asarray(head.retina_reg.kernel),
        state["bbox_head.retina_reg.weight"].transpose(2, 3, 1, 0),
    )
    assert tuple(head.retina_cls.kernel.shape) == (3, 3, 256, 27)
    prior = -np.log((1 - PRIOR_PROBABILITY) / PRIOR_PROBABILITY)
    np.testing.assert_allclose(np.asarray(head.retina_cls.bias), prior, rtol=1e-6)
    assert float(np.std(np.asarray(head.retina_cls.kernel))) == pytest.approx(0.01, rel=0.05)
