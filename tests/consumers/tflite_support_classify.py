"""Classify one image with the TFLite Task Library (tflite-support), for each model given, and
dump the metadata as tflite-support's own parser reads it; JSON out.

Runs in the consumer virtualenv made by tests/test_metadata.py (no TensorFlow):

    python tflite_support_classify.py --image image.npy --output result.json a.tflite

The image is a (H, W, 3) uint8 RGB array saved with numpy.save. The output maps each model path
to {"categories": [...], "metadata": {...}, "packed_files": [...], "min_parser_version": "..."},
with "error" in place of "categories" when the Task Library refuses the model.
"""

import argparse
import ctypes
import json
from importlib import metadata, resources

import numpy as np

# The tflite-support wheels link libusb-1.0 (for Edge TPU) without shipping it: load the copy
# from the libusb-package wheel first, so no system package is needed.
ctypes.CDLL(str(resources.files("libusb_package") / "libusb-1.0.so"), mode=ctypes.RTLD_GLOBAL)

from tensorflow_lite_support.metadata.cc.python import _pywrap_metadata_version  # noqa: E402
from tflite_support import metadata as tflite_metadata  # noqa: E402
from tflite_support.task import core, processor, vision  # noqa: E402


def classify(model_path, image, max_results):
    options = vision.ImageClassifierOptions(
        base_options=core.BaseOptions(file_name=model_path),
        classification_options=processor.ClassificationOptions(max_results=max_results),
    )
    classifier = vision.ImageClassifier.create_from_options(options)
    result = classifier.classify(vision.TensorImage.create_from_array(image))
    return [
        {"index": c.index, "category_name": c.category_name, "score": c.score}
        for c in result.classifications[0].categories
    ]


def describe(model_path):
    """The metadata as tflite-support's MetadataDisplayer (C++ flatbuffer parser) reads it."""
    displayer = tflite_metadata.MetadataDisplayer.with_model_file(model_path)
    buffer = tflite_metadata.get_metadata_buffer(open(model_path, "rb").read())
    return {
        "metadata": json.loads(displayer.get_metadata_json()),
        "packed_files": sorted(displayer.get_packed_associated_file_list()),
        "min_parser_version": _pywrap_metadata_version.GetMinimumMetadataParserVersion(buffer),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+")
    parser.add_argument("--image", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--max-results", type=int, default=5)
    args = parser.parse_args()
    image = np.ascontiguousarray(np.load(args.image))
    results = {}
    for path in args.models:
        results[path] = describe(path)
        try:
            results[path]["categories"] = classify(path, image, args.max_results)
        except Exception as err:  # a refusal is a result: the test asserts on the message
            results[path]["error"] = f"{type(err).__name__}: {err}"
    with open(args.output, "w") as f:
        json.dump({"tflite-support": metadata.version("tflite-support"), "results": results}, f)


if __name__ == "__main__":
    main()
