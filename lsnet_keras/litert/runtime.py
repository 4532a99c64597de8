"""Run `.tflite` classifiers: ai-edge-litert by default, tflite-runtime where that is installed.

This module imports neither TensorFlow nor Keras, so it runs on a Raspberry Pi or Coral stack
(tflite-runtime 2.14, NumPy < 2) as well as on a workstation.

Example:
    >>> from lsnet_keras.litert.runtime import TFLiteClassifier
    >>> classifier = TFLiteClassifier("lsnet_t_int8.tflite", num_threads=2)  # doctest: +SKIP
    >>> classifier.classify(pixels)[:1]  # doctest: +SKIP
    [(281, 0.62)]
"""

import time

import numpy as np

from lsnet_keras.config import IMAGENET_MEAN, IMAGENET_STD
from lsnet_keras.errors import LSNetError, interrupts_held
from lsnet_keras.io import require_file

EDGETPU_LIBRARY = {
    "Linux": "libedgetpu.so.1",
    "Darwin": "libedgetpu.1.dylib",
    "Windows": "edgetpu.dll",
}
PIXEL_MEAN = tuple(255.0 * m for m in IMAGENET_MEAN)
PIXEL_STD = tuple(255.0 * s for s in IMAGENET_STD)


def interpreter_module():
    """(name, module) of the TFLite interpreter available: ai-edge-litert, else tflite-runtime.

    Example:
        >>> interpreter_module()[0] in ("ai-edge-litert", "tflite-runtime")
        True
    """
    try:
        with interrupts_held():  # a signal inside its native import reads as an ImportError
            from ai_edge_litert import interpreter

        return "ai-edge-litert", interpreter
    except ImportError:
        pass
    try:
        with interrupts_held():
            from tflite_runtime import interpreter

        return "tflite-runtime", interpreter
    except ImportError:
        raise LSNetError(
            "no TFLite runtime: pip install ai-edge-litert (or tflite-runtime on Coral / Pi)"
        ) from None


def open_interpreter(path, num_threads=None):
    """(runtime name, allocated Interpreter) of a `.tflite` file; a one-line LSNetError if the
    file is missing or LiteRT cannot load it.

    Example:
        >>> open_interpreter("missing.tflite")
        Traceback (most recent call last):
        ...
        lsnet_keras.errors.LSNetError: missing.tflite: model file not found
    """
    path = require_file(path, "model")
    runtime, module = interpreter_module()
    try:
        interpreter = module.Interpreter(model_path=path, num_threads=num_threads)
        interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as err:
        raise LSNetError(f"{path}: not a loadable .tflite model ({err})") from None
    return runtime, interpreter


def _load_delegates(module, delegate):
    if delegate is None:
        return []
    if delegate != "edgetpu":
        raise LSNetError(f"--delegate must be edgetpu, got {delegate!r}")
    import ctypes
    import platform

    library = EDGETPU_LIBRARY.get(platform.system(), "libedgetpu.so.1")
    try:
        ctypes.CDLL(library)  # fail here, before the runtime's half-built delegate warns on exit
        return [module.load_delegate(library)]
    except (ValueError, OSError) as err:
        raise LSNetError(f"cannot load the Edge TPU delegate {library}: {err}") from None


class TFLiteClassifier:
    """A `.tflite` image classifier: feeds RGB crops, returns dequantized scores.

    `mean` / `std` are in pixel units (0..255), as in TFLite metadata; by default they come from
    the model's metadata when present, else ImageNet's for float inputs and raw pixels for uint8
    inputs without quantization (models exported with --include-preprocessing).

    Example:
        >>> TFLiteClassifier("missing.tflite")
        Traceback (most recent call last):
        ...
        lsnet_keras.errors.LSNetError: missing.tflite: model file not found
    """

    def __init__(self, path, num_threads=None, delegate=None, mean=None, std=None):
        path = require_file(path, "model")
        self.runtime, module = interpreter_module()
        delegates = _load_delegates(module, delegate)  # its own error, not "not loadable"
        try:
            self.interpreter = module.Interpreter(
                model_path=path, num_threads=num_threads, experimental_delegates=delegates
            )
            self.interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as err:
            raise LSNetError(f"{path}: not a loadable .tflite model ({err})") from None
        self.input = self.interpreter.get_input_details()[0]
        self.output = self.interpreter.get_output_details()[0]
        _check_classifier(path, self.input, self.output)
        self.height, self.width = (int(s) for s in self.input["shape"][1:3])
        default_mean, default_std = self._default_normalization()
        self.mean = np.array(mean if mean is not None else default_mean, "float32")
        self.std = np.array(std if std is not None else default_std, "float32")

    @property
    def num_classes(self):
        return int(self.output["shape"][-1])

    def input_description(self):
        """e.g. "1x224x224x3 uint8 (scale 1, zero point 0)"."""
        shape = "x".join(str(int(s)) for s in self.input["shape"])
        text = f"{shape} {np.dtype(self.input['dtype']).name}"
        scale, zero_point = self.input["quantization"]
        return text + (f" (scale {scale:.6g}, zero point {zero_point})" if scale else "")

    def _default_normalization(self):
        scale, _ = self.input["quantization"]
        if self.input["dtype"] == np.uint8 and scale in (0.0, 1.0):
            return (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)  # raw pixels: the model normalizes
        return PIXEL_MEAN, PIXEL_STD

    def input_tensor(self, pixels):
        """uint8 RGB (H, W, 3) at the model's size -> the model's input tensor (1, H, W, 3).

        Example:
            >>> classifier.input_tensor(np.zeros((224, 224, 3), "uint8")).shape  # doctest: +SKIP
            (1, 224, 224, 3)
        """
        pixels = np.asarray(pixels)
        if pixels.shape != (self.height, self.width, 3):
            raise LSNetError(
                f"input must be {(self.height, self.width, 3)} RGB, got {pixels.shape}"
            )
        real = (pixels.astype("float32") - self.mean) / self.std
        dtype = self.input["dtype"]
        if dtype == np.float32:
            return real[None]
        scale, zero_point = self.input["quantization"]
        if scale == 0.0:
            return real.astype(dtype)[None]
        info = np.iinfo(dtype)
        quantized = np.round(real / scale) + zero_point
        return np.clip(quantized, info.min, info.max).astype(dtype)[None]

    def run(self, input_tensor):
        """Invoke on a prepared input tensor; returns (float scores (classes,), seconds)."""
        self.interpreter.set_tensor(self.input["index"], input_tensor)
        start = time.perf_counter()
        self.interpreter.invoke()
        elapsed = time.perf_counter() - start
        raw = self.interpreter.get_tensor(self.output["index"])[0]
        scale, zero_point = self.output["quantization"]
        if self.output["dtype"] != np.float32 and scale:
            raw = (raw.astype("float32") - zero_point) * scale
        return raw.astype("float32"), elapsed

    def classify_timed(self, pixels, top_k=5):
        """(top-k [(class index, probability)], seconds of invoke) of an RGB crop."""
        scores, seconds = self.run(self.input_tensor(pixels))
        probabilities = softmax(scores)
        order = np.argsort(-probabilities, kind="stable")[:top_k]
        return [(int(i), float(probabilities[i])) for i in order], seconds

    def classify(self, pixels, top_k=5):
        """Top-k (class index, probability) of an RGB crop at the model's size."""
        return self.classify_timed(pixels, top_k)[0]


def _shape_text(details):
    return "x".join(str(int(s)) for s in details["shape"]) or "scalar"


def _check_classifier(path, input_details, output_details):
    """An image classifier takes one NHWC RGB image (1, H, W, 3) and gives (1, classes)."""
    shape = tuple(int(s) for s in input_details["shape"])
    if len(shape) != 4 or shape[0] != 1 or shape[3] != 3 or min(shape) < 1:
        raise LSNetError(
            f"{path}: input is {_shape_text(input_details)}; expected one RGB image in NHWC "
            "layout, 1xHxWx3"
        )
    if input_details["dtype"] not in (np.float32, np.uint8, np.int8):
        raise LSNetError(
            f"{path}: input type is {np.dtype(input_details['dtype']).name}; expected float32, "
            "uint8 or int8"
        )
    out = tuple(int(s) for s in output_details["shape"])
    if len(out) != 2 or out[0] != 1 or out[1] < 1:
        raise LSNetError(
            f"{path}: output is {_shape_text(output_details)}; expected class scores, 1xN"
        )


def softmax(logits):
    """Numerically stable softmax of a 1-D array.

    Example:
        >>> softmax(np.zeros(4)).tolist()
        [0.25, 0.25, 0.25, 0.25]
    """
    shifted = np.exp(logits - np.max(logits))
    return shifted / shifted.sum()
