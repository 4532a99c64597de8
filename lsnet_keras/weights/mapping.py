"""Official checkpoint key <-> Keras variable, one explicit entry per tensor.

`checkpoint_table(model)` lists, for every tensor of the official `state_dict`, the Keras variable
it fills and the layout change between them. Loading walks that table (strictly: every key
consumed, every shape checked); `export_state_dict` walks it backwards, which is how the tests
prove the table covers the model.

Example:
    >>> import lsnet_keras
    >>> model = lsnet_keras.lsnet_t(num_classes=10, input_shape=128)
    >>> lsnet_keras.load_weights(model, "../shared/reference/lsnet_t_224.safetensors")
    Traceback (most recent call last):
    ...
    lsnet_keras.weights.checkpoint.CheckpointError: ... head.l.weight: checkpoint (1000, 384) vs ...
"""

from typing import NamedTuple

import numpy as np

from lsnet_keras.config import VARIANTS, attention_bias_index
from lsnet_keras.weights.checkpoint import CheckpointError
from lsnet_keras.weights.hub import read_weights
from lsnet_keras.weights.resize import resize_bias_table


class Layout(NamedTuple):
    """How a tensor is laid out in PyTorch vs Keras: two inverse array functions."""

    name: str
    to_keras: object
    to_torch: object


def _tap_major(vector):
    """Official channel j * 9 + k -> Keras channel k * wc + j (see layers.LKP)."""
    return vector.reshape(-1, 9, *vector.shape[1:]).swapaxes(0, 1).reshape(vector.shape)


def _tap_minor(vector):
    return vector.reshape(9, -1, *vector.shape[1:]).swapaxes(0, 1).reshape(vector.shape)


SAME = Layout("same", lambda a: a, lambda a: a)
CONV = Layout("conv", lambda a: a.transpose(2, 3, 1, 0), lambda a: a.transpose(3, 2, 0, 1))
DEPTHWISE = Layout(
    "depthwise", lambda a: a.transpose(2, 3, 0, 1), lambda a: a.transpose(2, 3, 0, 1)
)
LINEAR = Layout("linear", lambda a: a.T, lambda a: a.T)
TAP_CONV = Layout(
    "tap-major conv",
    lambda a: _tap_major(a).transpose(2, 3, 1, 0),
    lambda a: _tap_minor(a.transpose(3, 2, 0, 1)),
)
TAP_VECTOR = Layout("tap-major vector", _tap_major, _tap_minor)
# Tensors the checkpoint holds but the Keras model derives: checked, not stored.
COUNTER = Layout("counter", None, None)  # BatchNorm num_batches_tracked
BIAS_INDEX = Layout("bias index", None, None)  # attention_bias_idxs
BIAS_TABLE = Layout("bias table", None, None)  # attention_biases, resized to the model's grid


class Entry(NamedTuple):
    key: str
    variable: object  # a keras.Variable, or the layer owning a derived or resized tensor
    layout: Layout


def _batch_norm(bn, prefix):
    yield Entry(f"{prefix}.weight", bn.gamma, SAME)
    yield Entry(f"{prefix}.bias", bn.beta, SAME)
    yield Entry(f"{prefix}.running_mean", bn.moving_mean, SAME)
    yield Entry(f"{prefix}.running_var", bn.moving_variance, SAME)
    yield Entry(f"{prefix}.num_batches_tracked", bn, COUNTER)


def _conv_bn(layer, prefix):
    yield Entry(f"{prefix}.c.weight", layer.conv.kernel, DEPTHWISE if layer.depthwise else CONV)
    yield from _batch_norm(layer.bn, f"{prefix}.bn")


def _conv_with_bias(conv, prefix, kernel_layout=CONV, bias_layout=SAME):
    yield Entry(f"{prefix}.weight", conv.kernel, kernel_layout)
    yield Entry(f"{prefix}.bias", conv.bias, bias_layout)


def _repvgg_block(block, prefix):
    yield from _conv_bn(block.mixer.conv, f"{prefix}.mixer.conv")
    yield from _conv_bn(block.mixer.conv1, f"{prefix}.mixer.conv1")
    yield from _conv_with_bias(block.se.fc1, f"{prefix}.se.fc1")
    yield from _conv_with_bias(block.se.fc2, f"{prefix}.se.fc2")


def _lsconv_block(block, prefix):
    lkp = block.mixer.lkp
    for name in ("cv1", "cv2", "cv3"):
        yield from _conv_bn(getattr(lkp, name), f"{prefix}.mixer.lkp.{name}")
    yield from _conv_with_bias(lkp.cv4, f"{prefix}.mixer.lkp.cv4", TAP_CONV, TAP_VECTOR)
    yield Entry(f"{prefix}.mixer.lkp.norm.weight", lkp.norm_gamma, TAP_VECTOR)
    yield Entry(f"{prefix}.mixer.lkp.norm.bias", lkp.norm_beta, TAP_VECTOR)
    yield from _batch_norm(block.mixer.bn, f"{prefix}.mixer.bn")


def _attention_block(block, prefix):
    attention = block.mixer
    yield Entry(f"{prefix}.mixer.m.attention_biases", attention, BIAS_TABLE)
    yield Entry(f"{prefix}.mixer.m.attention_bias_idxs", attention, BIAS_INDEX)
    yield from _conv_bn(attention.qkv, f"{prefix}.mixer.m.qkv")
    yield from _conv_bn(attention.proj, f"{prefix}.mixer.m.proj.1")
    yield from _conv_bn(attention.dw, f"{prefix}.mixer.m.dw")


def _block(block, prefix):
    mixer = {"repvgg": _repvgg_block, "lsconv": _lsconv_block, "attention": _attention_block}
    yield from mixer[block.kind](block, prefix)
    yield from _conv_bn(block.ffn.pw1, f"{prefix}.ffn.m.pw1")
    yield from _conv_bn(block.ffn.pw2, f"{prefix}.ffn.m.pw2")


def _head(head, prefix):
    yield from _batch_norm(head.bn, f"{prefix}.bn")
    yield Entry(f"{prefix}.l.weight", head.linear.kernel, LINEAR)
    yield Entry(f"{prefix}.l.bias", head.linear.bias, SAME)


def _lsnet_table(model):
    if model.deploy:
        raise ValueError("official checkpoints load into the training form (deploy=False)")
    table = {}
    for layer_name, prefix in model.official_prefixes.items():
        layer = model.get_layer(layer_name)
        if prefix.startswith("head"):
            entries = _head(layer, prefix)
        elif hasattr(layer, "kind"):
            entries = _block(layer, prefix)
        else:
            entries = _conv_bn(layer, prefix)
        table.update((entry.key, entry) for entry in entries)
    return table


def _fpn_table(neck):
    """LSNetFPN: mmcv ConvModules (`.conv`), lateral 1x1 and output 3x3 (the extra one last)."""
    table = {}
    convs = [("lateral_convs", i, conv) for i, conv in enumerate(neck.lateral_convs)]
    outputs = [*neck.fpn_convs, *([neck.extra_conv] if neck.extra_conv is not None else [])]
    convs += [("fpn_convs", i, conv) for i, conv in enumerate(outputs)]
    for group, index, conv in convs:
        table.update((e.key, e) for e in _conv_with_bias(conv, f"{group}.{index}.conv"))
    return table


def _retina_head_table(head):
    """RetinaHead: `cls_convs.i.conv`, `reg_convs.i.conv`, `retina_cls`, `retina_reg`."""
    table = {}
    for group in ("cls_convs", "reg_convs"):
        for index, conv in enumerate(getattr(head, group)):
            table.update((e.key, e) for e in _conv_with_bias(conv, f"{group}.{index}.conv"))
    for name in ("retina_cls", "retina_reg"):
        table.update((e.key, e) for e in _conv_with_bias(getattr(head, name), name))
    return table


def _fpn_head_table(head):
    """FPNHead: `scale_heads.i.j` mmcv ConvModules (`.conv` without bias, `.bn`), `conv_seg`."""
    table = {}
    for level, (convs, indices) in enumerate(zip(head.scale_heads, head.scale_head_indices())):
        for conv, index in zip(convs, indices):
            prefix = f"scale_heads.{level}.{index}"
            entries = [Entry(f"{prefix}.conv.weight", conv.conv.kernel, CONV)]
            entries += _batch_norm(conv.bn, f"{prefix}.bn")
            table.update((e.key, e) for e in entries)
    table.update((e.key, e) for e in _conv_with_bias(head.conv_seg, "conv_seg"))
    return table


# Which table each part of a model has, by its class (see `checkpoint_table`).
PART_TABLES = {
    "LSNet": _lsnet_table,
    "LSNetFPN": _fpn_table,
    "RetinaHead": _retina_head_table,
    "FPNHead": _fpn_head_table,
}


def checkpoint_table(model):
    """Every official state_dict key of `model`'s architecture -> Entry(key, variable, layout).

    A classifier's keys are the official classification checkpoint's; a detector's
    (`model.parts()`) are MMDetection's: each part's keys under its prefix (`backbone.`, ...).

    Example:
        >>> import lsnet_keras
        >>> table = checkpoint_table(lsnet_keras.lsnet_t())
        >>> table["head.l.weight"].layout.name
        'linear'
        >>> table = checkpoint_table(lsnet_keras.lsnet_t_retinanet(input_shape=64))
        >>> table["bbox_head.retina_cls.weight"].layout.name
        'conv'
    """
    if not hasattr(model, "parts"):
        return _lsnet_table(model)
    table = {}
    for prefix, part in model.parts().items():
        part_table = PART_TABLES[type(part).__name__](part)
        table.update(
            (prefix + key, entry._replace(key=prefix + key)) for key, entry in part_table.items()
        )
    return table


# What an official checkpoint is for, in words, and the key that tells it (`checkpoint_kind`).
RETINANET_KIND = "an MMDetection RetinaNet detector"
MASK_RCNN_KIND = "an MMDetection Mask R-CNN detector"
SEGMENTER_KIND = "an MMSegmentation Semantic FPN segmenter"
CLASSIFIER_KIND = "an LSNet ImageNet classifier"
BACKBONE_KIND = "an LSNet backbone (no head)"
KIND_KEYS = (
    ("bbox_head.retina_cls.weight", RETINANET_KIND),
    ("roi_head.bbox_head.fc_cls.weight", MASK_RCNN_KIND),
    ("decode_head.conv_seg.weight", SEGMENTER_KIND),
    ("head.l.weight", CLASSIFIER_KIND),
    ("patch_embed.0.c.weight", BACKBONE_KIND),
)
# The kind of checkpoint each dense model (by its `task`) loads.
TASK_KINDS = {"detect": RETINANET_KIND, "segment": SEGMENTER_KIND}


def checkpoint_kind(state):
    """What an official state_dict is for, in words (None when unrecognized).

    Example:
        >>> from lsnet_keras.weights.checkpoint import read_state_dict
        >>> checkpoint_kind(read_state_dict("../shared/reference/tiny_128.safetensors"))
        'an LSNet ImageNet classifier'
    """
    for key, kind in KIND_KEYS:
        if key in state:
            return kind
    return None


def model_kind(model):
    """What a model expects, in the words of `checkpoint_kind`.

    Example:
        >>> import lsnet_keras
        >>> model_kind(lsnet_keras.lsnet_t_retinanet(input_shape=64))
        'an MMDetection RetinaNet detector'
    """
    if hasattr(model, "parts"):
        return TASK_KINDS[model.task]
    return CLASSIFIER_KIND if "head.l.weight" in _lsnet_table(model) else BACKBONE_KIND


def backbone_state(state):
    """The `backbone.*` entries of a detection / segmentation state_dict, prefix removed.

    Example:
        >>> backbone_state({"backbone.patch_embed.0.c.weight": 1, "neck.x": 2})
        {'patch_embed.0.c.weight': 1}
    """
    return {k.removeprefix("backbone."): v for k, v in state.items() if k.startswith("backbone.")}


def describe_state_dict(state):
    """Infer the architecture of an official state_dict: embed_dim, depth, num_heads, ...

    Example:
        >>> from lsnet_keras.weights.checkpoint import read_state_dict
        >>> describe_state_dict(read_state_dict("../shared/reference/lsnet_t_224.safetensors"))
        {'embed_dim': (64, 128, 256, 384), 'depth': (0, 2, 8, 10), 'num_heads': (3, 3, 3, 4), \
'num_classes': 1000, 'distillation': False}
    """
    embed_dim, depth, num_heads = [], [], []
    for stage in range(1, 5):
        prefix = f"blocks{stage}."
        first = 0 if stage == 1 else 2
        indices = {int(k[len(prefix) :].split(".")[0]) for k in state if k.startswith(prefix)}
        depth.append(len([i for i in indices if i >= first]))
        source = "patch_embed.4.c.weight" if stage == 1 else f"blocks{stage}.1.c.weight"
        embed_dim.append(int(state[source].shape[0]) if source in state else None)
        biases = [v for k, v in state.items() if k.startswith(prefix) and "attention_biases" in k]
        num_heads.append(int(biases[0].shape[0]) if biases else None)
    head = state.get("head.l.weight")
    return {
        "embed_dim": tuple(embed_dim),
        "depth": tuple(depth),
        "num_heads": tuple(num_heads),
        "num_classes": None if head is None else int(head.shape[0]),
        "distillation": "head_dist.l.weight" in state,
    }


def guess_variant(state):
    """Name of the released variant a state_dict looks like, or None.

    Example:
        >>> from lsnet_keras.weights.checkpoint import read_state_dict
        >>> guess_variant(read_state_dict("../shared/reference/lsnet_t_224.safetensors"))
        'lsnet_t'
    """
    found = describe_state_dict(state)
    for name, spec in VARIANTS.items():
        if found["embed_dim"] == spec["embed_dim"] and found["depth"] == spec["depth"]:
            return name + ("_distill" if found["distillation"] else "")
    return None


def _variant_of(model):
    """The released backbone variant a model is built as (e.g. lsnet_t_distill), or None."""
    for name, spec in VARIANTS.items():
        if (model.embed_dim, model.depth) == (spec["embed_dim"], spec["depth"]):
            return name + ("_distill" if getattr(model, "distillation", False) else "")
    return None


def _model_description(model):
    variant = model.name if model.name.startswith("lsnet_") else "a custom LSNet"
    return f"{variant} (embed_dim={model.embed_dim}, depth={model.depth})"


def _check_kind(model, state, path):
    """One line when a checkpoint is for another task than the model (detector vs classifier)."""
    found, expected = checkpoint_kind(state), model_kind(model)
    compatible = {CLASSIFIER_KIND, BACKBONE_KIND}  # a backbone takes a classifier's weights
    if found is None or found == expected or {found, expected} <= compatible:
        return
    raise CheckpointError(
        f"{path}: this is {found} checkpoint, but the model ({model.name}) is {expected}"
    )


def _check_keys(model, table, state, path):
    missing = [key for key in table if key not in state]
    unexpected = [key for key in state if key not in table]
    mismatched = []
    for key, entry in table.items():
        if key not in state or entry.layout in (COUNTER, BIAS_INDEX, BIAS_TABLE):
            continue
        expected = tuple(entry.layout.to_torch(np.zeros(entry.variable.shape)).shape)
        if tuple(state[key].shape) != expected:
            mismatched.append(f"{key}: checkpoint {tuple(state[key].shape)} vs model {expected}")
    if not (missing or unexpected or mismatched):
        return
    looks_like = guess_variant(backbone_state(state) if hasattr(model, "parts") else state)
    problems = []
    if looks_like and looks_like != _variant_of(model):
        problems.append(
            f"it looks like a {looks_like} checkpoint, the model is {_model_description(model)}"
        )
    for label, items in (("missing", missing), ("unexpected", unexpected), ("shape", mismatched)):
        if items:
            shown = ", ".join(items[:5]) + (f" (+{len(items) - 5} more)" if len(items) > 5 else "")
            problems.append(f"{len(items)} {label}: {shown}")
    raise CheckpointError(f"{path}: does not fit the model: " + "; ".join(problems))


def _bias_table(entry, table, path):
    """The checkpoint's bias table, resized (bicubic) to the model's grid when they differ."""
    attention = entry.variable
    heads, cells = table.shape
    target = attention.table_resolution or attention.resolution
    if heads != attention.num_heads:
        raise CheckpointError(
            f"{path}: {entry.key}: checkpoint has {heads} heads, the model {attention.num_heads}"
        )
    if cells == target[0] * target[1]:
        return table
    side = int(round(cells**0.5))
    if side * side != cells:
        raise CheckpointError(f"{path}: {entry.key}: {cells} entries is not a square grid")
    return resize_bias_table(table, target)


def load_weights(model, checkpoint, source=None, use_ema=False):
    """Load an official LSNet checkpoint (`.pth` or `.safetensors`) into `model`, strictly.

    `checkpoint` is a path, "imagenet" (the official release of `model`'s variant), an
    `hf://owner/repo[/file]` handle (both via `lsnet_keras.weights.hub`), or an already read
    {key: array} state_dict (then `source` names it in errors). `use_ema` takes a training
    checkpoint's `model_ema`. Every key must be consumed and every shape fit, except the
    classifier of a model built without one; attention bias tables made for another input size
    are resized with the official bicubic rule. Raises CheckpointError.

    Example:
        >>> import lsnet_keras
        >>> model = lsnet_keras.LSNet((32, 64, 96, 128), (2, 2, 2, 2), (2, 2, 2, 2),
        ...                           num_classes=10, input_shape=128)
        >>> lsnet_keras.load_weights(model, "../shared/reference/tiny_128.safetensors")
    """
    if isinstance(checkpoint, dict):
        state, path = checkpoint, source or "state_dict"
    else:
        state, path = read_weights(checkpoint, model.name, use_ema)
    _check_kind(model, state, path)
    table = checkpoint_table(model)
    if "head.l.weight" not in table:  # a backbone (features_only / include_top=False)
        state = {k: v for k, v in state.items() if not k.startswith(("head.", "head_dist."))}
    _check_keys(model, table, state, path)
    for key, entry in table.items():
        if entry.layout not in (COUNTER, BIAS_INDEX):
            _check_values(key, state[key], path)
    for key, entry in table.items():
        value = state[key]
        if entry.layout is COUNTER:
            continue
        if entry.layout is BIAS_INDEX:
            grid = int(round(len(value) ** 0.5))
            if not np.array_equal(value, attention_bias_index((grid, grid))):
                raise CheckpointError(f"{path}: {key} is not the official bias index")
            continue
        if entry.layout is BIAS_TABLE:
            entry.variable.attention_biases.assign(_bias_table(entry, value, path))
            continue
        entry.variable.assign(entry.layout.to_keras(value).astype(entry.variable.dtype))


def load_backbone_weights(model, checkpoint):
    """Load the backbone of a detector / segmenter from a classification checkpoint
    ("imagenet", a path, an hf:// handle; its head is left out, its stage-4 bias tables
    resized to the 14x14 detection grid as the official code does) or from another dense
    checkpoint's `backbone.*` (e.g. the official Mask R-CNN files). Raises CheckpointError.

    Example:
        >>> import lsnet_keras
        >>> model = lsnet_keras.lsnet_t_retinanet(input_shape=64)
        >>> load_backbone_weights(model, "../shared/reference/lsnet_t_224.safetensors")
    """
    backbone = model.backbone
    if isinstance(checkpoint, dict):
        state, path = checkpoint, "state_dict"
    else:
        state, path = read_weights(checkpoint, _variant_of(backbone))
    if any(key.startswith("backbone.") for key in state):
        state = backbone_state(state)
    load_weights(backbone, state, source=path)


def _check_values(key, value, path):
    """A weight must be floating point and finite (NaN / Inf would load and predict nan)."""
    if value.dtype.kind != "f":
        raise CheckpointError(f"{path}: {key} holds {value.dtype} values, expected floating point")
    if not np.isfinite(value).all():
        raise CheckpointError(f"{path}: {key} holds NaN or infinite values")


def export_state_dict(model):
    """The official state_dict of `model` as {key: numpy array} (the mapping run backwards).

    Example:
        >>> import lsnet_keras
        >>> state = export_state_dict(lsnet_keras.lsnet_t())
        >>> state["patch_embed.0.c.weight"].shape
        (16, 3, 3, 3)
    """
    state = {}
    for key, entry in checkpoint_table(model).items():
        if entry.layout is COUNTER:
            state[key] = np.array(0, dtype="int64")
        elif entry.layout is BIAS_INDEX:
            attention = entry.variable
            grid = attention.table_resolution or attention.resolution
            state[key] = attention_bias_index(grid).astype("int64")
        elif entry.layout is BIAS_TABLE:
            state[key] = np.asarray(entry.variable.attention_biases)
        else:
            state[key] = np.ascontiguousarray(entry.layout.to_torch(np.asarray(entry.variable)))
    return state
