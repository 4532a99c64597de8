"""Detection arithmetic outside the network: anchors, box decoding, MMDetection's test-time
post-processing (score filter, top-k, per-class NMS) and the settings of the released detector.

Example:
    >>> from lsnet_keras.detection import RETINANET
    >>> RETINANET.strides
    (8, 16, 32, 64, 128)
"""

from lsnet_keras.detection.anchors import RETINANET, AnchorSettings, level_anchors
from lsnet_keras.detection.postprocess import MMDET_TEST, Detections, TestSettings, postprocess

__all__ = [
    "MMDET_TEST",
    "RETINANET",
    "AnchorSettings",
    "Detections",
    "TestSettings",
    "level_anchors",
    "postprocess",
]
