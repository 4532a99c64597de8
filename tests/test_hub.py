"""Weights from the Hugging Face hub, with the real `huggingface_hub` client against a local hub.

`hub_server.LocalHub` speaks the hub's download protocol on 127.0.0.1 (tests/hub_server.py);
HF_ENDPOINT points at it and HF_HOME is a fresh folder per test. Nothing of ours is mocked: the
golden checkpoints are served under the official file names and loaded as a user would.
"""

import io
import json
import logging

import numpy as np
import pytest
from conftest import nhwc, run_model
from dense_goldens import retinanet_case, retinanet_weights
from goldens import float32_bound
from hub_server import LocalHub, closed_port_endpoint

import lsnet_keras
from lsnet_keras import pipeline
from lsnet_keras.cli import main
from lsnet_keras.detection import pipeline as detect_pipeline
from lsnet_keras.litert.labels import imagenet_labels
from lsnet_keras.model.loading import model_from_checkpoint
from lsnet_keras.training.recipe import build_model
from lsnet_keras.weights.checkpoint import CheckpointError
from lsnet_keras.weights.hub import HubError, HubUnreachable, read_weights, resolve_weights
from lsnet_keras.weights.mapping import export_state_dict

torch = pytest.importorskip("torch")
# The client fixes its offline mode when first imported: import it here, online.
pytest.importorskip("huggingface_hub.constants")

OFFICIAL = "jameslahm/lsnet"
FINETUNE = "someone/lsnet-tiny-flowers"  # a published fine-tune in timm's layout


def pth_bytes(obj):
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def tensors(state):
    return {k: torch.from_numpy(np.asarray(v).copy()) for k, v in state.items()}


@pytest.fixture(scope="module")
def local_hub(golden):
    repos = {
        OFFICIAL: {
            # released files hold {"model": state_dict}
            "lsnet_t.pth": pth_bytes({"model": tensors(golden("lsnet_t_224")["state_dict"])}),
            # MMDetection's checkpoint layout
            "lsnet_t_retinanet.pth": pth_bytes(
                {"meta": {"mmdet_version": "2.28.2"}, "state_dict": tensors(retinanet_weights())}
            ),
            "README.md": b"# LSNet\n",
            "broken.pth": b"<html>not a checkpoint</html>" * 40,
        },
        FINETUNE: {
            "pytorch_model.bin": pth_bytes(tensors(golden("tiny_128")["state_dict"])),
            "config.json": b'{"num_classes": 10}',
        },
    }
    with LocalHub(repos) as hub:
        yield hub


@pytest.fixture
def hub(local_hub, tmp_path, monkeypatch):
    """The local hub as HF_ENDPOINT, an empty HF cache under tmp_path, online."""
    monkeypatch.setenv("HF_ENDPOINT", local_hub.endpoint)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    local_hub.requests.clear()
    local_hub.resume()
    yield local_hub
    local_hub.resume()


def cached_files(tmp_path):
    return sorted(p.name for p in (tmp_path / "hf").rglob("*") if p.is_file())


def test_imagenet_downloads_once_then_loads_from_the_cache(hub, golden, tmp_path, monkeypatch):
    case = golden("lsnet_t_224")
    model = lsnet_keras.lsnet_t(weights="imagenet")
    logits = run_model(model, nhwc(case["input"]))
    assert np.abs(logits - case["logits"]).max() <= float32_bound(case["logits"])
    blobs = [r for r in hub.requests if r[0] == "cdn"]
    assert [r[1] for r in blobs] == ["GET"], "one transfer, from the CDN the hub redirects to"
    assert (tmp_path / "hf" / "hub" / "models--jameslahm--lsnet").is_dir()
    trained = [np.array(v) for v in model.weights]
    hub.stop()  # the hub is gone: the cached copy serves, with or without HF_HUB_OFFLINE
    try:
        for offline in ("0", "1"):
            monkeypatch.setenv("HF_HUB_OFFLINE", offline)
            for variable in model.weights:
                variable.assign(np.zeros(variable.shape, variable.dtype))
            lsnet_keras.load_weights(model, "imagenet")
            assert all(np.array_equal(v, t) for v, t in zip(model.weights, trained))
    finally:
        hub.start()


def test_offline_and_not_cached_says_where_to_get_the_file(hub, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(HubError) as err:
        resolve_weights("imagenet", "lsnet_t")
    message = str(err.value)
    assert "\n" not in message and "lsnet_t.pth" in message and "HF_HUB_OFFLINE" in message
    assert "https://huggingface.co/jameslahm/lsnet/blob/main/lsnet_t.pth" in message
    assert "weights=PATH" in message
    assert hub.requests == []
    for command in (  # both commands take the same --weights and fail the same way
        ["convert", "--weights", "imagenet", "--variant", "lsnet_t", "--output", "t.keras"],
        ["export", "--variant", "lsnet_t", "--weights", "imagenet", "--output", "t.tflite"],
    ):
        assert main(command) == 2
        error = capsys.readouterr().err
        assert error.count("\n") == 1 and "HF_HUB_OFFLINE is set" in error


def test_unreachable_hub_is_one_line(hub, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", closed_port_endpoint())
    with pytest.raises(HubUnreachable, match="unreachable.*lsnet_s.pth.*weights=PATH") as err:
        resolve_weights("imagenet", "lsnet_s")
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    "handle, message",
    [
        ("hf://jameslahm/lsnet/lsnet_x.pth", "file 'lsnet_x.pth' not found in repository"),
        ("hf://nobody/nothing/lsnet_t.pth", "repository nobody/nothing not found"),
        ("hf://jameslahm/lsnet", "has none of model.safetensors, pytorch_model.bin"),
        ("hf://jameslahm", "expected hf://owner/repo"),
    ],
)
def test_missing_repo_or_file_is_named(handle, message, hub):
    with pytest.raises(HubError, match=message) as err:
        resolve_weights(handle)
    assert "\n" not in str(err.value)


def test_interrupted_download_leaves_nothing_and_a_retry_completes(hub, golden, tmp_path):
    case = golden("tiny_128")
    hub.interrupt()  # the transfer stops half-way, the client's resume gets a 500
    with pytest.raises(HubError, match="interrupted.*nothing was loaded") as err:
        model_from_checkpoint(f"hf://{FINETUNE}", input_shape=128)
    assert "\n" not in str(err.value)
    assert "pytorch_model.bin" not in cached_files(tmp_path)
    assert not [f for f in cached_files(tmp_path) if len(f) == 64]  # no blob named by sha256
    hub.resume()
    model = model_from_checkpoint(f"hf://{FINETUNE}", input_shape=128)
    assert np.abs(run_model(model, nhwc(case["input"])) - case["logits"]).max() <= 1e-4


def test_published_finetune_by_handle_with_token(hub, golden, monkeypatch):
    case = golden("tiny_128")
    monkeypatch.setenv("HF_TOKEN", "hf_example_token")
    model = model_from_checkpoint(f"hf://{FINETUNE}", input_shape=128)  # timm's file names
    assert model.output_shape == (None, 10)  # the class count comes from the file
    assert np.abs(run_model(model, nhwc(case["input"])) - case["logits"]).max() <= 1e-4
    named = resolve_weights(f"hf://{FINETUNE}/pytorch_model.bin")
    assert named.endswith("pytorch_model.bin") and "models--someone--lsnet-tiny-flowers" in named
    auth = {(role, headers.get("authorization")) for role, _, _, headers in hub.requests}
    assert ("hub", "Bearer hf_example_token") in auth  # HF_TOKEN goes to the hub ...
    assert auth & {("cdn", "Bearer hf_example_token")} == set()  # ... never to the CDN
    assert ("cdn", None) in auth


def test_downloaded_file_that_is_not_a_checkpoint(hub):
    with pytest.raises(CheckpointError, match="hf://jameslahm/lsnet/broken.pth: not a readable"):
        read_weights("hf://jameslahm/lsnet/broken.pth")


def test_checkpoint_of_another_variant_is_named(hub, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    handle = "hf://jameslahm/lsnet/lsnet_t.pth"
    with pytest.raises(CheckpointError, match="looks like a lsnet_t checkpoint, not lsnet_s"):
        model_from_checkpoint(handle, variant="lsnet_s")
    command = ["convert", "--weights", handle, "--variant", "lsnet_s", "--output", "s.keras"]
    assert main(command) == 2
    assert "looks like a lsnet_t checkpoint" in capsys.readouterr().err


def test_imagenet_needs_a_released_variant(hub):
    with pytest.raises(HubError, match="released variants .* not a custom LSNet"):
        model_from_checkpoint("imagenet")


def test_pipeline_without_a_reachable_hub_says_so_in_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_ENDPOINT", closed_port_endpoint())
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    model, weights = pipeline._load_model("lsnet_t", "imagenet", 64, use_ema=False)
    assert weights == "random" and model.name == "lsnet_t"
    printed = capsys.readouterr().out.strip().splitlines()
    assert len(printed) == 1 and "unreachable" in printed[0] and "RANDOM weights" in printed[0]


@pytest.mark.slow
def test_pipeline_with_the_hub_uses_official_weights_and_shows_the_photo(hub, tmp_path, capsys):
    out = tmp_path / "out"
    command = ["pipeline", "--img-size", "64", "--runs", "2", "--threads", "1"]
    assert main(command + ["--output-dir", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "RANDOM" not in printed and "lsnet_t (imagenet weights), 64px" in printed
    report = json.loads((out / "lsnet_t_report.json").read_text())
    assert report["weights"] == "imagenet"
    top5 = report["photo"]["keras_top5"]
    assert report["photo"]["file"] == "chelsea.png" and len(top5) == 5
    assert top5 == sorted(top5, key=lambda item: -item[1]) and 0 < sum(p for _, p in top5) <= 1
    labels = imagenet_labels()
    for name, entry in report["models"].items():
        assert entry["photo_top1"] in labels, name
    assert f"photo chelsea.png (CC0): Keras top-5 {top5[0][0]} " in printed


@pytest.mark.slow
def test_finetune_imagenet_starts_from_the_official_weights(hub, golden):
    model, note = build_model("lsnet_t", 10, 64, finetune="imagenet")
    assert note == "lsnet_t: weights from imagenet; new head for 10 classes"
    official = golden("lsnet_t_224")["state_dict"]
    ours = export_state_dict(model)
    assert np.array_equal(ours["patch_embed.0.c.weight"], official["patch_embed.0.c.weight"])
    assert ours["head.l.weight"].shape == (10, 384)


@pytest.mark.slow
def test_coco_downloads_the_official_detector(hub):
    """weights="coco" fetches lsnet_t_retinanet.pth (MMDetection's layout) through the hub code:
    the detector equals the MMDetection golden of those weights."""
    case = retinanet_case((256, 384))
    model = lsnet_keras.lsnet_t_retinanet(input_shape=(256, 384), weights="coco")
    found = model(case["input"])
    for level in range(5):
        expected = case["cls_scores"][level]
        assert (
            np.abs(np.asarray(found[f"cls_score_{level}"]) - expected).max()
            <= 1e-5 * np.abs(expected).max()
        )
    assert [r[1] for r in hub.requests if r[0] == "cdn"] == ["GET"]
    with pytest.raises(CheckpointError, match="RetinaNet|detector|detection"):
        lsnet_keras.lsnet_t(weights="hf://jameslahm/lsnet/lsnet_t_retinanet.pth")


def test_detect_pipeline_without_a_reachable_hub_warns_once(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("HF_ENDPOINT", closed_port_endpoint())
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    # an earlier `lsnet pipeline` in this process showed progress without propagating
    monkeypatch.setattr(logging.getLogger("lsnet_keras"), "propagate", True)
    model, weights = detect_pipeline._load_detector("lsnet_t", "coco", (64, 64))
    assert weights == "random" and model.name == "lsnet_t_retinanet"
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warned) == 1 and "unreachable" in warned[0] and "RANDOM weights" in warned[0]
