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

import numpy as np

from lsnet_keras.config import VARIANTS, conv_output_size, stage_resolutions
from lsnet_keras.detection.anchors import RETINANET
from lsnet_keras.detection.postprocess import MMDET_TEST, postprocess
from lsnet_keras.model.dense import DenseLSNet
from lsnet_keras.model.fpn import LSNetFPN
from lsnet_keras.model.retina_head import RetinaHead
from lsnet_keras.model.serialization import serializable


@serializable()
class LSNetRetinaNet(DenseLSNet):
    """RetinaNet with an LSNet backbone, as the released `retinanet_lsnet_*_fpn_1x_coco`.

    Arguments are DenseLSNet's (num_classes: 80, COCO's, by default; weights="coco";
    input_shape default 640x640).

    Example:
        >>> model = LSNetRetinaNet((32, 64, 96, 128), (1, 1, 1, 1), (2, 2, 2, 2),
        ...                        num_classes=3, input_shape=64)
        >>> model.level_sizes()
        [(8, 8), (4, 4), (2, 2), (1, 1), (1, 1)]
    """

    task = "detect"
    head_prefix = "bbox_head."
    default_num_classes = 80
    default_name = "lsnet_retinanet"

    @staticmethod
    def neck_and_head(features, in_channels, num_classes):
        neck = LSNetFPN(in_channels, 256, num_outs=len(RETINANET.strides), name="neck")
        head = RetinaHead(num_classes, RETINANET.num_anchors, name="bbox_head")
        scores, deltas = head(neck(features))
        outputs = {f"cls_score_{i}": s for i, s in enumerate(scores)}
        outputs.update({f"bbox_pred_{i}": d for i, d in enumerate(deltas)})
        return neck, head, outputs

    def level_sizes(self):
        """(h, w) of the five output levels (strides 8 to 128, sizes rounded up).

        Example:
            >>> lsnet_t_retinanet(input_shape=(256, 384)).level_sizes()[-1]
            (2, 3)
        """
        sizes = stage_resolutions(self.image_shape[:2])
        h, w = sizes[-1]
        return [*sizes, (conv_output_size(h), conv_output_size(w))]

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
