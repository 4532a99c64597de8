"""The Semantic FPN-LSNet segmenter: head, weight mapping, deploy form, saving, and parity with
the goldens MMSegmentation 0.30.0 made (../shared/reference/dense)."""

import keras
import numpy as np
import pytest
import torch
from dense_goldens import SEMFPN_SIZES, retinanet_weights, semfpn_case, semfpn_weights
from goldens import REFERENCE_DIR
from test_detection import randomized

import lsnet_keras
from lsnet_keras.model.fpn_head import upsample_bilinear
from lsnet_keras.model.loading import model_from_checkpoint
from lsnet_keras.model.semantic_fpn import class_map
from lsnet_keras.segmentation.ade20k import ade20k_labels, ade20k_palette
from lsnet_keras.weights.checkpoint import CheckpointError

TINY = {"embed_dim": (32, 64, 96, 128), "depth": (1, 1, 1, 2), "num_heads": (2, 2, 2, 2)}


def tiny_segmenter(**kwargs):
    return lsnet_keras.LSNetSemanticFPN(**TINY, num_classes=5, **kwargs)


def logits(model, x):
    return np.asarray(model(x))


@pytest.fixture(scope="module")
def tiny():
    return randomized(tiny_segmenter(input_shape=(128, 96)))


@pytest.fixture(scope="module")
def tiny_input():
    return np.random.default_rng(1).standard_normal((1, 128, 96, 3)).astype("float32")


def test_logits_at_one_eighth(tiny, tiny_input):
    assert logits(tiny, tiny_input).shape == (1, 16, 12, 5)
    assert tiny.segment(tiny_input).shape == (1, 128, 96)


def test_state_dict_is_mmsegmentations_and_round_trips(tiny, tiny_input):
    state = lsnet_keras.export_state_dict(tiny)
    head = sorted(k.removeprefix("decode_head.") for k in state if k.startswith("decode_head."))
    convs = {k.rsplit(".", 2)[0] for k in head if k.startswith("scale_heads")}
    # the nn.Sequential indices: ConvModules at 0, 2, 4 (Upsample modules between)
    assert convs == {
        f"scale_heads.{i}.{j}" for i, js in enumerate([[0], [0], [0, 2], [0, 2, 4]]) for j in js
    }
    assert state["decode_head.scale_heads.3.4.conv.weight"].shape == (128, 128, 3, 3)
    assert "decode_head.scale_heads.0.0.conv.bias" not in state  # no bias before BatchNorm
    assert state["decode_head.conv_seg.weight"].shape == (5, 128, 1, 1)
    assert "neck.fpn_convs.3.conv.weight" in state and "neck.fpn_convs.4.conv.weight" not in state
    other = tiny_segmenter(input_shape=(128, 96))
    lsnet_keras.load_weights(other, state, source="exported")
    assert np.array_equal(logits(tiny, tiny_input), logits(other, tiny_input))


def test_deploy_form_and_keras_file(tiny, tiny_input, tmp_path):
    deployed = lsnet_keras.reparameterize(tiny)
    expected = logits(tiny, tiny_input)
    found = logits(deployed, tiny_input)
    assert deployed.deploy and np.abs(found - expected).max() <= 1e-5 * np.abs(expected).max()
    deployed.save(tmp_path / "seg.keras")
    loaded = keras.models.load_model(tmp_path / "seg.keras")
    assert type(loaded) is lsnet_keras.LSNetSemanticFPN and loaded.num_classes == 5
    assert np.array_equal(found, logits(loaded, tiny_input))


@pytest.mark.parametrize("source, target", [(5, 10), (6, 11), (12, 11), (48, 44), (3, 24)])
def test_bilinear_resize_is_torch_bilinear(source, target, float64_policy):
    """The head's 2x upsamples, its resize of an overshooting level (48 -> 44 at 352 px) and
    the class map's resize to the image: PyTorch's bilinear, align_corners False, exactly in
    float64 (matrix form) and to float32 rounding in the graph's RESIZE_BILINEAR."""
    x = np.random.default_rng(source).standard_normal((1, source, source + 1, 3))
    expected = (
        torch.nn.functional.interpolate(
            torch.from_numpy(x).permute(0, 3, 1, 2),
            (target, target + 2),
            mode="bilinear",
            align_corners=False,
        )
        .permute(0, 2, 3, 1)
        .numpy()
    )
    assert np.abs(np.asarray(upsample_bilinear(x, target, target + 2)) - expected).max() <= 1e-13
    found = np.asarray(upsample_bilinear(x.astype("float32"), target, target + 2))
    assert np.abs(found - expected).max() <= 2e-5  # TensorFlow's float32 weights


def test_sizes_whose_levels_overshoot():
    """At 352 px the levels are 44, 22, 11, 6: the coarsest one, upsampled three times, is 48
    and is resized to 44 as MMSegmentation does."""
    model = tiny_segmenter(input_shape=352)
    assert model.logits_size() == (44, 44)


def test_sizes_not_multiples_of_32_refused():
    with pytest.raises(ValueError, match="multiples of 32"):
        lsnet_keras.lsnet_t_semfpn(input_shape=(320, 300))


def test_task_mismatch_named():
    with pytest.raises(CheckpointError, match="RetinaNet detector checkpoint, but the model"):
        lsnet_keras.load_weights(tiny_segmenter(input_shape=64), retinanet_weights(), "det")
    detector = lsnet_keras.LSNetRetinaNet(**TINY, num_classes=3, input_shape=64)
    with pytest.raises(CheckpointError, match="Semantic FPN segmenter checkpoint, but"):
        lsnet_keras.load_weights(detector, semfpn_weights(), source="seg")
    with pytest.raises(CheckpointError, match="classifier checkpoint, but the model"):
        lsnet_keras.load_weights(
            tiny_segmenter(input_shape=64), str(REFERENCE_DIR / "tiny_128.safetensors")
        )


def test_ade20k_classes_and_colors():
    labels, palette = ade20k_labels(), ade20k_palette()
    assert len(labels) == len(set(labels)) == 150 and labels[:2] == ["wall", "building"]
    assert palette.shape == (150, 3) and palette[0].tolist() == [120, 120, 120]


def test_class_map_of_logits():
    rng = np.random.default_rng(0)
    found = class_map(rng.standard_normal((2, 4, 6, 7)), (32, 48))
    assert found.shape == (2, 32, 48) and found.dtype == np.int32 and found.max() < 7


@pytest.mark.parametrize("size", SEMFPN_SIZES)
def test_lsnet_t_semfpn_equals_mmsegmentation(size):
    """Logits within float32 rounding (1e-5 of their scale); the class map equal on every
    pixel but those whose top-2 margin is below 1e-3 (none differ on the goldens); the deploy
    form (BN folded) within 3e-5."""
    case = semfpn_case(size)
    model = lsnet_keras.lsnet_t_semfpn(input_shape=size, weights=semfpn_weights())
    found = logits(model, case["input"])
    scale = np.abs(case["logits"]).max()
    assert np.abs(found - case["logits"]).max() <= 1e-5 * scale
    for candidate in (model, lsnet_keras.reparameterize(model)):
        differ = candidate.segment(case["input"])[0] != case["class_map"]
        assert not (differ & (case["margin"] >= 1e-3)).any()
    deployed = logits(lsnet_keras.reparameterize(model), case["input"])
    assert np.abs(deployed - case["logits"]).max() <= 3e-5 * scale


@pytest.mark.slow
def test_lsnet_t_semfpn_float64(float64_policy):
    """float64 Keras sits within the goldens' own float32 rounding of them (1e-5 of the scale:
    float32 Keras is 5e-6 off them; MMSegmentation in float64 is the 1e-7 check)."""
    case = semfpn_case((256, 384))
    model = lsnet_keras.lsnet_t_semfpn(input_shape=(256, 384), weights=semfpn_weights())
    found = logits(model, case["input"].astype("float64"))
    assert np.abs(found - case["logits"]).max() <= 1e-5 * np.abs(case["logits"]).max()


@pytest.mark.slow
def test_convert_recognizes_a_segmentation_checkpoint(tmp_path):
    from lsnet_keras.cli import main

    checkpoint = str(REFERENCE_DIR / "dense" / "semfpn_lsnet_t.safetensors")
    model = model_from_checkpoint(checkpoint, input_shape=(256, 384))
    assert model.name == "lsnet_t_semfpn" and model.num_classes == 150
    output = tmp_path / "seg.keras"
    argv = ["convert", "--weights", checkpoint, "--output", str(output), "--img-size", "256"]
    assert main(argv + ["384", "--deploy"]) == 0
    loaded = keras.models.load_model(output)
    assert type(loaded) is lsnet_keras.LSNetSemanticFPN and loaded.deploy
    assert loaded.input_shape == (None, 256, 384, 3)
    assert main(argv + ["300", "--force"]) == 2  # not a multiple of 32
    assert main(argv + ["384"]) == 2  # exists, no --force
