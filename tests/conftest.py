"""Shared fixtures: Keras models built from the golden cases, quiet TensorFlow logs."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pickle  # noqa: E402

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from goldens import REFERENCE_DIR, load_case  # noqa: E402
from PIL import Image  # noqa: E402
from safetensors.numpy import load_file, save_file  # noqa: E402

import lsnet_keras  # noqa: E402


def keras_model_for(config, **kwargs):
    """A Keras LSNet with the architecture of a golden case / torch reference config."""
    return lsnet_keras.LSNet(
        config["embed_dim"],
        config["depth"],
        config["num_heads"],
        key_dim=config.get("key_dim", (16, 16, 16, 16)),
        num_classes=config["num_classes"],
        distillation=config.get("distillation", False),
        input_shape=config["img_size"],
        **kwargs,
    )


def nhwc(x):
    return np.ascontiguousarray(np.asarray(x).transpose(0, 2, 3, 1))


def nchw(x):
    return np.asarray(x).transpose(0, 3, 1, 2)


def run_model(model, x):
    """`model`'s outputs on a few inputs as NumPy, called eagerly.

    `predict` first traces the model into a graph (seconds for LSNet-T), which a handful of
    images never pays back; the eager call is the same computation (training=False).
    """
    outputs = model(x, training=False)
    if isinstance(outputs, (list, tuple)):
        return [keras.ops.convert_to_numpy(output) for output in outputs]
    return keras.ops.convert_to_numpy(outputs)


def with_features(model):
    """The model's outputs plus [patch_embed, stage1..stage4] as one Keras model."""
    names = ["patch_embed_4", "stage1", "stage2", "stage3", "stage4"]
    outputs = [model.output] + [model.get_layer(n).output for n in names]
    return keras.Model(model.input, outputs)


def gradients(loss, inputs):
    """d loss(*inputs) / d inputs as NumPy arrays, by the active Keras backend's autodiff.

    `loss` maps backend tensors to a scalar with keras.ops; JAX differentiates it jitted.
    """
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        tensors = [tf.constant(a) for a in inputs]
        with tf.GradientTape() as tape:
            tape.watch(tensors)
            value = loss(*tensors)
        grads = tape.gradient(value, tensors)
    elif backend == "jax":
        import jax

        grads = jax.jit(jax.grad(lambda args: loss(*args)))([jax.numpy.asarray(a) for a in inputs])
    elif backend == "torch":
        import torch

        tensors = [torch.tensor(a, requires_grad=True) for a in inputs]
        loss(*tensors).backward()
        grads = [t.grad for t in tensors]
    else:
        raise ValueError(f"no gradient helper for Keras backend {backend!r}")
    return [keras.ops.convert_to_numpy(g) for g in grads]


@pytest.fixture
def float64_policy():
    """Build and run models in float64 for the duration of a test."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("float64")
    yield
    keras.config.set_dtype_policy(previous)


@pytest.fixture(scope="session")
def golden():
    """load_case, cached per session."""
    cache = {}

    def get(name):
        if name not in cache:
            cache[name] = load_case(name)
        return cache[name]

    return get


# ---------------------------------------------- hostile inputs (test_hostile_cli, test_hostile_io)

TINY_CHECKPOINT = REFERENCE_DIR / "tiny_128.safetensors"
TINY = {"embed_dim": (8, 8, 8, 8), "depth": (1, 1, 1, 1), "num_heads": (1, 1, 1, 1)}
SIZE = 32


def _tflite(model, path):
    import tensorflow as tf

    path.write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    return path


def _tiny_lsnet(num_classes):
    return lsnet_keras.LSNet(**TINY, num_classes=num_classes, input_shape=SIZE)


@pytest.fixture(scope="session")
def hostile_files(tmp_path_factory):
    """Every bad (and a few good) input of the catalogue, built once."""
    root = tmp_path_factory.mktemp("hostile")
    files = {"folder": root / "a_folder", "ckpt": TINY_CHECKPOINT}
    files["folder"].mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)).save(root / "ok.png")
    files["ok_png"] = root / "ok.png"
    files["huge_png"] = root / "huge.png"
    Image.new("1", (20000, 20000)).save(files["huge_png"])  # 400 megapixels, 50 kB
    files["thin_png"] = root / "thin.png"
    Image.new("L", (1, 2000)).save(files["thin_png"])
    files["text_png"] = root / "text.png"
    files["text_png"].write_text("not an image")
    files["truncated_png"] = root / "truncated.png"
    files["truncated_png"].write_bytes(files["ok_png"].read_bytes()[:100])
    files["fifo_png"] = root / "fifo.png"
    os.mkfifo(files["fifo_png"])
    files["binary"] = root / "labels.bin"
    files["binary"].write_bytes(b"\xff\xfe\x00\x80")
    files["big_dir"] = root / "big_dir"
    files["big_dir"].mkdir()
    os.link(files["huge_png"], files["big_dir"] / "huge.png")
    files["existing"] = root / "existing.json"
    files["existing"].write_text("{}")
    files["golden"] = root / "golden"  # an earlier run's golden files: kept without --force
    files["golden"].mkdir()
    (files["golden"] / "meta.json").write_text("{}")
    # models: a 2-class LSNet .keras, 2-class .tflite classifiers of several input layouts
    files["keras"] = root / "tiny.keras"
    _tiny_lsnet(2).save(files["keras"])
    layouts = {"": (16, 16, 3), "nchw": (3, 16, 16), "gray": (16, 16, 1), "flat": (12,)}
    for name, shape in layouts.items():
        other = keras.Sequential(
            [keras.Input(shape), keras.layers.Flatten(), keras.layers.Dense(2)]
        )
        files[f"{name}_tflite".lstrip("_")] = _tflite(other, root / f"{name or 'rgb'}.tflite")
    files["not_lsnet"] = root / "dense.keras"
    other.save(files["not_lsnet"])
    # checkpoints
    state = load_file(TINY_CHECKPOINT)
    first = sorted(k for k, v in state.items() if v.dtype.kind == "f")[0]
    files["nan_st"] = root / "nan.safetensors"
    save_file({**state, first: np.full_like(state[first], np.nan)}, files["nan_st"])
    files["int_st"] = root / "int.safetensors"
    save_file({**state, first: state[first].astype("int32")}, files["int_st"])
    files["bf16_pth"] = root / "bf16.pth"  # written by `heavy_files` (imports torch)
    files["nan_keras"] = root / "nan.keras"  # written by `heavy_files`
    files["garbage_pth"] = root / "garbage.pth"
    files["garbage_pth"].write_bytes(pickle.dumps({"a": 1}, protocol=4))
    files["evil_pth"] = root / "evil.pth"
    files["evil_pth"].write_bytes(pickle.dumps({"a": _Evil()}, protocol=2))
    files["junk_pth"] = root / "junk.pth"  # a pickle header, then junk (struct.error in torch)
    files["junk_pth"].write_bytes(b"\x80\x02junk")
    files["junk_keras"] = root / "junk.keras"  # not a zip archive
    files["junk_keras"].write_bytes(b"PK not a zip")
    # data: two (and three) classes of readable images
    for key, classes in (("data", "ab"), ("three_classes", "abc")):
        files[key] = root / key
        for split in ("train", "val"):
            for name in classes:
                (files[key] / split / name).mkdir(parents=True)
                for i in range(2):
                    os.link(files["ok_png"], files[key] / split / name / f"{i}.png")
    return {key: str(value) for key, value in files.items()}


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


@pytest.fixture(scope="session")
def heavy_files(hostile_files):
    """`hostile_files` plus those that take seconds to make: a bfloat16 .pth, NaN weights."""
    import torch

    state = load_file(TINY_CHECKPOINT)
    half = {k: torch.from_numpy(v.copy()) for k, v in state.items()}
    half = {k: v.to(torch.bfloat16) if v.is_floating_point() else v for k, v in half.items()}
    torch.save(half, hostile_files["bf16_pth"])
    broken = _tiny_lsnet(2)
    broken.weights[0].assign(np.full(broken.weights[0].shape, np.nan, "float32"))
    broken.save(hostile_files["nan_keras"])
    return hostile_files


@pytest.fixture(autouse=True, scope="module")
def _models_freed_after_each_module():
    """Keras keeps every model built in the process: under pytest-xdist one worker runs many
    slow modules and grew past 12 GB (OOM-killed on the 24 GiB CI machine). Each module's
    models are released when it ends. (CI now runs each slow module in its own process,
    tests/run.sh, since that was not enough once the ARM checks were added.)"""
    yield
    import gc

    keras.backend.clear_session()
    gc.collect()
