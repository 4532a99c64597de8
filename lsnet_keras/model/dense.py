"""What the detector and the segmenter share: the detection-form backbone, input sizes, config.

The official detection and segmentation code builds the same LSNet backbone (stage-4
attention's bias table made for a 14x14 grid, resized to the real token grid) feeding the same
LSNetFPN neck; only the head differs. `DenseLSNet` holds the common part of both models.

Example:
    >>> from lsnet_keras.model.dense import dense_image_shape
    >>> dense_image_shape(320)
    (320, 320, 3)
"""

import keras

from lsnet_keras.config import DEFAULT_KEY_DIM
from lsnet_keras.model.lsnet import LSNet, _image_shape

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


class DenseLSNet(keras.Model):
    """Base of LSNetRetinaNet and LSNetSemanticFPN: backbone, neck, head, config and weights.

    A subclass names its head (`head_prefix`, `default_num_classes`, `default_name`) and
    builds neck and head in `neck_and_head`; the constructor arguments are common:

    Args:
        embed_dim, depth, num_heads, key_dim: the backbone's (see LSNet).
        num_classes: the head's classes (default the subclass's dataset: COCO, ADE20K).
        input_shape: (H, W[, 3]) or an int, multiples of 32 (default the subclass's).
        deploy: the inference form made by `reparameterize` (backbone BatchNorm folded).
        attention_formulation, fp16_safe: the backbone's target layout (see LSNet).
        weights: None, a release name ("coco", "ade20k": the official weights of a named
            variant), an `hf://` handle or an MMDetection / MMSegmentation checkpoint path.
        backbone_weights: ImageNet classifier weights for the backbone only ("imagenet", a
            path or hf:// handle), the official starting point for training.

    Example:
        >>> import lsnet_keras
        >>> isinstance(lsnet_keras.lsnet_t_retinanet(input_shape=64), DenseLSNet)
        True
    """

    task = None
    head_prefix = None  # the official state_dict prefix of the head
    default_num_classes = None
    default_name = None
    default_input_shape = DEFAULT_DENSE_SIZE

    def __init__(
        self,
        embed_dim,
        depth,
        num_heads,
        key_dim=DEFAULT_KEY_DIM,
        num_classes=None,
        input_shape=None,
        deploy=False,
        attention_formulation="matmul",
        fp16_safe=False,
        weights=None,
        backbone_weights=None,
        name=None,
        **kwargs,
    ):
        image_shape = dense_image_shape(input_shape or self.default_input_shape)
        num_classes = self.default_num_classes if num_classes is None else num_classes
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
        inputs = keras.Input(shape=image_shape, name="image")
        neck, head, outputs = self.neck_and_head(backbone(inputs), tuple(embed_dim), num_classes)
        super().__init__(inputs=inputs, outputs=outputs, name=name or self.default_name, **kwargs)
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

    @staticmethod
    def neck_and_head(features, in_channels, num_classes):
        """(neck, head, model outputs) on the backbone's four feature maps."""
        raise NotImplementedError

    def parts(self):
        """{official state_dict prefix: part}, what the weight mapping walks.

        Example:
            >>> import lsnet_keras
            >>> sorted(lsnet_keras.lsnet_t_retinanet(input_shape=64).parts())
            ['backbone.', 'bbox_head.', 'neck.']
        """
        return {"backbone.": self.backbone, "neck.": self.neck, self.head_prefix: self.head}

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
