"""Detector export: the `.tflite` files that end in TFLite_Detection_PostProcess, their structure
(builtins before the op, one XNNPACK partition, fully on the GPU, every op before the op on the
Edge TPU), their detections against MMDetection's goldens, and MediaPipe's ObjectDetector."""

import json
import subprocess

import numpy as np
import pytest
from dense_goldens import match_detections, retinanet_case, retinanet_weights
from PIL import Image
from test_detection import randomized, tiny_detector
from test_metadata import CONSUMERS, clean_env, consumer_python  # noqa: F401  (a fixture)

import lsnet_keras
from lsnet_keras.detection.coco import COCO_NAMES
from lsnet_keras.detection.postprocess import Detections
from lsnet_keras.errors import LSNetError
from lsnet_keras.litert.detector_export import export_detector, normalized_anchors
from lsnet_keras.litert.detector_metadata import packed_labels
from lsnet_keras.litert.detector_runtime import TFLiteDetector
from lsnet_keras.litert.edgetpu_check import check_edgetpu
from lsnet_keras.litert.graph import read_graph
from lsnet_keras.litert.xnnpack import xnnpack_partitions

POSTPROCESS = "CUSTOM:TFLite_Detection_PostProcess"


def assert_network_then_postprocess(path):
    """Builtins and at most 4-D before the op, the op last, one XNNPACK partition for the rest."""
    graph = read_graph(open(path, "rb").read())
    names = [op.name for op in graph.operators]
    assert names[-1] == POSTPROCESS and names.count(POSTPROCESS) == 1
    assert not [n for n in names[:-1] if n.startswith("CUSTOM")]
    assert graph.max_rank() <= 4
    report = xnnpack_partitions(open(path, "rb").read())
    assert report.partitions == 1 and report.outside == {"TFLite_Detection_PostProcess": 1}, (
        report.summary()
    )


def test_tiny_detector_export(tmp_path):
    model = randomized(tiny_detector())
    path = tmp_path / "tiny.tflite"
    export_detector(model, path, labels=["a", "b", "c"])
    assert_network_then_postprocess(path)
    assert packed_labels(path) == ["a", "b", "c"]
    detector = TFLiteDetector(path)
    found = detector.detect(np.random.default_rng(0).uniform(0, 255, (128, 128, 3)))
    assert found.boxes.shape[1] == 4 and len(found.boxes) <= 100
    assert ((found.boxes >= 0) & (found.boxes <= 128)).all()
    assert np.all(np.diff(found.scores) <= 0) and set(found.labels.tolist()) <= {0, 1, 2}


def test_anchors_are_ratios_of_the_input():
    anchors = normalized_anchors(lsnet_keras.lsnet_t_retinanet(input_shape=(64, 128)))
    first = anchors[0]  # level 0, location (0, 0), ratio 0.5, scale 4: 22.6 wide, 11.3 high
    assert first[:2].tolist() == [0.0, 0.0]
    np.testing.assert_allclose(first[2:] * [64, 128], [8 * 4 * 0.5**0.5, 8 * 4 * 2**0.5])


def test_a_classifier_is_not_a_detector(tmp_path):
    data = lsnet_keras.export_tflite(lsnet_keras.lsnet_t(num_classes=10, input_shape=64))
    (tmp_path / "classifier.tflite").write_bytes(data)
    with pytest.raises(LSNetError, match="not a detector"):
        TFLiteDetector(tmp_path / "classifier.tflite")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """LSNet-T RetinaNet (golden weights) at 320x320: every target's .tflite."""
    folder = tmp_path_factory.mktemp("detector")
    model = lsnet_keras.lsnet_t_retinanet(input_shape=320, weights=retinanet_weights())
    deployed = lsnet_keras.reparameterize(model)
    paths = {
        "fp32": folder / "fp32.tflite",
        "int8": folder / "int8.tflite",
        "edgetpu": folder / "edgetpu.tflite",
        "gpu_network": folder / "gpu_network.tflite",
    }
    export_detector(deployed, paths["fp32"])
    export_detector(model, paths["int8"], precision="int8")
    export_detector(model, paths["edgetpu"], precision="int8", target="edgetpu")
    export_detector(model, paths["gpu_network"], precision="fp16", target="gpu", network_only=True)
    return paths


def golden_pixels(size):
    case = retinanet_case(size)
    return case, np.asarray(Image.open(case["image"]).convert("RGB")).astype("float32")


@pytest.mark.slow
def test_fp32_detections_against_mmdetection(exported):
    """The op's post-processing differs from MMDetection's in two ways (no top-1000 per level
    before NMS, no clipping before NMS); on the 320x320 golden 98 of its 100 detections are
    the op's too (scores within 2e-6, boxes 5e-4 px), measured here."""
    case, pixels = golden_pixels((320, 320))
    found = TFLiteDetector(exported["fp32"]).detect(pixels)
    assert len(found.boxes) == 100
    unmatched, score_diff, box_diff = match_detections(
        found, case["boxes"], case["scores"], case["labels"]
    )
    assert unmatched <= 2 and score_diff <= 1e-5 and box_diff <= 1e-3


@pytest.mark.slow
def test_int8_and_edgetpu_structure(exported):
    assert_network_then_postprocess(exported["int8"])
    image = read_graph(open(exported["int8"], "rb").read())
    assert image.tensors[image.inputs[0]].dtype == "uint8"
    report = check_edgetpu(str(exported["edgetpu"]))
    blockers = [r.op for r in report.blockers]
    # The post-processing runs on the CPU (as in every SSD model for Coral): its float inputs
    # (two DEQUANTIZE) and the op itself are the only ops that do not map.
    assert sorted(blockers) == sorted(["DEQUANTIZE", "DEQUANTIZE", POSTPROCESS]), blockers


@pytest.mark.slow
def test_gpu_runs_the_network_fully(exported):
    from lsnet_keras.litert.gpu_check import check_gpu

    _, pixels = golden_pixels((320, 320))
    exact = check_gpu(str(exported["gpu_network"]), inputs=[pixels[None]], fp32=True)
    assert exact["error"] is None and exact["fully_accelerated"] and exact["ok"], exact
    assert exact["max_abs_diff"] <= 1e-4 * exact["output_scale"]
    # fp16 arithmetic (the GPU default, as on phones) moves this random-weight network's
    # outputs by about 2.4% of their scale (measured 0.049 of 2.07 on lavapipe).
    half = check_gpu(str(exported["gpu_network"]), inputs=[pixels[None]])
    assert half["fully_accelerated"] and half["max_abs_diff"] <= 0.05 * half["output_scale"]


@pytest.mark.slow
def test_mediapipe_object_detector(exported, consumer_python, tmp_path):  # noqa: F811
    """MediaPipe Tasks' ObjectDetector reads the fp32 and int8 models as they are: the boxes
    (pixels), names and scores of LiteRT's run of the same model."""
    _, pixels = golden_pixels((320, 320))
    np.save(tmp_path / "image.npy", pixels.astype("uint8"))
    paths = [str(exported["fp32"]), str(exported["int8"])]
    command = [str(consumer_python), str(CONSUMERS / "mediapipe_detect.py")]
    command += ["--image", str(tmp_path / "image.npy"), "--output", str(tmp_path / "mp.json")]
    done = subprocess.run(
        command + paths, capture_output=True, text=True, timeout=600, env=clean_env()
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((tmp_path / "mp.json").read_text())["results"]
    for path in paths:
        assert "error" not in results[path], results[path]
        found = results[path]["detections"]
        ours = TFLiteDetector(path).detect(pixels, score_threshold=0.05)
        assert len(found) >= 0.9 * len(ours.boxes) and len(found) >= 50
        boxes = np.array([[x, y, x + w, y + h] for x, y, w, h in (d["box"] for d in found)])
        labels = np.array([COCO_NAMES.index(d["category_name"]) for d in found])
        theirs = Detections(boxes.astype("float32"), np.array([d["score"] for d in found]), labels)
        # each of MediaPipe's detections is one of LiteRT's (int8 scores tie, so not by rank);
        # MediaPipe's pixel boxes are whole pixels (origin and size rounded down), not clipped;
        # one passing the top or left edge gets origin 0 and keeps its full size: left out
        inside = (theirs.boxes[:, 0] > 0) & (theirs.boxes[:, 1] > 0)
        assert inside.sum() >= 0.8 * len(found)
        theirs = Detections(*(field[inside] for field in theirs))
        theirs = theirs._replace(boxes=np.clip(theirs.boxes, 0, 320))
        unmatched, score_diff, box_diff = match_detections(
            ours, theirs.boxes, theirs.scores, theirs.labels, within=2.0
        )
        assert unmatched == 0 and score_diff <= 1e-5 and box_diff <= 2.0
