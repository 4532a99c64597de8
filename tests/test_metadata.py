"""TFLite metadata: written by `lsnet_keras.litert.metadata`, read back, and consumed as is by the
`ImageClassifier` of MediaPipe Tasks and of the TFLite Task Library.

The consumers run in their own virtualenv (`consumer_python`): tflite-support pins protobuf<4,
which TensorFlow 2.21 (protobuf>=6.31) cannot share, and mediapipe brings OpenCV. It is built
once under ~/.cache/lsnet-keras and reused; if it cannot be built or run, the test fails.
"""

import json
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import flatbuffers
import keras
import numpy as np
import pytest
import tensorflow as tf

from lsnet_keras.config import IMAGENET_MEAN, IMAGENET_STD
from lsnet_keras.errors import LSNetError
from lsnet_keras.litert.labels import imagenet_labels, labels_for
from lsnet_keras.litert.metadata import (
    KEEP_ALL_SCORES,
    MetadataError,
    add_classifier_metadata,
    read_metadata,
    schema,
)

CONSUMERS = Path(__file__).parent / "consumers"
CONSUMER_REQUIREMENTS = ["mediapipe==1.2.3", "tflite-support==0.4.4", "libusb-package==1.0.30.0"]
PIXEL_MEAN = tuple(255.0 * m for m in IMAGENET_MEAN)
PIXEL_STD = tuple(255.0 * s for s in IMAGENET_STD)
SIZE = 32
# name: (metadata mean, std, what the TFLite interpreter is fed for a uint8 image)
VARIANTS = {
    "float_imagenet": (
        PIXEL_MEAN,
        PIXEL_STD,
        lambda x: (x - np.float32(PIXEL_MEAN)) / np.float32(PIXEL_STD),
    ),
    "float_uniform": ((127.5,), (127.5,), lambda x: (x - np.float32(127.5)) / np.float32(127.5)),
    "uint8": ((0.0,), (1.0,), None),  # full-integer, uint8 in and out, fed the pixels as is
}


def tiny_classifiers():
    """Keras models for each variant: one classifier (conv, pooling, 1000 logits) behind the
    input each variant takes: ImageNet-normalized, (pixel - 127.5) / 127.5, or pixels."""
    keras.utils.set_random_seed(0)
    core = keras.Sequential(
        [
            keras.Input((SIZE, SIZE, 3)),
            keras.layers.Conv2D(16, 3, strides=2, activation="relu"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(1000),
        ]
    )
    std = np.float32(PIXEL_STD)

    def behind(*front):
        image = keras.Input((SIZE, SIZE, 3))
        x = image
        for layer in front:
            x = layer(x)
        return keras.Model(image, core(x))

    pixels = keras.layers.Normalization(mean=np.float32(PIXEL_MEAN), variance=std**2)
    return {
        "float_imagenet": core,
        "float_uniform": behind(keras.layers.Rescaling(127.5, offset=127.5), pixels),
        "uint8": behind(pixels),
    }


def to_tflite(model, full_integer):
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if full_integer:

        def representative():
            rng = np.random.default_rng(1)
            for _ in range(8):
                pixels = rng.integers(0, 256, (1, SIZE, SIZE, 3)).astype("float32")
                pixels[0, 0, 0] = (0, 255, 0)  # the full 0..255 range: input scale 1, zero 0
                yield [pixels]

        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.uint8
        converter.inference_output_type = tf.uint8
    return converter.convert()


@pytest.fixture(scope="module")
def image():
    return np.random.default_rng(2).integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """{variant: (path of the model with metadata, its bytes, bytes without metadata)}."""
    folder = tmp_path_factory.mktemp("metadata")
    out = {}
    for name, model in tiny_classifiers().items():
        plain = to_tflite(model, full_integer=name == "uint8")
        mean, std, _ = VARIANTS[name]
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # all three fit MediaPipe or the Task Library
            tagged = add_classifier_metadata(
                plain,
                imagenet_labels(),
                mean,
                std,
                name=f"tiny {name}",
                description="A test model.",
            )
        (folder / f"{name}.tflite").write_bytes(tagged)
        out[name] = (folder / f"{name}.tflite", tagged, plain)
    return out


def interpreter_scores(model_bytes, image, feed):
    """Dequantized scores of the TFLite interpreter, fed the image as the consumers feed it."""
    interpreter = tf.lite.Interpreter(model_content=model_bytes)
    interpreter.allocate_tensors()
    x = image[None] if feed is None else feed(image[None].astype(np.float32)).astype(np.float32)
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
    interpreter.invoke()
    output = interpreter.get_output_details()[0]
    scores = interpreter.get_tensor(output["index"])[0].astype(np.float64)
    scale, zero = output["quantization"]
    return (scale * (scores - zero), scale) if scale else (scores, 0.0)


def test_imagenet_labels():
    labels = imagenet_labels()
    assert len(labels) == 1000
    assert labels[:3] == ["tench", "goldfish", "great white shark"]
    assert labels[281] == "tabby" and labels[999] == "toilet tissue"
    assert all(label and label == label.strip() for label in labels)
    assert len(set(labels)) == 998  # WordNet names two synsets "crane" and two "maillot"


@pytest.mark.parametrize("name", list(VARIANTS))
def test_read_back(models, name):
    _, tagged, _ = models[name]
    info = read_metadata(tagged)
    mean, std, _ = VARIANTS[name]
    assert info["mean"] == pytest.approx(mean) and info["std"] == pytest.approx(std)
    assert info["labels"] == imagenet_labels()
    assert info["labels_file"] == "labels.txt" and info["associated_files"] == ["labels.txt"]
    assert (info["name"], info["description"]) == (f"tiny {name}", "A test model.")
    assert (info["input_name"], info["output_name"], info["color_space"]) == (
        "image",
        "logits",
        "RGB",
    )
    assert "1000 classes" in info["output_description"]
    assert info["score_threshold"] == KEEP_ALL_SCORES
    assert info["min_parser_version"] == "1.0.0"


def test_metadata_leaves_the_model_as_it_was(models, image):
    """Same tensors and outputs; metadata written again is replaced, not added twice."""
    _, tagged, plain = models["uint8"]
    assert np.array_equal(
        interpreter_scores(tagged, image, None)[0], interpreter_scores(plain, image, None)[0]
    )
    again = add_classifier_metadata(tagged, ["x"] * 1000, name="again")
    info = read_metadata(again)
    assert (info["name"], info["labels"][:2], info["associated_files"]) == (
        "again",
        ["x", "x"],
        ["labels.txt"],
    )
    model = schema.ModelT.InitFromPackedBuf(bytearray(again), 0)
    assert [m.name for m in model.metadata].count(b"TFLITE_METADATA") == 1


def test_crop_fraction_entry(models):
    """The app's crop rides in its own metadata entry, written once, replaced when written again."""
    _, _, plain = models["uint8"]
    labels = imagenet_labels()
    assert read_metadata(add_classifier_metadata(plain, labels))["crop_fraction"] is None
    tagged = add_classifier_metadata(plain, labels, crop_fraction=0.875)
    assert read_metadata(tagged)["crop_fraction"] == 0.875
    again = add_classifier_metadata(tagged, labels, crop_fraction=0.9)
    assert read_metadata(again)["crop_fraction"] == 0.9
    model = schema.ModelT.InitFromPackedBuf(bytearray(again), 0)
    assert [m.name for m in model.metadata].count(b"lsnet_preprocessing") == 1
    entry = next(m for m in model.metadata if m.name == b"lsnet_preprocessing")
    assert bytes(model.buffers[entry.buffer].data) == b"crop_fraction=0.9\nresample=bicubic\n"
    with pytest.raises(MetadataError, match="crop fraction must be in"):
        add_classifier_metadata(plain, labels, crop_fraction=1.5)


def test_labels_for(models, tmp_path):
    """`lsnet predict`'s labels: --labels, else the model's, else ImageNet for 1000 classes."""
    _, _, plain = models["uint8"]
    (tmp_path / "plain.tflite").write_bytes(plain)
    names = [f"c{i}" for i in range(1000)]
    (tmp_path / "tagged.tflite").write_bytes(add_classifier_metadata(plain, names))
    (tmp_path / "mine.txt").write_text("a\nb\n")
    assert labels_for(tmp_path / "tagged.tflite", 1000) == names
    assert labels_for(tmp_path / "plain.tflite", 1000) == imagenet_labels()
    assert labels_for(tmp_path / "plain.tflite", 3) == ["class 0", "class 1", "class 2"]
    assert labels_for(tmp_path / "tagged.tflite", 2, tmp_path / "mine.txt") == ["a", "b"]
    with pytest.raises(LSNetError, match="2 labels for 1000 classes"):
        labels_for(tmp_path / "tagged.tflite", 1000, tmp_path / "mine.txt")


def with_input(model_bytes, tensor_type=None, scale=None):
    """The model with its input tensor's type or quantization scale changed (not runnable)."""
    model = schema.ModelT.InitFromPackedBuf(bytearray(model_bytes), 0)
    tensor = model.subgraphs[0].tensors[model.subgraphs[0].inputs[0]]
    if tensor_type is not None:
        tensor.type = tensor_type
    if scale is not None:
        tensor.quantization.scale = np.float32([scale])
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def test_refusals_and_warnings(models):
    labels = imagenet_labels()
    _, _, float_model = models["float_imagenet"]
    _, _, uint8_model = models["uint8"]
    with pytest.raises(MetadataError, match="999 labels for 1000"):
        add_classifier_metadata(float_model, labels[:-1], PIXEL_MEAN, PIXEL_STD)
    with pytest.raises(MetadataError, match="needs the mean and std"):
        add_classifier_metadata(float_model, labels)
    with pytest.raises(MetadataError, match="1 or 3 values"):
        add_classifier_metadata(float_model, labels, PIXEL_MEAN, (58.0, 57.0))
    with pytest.raises(MetadataError, match="std cannot be 0"):
        add_classifier_metadata(float_model, labels, (0.0,), (0.0,))
    with pytest.raises(MetadataError, match="uint8 input is fed raw"):
        add_classifier_metadata(uint8_model, labels, PIXEL_MEAN, PIXEL_STD)
    with pytest.raises(MetadataError, match="no TFLITE_METADATA"):
        read_metadata(float_model)
    with pytest.raises(MetadataError, match="not a .tflite model"):
        read_metadata(b"a labels file, not a model")
    with pytest.warns(UserWarning, match="scale 0.5, zero point 0"):
        add_classifier_metadata(with_input(uint8_model, scale=0.5), labels)
    with pytest.warns(UserWarning, match="only uint8/float32"):
        int8 = with_input(float_model, tensor_type=schema.TensorType.INT8)
        add_classifier_metadata(int8, labels, (0.0,), (1.0,))


@pytest.fixture(scope="session")
def consumer_python():
    """Python of a virtualenv with mediapipe and tflite-support, built once and then reused
    (about 40 s and 830 MB on first use).

    Built beside its final place and renamed into it, so an interrupted build is never reused.
    """
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "lsnet-keras"
    venv = cache / "venv-consumers"
    stamp, stamp_file = "\n".join([sys.version, *CONSUMER_REQUIREMENTS]), venv / "lsnet-stamp.txt"

    def ready():
        return stamp_file.is_file() and stamp_file.read_text() == stamp

    if ready():
        return venv / "bin" / "python"
    building = cache / f"venv-consumers.building-{os.getpid()}"
    shutil.rmtree(building, ignore_errors=True)
    steps = [
        [sys.executable, "-m", "venv", str(building)],
        [str(building / "bin" / "python"), "-m", "pip", "install", "-q", *CONSUMER_REQUIREMENTS],
    ]
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True, timeout=1200, env=clean_env())
        if done.returncode:
            shutil.rmtree(building, ignore_errors=True)
            pytest.fail(f"cannot build the consumer virtualenv: {step}\n{done.stderr[-4000:]}")
    (building / stamp_file.name).write_text(stamp)
    if not ready():  # else another test run (xdist worker) put its build in place meanwhile
        shutil.rmtree(venv, ignore_errors=True)
        building.rename(venv)
    shutil.rmtree(building, ignore_errors=True)
    return venv / "bin" / "python"


def clean_env():
    """The environment without the main interpreter's paths, for the consumer virtualenv."""
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}


def run_consumer(python, script, models, image, tmp_path):
    """{variant: result} of a consumer script run on every model (see tests/consumers)."""
    np.save(tmp_path / "image.npy", image)
    output = tmp_path / f"{script}.json"
    paths = [str(path) for path, _, _ in models.values()]
    command = [str(python), str(CONSUMERS / script), "--image", str(tmp_path / "image.npy")]
    command += ["--output", str(output), "--max-results", "1000", *paths]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, env=clean_env())
    if done.returncode:
        pytest.fail(f"{script} failed:\n{done.stderr[-4000:]}")
    results = json.loads(output.read_text())["results"]
    return {name: results[str(models[name][0])] for name in models}


def assert_same_classification(result, model_bytes, image, feed):
    """All 1000 categories named from labels.txt, scored as the TFLite interpreter scores them."""
    labels = imagenet_labels()
    expected, step = interpreter_scores(model_bytes, image, feed)
    categories = result["categories"]
    assert len(categories) == 1000
    assert [c["category_name"] for c in categories] == [labels[c["index"]] for c in categories]
    scores = np.zeros(1000)
    scores[[c["index"] for c in categories]] = [c["score"] for c in categories]
    tolerance = 1.01 * step if step else 1e-5
    np.testing.assert_allclose(scores, expected, rtol=0, atol=tolerance)
    top, second = np.sort(expected)[::-1][:2]
    assert top - second > 2 * tolerance, "the test image gives a near tie: change the seed"
    assert categories[0]["index"] == int(np.argmax(expected))


def test_mediapipe_image_classifier(models, image, consumer_python, tmp_path):
    """MediaPipe Tasks runs the uint8 and the uniformly normalized float models as they are;
    it refuses per-channel mean/std, so the ImageNet-normalized float model is refused."""
    results = run_consumer(consumer_python, "mediapipe_classify.py", models, image, tmp_path)
    error = results["float_imagenet"].get("error", "")
    assert "Per-channel image normalization is not available" in error, results["float_imagenet"]
    for name in ("float_uniform", "uint8"):
        assert "error" not in results[name], results[name]
        assert_same_classification(results[name], models[name][1], image, VARIANTS[name][2])


def test_tflite_task_library_image_classifier(models, image, consumer_python, tmp_path):
    """The TFLite Task Library runs all three models and parses the metadata as written."""
    results = run_consumer(consumer_python, "tflite_support_classify.py", models, image, tmp_path)
    for name, result in results.items():
        assert "error" not in result, result
        assert_same_classification(result, models[name][1], image, VARIANTS[name][2])
        info = read_metadata(models[name][1])
        assert result["packed_files"] == ["labels.txt"]
        assert result["min_parser_version"] == info["min_parser_version"]
        metadata = result["metadata"]
        assert (metadata["name"], metadata["description"]) == (info["name"], info["description"])
        image_md = metadata["subgraph_metadata"][0]["input_tensor_metadata"][0]
        scores_md = metadata["subgraph_metadata"][0]["output_tensor_metadata"][0]
        assert image_md["content"]["content_properties"] == {"color_space": "RGB"}
        options = image_md["process_units"][0]["options"]
        assert options["mean"] == pytest.approx(info["mean"], rel=1e-6)
        assert options["std"] == pytest.approx(info["std"], rel=1e-6)
        threshold = scores_md["process_units"][0]
        assert threshold["options_type"] == "ScoreThresholdingOptions"
        assert threshold["options"]["global_score_threshold"] == pytest.approx(KEEP_ALL_SCORES)
        assert scores_md["associated_files"] == [
            {
                "name": "labels.txt",
                "description": "Class names, one per line, in class order.",
                "type": "TENSOR_AXIS_LABELS",
            }
        ]
