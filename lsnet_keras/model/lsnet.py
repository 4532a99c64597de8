"""The LSNet model and the builders of the released variants.

Example:
    >>> import numpy as np
    >>> import lsnet_keras
    >>> model = lsnet_keras.lsnet_t(num_classes=10, input_shape=128)
    >>> model(np.zeros((1, 128, 128, 3), "float32")).shape
    (1, 10)
"""

import keras

from lsnet_keras.config import DEFAULT_KEY_DIM, VARIANTS, stage_resolutions
from lsnet_keras.model.block import Block
from lsnet_keras.model.conv import BNLinear, Conv2dBN
from lsnet_keras.model.serialization import serializable

STAGE_NAMES = ("stage1", "stage2", "stage3", "stage4")


def _image_shape(input_shape):
    """Normalize 224, (224, 224) or (224, 224, 3) to (224, 224, 3)."""
    if isinstance(input_shape, int):
        input_shape = (input_shape, input_shape)
    input_shape = tuple(int(s) for s in input_shape)
    if len(input_shape) == 2:
        input_shape += (3,)
    if len(input_shape) != 3 or input_shape[2] != 3 or min(input_shape) < 1:
        raise ValueError(f"input_shape must be (height, width, 3) or an int, got {input_shape}")
    return input_shape


def block_kind(stage, index):
    """Which mixer block `index` of `stage` (0-based) uses, as in the official code."""
    if index % 2 == 0:
        return "repvgg"
    return "attention" if stage == 3 else "lsconv"


@serializable()
class LSNet(keras.Model):
    """LSNet ("See Large, Focus Small"), channels-last, on ImageNet-normalized float32 images.

    Args:
        embed_dim, depth, num_heads, key_dim: per-stage widths, block counts, attention heads
            and key width (four entries each), as in the official constructor.
        num_classes: classifier size. include_top: False returns the stage-4 feature map.
        distillation: build the second (distillation) head of the `_distill` checkpoints;
            the output is the mean of both heads, as the official model at inference.
        input_shape: static input size, an int or (height, width[, 3]); default 224.
        features_only: return the four stage outputs (strides 8, 16, 32, 64) instead.
        deploy: the inference form made by `reparameterize` (no BatchNorm, fused RepVGG).
        attention_formulation: "matmul" (batched matmuls; CPU, GPU, training) or
            "elementwise" (no BATCH_MATMUL, 1-D softmax; Coral Edge TPU). Same weights.
        fp16_safe: keep intermediates in float16 range (attention scale folded into q,
            GroupNorm and SE reductions on bounded values); the gpu target's layout. Same
            weights, same function.
        attention_table: None (the classifier: stage-4 attention's bias table fits the stage-4
            grid) or a grid side such as 14 (the detection form of the official detection and
            segmentation backbones: a 14x14 table resized to the real grid on every call).
        weights: None, "imagenet" (the official release of a named variant, downloaded from
            the Hugging Face hub and cached), an `hf://owner/repo[/file]` handle, or a
            checkpoint path (`.pth`, `.safetensors`). A model without a head loads the backbone.
        use_ema: read a training checkpoint's `model_ema` (EMA weights) instead of `model`.

    Example:
        >>> model = LSNet(embed_dim=(32, 64, 96, 128), depth=(1, 2, 2, 2),
        ...               num_heads=(2, 2, 2, 2), num_classes=10, input_shape=128)
        >>> model.output_shape
        (None, 10)
    """

    def __init__(
        self,
        embed_dim,
        depth,
        num_heads,
        key_dim=DEFAULT_KEY_DIM,
        num_classes=1000,
        include_top=True,
        distillation=False,
        input_shape=224,
        features_only=False,
        deploy=False,
        attention_formulation="matmul",
        fp16_safe=False,
        attention_table=None,
        weights=None,
        use_ema=False,
        name="lsnet",
        **kwargs,
    ):
        embed_dim, depth = tuple(embed_dim), tuple(depth)
        num_heads, key_dim = tuple(num_heads), tuple(key_dim)
        if not all(len(v) == 4 for v in (embed_dim, depth, num_heads, key_dim)):
            raise ValueError("embed_dim, depth, num_heads and key_dim need 4 entries (stages)")
        if any(dim % 8 for dim in embed_dim):
            raise ValueError(f"every embed_dim must be divisible by 8 (SKA), got {embed_dim}")
        image_shape = _image_shape(input_shape)
        table = None if attention_table is None else (int(attention_table),) * 2
        resolutions = stage_resolutions(image_shape[:2])
        prefixes = {}

        def add(layer, official_prefix):
            prefixes[layer.name] = official_prefix
            return layer

        inputs = keras.Input(shape=image_shape, name="image")
        x = inputs
        for i, width in enumerate((embed_dim[0] // 4, embed_dim[0] // 2, embed_dim[0])):
            if i:
                x = keras.layers.ReLU(name=f"patch_embed_{2 * i - 1}")(x)
            conv = Conv2dBN(width, 3, strides=2, deploy=deploy, name=f"patch_embed_{2 * i}")
            x = add(conv, f"patch_embed.{2 * i}")(x)
        features = []
        for stage in range(4):
            first = 0
            if stage:
                first = 2
                down = Conv2dBN(
                    embed_dim[stage - 1],
                    3,
                    2,
                    depthwise=True,
                    deploy=deploy,
                    name=f"blocks{stage + 1}_0",
                )
                x = add(down, f"blocks{stage + 1}.0")(x)
                proj = Conv2dBN(embed_dim[stage], 1, deploy=deploy, name=f"blocks{stage + 1}_1")
                x = add(proj, f"blocks{stage + 1}.1")(x)
            for index in range(depth[stage]):
                block = Block(
                    embed_dim[stage],
                    key_dim[stage],
                    num_heads[stage],
                    kind=block_kind(stage, index),
                    resolution=resolutions[stage],
                    deploy=deploy,
                    formulation=attention_formulation,
                    fp16_safe=fp16_safe,
                    table_resolution=table,
                    name=f"blocks{stage + 1}_{first + index}",
                )
                x = add(block, f"blocks{stage + 1}.{first + index}")(x)
            x = keras.layers.Identity(name=STAGE_NAMES[stage])(x)
            features.append(x)

        if features_only:
            outputs = features
        elif not include_top:
            outputs = x
        else:
            pooled = keras.layers.GlobalAveragePooling2D(name="pool")(x)
            outputs = add(BNLinear(num_classes, deploy=deploy, name="head"), "head")(pooled)
            if distillation and not deploy:
                head_dist = add(BNLinear(num_classes, name="head_dist"), "head_dist")
                outputs = keras.layers.Average(name="mean_of_heads")([outputs, head_dist(pooled)])
        super().__init__(inputs=inputs, outputs=outputs, name=name, **kwargs)
        self.embed_dim = embed_dim
        self.depth = depth
        self.num_heads = num_heads
        self.key_dim = key_dim
        self.num_classes = num_classes
        self.include_top = include_top
        self.distillation = distillation
        self.image_shape = image_shape
        self.features_only = features_only
        self.deploy = deploy
        self.attention_formulation = attention_formulation
        self.fp16_safe = fp16_safe
        self.attention_table = attention_table
        # Keras layer name -> official state_dict prefix, for the weight mapping.
        self.official_prefixes = prefixes
        if weights is not None:
            from lsnet_keras.weights.mapping import load_weights

            load_weights(self, weights, use_ema=use_ema)

    def get_config(self):
        return {
            "embed_dim": self.embed_dim,
            "depth": self.depth,
            "num_heads": self.num_heads,
            "key_dim": self.key_dim,
            "num_classes": self.num_classes,
            "include_top": self.include_top,
            "distillation": self.distillation,
            "input_shape": self.image_shape,
            "features_only": self.features_only,
            "deploy": self.deploy,
            "attention_formulation": self.attention_formulation,
            "fp16_safe": self.fp16_safe,
            "attention_table": self.attention_table,
            "name": self.name,
            "trainable": self.trainable,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def architecture(self):
        """The constructor arguments that define the weights' shapes (no head options).

        Example:
            >>> lsnet_t(input_shape=128).architecture()["depth"]
            (0, 2, 8, 10)
        """
        return {
            "embed_dim": self.embed_dim,
            "depth": self.depth,
            "num_heads": self.num_heads,
            "key_dim": self.key_dim,
        }


def _variant(variant, num_classes, distillation, **kwargs):
    name = variant + ("_distill" if distillation else "")
    return LSNet(
        **VARIANTS[variant], num_classes=num_classes, distillation=distillation, name=name, **kwargs
    )


def lsnet_t(num_classes=1000, distillation=False, **kwargs):
    """LSNet-T (0.3 GFLOPs at 224). Keyword arguments are LSNet's (input_shape, weights, ...).

    Example:
        >>> lsnet_t(weights=None).count_params()
        11423376
    """
    return _variant("lsnet_t", num_classes, distillation, **kwargs)


def lsnet_s(num_classes=1000, distillation=False, **kwargs):
    """LSNet-S (0.5 GFLOPs at 224). Keyword arguments are LSNet's (input_shape, weights, ...).

    Example:
        >>> lsnet_s(num_classes=10, input_shape=160).output_shape
        (None, 10)
    """
    return _variant("lsnet_s", num_classes, distillation, **kwargs)


def lsnet_b(num_classes=1000, distillation=False, **kwargs):
    """LSNet-B (1.3 GFLOPs at 224). Keyword arguments are LSNet's (input_shape, weights, ...).

    Example:
        >>> [f.shape[1] for f in lsnet_b(features_only=True).outputs]
        [28, 14, 7, 4]
    """
    return _variant("lsnet_b", num_classes, distillation, **kwargs)


BUILDERS = {"lsnet_t": lsnet_t, "lsnet_s": lsnet_s, "lsnet_b": lsnet_b}


def build_variant(name, **kwargs):
    """Build a released variant by name: lsnet_t|s|b, optionally with the `_distill` suffix.

    Example:
        >>> build_variant("lsnet_t_distill", num_classes=10, input_shape=128).distillation
        True
    """
    base = name.removesuffix("_distill")
    if base not in BUILDERS:
        known = ", ".join(sorted(BUILDERS) + [f"{b}_distill" for b in sorted(BUILDERS)])
        raise ValueError(f"unknown variant {name!r}; known: {known}")
    return BUILDERS[base](distillation=name.endswith("_distill"), **kwargs)
