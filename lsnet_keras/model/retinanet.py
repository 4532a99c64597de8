"""The official RetinaNet-LSNet detector: detection-form LSNet backbone + LSNetFPN + RetinaHead.

Inputs are MMDetection-normalized RGB images, (batch, H, W, 3) with H and W multiples of 32.
The model's outputs are the head's raw per-level outputs, a dict `cls_score_{0..4}` (sigmoid
logits, (batch, h, w, 9 * classes)) and `bbox_pred_{0..4}` ((batch, h, w, 36) box deltas),
levels at strides 8-128; `detect` adds MMDetection's post-processing (NumPy).

Example:
    >>> import numpy as np
    >>> import lsnet_keras
    >>> model = lsnet_keras.lsnet_t_retinanet(input_shape=128)
    >>> outputs = model(np.zeros((1, 128, 128, 3), "float32"))
    >>> tuple(outputs["cls_score_0"].shape), tuple(outputs["bbox_pred_4"].shape)
    ((1, 16, 16, 720), (1, 1, 1, 36))
"""

import keras
import numpy as np

from lsnet_keras.config import DEFAULT_KEY_DIM, VARIANTS, conv_output_size, stage_resolutions
from lsnet_keras.detection.anchors import RETINANET
from lsnet_keras.detection.postprocess import MMDET_TEST, postprocess
from lsnet_keras.model.fpn import LSNetFPN
from lsnet_keras.model.lsnet import LSNet, _image_shape
from lsnet_keras.model.retina_head import RetinaHead
from lsnet_keras.model.serialization import serializable

# The official detection / segmentation backbones build stage-4 attention for a 14x14 grid.
DENSE_ATTENTION_TABLE = 14
# Dense inputs: a multiple of the deepest backbone stride, at most MMDetection's long side.
SIZE_MULTIPLE = 32
MAX_SIDE = 1344
DEFAULT_DENSE_SIZE = (640, 640)


def dense_image_shape(input_shape):
    """(H, W, 3) of a dense model's input, refusing sizes that are not multiples of 32.

    Example:
        >>> dense_image_shape((256, 384))
        (256, 384, 3)
    """
    shape = _image_shape(input_shape)
    if any(side % SIZE_MULTIPLE or side > MAX_SIDE for side in shape[:2]):
        raise ValueError(
            f"input_shape {shape[0]}x{shape[1]}: dense models need multiples of "
            f"{SIZE_MULTIPLE} up to {MAX_SIDE}"
        )
    return shape


@serializable()
class LSNetRetinaNet(keras.Model):
    """RetinaNet with an LSNet backbone, as the released `retinanet_lsnet_*_fpn_1x_coco`.

    Args:
        embed_dim, depth, num_heads, key_dim: the backbone's (see LSNet).
        num_classes: detector classes (80 for COCO).
        input_shape: (H, W[, 3]) or an int, multiples of 32 (default 640x640).
        deploy: the inference form made by `reparameterize` (backbone BatchNorm folded).
        attention_formulation, fp16_safe: the backbone's target layout (see LSNet).
        weights: None, "coco" (the official release of a named variant), an `hf://` handle or
            an MMDetection checkpoint path (`.pth`, `.safetensors`).
        backbone_weights: ImageNet classifier weights for the backbone only ("imagenet", a
            path or hf:// handle), the official starting point for training.

    Example:
        >>> model = LSNetRetinaNet((32, 64, 96, 128), (1, 1, 1, 1), (2, 2, 2, 2),
        ...                        num_classes=3, input_shape=64)
        >>> model.level_sizes()
        [(8, 8), (4, 4), (2, 2), (1, 1), (1, 1)]
    """

    task = "detect"

    def __init__(
        self,
        embed_dim,
        depth,
        num_heads,
        key_dim=DEFAULT_KEY_DIM,
        num_classes=80,
        input_shape=DEFAULT_DENSE_SIZE,
        deploy=False,
        attention_formulation="matmul",
        fp16_safe=False,
        weights=None,
        backbone_weights=None,
        name="lsnet_retinanet",
        **kwargs,
    ):
        image_shape = dense_image_shape(input_shape)
        backbone = LSNet(
            embed_dim,
            depth,
            num_heads,
            key_dim,
            input_shape=image_shape,
            features_only=True,
            deploy=deploy,
            attention_formulation=attention_formulation,
            fp16_safe=fp16_safe,
            attention_table=DENSE_ATTENTION_TABLE,
            name="backbone",
        )
        neck = LSNetFPN(tuple(embed_dim), 256, num_outs=len(RETINANET.strides), name="neck")
        head = RetinaHead(num_classes, RETINANET.num_anchors, name="bbox_head")
        inputs = keras.Input(shape=image_shape, name="image")
        scores, deltas = head(neck(backbone(inputs)))
        outputs = {f"cls_score_{i}": s for i, s in enumerate(scores)}
        outputs.update({f"bbox_pred_{i}": d for i, d in enumerate(deltas)})
        super().__init__(inputs=inputs, outputs=outputs, name=name, **kwargs)
        self.embed_dim = tuple(embed_dim)
        self.depth = tuple(depth)
        self.num_heads = tuple(num_heads)
        self.key_dim = tuple(key_dim)
        self.num_classes = num_classes
        self.image_shape = image_shape
        self.deploy = deploy
        self.attention_formulation = attention_formulation
        self.fp16_safe = fp16_safe
        self.backbone, self.neck, self.head = backbone, neck, head
        if backbone_weights is not None:
            from lsnet_keras.weights.mapping import load_backbone_weights

            load_backbone_weights(self, backbone_weights)
        if weights is not None:
            from lsnet_keras.weights.mapping import load_weights

            load_weights(self, weights)

    def parts(self):
        """{official state_dict prefix: part}, what the weight mapping walks.

        Example:
            >>> sorted(lsnet_t_retinanet(input_shape=64).parts())
            ['backbone.', 'bbox_head.', 'neck.']
        """
        return {"backbone.": self.backbone, "neck.": self.neck, "bbox_head.": self.head}

    def level_sizes(self):
        """(h, w) of the five output levels (strides 8 to 128, sizes rounded up).

        Example:
            >>> lsnet_t_retinanet(input_shape=(256, 384)).level_sizes()[-1]
            (2, 3)
        """
        sizes = stage_resolutions(self.image_shape[:2])
        h, w = sizes[-1]
        return [*sizes, (conv_output_size(h), conv_output_size(w))]

    def architecture(self):
        """The backbone's constructor arguments (see LSNet.architecture)."""
        return self.backbone.architecture()

    def get_config(self):
        return {
            "embed_dim": self.embed_dim,
            "depth": self.depth,
            "num_heads": self.num_heads,
            "key_dim": self.key_dim,
            "num_classes": self.num_classes,
            "input_shape": self.image_shape,
            "deploy": self.deploy,
            "attention_formulation": self.attention_formulation,
            "fp16_safe": self.fp16_safe,
            "name": self.name,
            "trainable": self.trainable,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def detect(self, images, settings=MMDET_TEST, image_sizes=None):
        """Run the network and MMDetection's post-processing: one `Detections` per image.

        `images` are normalized (batch, H, W, 3) inputs; `image_sizes` the unpadded (h, w)
        of each image that boxes are clipped to (default the model's input size).

        Example:
            >>> model = lsnet_t_retinanet(input_shape=64)
            >>> found = model.detect(np.zeros((1, 64, 64, 3), "float32"))
            >>> found[0].boxes.shape[1]
            4
        """
        outputs = {k: np.asarray(v) for k, v in self(np.asarray(images, "float32")).items()}
        levels = len(RETINANET.strides)
        results = []
        for index in range(len(images)):
            size = self.image_shape[:2] if image_sizes is None else image_sizes[index]
            results.append(
                postprocess(
                    [outputs[f"cls_score_{i}"][index] for i in range(levels)],
                    [outputs[f"bbox_pred_{i}"][index] for i in range(levels)],
                    size,
                    settings,
                )
            )
        return results


def _variant(variant, num_classes, **kwargs):
    return LSNetRetinaNet(
        **VARIANTS[variant], num_classes=num_classes, name=f"{variant}_retinanet", **kwargs
    )


def lsnet_t_retinanet(num_classes=80, **kwargs):
    """RetinaNet-LSNet-T (COCO box AP 34.2). Keyword arguments are LSNetRetinaNet's.

    Example:
        >>> lsnet_t_retinanet(input_shape=(256, 384)).level_sizes()[0]
        (32, 48)
    """
    return _variant("lsnet_t", num_classes, **kwargs)


def lsnet_s_retinanet(num_classes=80, **kwargs):
    """RetinaNet-LSNet-S (COCO box AP 36.5). Keyword arguments are LSNetRetinaNet's.

    Example:
        >>> lsnet_s_retinanet(input_shape=128).name
        'lsnet_s_retinanet'
    """
    return _variant("lsnet_s", num_classes, **kwargs)


def lsnet_b_retinanet(num_classes=80, **kwargs):
    """RetinaNet-LSNet-B (COCO box AP 39.2). Keyword arguments are LSNetRetinaNet's.

    Example:
        >>> lsnet_b_retinanet(input_shape=128).num_classes
        80
    """
    return _variant("lsnet_b", num_classes, **kwargs)


DETECTOR_BUILDERS = {
    "lsnet_t_retinanet": lsnet_t_retinanet,
    "lsnet_s_retinanet": lsnet_s_retinanet,
    "lsnet_b_retinanet": lsnet_b_retinanet,
}
