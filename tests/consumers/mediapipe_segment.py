"""Segment one image with MediaPipe Tasks' ImageSegmenter, for each model; .npy masks out.

Runs in the consumer virtualenv made by tests/test_metadata.py (mediapipe, no TensorFlow):

    python mediapipe_segment.py --image image.npy --output-dir out/ a.tflite b.tflite

The image is a (H, W, 3) uint8 RGB array saved with numpy.save. For model i, out/i.npy holds
the category mask (H, W) uint8; out/result.json maps each model path to {"mask": file,
"labels": the labels MediaPipe read} or {"error": message} when MediaPipe refuses the model.
"""

import argparse
import json
from pathlib import Path

import mediapipe as mp
import numpy as np
from mediapipe.tasks.python import vision


def segment(model_path, image):
    options = vision.ImageSegmenterOptions(
        base_options=mp.tasks.BaseOptions(model_asset_path=model_path),
        output_category_mask=True,
        output_confidence_masks=False,
    )
    with vision.ImageSegmenter.create_from_options(options) as segmenter:
        result = segmenter.segment(mp.Image(image_format=mp.ImageFormat.SRGB, data=image))
        return np.array(result.category_mask.numpy_view()), list(segmenter.labels)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+")
    parser.add_argument("--image", required=True)
    parser.add_argument("--output-dir", required=True)
    args = parser.parse_args()
    image = np.ascontiguousarray(np.load(args.image))
    out = Path(args.output_dir)
    results = {}
    for index, path in enumerate(args.models):
        try:
            mask, labels = segment(path, image)
        except Exception as err:  # a refusal is a result: the test asserts on the message
            results[path] = {"error": f"{type(err).__name__}: {err}"}
            continue
        np.save(out / f"{index}.npy", mask.reshape(image.shape[:2]))
        results[path] = {"mask": str(out / f"{index}.npy"), "labels": labels}
    (out / "result.json").write_text(json.dumps({"mediapipe": mp.__version__, "results": results}))


if __name__ == "__main__":
    main()
