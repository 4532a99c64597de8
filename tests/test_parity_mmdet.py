"""The detector against MMDetection 2.28.2 itself, for sizes and variants the shared goldens lack.

The reference runs in its own virtualenv (tests/mmdet_reference/build_env.sh builds it once
under ~/.cache/lsnet-keras, from PyPI and the locked wheels, nothing fetched at test time):
MMDetection's real ``RetinaNet``, ``RetinaHead`` and ``simple_test`` (anchors, top-k, decoding,
mmcv's own CPU NMS kernel) behind the tests' PyTorch rendering of the official detection
backbone and neck (tests/torch_lsnet_dense.py). That rendering is checked first: on the shared
goldens' weights it reproduces the goldens bit for bit, so it is the official code's.

Each case draws its own random but well-behaved weights (``random_detector_state``) and a
synthetic picture; odd feature sizes (352: 11 and 3 at strides 32 and 128), a tall and a wide
input, and the S and B variants. Everything runs in one reference process, in float32 and in
float64.
"""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from dense_goldens import RETINANET_SIZES, match_detections, retinanet_case, retinanet_weights
from torch_lsnet_dense import random_detector_state, synthetic_images

from lsnet_keras.model.retinanet import DETECTOR_BUILDERS

pytestmark = pytest.mark.slow

REFERENCE = Path(__file__).resolve().parent / "mmdet_reference"
LEVELS = 5
CASES = {  # name: (variant, (H, W), seed)
    "t_352": ("lsnet_t", (352, 352), 11),
    "t_320x448": ("lsnet_t", (320, 448), 12),
    "s_256x320": ("lsnet_s", (256, 320), 13),
    "b_288x224": ("lsnet_b", (288, 224), 14),
}
DTYPES = ("float32", "float64")


def mmdet_python():
    """The reference virtualenv's python (built on first use, a few minutes)."""
    result = subprocess.run(
        ["bash", str(REFERENCE / "build_env.sh"), sys.executable],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        pytest.fail(f"the MMDetection reference environment did not build:\n{result.stderr}")
    return result.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """{name: (state, NCHW input, size, {key: MMDetection output})} for CASES and the goldens."""
    folder = tmp_path_factory.mktemp("mmdet")
    cases, manifest = {}, []
    for name, (variant, size, seed) in CASES.items():
        cases[name] = (
            variant,
            random_detector_state(variant, size, seed),
            synthetic_images(size, seed),
        )
    for size in RETINANET_SIZES:
        golden = retinanet_case(size)["input"].transpose(0, 3, 1, 2)
        cases[f"golden_{size[0]}x{size[1]}"] = ("lsnet_t", retinanet_weights(), golden)
    for name, (variant, state, image) in cases.items():
        state_arrays = {f"state/{key}": value for key, value in state.items()}
        np.savez(folder / f"{name}.in.npz", input=image, **state_arrays)
        manifest.append(
            {
                "name": name,
                "variant": variant,
                "input": str(folder / f"{name}.in.npz"),
                "output": str(folder / f"{name}.out.npz"),
                "dtypes": list(DTYPES if name in CASES else ("float32",)),
            }
        )
    (folder / "manifest.json").write_text(json.dumps({"cases": manifest}))
    command = [mmdet_python(), str(REFERENCE / "run_mmdet.py"), str(folder / "manifest.json")]
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    return {
        name: (variant, state, image, dict(np.load(folder / f"{name}.out.npz")))
        for name, (variant, state, image) in cases.items()
    }


def raw(outputs, dtype, level, name):
    return outputs[f"{dtype}/{name}_{level}"].transpose(0, 2, 3, 1)


@pytest.mark.parametrize("size", RETINANET_SIZES)
def test_reference_is_the_official_detector(reference, size):
    """The rendering in MMDetection reproduces the shared goldens exactly (float32)."""
    outputs = reference[f"golden_{size[0]}x{size[1]}"][3]
    golden = retinanet_case(size)
    for level in range(LEVELS):
        np.testing.assert_array_equal(
            raw(outputs, "float32", level, "cls_score"), golden["cls_scores"][level]
        )
        np.testing.assert_array_equal(
            raw(outputs, "float32", level, "bbox_pred"), golden["bbox_preds"][level]
        )
    np.testing.assert_array_equal(outputs["float32/det_boxes"], golden["boxes"])
    np.testing.assert_array_equal(outputs["float32/det_scores"], golden["scores"])
    np.testing.assert_array_equal(outputs["float32/det_labels"], golden["labels"])


def keras_detector(variant, state, size):
    return DETECTOR_BUILDERS[f"{variant}_retinanet"](input_shape=size, weights=state)


def scale(outputs, dtype, key):
    return float(np.abs(outputs[f"{dtype}/{key}"]).max())


@pytest.mark.parametrize("name", CASES)
def test_float32_equals_mmdetection(reference, name):
    """Raw outputs within float32 rounding (5e-5 of each output's scale: 2.2e-5 seen, and
    TensorFlow's threaded convolutions change the last bits from run to run); MMDetection's
    detections all found: same count, each matched by label and box, scores within 1e-5,
    boxes within 5e-3 px (that rounding of the deltas times boxes up to 150 px: 3e-3 px seen).
    The float64 test below is the tight one."""
    variant, state, image, outputs = reference[name]
    model = keras_detector(variant, state, image.shape[2:])
    x = image.transpose(0, 2, 3, 1)
    found = {k: np.asarray(v) for k, v in model(x).items()}
    for level in range(LEVELS):
        for key in ("cls_score", "bbox_pred"):
            expected = raw(outputs, "float32", level, key)
            bound = 5e-5 * scale(outputs, "float32", f"{key}_{level}")
            assert np.abs(found[f"{key}_{level}"] - expected).max() <= bound, (key, level)
    detections = model.detect(x)[0]
    boxes, scores = outputs["float32/det_boxes"], outputs["float32/det_scores"]
    assert len(detections.boxes) == len(boxes) > 20
    unmatched, score_diff, box_diff = match_detections(
        detections, boxes, scores, outputs["float32/det_labels"]
    )
    assert unmatched == 0 and score_diff <= 1e-5 and box_diff <= 5e-3


@pytest.mark.parametrize("name", CASES)
def test_float64_equals_mmdetection(reference, name, float64_policy):
    """float64 Keras within 1e-7 of each output's scale of MMDetection run in float64, and
    its detections MMDetection's: scores within 1e-6, boxes within 3e-4 px (``detect`` decodes
    in float32, as MMDetection's float32 path: a few float32 steps at 448 px)."""
    variant, state, image, outputs = reference[name]
    model = keras_detector(variant, state, image.shape[2:])
    found = {
        k: np.asarray(v) for k, v in model(image.transpose(0, 2, 3, 1).astype("float64")).items()
    }
    for level in range(LEVELS):
        for key in ("cls_score", "bbox_pred"):
            expected = raw(outputs, "float64", level, key)
            bound = 1e-7 * scale(outputs, "float64", f"{key}_{level}")
            assert np.abs(found[f"{key}_{level}"] - expected).max() <= bound, (key, level)
    detections = model.detect(image.transpose(0, 2, 3, 1).astype("float64"))[0]
    assert len(detections.boxes) == len(outputs["float64/det_boxes"])
    unmatched, score_diff, box_diff = match_detections(
        detections,
        outputs["float64/det_boxes"],
        outputs["float64/det_scores"],
        outputs["float64/det_labels"],
    )
    assert unmatched == 0 and score_diff <= 1e-6 and box_diff <= 3e-4
