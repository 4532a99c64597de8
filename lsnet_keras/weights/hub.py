"""Official LSNet weights and published checkpoints from the Hugging Face hub.

`weights="imagenet"` names the official release (repo `jameslahm/lsnet`, `lsnet_t.pth` ...
`lsnet_b_distill.pth`); `hf://owner/repo/file` any published file, and `hf://owner/repo` a
single-model repo's `model.safetensors` or `pytorch_model.bin` (the timm layout of
`jameslahm/lsnet_t` etc.). Files are fetched with `huggingface_hub` into the standard Hugging
Face cache, with its progress bar; `HF_HUB_OFFLINE`, `HF_ENDPOINT`, `HF_HOME` (or
`HF_HUB_CACHE`) and `HF_TOKEN` are honored, read when a file is asked for. What comes back is a
local path, read by the same strict reader as any other checkpoint. Failures are one-line
`HubError`s; `HubUnreachable` when the hub cannot be used and the file is not cached.

Example:
    >>> from lsnet_keras.weights.hub import resolve_weights
    >>> resolve_weights("lsnet_t.pth", "lsnet_t")  # a path stays a path
    'lsnet_t.pth'
    >>> resolve_weights("imagenet", "lsnet_t")  # doctest: +SKIP
    '/home/me/.cache/huggingface/hub/models--jameslahm--lsnet/snapshots/.../lsnet_t.pth'
"""

import os

from lsnet_keras.weights.checkpoint import CheckpointError, read_checkpoint

OFFICIAL_REPO = "jameslahm/lsnet"
# Released weights, by the name a user gives (weights="imagenet", "coco", "ade20k"): model ->
# its file in OFFICIAL_REPO.
RELEASES = {
    "imagenet": {
        "lsnet_t": "lsnet_t.pth",
        "lsnet_s": "lsnet_s.pth",
        "lsnet_b": "lsnet_b.pth",
        "lsnet_t_distill": "lsnet_t_distill.pth",
        "lsnet_s_distill": "lsnet_s_distill.pth",
        "lsnet_b_distill": "lsnet_b_distill.pth",
    },
    "coco": {
        "lsnet_t_retinanet": "lsnet_t_retinanet.pth",
        "lsnet_s_retinanet": "lsnet_s_retinanet.pth",
        "lsnet_b_retinanet": "lsnet_b_retinanet.pth",
    },
    "ade20k": {
        "lsnet_t_semfpn": "lsnet_t_semfpn.pth",
        "lsnet_s_semfpn": "lsnet_s_semfpn.pth",
        "lsnet_b_semfpn": "lsnet_b_semfpn.pth",
    },
}
OFFICIAL_FILES = RELEASES["imagenet"]
# Files tried, in order, for `hf://owner/repo` without a file name (timm's layout).
DEFAULT_FILES = ("model.safetensors", "pytorch_model.bin")
HF_PREFIX = "hf://"
METADATA_TIMEOUT_S = 10


class HubError(CheckpointError):
    """Weights that could not be fetched from the hub (one-line message)."""


class HubUnreachable(HubError):
    """The hub cannot be used (unreachable, or HF_HUB_OFFLINE) and the file is not cached."""


def is_hub_handle(weights):
    """True for release names ("imagenet", "coco", "ade20k") and `hf://...` handles (else a path).

    Example:
        >>> is_hub_handle("hf://jameslahm/lsnet_t"), is_hub_handle("lsnet_t.pth")
        (True, False)
    """
    return isinstance(weights, str) and (weights in RELEASES or weights.startswith(HF_PREFIX))


def official_handle(variant, release="imagenet"):
    """The `hf://` handle of a released model's weights ("imagenet" classifiers, "coco"
    detectors, "ade20k" segmenters).

    Example:
        >>> official_handle("lsnet_t_distill")
        'hf://jameslahm/lsnet/lsnet_t_distill.pth'
        >>> official_handle("lsnet_s_retinanet", "coco")
        'hf://jameslahm/lsnet/lsnet_s_retinanet.pth'
    """
    files = RELEASES[release]
    if variant not in files:
        known = ", ".join(files)
        raise HubError(
            f"weights='{release}' is for the released variants ({known}), not "
            f"{variant or 'a custom LSNet'}; name the variant, or pass a path or hf:// handle"
        )
    return f"{HF_PREFIX}{OFFICIAL_REPO}/{files[variant]}"


def parse_handle(handle):
    """`hf://owner/repo[/path/to/file]` -> (repo_id, file or None).

    Example:
        >>> parse_handle("hf://jameslahm/lsnet/lsnet_t.pth")
        ('jameslahm/lsnet', 'lsnet_t.pth')
        >>> parse_handle("hf://jameslahm/lsnet_t")
        ('jameslahm/lsnet_t', None)
    """
    parts = handle.removeprefix(HF_PREFIX).strip("/").split("/")
    if not handle.startswith(HF_PREFIX) or len(parts) < 2 or not all(parts):
        raise HubError(f"{handle}: expected hf://owner/repo or hf://owner/repo/file")
    return "/".join(parts[:2]), "/".join(parts[2:]) or None


def resolve_weights(weights, variant=None):
    """A local checkpoint path for `weights`: "imagenet" (for `variant`), hf://..., or a path.

    Example:
        >>> resolve_weights("hf://jameslahm/lsnet/lsnet_s.pth")  # doctest: +SKIP
        '/home/me/.cache/huggingface/hub/models--jameslahm--lsnet/snapshots/.../lsnet_s.pth'
    """
    if not is_hub_handle(weights):
        return weights
    handle = official_handle(variant, weights) if weights in RELEASES else weights
    return download(*parse_handle(handle))


def read_weights(weights, variant=None, use_ema=False):
    """(state_dict, source) of a path, a release name (for `variant`) or an hf:// handle.

    Read by the strict, safe reader (`read_checkpoint`); `source` names the weights in errors.
    When the file is a training checkpoint with EMA weights, one line says which part was read.

    Example:
        >>> state, source = read_weights("../shared/reference/tiny_128.safetensors")
        >>> source
        '../shared/reference/tiny_128.safetensors'
    """
    path = resolve_weights(weights, variant)
    source = official_handle(variant, weights) if weights in RELEASES else os.fspath(weights)
    checkpoint = read_checkpoint(path, use_ema, source=source)
    if checkpoint.entry == "model_ema":
        print(f"{source}: loaded 'model_ema' (the EMA weights)")
    elif "model_ema" in checkpoint.wrappers:
        print(f"{source}: loaded '{checkpoint.entry}' (use_ema=True / --ema for 'model_ema')")
    return checkpoint.state, source


def _settings():
    """Endpoint, cache folder and offline flag from the environment, read now.

    The client reads these once, when it is first imported; reading them again here lets a
    notebook set them later. Offline is also kept when the client was imported offline.
    """
    from huggingface_hub import constants

    cache = os.environ.get("HF_HUB_CACHE")
    if not cache and os.environ.get("HF_HOME"):
        cache = os.path.join(os.environ["HF_HOME"], "hub")
    offline = os.environ.get("HF_HUB_OFFLINE", "").upper() in {"1", "ON", "YES", "TRUE"}
    offline = offline or constants.is_offline_mode()
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/"), cache, offline


def download(repo_id, filename=None):
    """Fetch `filename` of `repo_id` (or its default file) into the HF cache; its local path.

    Example:
        >>> download("jameslahm/lsnet", "lsnet_t.pth")  # doctest: +SKIP
        '/home/me/.cache/huggingface/hub/models--jameslahm--lsnet/snapshots/.../lsnet_t.pth'
    """
    from huggingface_hub import errors

    endpoint, cache, offline = _settings()
    candidates = [filename] if filename else list(DEFAULT_FILES)
    handle = f"{HF_PREFIX}{repo_id}" + (f"/{filename}" if filename else "")
    for name in candidates:
        try:
            return _fetch(handle, repo_id, name, endpoint, cache, offline)
        except errors.RemoteEntryNotFoundError:
            continue
        except errors.LocalEntryNotFoundError:
            if name != candidates[-1]:
                continue
            raise _not_cached(handle, repo_id, name, endpoint, offline, "no answer") from None
        except _Unreachable as err:
            raise _not_cached(handle, repo_id, name, endpoint, offline, err.reason) from None
    if filename:
        raise HubError(f"{handle}: file {filename!r} not found in repository {repo_id}")
    raise HubError(
        f"{handle}: repository {repo_id} has none of {', '.join(DEFAULT_FILES)}; "
        f"name the file: {HF_PREFIX}{repo_id}/FILE"
    )


class _Unreachable(Exception):
    """The hub did not answer (or answered 5xx) and the file is not cached; `reason` says why."""

    def __init__(self, reason):
        super().__init__(reason)
        self.reason = reason


def _fetch(handle, repo_id, filename, endpoint, cache, offline):
    """One file: metadata first (one quick HEAD, no retries), then the client's download."""
    import httpx2
    from huggingface_hub import errors, get_hf_file_metadata, hf_hub_download, hf_hub_url

    if not offline:
        try:
            get_hf_file_metadata(
                hf_hub_url(repo_id, filename, endpoint=endpoint),
                timeout=METADATA_TIMEOUT_S,
                endpoint=endpoint,
            )
        except errors.RepositoryNotFoundError:
            raise HubError(
                f"{handle}: repository {repo_id} not found on {endpoint} (a private or gated "
                "repository needs HF_TOKEN)"
            ) from None
        except errors.RemoteEntryNotFoundError:
            raise  # the caller tries the next default file or names the missing one
        except errors.HfHubHTTPError as err:
            if err.response is None or err.response.status_code < 500:
                raise HubError(f"{handle}: the hub refused it ({_first_line(err)})") from None
            return _cached(repo_id, filename, cache, _first_line(err))
        except httpx2.TransportError as err:
            return _cached(repo_id, filename, cache, _first_line(err))
    try:
        return hf_hub_download(
            repo_id, filename, cache_dir=cache, endpoint=endpoint, local_files_only=offline
        )
    except errors.LocalEntryNotFoundError:
        raise  # offline and not cached: the caller says where to get the file
    except (httpx2.HTTPError, OSError) as err:  # HfHubHTTPError is both
        raise HubError(
            f"{handle}: the download was interrupted ({_first_line(err)}); nothing was loaded "
            "and no partial file is kept: run again to download it"
        ) from None


def _cached(repo_id, filename, cache, reason):
    """The cached copy when the hub is down or unreachable (as the client itself falls back)."""
    from huggingface_hub import errors, hf_hub_download

    try:
        return hf_hub_download(repo_id, filename, cache_dir=cache, local_files_only=True)
    except errors.LocalEntryNotFoundError:
        raise _Unreachable(reason) from None


def _not_cached(handle, repo_id, filename, endpoint, offline, reason):
    where = f"https://huggingface.co/{repo_id}/blob/main/{filename}"
    why = "HF_HUB_OFFLINE is set" if offline else f"the hub at {endpoint} is unreachable ({reason})"
    return HubUnreachable(
        f"{handle}: {filename} is not in the Hugging Face cache and {why}; download it by hand "
        f"from {where} and pass weights=PATH (--weights PATH)"
    )


def _first_line(err):
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__
