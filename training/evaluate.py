"""Top-1 / top-5 accuracy of a `.keras` or `.tflite` LSNet on a dataset's validation split.

Example:
    $ python -m training.evaluate --data-dir flowers --model runs/flowers/best.keras
    flowers val: top-1 91.20%  top-5 99.40%  (500 images)
"""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from lsnet_keras import options  # noqa: E402
from lsnet_keras.errors import run_command  # noqa: E402


def build_parser():
    """The command-line options.

    Example:
        >>> build_parser().parse_args(["--data-dir", "d", "--model", "m.keras"]).batch_size
        64
    """
    parser = options.ArgumentParser(
        prog="python -m training.evaluate", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--data-dir", required=True, help="val/ class folders, TFRecords or TFDS")
    parser.add_argument("--model", required=True, help="a .keras or .tflite classifier")
    parser.add_argument(
        "--batch-size", type=options.POSITIVE, default=64, help=".keras models (default 64)"
    )
    parser.add_argument("--threads", type=options.THREADS, help=".tflite interpreter threads")
    parser.add_argument("--strict", action="store_true", help="fail on unreadable images")
    parser.add_argument("--label-offset", type=options.COUNT, default=0, help="for TFRecord labels")
    parser.add_argument(
        "--json", type=options.output_file(".json"), help="also write the metrics to this file"
    )
    parser.add_argument("--force", action="store_true", help="replace an existing --json file")
    return parser


def evaluate(args):
    """{"top1", "top5", "count"[, "loss"]} of `args.model` on the validation split.

    Example:
        >>> evaluate(build_parser().parse_args(["--data-dir", "flowers", "--model", "best.keras"]))
        ... # doctest: +SKIP
        {'top1': 0.91, 'top5': 1.0, 'loss': 0.31, 'count': 500}
    """
    from lsnet_keras.training.data import DatasetError, open_dataset

    data = open_dataset(
        args.data_dir, splits=("val",), strict=args.strict, label_offset=args.label_offset
    )
    if data.val is None:
        raise DatasetError(f"{args.data_dir}: no validation split (val/ or validation-*-of-*)")
    classes = len(data.class_names)
    if args.model.endswith(".tflite"):
        from lsnet_keras.training.evaluation import evaluate_tflite

        metrics = evaluate_tflite(args.model, data.val, args.threads, classes)
    else:
        from lsnet_keras.model.loading import load_keras_model
        from lsnet_keras.training.evaluation import evaluate_model

        model = load_keras_model(args.model)
        metrics = evaluate_model(model, data.val, args.batch_size, num_classes=classes)
    if data.val.skipped:  # folders: found by the scan; records: as they were read
        first = ", ".join(f"{p} ({why})" for p, why in data.val.skipped[:3])
        print(f"skipped {len(data.val.skipped)} unreadable, non-image or oversized: {first}")
    return metrics


def main(argv=None):
    """Run `python -m training.evaluate ARGV`; returns the exit status (2: one-line error).

    Example:
        >>> main(["--data-dir", "flowers", "--model", "best.keras"])  # doctest: +SKIP
        0
    """
    args = build_parser().parse_args(argv)
    return run_command("python -m training.evaluate", _run, args)


def _run(args):
    from lsnet_keras.io import atomic_path, check_outputs

    if args.json:
        check_outputs([args.json], args.force)  # before the slow part
    metrics = evaluate(args)
    print(
        f"{args.data_dir} val: top-1 {100 * metrics['top1']:.2f}%  "
        f"top-5 {100 * metrics['top5']:.2f}%  ({metrics['count']} images)"
    )
    if args.json:
        with atomic_path(args.json, overwrite=args.force) as tmp, open(tmp, "w") as f:
            json.dump(metrics, f, indent=1)


if __name__ == "__main__":
    sys.exit(main())
