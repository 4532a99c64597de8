"""RetinaHead (MMDetection 2.28's), shared across the pyramid levels.

Per level: 4 stacked 3x3 conv + ReLU for classification and 4 for box regression (256
channels), then a 3x3 conv to `num_anchors * num_classes` sigmoid logits and one to
`num_anchors * 4` DeltaXYWH box deltas. Channel `a * num_classes + c` is class c of anchor a,
and `a * 4 + k` coordinate k (dx, dy, dw, dh) of anchor a, as in MMDetection.

Example:
    >>> import numpy as np
    >>> from lsnet_keras.model.retina_head import RetinaHead
    >>> head = RetinaHead(num_classes=3, feat_channels=8, stacked_convs=1)
    >>> scores, deltas = head([np.zeros((1, 4, 4, 8), "float32")])
    >>> tuple(scores[0].shape), tuple(deltas[0].shape)
    ((1, 4, 4, 27), (1, 4, 4, 36))
"""

import keras

from lsnet_keras.model.serialization import serializable


@serializable("num_classes", "num_anchors", "feat_channels", "stacked_convs")
class RetinaHead(keras.layers.Layer):
    """The RetinaNet head: a list of levels in, (class logits per level, box deltas per level).

    Example:
        >>> RetinaHead(num_classes=80).num_anchors
        9
    """

    def __init__(self, num_classes=80, num_anchors=9, feat_channels=256, stacked_convs=4, **kw):
        super().__init__(**kw)
        self.num_classes = num_classes
        self.num_anchors = num_anchors
        self.feat_channels = feat_channels
        self.stacked_convs = stacked_convs
        policy = self.dtype_policy

        def conv(filters, name, activation=None):
            return keras.layers.Conv2D(
                filters, 3, padding="same", activation=activation, name=name, dtype=policy
            )

        self.cls_convs = [
            conv(feat_channels, f"cls_convs_{i}", "relu") for i in range(stacked_convs)
        ]
        self.reg_convs = [
            conv(feat_channels, f"reg_convs_{i}", "relu") for i in range(stacked_convs)
        ]
        self.retina_cls = conv(num_anchors * num_classes, "retina_cls")
        self.retina_reg = conv(num_anchors * 4, "retina_reg")

    def build(self, input_shape):
        shape = input_shape[0]
        for branch, last in ((self.cls_convs, self.retina_cls), (self.reg_convs, self.retina_reg)):
            current = shape
            for layer in (*branch, last):
                layer.build(current)
                current = layer.compute_output_shape(current)

    def compute_output_shape(self, input_shape):
        def with_channels(channels):
            return [(s[0], s[1], s[2], channels) for s in input_shape]

        return with_channels(self.num_anchors * self.num_classes), with_channels(
            self.num_anchors * 4
        )

    def call(self, levels):
        scores, deltas = [], []
        for x in levels:
            cls, reg = x, x
            for layer in self.cls_convs:
                cls = layer(cls)
            for layer in self.reg_convs:
                reg = layer(reg)
            scores.append(self.retina_cls(cls))
            deltas.append(self.retina_reg(reg))
        return scores, deltas
