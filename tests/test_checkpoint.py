"""Reading official checkpoints: formats, strictness, safety, variant recognition, manifests."""

import os

import numpy as np
import pytest
import torch
from conftest import keras_model_for, nhwc, run_model
from goldens import REFERENCE_DIR, VARIANTS, load_manifest

import lsnet_keras
from lsnet_keras.weights.checkpoint import CheckpointError, read_state_dict
from lsnet_keras.weights.mapping import checkpoint_table, export_state_dict, guess_variant


@pytest.fixture(scope="module")
def tiny(golden):
    return golden("tiny_128")


def tensors(state):
    return {k: torch.from_numpy(np.asarray(v).copy()) for k, v in state.items()}


@pytest.mark.parametrize("wrapper", ["raw", "model", "state_dict", "model_ema", "module"])
def test_pth_layouts_load_identically(wrapper, tiny, tmp_path):
    state = tensors(tiny["state_dict"])
    if wrapper == "module":
        obj = {f"module.{k}": v for k, v in state.items()}
    elif wrapper == "raw":
        obj = state
    else:  # training checkpoints also hold the optimizer state, epoch, ...
        obj = {wrapper: state, "epoch": 3, "optimizer": {"lr": torch.tensor(0.1)}}
    path = tmp_path / "checkpoint.pth"
    torch.save(obj, path)
    loaded = read_state_dict(path)
    assert set(loaded) == set(tiny["state_dict"])
    model = keras_model_for(tiny["config"], weights=str(path))
    logits = run_model(model, nhwc(tiny["input"]))
    assert np.abs(logits - tiny["logits"]).max() <= 1e-4


class Exploit:
    """Unpickling this runs os.system: the textbook malicious checkpoint."""

    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_pickled_code_is_refused_not_run(tiny, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.pth"
    torch.save({"model": tensors(tiny["state_dict"]), "payload": Exploit()}, path)
    with pytest.raises(CheckpointError, match="refused.*pickled code.*not executed") as err:
        read_state_dict(path)
    assert "\n" not in str(err.value) and "system" in str(err.value)
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("missing.pth", None, "not found"),
        ("truncated.pth", "truncate", "not a readable PyTorch checkpoint"),
        ("garbage.pth", b"\x00not a zip at all" * 10, "not a readable PyTorch checkpoint"),
        ("garbage.safetensors", b"\xff" * 64, "not a valid .safetensors"),
        ("weights.h5", b"hdf", "unknown checkpoint type"),
        ("list.pth", "list", "expected a dict of tensors"),
    ],
)
def test_bad_files_give_one_line_errors(name, content, message, tiny, tmp_path):
    path = tmp_path / name
    if content == "truncate":
        torch.save(tensors(tiny["state_dict"]), path)
        path.write_bytes(path.read_bytes()[:2000])
    elif content == "list":
        torch.save([torch.zeros(2)], path)
    elif content is not None:
        path.write_bytes(content)
    with pytest.raises(CheckpointError, match=message) as err:
        read_state_dict(path)
    assert "\n" not in str(err.value) and str(path) in str(err.value)


def test_strict_errors_name_keys_and_shapes(tiny):
    model = keras_model_for(tiny["config"])
    state = dict(tiny["state_dict"])
    state.pop("head.l.bias")
    state["extra.weight"] = np.zeros(3, "float32")
    state["patch_embed.0.c.weight"] = np.zeros((8, 3, 5, 5), "float32")
    with pytest.raises(CheckpointError) as err:
        lsnet_keras.load_weights(model, state, source="edited.pth")
    message = str(err.value)
    assert "1 missing: head.l.bias" in message
    assert "1 unexpected: extra.weight" in message
    assert "patch_embed.0.c.weight: checkpoint (8, 3, 5, 5) vs model (8, 3, 3, 3)" in message


def test_other_variant_is_recognized_in_the_error(golden):
    model = lsnet_keras.lsnet_s(input_shape=64)
    with pytest.raises(
        CheckpointError, match="looks like a lsnet_t checkpoint, the model is lsnet_s"
    ):
        lsnet_keras.load_weights(model, golden("lsnet_t_224")["state_dict"], source="t.pth")


def test_distill_checkpoint_into_plain_model_is_named(golden):
    state = golden("tiny_distill_128")["state_dict"]
    config = dict(golden("tiny_distill_128")["config"], distillation=False)
    with pytest.raises(CheckpointError, match="unexpected: head_dist"):
        lsnet_keras.load_weights(keras_model_for(config), state, source="d.pth")


@pytest.mark.parametrize("variant", VARIANTS)
def test_manifest_keys_and_shapes_all_consumed(variant):
    kwargs, keys = load_manifest(variant)
    model = lsnet_keras.build_variant(variant, input_shape=224)
    table = checkpoint_table(model)
    assert list(table) == [key for key, _, _ in keys] or set(table) == {k for k, _, _ in keys}
    exported = export_state_dict(model)
    for key, shape, dtype in keys:
        assert exported[key].shape == shape, key
        assert exported[key].dtype == np.dtype(dtype), key
    assert guess_variant(exported) == variant


def test_state_dict_round_trip_is_exact(tiny):
    model = keras_model_for(tiny["config"])
    lsnet_keras.load_weights(model, tiny["state_dict"], source="golden")
    exported = export_state_dict(model)
    assert set(exported) == set(tiny["state_dict"])
    for key, value in tiny["state_dict"].items():
        if not key.endswith("num_batches_tracked"):
            assert np.array_equal(exported[key], value), key


def test_backbone_loads_a_classifier_checkpoint_without_its_head(tiny):
    path = REFERENCE_DIR / "tiny_128.safetensors"
    model = keras_model_for(tiny["config"], features_only=True, weights=str(path))
    features = run_model(model, nhwc(tiny["input"]))
    for name, feature in zip(("blocks1", "blocks2", "blocks3", "blocks4"), features):
        assert np.abs(feature.transpose(0, 3, 1, 2) - tiny["features"][name]).max() <= 1e-4
