"""Classify one image with MediaPipe Tasks' ImageClassifier, for each model given; JSON out.

Runs in the consumer virtualenv made by tests/test_metadata.py (mediapipe, no TensorFlow):

    python mediapipe_classify.py --image image.npy --output result.json a.tflite b.tflite

The image is a (H, W, 3) uint8 RGB array saved with numpy.save. The output maps each model path
to {"categories": [{"index", "category_name", "score"}, ...]} (best first) or {"error": message}
when MediaPipe refuses the model.
"""

import argparse
import json

import mediapipe as mp
import numpy as np
from mediapipe.tasks.python import vision


def classify(model_path, image, max_results):
    options = vision.ImageClassifierOptions(
        base_options=mp.tasks.BaseOptions(model_asset_path=model_path), max_results=max_results
    )
    with vision.ImageClassifier.create_from_options(options) as classifier:
        result = classifier.classify(mp.Image(image_format=mp.ImageFormat.SRGB, data=image))
    return [
        {"index": c.index, "category_name": c.category_name, "score": c.score}
        for c in result.classifications[0].categories
    ]


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
        try:
            results[path] = {"categories": classify(path, image, args.max_results)}
        except Exception as err:  # a refusal is a result: the test asserts on the message
            results[path] = {"error": f"{type(err).__name__}: {err}"}
    with open(args.output, "w") as f:
        json.dump({"mediapipe": mp.__version__, "results": results}, f)


if __name__ == "__main__":
    main()
