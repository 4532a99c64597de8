"""Detect objects in one image with MediaPipe Tasks' ObjectDetector, for each model; JSON out.

Runs in the consumer virtualenv made by tests/test_metadata.py (mediapipe, no TensorFlow):

    python mediapipe_detect.py --image image.npy --output result.json a.tflite b.tflite

The image is a (H, W, 3) uint8 RGB array saved with numpy.save. The output maps each model path
to {"detections": [{"box": [x, y, width, height] (pixels), "index", "category_name", "score"},
...]} or {"error": message} when MediaPipe refuses the model.
"""

import argparse
import json

import mediapipe as mp
import numpy as np
from mediapipe.tasks.python import vision


def detect(model_path, image, score_threshold, max_results):
    options = vision.ObjectDetectorOptions(
        base_options=mp.tasks.BaseOptions(model_asset_path=model_path),
        score_threshold=score_threshold,
        max_results=max_results,
    )
    with vision.ObjectDetector.create_from_options(options) as detector:
        result = detector.detect(mp.Image(image_format=mp.ImageFormat.SRGB, data=image))
    found = []
    for detection in result.detections:
        box, best = detection.bounding_box, detection.categories[0]
        found.append(
            {
                "box": [box.origin_x, box.origin_y, box.width, box.height],
                "index": best.index,
                "category_name": best.category_name,
                "score": best.score,
            }
        )
    return found


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+")
    parser.add_argument("--image", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--score-threshold", type=float, default=0.05)
    parser.add_argument("--max-results", type=int, default=100)
    args = parser.parse_args()
    image = np.ascontiguousarray(np.load(args.image))
    results = {}
    for path in args.models:
        try:
            found = detect(path, image, args.score_threshold, args.max_results)
            results[path] = {"detections": found}
        except Exception as err:  # a refusal is a result: the test asserts on the message
            results[path] = {"error": f"{type(err).__name__}: {err}"}
    with open(args.output, "w") as f:
        json.dump({"mediapipe": mp.__version__, "results": results}, f)


if __name__ == "__main__":
    main()
