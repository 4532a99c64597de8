"""The official Semantic FPN-LSNet segmenter: detection-form LSNet backbone + LSNetFPN + FPNHead.

Inputs are MMSegmentation-normalized RGB images, (batch, H, W, 3) with H and W multiples of 32.
The model's output is the head's logits at 1/8 of the input, (batch, H/8, W/8, classes);
`segment` adds MMSegmentation's inference (logits bilinearly resized to the image, argmax).

Example:
    >>> import numpy as np
    >>> import lsnet_keras
    >>> model = lsnet_keras.lsnet_t_semfpn(input_shape=(128, 192))
    >>> tuple(model(np.zeros((1, 128, 192, 3), "float32")).shape)
    (1, 16, 24, 150)
"""

import keras
import numpy as np
from keras import ops

from lsnet_keras.config import VARIANTS
from lsnet_keras.model.dense import DenseLSNet
from lsnet_keras.model.fpn import LSNetFPN
from lsnet_keras.model.fpn_head import FPNHead, upsample_bilinear
from lsnet_keras.model.serialization import serializable

# ADE20K, the released models' dataset: 150 classes; the short side evaluation resizes to.
ADE20K_CLASSES = 150
DEFAULT_SEGMENT_SIZE = (512, 512)


def class_map(logits, size):
    """Class index per pixel: (batch, h, w, classes) logits bilinearly resized to `size`
    (align_corners False, as MMSegmentation), then the argmax over classes.

    The argmax of the resized logits equals that of the resized softmax MMSegmentation takes
    (softmax is monotonic per pixel and the resize mixes the same pixels for every class) only
    up to ties; it is what the exported class-map models compute.

    Example:
        >>> logits = np.zeros((1, 2, 2, 3), "float32"); logits[..., 2] = 1
        >>> class_map(logits, (4, 4)).shape, int(class_map(logits, (4, 4)).max())
        ((1, 4, 4), 2)
    """
    logits = ops.convert_to_tensor(logits)
    if keras.backend.standardize_dtype(logits.dtype) != "float64":
        logits = ops.cast(logits, "float32")
    resized = upsample_bilinear(logits, *size)
    return ops.convert_to_numpy(ops.argmax(resized, axis=-1)).astype(np.int32)


@serializable()
class LSNetSemanticFPN(DenseLSNet):
    """Semantic FPN with an LSNet backbone, as the released `fpn_lsnet_*_ade20k_40k`.

    Arguments are DenseLSNet's (num_classes: 150, ADE20K's, by default; weights="ade20k";
    input_shape default 512x512, the training crop).

    Example:
        >>> model = LSNetSemanticFPN((32, 64, 96, 128), (1, 1, 1, 1), (2, 2, 2, 2),
        ...                          num_classes=3, input_shape=64)
        >>> model.logits_size()
        (8, 8)
    """

    task = "segment"
    head_prefix = "decode_head."
    default_num_classes = ADE20K_CLASSES
    default_name = "lsnet_semfpn"
    default_input_shape = DEFAULT_SEGMENT_SIZE

    @staticmethod
    def neck_and_head(features, in_channels, num_classes):
        neck = LSNetFPN(in_channels, 256, num_outs=len(in_channels), name="neck")
        head = FPNHead(num_classes, name="decode_head")
        return neck, head, head(neck(features))

    def logits_size(self):
        """(h, w) of the logits: the backbone's first level, 1/8 of the input (rounded up).

        Example:
            >>> lsnet_t_semfpn(input_shape=(256, 384)).logits_size()
            (32, 48)
        """
        return tuple(int(side) for side in self.output_shape[1:3])

    def segment(self, images, output_size=None):
        """Class maps (batch, H, W) int32 of normalized (batch, H, W, 3) images: the logits
        resized to `output_size` (default the input size) and the argmax.

        Example:
            >>> model = lsnet_t_semfpn(input_shape=64)
            >>> model.segment(np.zeros((1, 64, 64, 3), "float32"), (48, 80)).shape
            (1, 48, 80)
        """
        logits = self(np.asarray(images, self.compute_dtype))
        return class_map(logits, output_size or self.image_shape[:2])


def _variant(variant, num_classes, **kwargs):
    return LSNetSemanticFPN(
        **VARIANTS[variant], num_classes=num_classes, name=f"{variant}_semfpn", **kwargs
    )


def lsnet_t_semfpn(num_classes=ADE20K_CLASSES, **kwargs):
    """Semantic FPN-LSNet-T (ADE20K mIoU 40.1). Keyword arguments are LSNetSemanticFPN's.

    Example:
        >>> lsnet_t_semfpn(input_shape=64).name
        'lsnet_t_semfpn'
    """
    return _variant("lsnet_t", num_classes, **kwargs)


def lsnet_s_semfpn(num_classes=ADE20K_CLASSES, **kwargs):
    """Semantic FPN-LSNet-S (ADE20K mIoU 41.6). Keyword arguments are LSNetSemanticFPN's.

    Example:
        >>> lsnet_s_semfpn(input_shape=64).num_classes
        150
    """
    return _variant("lsnet_s", num_classes, **kwargs)


def lsnet_b_semfpn(num_classes=ADE20K_CLASSES, **kwargs):
    """Semantic FPN-LSNet-B (ADE20K mIoU 43.1). Keyword arguments are LSNetSemanticFPN's.

    Example:
        >>> lsnet_b_semfpn(input_shape=64).logits_size()
        (8, 8)
    """
    return _variant("lsnet_b", num_classes, **kwargs)


SEGMENTER_BUILDERS = {
    "lsnet_t_semfpn": lsnet_t_semfpn,
    "lsnet_s_semfpn": lsnet_s_semfpn,
    "lsnet_b_semfpn": lsnet_b_semfpn,
}
