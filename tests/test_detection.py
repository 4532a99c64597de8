"""The RetinaNet-LSNet detector: parts, weight mapping, deploy form, saving, and parity with the
goldens MMDetection 2.28.2 made (../shared/reference/dense)."""

import keras
import numpy as np
import pytest
import torch
from dense_goldens import RETINANET_SIZES, match_detections, retinanet_case, retinanet_weights
from goldens import REFERENCE_DIR

import lsnet_keras
from lsnet_keras.detection import RETINANET, level_anchors, postprocess
from lsnet_keras.model.attention import Attention
from lsnet_keras.model.fpn import upsample_nearest
from lsnet_keras.model.loading import model_from_checkpoint
from lsnet_keras.weights.checkpoint import CheckpointError

TINY = {"embed_dim": (32, 64, 96, 128), "depth": (1, 1, 1, 2), "num_heads": (2, 2, 2, 2)}


def tiny_detector(**kwargs):
    return lsnet_keras.LSNetRetinaNet(**TINY, num_classes=3, input_shape=128, **kwargs)


def randomized(model, seed=0):
    """The model with every weight random (BN statistics positive), so no output is trivial."""
    rng = np.random.default_rng(seed)
    for variable in model.weights:
        shape = tuple(variable.shape)
        if "variance" in variable.path:
            variable.assign(rng.uniform(0.5, 1.5, shape).astype(variable.dtype))
        else:
            variable.assign((rng.standard_normal(shape) * 0.1).astype(variable.dtype))
    return model


def outputs(model, x):
    return {k: np.asarray(v) for k, v in model(x).items()}


def max_diff(a, b):
    return max(float(np.abs(a[k] - b[k]).max()) for k in a)


def relative_diff(a, b):
    """The largest difference of two output dicts, relative to each output's scale."""
    return max(float(np.abs(a[k] - b[k]).max() / np.abs(a[k]).max()) for k in a)


@pytest.fixture(scope="module")
def tiny():
    return randomized(tiny_detector())


@pytest.fixture(scope="module")
def tiny_input():
    return np.random.default_rng(1).standard_normal((1, 128, 128, 3)).astype("float32")


def test_output_levels(tiny, tiny_input):
    found = outputs(tiny, tiny_input)
    assert [found[f"cls_score_{i}"].shape[1] for i in range(5)] == [16, 8, 4, 2, 1]
    assert found["cls_score_0"].shape[-1] == 9 * 3 and found["bbox_pred_0"].shape[-1] == 36


def test_state_dict_round_trip(tiny, tiny_input):
    state = lsnet_keras.export_state_dict(tiny)
    assert {key.split(".")[0] for key in state} == {"backbone", "neck", "bbox_head"}
    assert state["backbone.blocks4.3.mixer.m.attention_biases"].shape == (2, 196)
    assert state["neck.fpn_convs.4.conv.weight"].shape == (256, 128, 3, 3)
    other = tiny_detector()
    lsnet_keras.load_weights(other, state, source="exported")
    assert max_diff(outputs(tiny, tiny_input), outputs(other, tiny_input)) == 0.0


def test_deploy_form_and_keras_file(tiny, tiny_input, tmp_path):
    deployed = lsnet_keras.reparameterize(tiny)
    expected = outputs(tiny, tiny_input)
    assert deployed.deploy and relative_diff(expected, outputs(deployed, tiny_input)) <= 1e-5
    deployed.save(tmp_path / "det.keras")
    loaded = keras.models.load_model(tmp_path / "det.keras")
    assert type(loaded) is lsnet_keras.LSNetRetinaNet
    assert max_diff(outputs(deployed, tiny_input), outputs(loaded, tiny_input)) == 0.0


def test_sizes_not_multiples_of_32_refused():
    with pytest.raises(ValueError, match="multiples of 32"):
        lsnet_keras.lsnet_t_retinanet(input_shape=(320, 300))


def test_task_mismatch_named():
    detector = tiny_detector()
    with pytest.raises(CheckpointError, match="classifier checkpoint, but the model"):
        lsnet_keras.load_weights(detector, str(REFERENCE_DIR / "tiny_128.safetensors"))
    classifier = lsnet_keras.lsnet_t(input_shape=64)
    with pytest.raises(CheckpointError, match="RetinaNet detector checkpoint"):
        lsnet_keras.load_weights(classifier, retinanet_weights(), source="retinanet")


def test_imagenet_backbone_weights_resize_the_bias_table():
    """A classification checkpoint starts a detector's backbone: its 4x4 stage-4 table is
    resized to the 14x14 detection grid, as the official init_weights does."""
    detector = lsnet_keras.lsnet_t_retinanet(
        input_shape=64, backbone_weights=str(REFERENCE_DIR / "lsnet_t_224.safetensors")
    )
    table = detector.backbone.get_layer("blocks4_3").mixer.attention_biases
    assert tuple(table.shape) == (4, 196) and float(np.abs(np.asarray(table)).max()) > 0


def test_expanded_bias_is_torch_bicubic():
    """The detection form's bias: the (heads, 196, 196) expansion resized to the token grid as
    torch.nn.functional.interpolate(mode='bicubic') (align_corners False) does in float64
    (in float32 PyTorch computes the source positions in float32, 1e-5 off)."""
    layer = Attention(64, 16, 2, resolution=(4, 6), table_resolution=(14, 14))
    layer.build((1, 4, 6, 64))
    table = np.random.default_rng(0).standard_normal((2, 196)).astype("float32")
    layer.attention_biases.assign(table)
    expanded = torch.from_numpy(table).double()[:, torch.from_numpy(layer.bias_index).long()]
    expected = torch.nn.functional.interpolate(expanded[None], size=(24, 24), mode="bicubic")
    assert np.abs(np.asarray(layer.expanded_bias()) - expected[0].numpy()).max() <= 1e-6


@pytest.mark.parametrize("size", [4, 5, 11])
def test_nearest_upsampling_is_torch_nearest(size):
    coarse = (size + 1) // 2
    x = np.random.default_rng(0).standard_normal((1, coarse, coarse + 1, 2)).astype("float32")
    expected = torch.nn.functional.interpolate(
        torch.from_numpy(x).permute(0, 3, 1, 2), size=(size, size + 2), mode="nearest"
    )
    found = np.asarray(upsample_nearest(x, size, size + 2))
    assert np.array_equal(found, expected.permute(0, 2, 3, 1).numpy())


@pytest.mark.parametrize("size", RETINANET_SIZES)
def test_anchors_equal_mmdetection(size):
    case = retinanet_case(size)
    for level, expected in enumerate(case["anchors"]):
        h, w = case["cls_scores"][level].shape[1:3]
        assert np.array_equal(level_anchors(RETINANET, level, h, w), expected)


@pytest.mark.parametrize("size", RETINANET_SIZES)
def test_postprocess_equals_mmdetection(size):
    """MMDetection's own raw outputs through our post-processing give its detections."""
    case = retinanet_case(size)
    found = postprocess(case["cls_scores"], case["bbox_preds"], size)
    assert len(found.boxes) == len(case["boxes"]) == case["meta"]["num_detections"]
    unmatched, score_diff, box_diff = match_detections(
        found, case["boxes"], case["scores"], case["labels"]
    )
    assert unmatched == 0 and score_diff <= 1e-6 and box_diff <= 1e-4


@pytest.mark.slow
@pytest.mark.parametrize("size", RETINANET_SIZES)
def test_lsnet_t_retinanet_equals_mmdetection(size):
    """Raw outputs within float32 rounding (1e-5 of their scale), detections matched: scores
    within 1e-5, boxes within 1e-3 px; the deploy form (BN folded, which moves float32
    rounding as the classifier's fusion does) within 3e-3 px."""
    case = retinanet_case(size)
    model = lsnet_keras.lsnet_t_retinanet(input_shape=size, weights=retinanet_weights())
    found = outputs(model, case["input"])
    for level in range(5):
        for name in ("cls_scores", "bbox_preds"):
            key = f"{name[:-1]}_{level}"
            expected = case[name][level]
            assert np.abs(found[key] - expected).max() <= 1e-5 * np.abs(expected).max()
    for candidate, box_bound in ((model, 1e-3), (lsnet_keras.reparameterize(model), 3e-3)):
        detections = candidate.detect(case["input"])[0]
        assert len(detections.boxes) == len(case["boxes"])
        unmatched, score_diff, box_diff = match_detections(
            detections, case["boxes"], case["scores"], case["labels"]
        )
        assert unmatched == 0 and score_diff <= 1e-5 and box_diff <= box_bound


@pytest.mark.slow
def test_lsnet_t_retinanet_float64(float64_policy):
    """float64 Keras sits within the goldens' own float32 rounding of them (5e-6 relative;
    PyTorch's float32 bicubic resize of the bias alone moves it by 1e-5 absolute)."""
    case = retinanet_case((256, 384))
    model = lsnet_keras.lsnet_t_retinanet(input_shape=(256, 384), weights=retinanet_weights())
    found = outputs(model, case["input"].astype("float64"))
    for level in range(5):
        expected = case["cls_scores"][level]
        assert np.abs(found[f"cls_score_{level}"] - expected).max() <= 5e-6 * np.abs(expected).max()


@pytest.mark.slow
def test_convert_recognizes_a_detection_checkpoint(tmp_path):
    from lsnet_keras.cli import main

    checkpoint = str(REFERENCE_DIR / "dense" / "retinanet_lsnet_t.safetensors")
    model = model_from_checkpoint(checkpoint, input_shape=(256, 384))
    assert model.name == "lsnet_t_retinanet" and model.num_classes == 80
    output = tmp_path / "det.keras"
    argv = ["convert", "--weights", checkpoint, "--output", str(output), "--img-size", "256"]
    assert main(argv + ["384", "--deploy"]) == 0
    assert keras.models.load_model(output).input_shape == (None, 256, 384, 3)
    assert main(argv + ["300", "--force"]) == 2  # not a multiple of 32
