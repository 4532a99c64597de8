"""Run a `.tflite` detector (exported by `export_detector`) with LiteRT or tflite-runtime.

No TensorFlow or Keras: what `lsnet detect` uses for `.tflite` models. The model takes RGB pixels
(uint8 or float32 0..255) and ends in `TFLite_Detection_PostProcess`: boxes (ymin, xmin, ymax,
xmax ratios), classes, scores, count.

Example:
    >>> from lsnet_keras.litert.detector_runtime import TFLiteDetector
    >>> TFLiteDetector("missing.tflite")
    Traceback (most recent call last):
    ...
    lsnet_keras.errors.LSNetError: missing.tflite: model file not found
"""

import numpy as np

from lsnet_keras.detection.postprocess import Detections
from lsnet_keras.errors import LSNetError
from lsnet_keras.litert.runtime import open_interpreter


class TFLiteDetector:
    """A `.tflite` detector: `detect(pixels)` -> Detections in input pixels, best first."""

    def __init__(self, path, num_threads=None):
        self.path = str(path)
        self.runtime, self.interpreter = open_interpreter(path, num_threads)
        inputs = self.interpreter.get_input_details()
        self.outputs = self.interpreter.get_output_details()
        ops = {op["op_name"] for op in self.interpreter._get_ops_details()}
        if len(inputs) != 1 or len(self.outputs) != 4 or "TFLite_Detection_PostProcess" not in ops:
            raise LSNetError(
                f"{path}: not a detector (expected one image input and the four outputs of "
                "TFLite_Detection_PostProcess; export one with lsnet export DETECTOR.keras)"
            )
        self.input = inputs[0]
        shape = [int(s) for s in self.input["shape"]]
        if len(shape) != 4 or shape[0] != 1 or shape[3] != 3:
            raise LSNetError(f"{path}: the input is {shape}, expected [1, H, W, 3] RGB")
        self.height, self.width = shape[1:3]

    def detect(self, pixels, score_threshold=0.0, content=None):
        """Detections of (H, W, 3) pixels 0..255: boxes x1, y1, x2, y2 in input pixels, clipped
        to `content` (h, w) (default the whole input), scores >= `score_threshold`.

        Example:
            >>> TFLiteDetector("det.tflite").detect(np.zeros((320, 320, 3)))  # doctest: +SKIP
        """
        dtype = np.dtype(self.input["dtype"])
        batch = np.asarray(pixels)[None]
        if dtype == np.uint8:
            batch = np.clip(np.rint(batch), 0, 255)
        self.interpreter.set_tensor(self.input["index"], batch.astype(dtype))
        self.interpreter.invoke()
        boxes, classes, scores, count = (
            self.interpreter.get_tensor(o["index"]) for o in self.outputs
        )
        n = int(count.reshape(-1)[0])
        boxes, classes, scores = boxes[0, :n], classes[0, :n], scores[0, :n]
        h, w = content or (self.height, self.width)
        corners = boxes[:, [1, 0, 3, 2]] * np.float32([self.width, self.height] * 2)
        corners[:, 0::2] = np.clip(corners[:, 0::2], 0, w)
        corners[:, 1::2] = np.clip(corners[:, 1::2], 0, h)
        keep = scores >= score_threshold
        return Detections(
            corners[keep].astype("float32"), scores[keep], classes[keep].astype("int64")
        )
