"""Official checkpoint -> Keras model (and `.keras` file), recognizing the variant.

Example:
    >>> from lsnet_keras.model.loading import model_from_checkpoint
    >>> model = model_from_checkpoint("../shared/reference/lsnet_t_224.safetensors")
    >>> model.name
    'lsnet_t'
"""

import zipfile

import numpy as np

from lsnet_keras.errors import LSNetError
from lsnet_keras.io import atomic_path, check_outputs, require_file
from lsnet_keras.model.dense import DEFAULT_DENSE_SIZE, DENSE_ATTENTION_TABLE, dense_image_shape
from lsnet_keras.model.lsnet import LSNet, build_variant
from lsnet_keras.model.reparam import reparameterize
from lsnet_keras.model.retinanet import LSNetRetinaNet
from lsnet_keras.model.semantic_fpn import DEFAULT_SEGMENT_SIZE, LSNetSemanticFPN
from lsnet_keras.model.serialization import PACKAGE
from lsnet_keras.weights.checkpoint import CheckpointError
from lsnet_keras.weights.hub import read_weights
from lsnet_keras.weights.mapping import (
    MASK_RCNN_KIND,
    RETINANET_KIND,
    SEGMENTER_KIND,
    backbone_state,
    checkpoint_kind,
    describe_state_dict,
    guess_variant,
    load_weights,
)

DEFAULT_CLASSIFIER_SIZE = 224


def model_from_checkpoint(checkpoint, variant=None, input_shape=None, use_ema=False):
    """Build the model a checkpoint was made for and load it.

    `checkpoint`: a path, "imagenet" (needs `variant`) or an `hf://owner/repo[/file]` handle.
    `variant` (lsnet_t, lsnet_s, lsnet_b, optionally `_distill`) is recognized from the
    checkpoint when omitted; a checkpoint of another architecture builds a general LSNet.
    The number of classes is taken from the checkpoint's head. `use_ema` takes a training
    checkpoint's `model_ema` instead of its `model`. An MMDetection RetinaNet checkpoint builds
    the detector, a Mask R-CNN one its backbone (features at strides 8-64; no LiteRT builtin
    does RoIAlign); an MMSegmentation Semantic FPN one the segmenter. `input_shape`: default
    224 for classifiers, 640x640 for detectors, 512x512 for segmenters.

    Example:
        >>> model_from_checkpoint("../shared/reference/tiny_128.safetensors", input_shape=128).name
        'lsnet'
    """
    state, checkpoint = read_weights(checkpoint, variant, use_ema)
    kind = checkpoint_kind(state)
    if kind in (RETINANET_KIND, MASK_RCNN_KIND, SEGMENTER_KIND):
        return _dense_from_state(state, checkpoint, kind, variant, input_shape)
    input_shape = input_shape or DEFAULT_CLASSIFIER_SIZE
    found = describe_state_dict(state)
    if found["num_classes"] is None:
        raise CheckpointError(f"{checkpoint}: no classifier (head.l.weight) in the checkpoint")
    head = {"num_classes": found["num_classes"], "input_shape": input_shape}
    looks_like = guess_variant(state)
    if variant and looks_like and looks_like != variant:  # say so before building anything
        raise CheckpointError(
            f"{checkpoint}: it looks like a {looks_like} checkpoint, not {variant}"
        )
    variant = variant or looks_like
    if variant:
        model = build_variant(variant, **head)
    else:
        if None in found["embed_dim"]:
            raise CheckpointError(f"{checkpoint}: not an LSNet checkpoint (stages not found)")
        # Heads only matter where a stage has attention; others take stage 4's count.
        heads = found["num_heads"][3] or 4
        model = LSNet(
            found["embed_dim"],
            found["depth"],
            tuple(h or heads for h in found["num_heads"]),
            distillation=found["distillation"],
            **head,
        )
    load_weights(model, state, source=checkpoint)
    return model


def _dense_from_state(state, checkpoint, kind, variant, input_shape):
    """The detector, segmenter or Mask R-CNN backbone of an MMDetection / MMSegmentation
    state_dict, loaded."""
    default_size = DEFAULT_SEGMENT_SIZE if kind == SEGMENTER_KIND else DEFAULT_DENSE_SIZE
    try:
        image_shape = dense_image_shape(input_shape or default_size)
    except ValueError as err:
        raise CheckpointError(f"{checkpoint}: {err}") from None
    backbone = backbone_state(state)
    looks_like = guess_variant(backbone)
    if variant and looks_like and looks_like != variant:
        raise CheckpointError(f"{checkpoint}: it looks like a {looks_like} backbone, not {variant}")
    found = describe_state_dict(backbone)
    if None in found["embed_dim"]:
        raise CheckpointError(f"{checkpoint}: no LSNet backbone (backbone.* stages not found)")
    heads = found["num_heads"][3] or 4
    arch = {
        "embed_dim": found["embed_dim"],
        "depth": found["depth"],
        "num_heads": tuple(h or heads for h in found["num_heads"]),
    }
    name = looks_like or "lsnet"
    if kind == MASK_RCNN_KIND:  # its RoI heads are out of scope: the backbone alone
        model = LSNet(
            **arch,
            input_shape=image_shape,
            features_only=True,
            attention_table=DENSE_ATTENTION_TABLE,
            name=f"{name}_maskrcnn_backbone",
        )
        load_weights(model, backbone, source=checkpoint)
        return model
    if kind == SEGMENTER_KIND:
        classes = state["decode_head.conv_seg.weight"].shape[0]
        model = LSNetSemanticFPN(
            **arch, num_classes=classes, input_shape=image_shape, name=f"{name}_semfpn"
        )
    else:
        classes = state["bbox_head.retina_cls.weight"].shape[0] // 9
        model = LSNetRetinaNet(
            **arch, num_classes=classes, input_shape=image_shape, name=f"{name}_retinanet"
        )
    load_weights(model, state, source=checkpoint)
    return model


def load_keras_model(path, lsnet_only=True):
    """Load a `.keras` LSNet with a one-line error for a missing, unreadable or wrong file.

    `lsnet_only`: refuse a valid Keras model that is not an LSNet (float or QAT); a teacher for
    distillation may be any classifier. Weights that are NaN or infinite are refused.

    Example:
        >>> load_keras_model("missing.keras")
        Traceback (most recent call last):
        ...
        lsnet_keras.weights.checkpoint.CheckpointError: missing.keras: model file not found
    """
    import keras

    import lsnet_keras.layers  # noqa: F401  (every layer registered for load_model, also in
    import lsnet_keras.quantization  # noqa: F401  the `lsnet` command, which imports lazily)

    try:
        path = require_file(path, "model")
    except LSNetError as err:
        raise CheckpointError(str(err)) from None
    if not path.endswith(".keras"):
        raise CheckpointError(f"{path}: expected a .keras model file")
    if not zipfile.is_zipfile(path):  # Keras would say "File not found" of such a file
        raise CheckpointError(f"{path}: not a .keras model (a .keras file is a zip archive)")
    try:
        model = keras.models.load_model(path)
    except Exception as err:  # Keras raises many types for damaged archives
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"{path}: not a loadable .keras model ({first})") from None
    registered = keras.saving.get_registered_name(type(model))
    if lsnet_only and registered.split(">")[0] != PACKAGE:  # LSNet or QAT LSNet
        raise CheckpointError(
            f"{path}: a Keras {type(model).__name__} model, not an LSNet "
            "(expected a model saved by lsnet convert, training.train or training.qat)"
        )
    for variable in model.weights:
        if not np.isfinite(np.asarray(variable)).all():
            raise CheckpointError(f"{path}: weight {variable.path} holds NaN or infinite values")
    return model


def convert_checkpoint(
    checkpoint, output, variant=None, input_shape=None, deploy=False, overwrite=False, use_ema=False
):
    """Write a `.keras` file from an official checkpoint, atomically; returns the model.

    `checkpoint`, `variant`, `input_shape` and `use_ema` are `model_from_checkpoint`'s.

    Example:
        >>> convert_checkpoint("../shared/reference/lsnet_t_224.safetensors", "/tmp/t.keras",
        ...                    overwrite=True).name
        'lsnet_t'
    """
    if not str(output).endswith(".keras"):
        raise CheckpointError(f"{output}: the output must be a .keras file")
    check_outputs([output], overwrite)  # before reading the checkpoint
    model = model_from_checkpoint(checkpoint, variant, input_shape, use_ema)
    if deploy:
        model = reparameterize(model)
    with atomic_path(output, overwrite=overwrite) as tmp:
        model.save(tmp)
    return model
