"""The `lsnet` command: a thin layer over the library's functions.

Example:
    $ lsnet convert --variant lsnet_t --checkpoint lsnet_t.pth --output lsnet_t.keras
"""

import os
import sys

from lsnet_keras import options
from lsnet_keras.config import IO_TYPES, PRECISIONS, TARGETS
from lsnet_keras.console import native_logs_silenced, quiet_tensorflow_logging, show_progress
from lsnet_keras.errors import LSNetError, interrupts_held, run_command


def _convert(args):
    from lsnet_keras.model.loading import convert_checkpoint

    model = convert_checkpoint(
        args.weights,
        args.output,
        variant=args.variant,
        input_shape=args.img_size,
        deploy=args.deploy,
        overwrite=args.force,
        use_ema=args.ema,
    )
    form = "deployment" if args.deploy else "training"
    height, width = model.input_shape[1:3]
    print(
        f"wrote {args.output}: {model.name} ({form} form), input {height}x{width}, "
        f"{model.count_params():,} parameters"
    )


def _load_keras_model(args):
    """The model named by MODEL (.keras) or --variant/--weights (random weights if none)."""
    from lsnet_keras.model.loading import load_keras_model, model_from_checkpoint
    from lsnet_keras.model.lsnet import build_variant

    if args.model:
        return load_keras_model(args.model)
    if args.weights:
        return model_from_checkpoint(args.weights, args.variant, args.img_size, args.ema)
    if not args.variant:
        raise LSNetError("give a MODEL (.keras), --weights, or --variant")
    print(f"note: no --weights: {args.variant} has RANDOM weights (for testing the path only)")
    return build_variant(args.variant, input_shape=args.img_size or 224)


def _export(args):
    from lsnet_keras.litert.calibration import folder_images
    from lsnet_keras.litert.export import export_tflite
    from lsnet_keras.quantization.qat_model import is_qat_model

    if not (args.output or args.android_assets):
        raise LSNetError("give --output FILE.tflite (or --android-assets DIR)")
    from lsnet_keras.io import check_outputs, require_folder

    if args.output:
        check_outputs([args.output], args.force)  # before the slow part
    if args.android_assets:
        from lsnet_keras.litert.android import asset_paths

        check_outputs(asset_paths(args.android_assets), args.force)
    if args.calibration:
        require_folder(args.calibration, "calibration")
    model = _load_keras_model(args)
    if getattr(model, "task", None) in ("detect", "segment"):
        return _export_dense(model, args)
    _square(model.input_shape[1:3])
    calibration = None
    if args.android_assets:
        from lsnet_keras.litert.android import write_android_assets

        if args.calibration:
            calibration = folder_images(args.calibration, model.input_shape[1])
        written = write_android_assets(
            model, args.android_assets, calibration, overwrite=args.force
        )
        print(f"wrote {', '.join(written)} to {args.android_assets}")
        return
    if is_qat_model(model):
        print(f"{model.name} is a QAT model: int8 from its trained ranges, no calibration")
    elif args.precision == "int8":
        if args.calibration:
            calibration = folder_images(args.calibration, model.input_shape[1])
            print(f"calibrating on {len(calibration)} images from {args.calibration}")
        else:
            print(
                "calibrating on the built-in generated set (pass --calibration DIR for real images)"
            )
    export_tflite(
        model,
        args.output,
        precision=args.precision,
        target=args.target,
        io=args.io,
        calibration=calibration,
        include_preprocessing=args.include_preprocessing,
        overwrite=args.force,
    )
    print(
        f"wrote {args.output} ({os.path.getsize(args.output) / 1e6:.1f} MB, {args.precision}, "
        f"target {args.target})"
    )


def _export_dense(model, args):
    """`lsnet export` of a detector (letterboxed calibration, ends in the detection op) or a
    segmenter (stretched calibration, logits out), both with MediaPipe's metadata."""
    import numpy as np

    from lsnet_keras.detection.letterbox import letterbox
    from lsnet_keras.litert.calibration import folder_images
    from lsnet_keras.litert.detector_export import export_detector
    from lsnet_keras.litert.segmenter_export import export_segmenter

    kind = "detector" if model.task == "detect" else "segmenter"
    if args.android_assets or args.io != "float32" or args.include_preprocessing:
        raise LSNetError(
            f"{model.name} is a {kind}: --android-assets, --io and --include-preprocessing "
            f"are for classifiers (a {kind} always takes RGB pixels, normalized inside)"
        )
    if not args.output:
        raise LSNetError("give --output FILE.tflite")
    height, width = model.image_shape[:2]
    if model.task == "detect":
        how, fit = "letterboxed", lambda image: letterbox(image, height, width).pixels
        export, ending = export_detector, "ends in TFLite_Detection_PostProcess"
    else:
        how, fit = "stretched", lambda image: np.asarray(image.resize((width, height)))
        export, ending = export_segmenter, "logits at 1/8 out"
    calibration = None
    if args.precision == "int8" and args.calibration:
        calibration = folder_images(args.calibration, fit=fit)
        print(f"calibrating on {len(calibration)} images from {args.calibration} ({how})")
    elif args.precision == "int8":
        print("calibrating on the built-in generated set (pass --calibration DIR for real images)")
    export(
        model,
        args.output,
        precision=args.precision,
        target=args.target,
        calibration=calibration,
        overwrite=args.force,
    )
    print(
        f"wrote {args.output} ({os.path.getsize(args.output) / 1e6:.1f} MB, {args.precision}, "
        f"target {args.target}; {ending}, MediaPipe metadata)"
    )


def _detect(args):
    import json

    from lsnet_keras.detection.draw import draw_detections
    from lsnet_keras.detection.run import detect_file, open_detector
    from lsnet_keras.io import atomic_path, check_outputs
    from lsnet_keras.preprocess import load_image

    pictures = _picture_paths(args.output, args.images)
    check_outputs([p for p in [args.json, *pictures.values()] if p], args.force)
    for image_path in args.images:
        load_image(image_path)  # every image readable before the slow part
    if args.model.endswith(".keras"):  # TensorFlow only for Keras models
        with interrupts_held():
            import keras  # noqa: F401
    detector = open_detector(args.model, num_threads=args.threads)
    records = []
    for image_path in args.images:
        image, record = detect_file(detector, image_path, args.score_threshold)
        records.append(record)
        print(f"{image_path}: {len(record['detections'])} detections >= {args.score_threshold}")
        for found in record["detections"][:10]:
            box = ", ".join(f"{v:.0f}" for v in found["box"])
            print(f"  {found['score']:.3f}  {found['name']:<16} [{box}]")
        if image_path in pictures:
            names = [found["name"] for found in record["detections"]]
            picture = draw_detections(
                image,
                [found["box"] for found in record["detections"]],
                [found["score"] for found in record["detections"]],
                names,
                [found["label"] for found in record["detections"]],
            )
            with atomic_path(pictures[image_path], overwrite=args.force) as tmp:
                picture.save(tmp, format=_picture_format(pictures[image_path]))
            print(f"  drawn in {pictures[image_path]}")
    if args.json:
        with atomic_path(args.json, overwrite=args.force) as tmp, open(tmp, "w") as f:
            json.dump(records, f, indent=1)
        print(f"wrote {args.json}")


def _segment(args):
    import json

    from lsnet_keras.io import atomic_path, check_outputs
    from lsnet_keras.preprocess import load_image
    from lsnet_keras.segmentation.run import class_map_image, open_segmenter, overlay, segment_file

    pictures = _picture_paths(args.output, args.images, "_overlay.png", "--output")
    masks = _picture_paths(args.mask, args.images, "_mask.png", "--mask", formats=(".png",))
    outputs = [p for p in [args.json, *pictures.values(), *masks.values()] if p]
    if len(set(outputs)) < len(outputs):
        raise LSNetError("--output, --mask and --json would write the same file")
    check_outputs(outputs, args.force)
    for image_path in args.images:
        load_image(image_path)  # every image readable before the slow part
    with interrupts_held():
        import keras  # noqa: F401
    segmenter = open_segmenter(args.model)
    records = []
    for image_path in args.images:
        image, classes, record = segment_file(segmenter, image_path)
        records.append(record)
        width, height = record["size"]
        print(f"{image_path}: {width}x{height}, {len(record['classes'])} classes >= 1%")
        for found in record["classes"][:8]:
            print(f"  {100 * found['share']:5.1f}%  {found['name']}")
        for paths, picture in ((pictures, overlay), (masks, class_map_image)):
            if image_path in paths:
                drawn = picture(image, classes) if picture is overlay else picture(classes)
                with atomic_path(paths[image_path], overwrite=args.force) as tmp:
                    drawn.save(tmp, format=_picture_format(paths[image_path]))
                print(f"  wrote {paths[image_path]}")
    if args.json:
        with atomic_path(args.json, overwrite=args.force) as tmp, open(tmp, "w") as f:
            json.dump(records, f, indent=1)
        print(f"wrote {args.json}")


# Picture formats by file extension (Pillow's names).
PICTURE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}


def _picture_format(path):
    return PICTURE_FORMATS[os.path.splitext(str(path))[1].lower()]


def _picture_paths(
    output, images, suffix="_detections.png", option="--output", formats=tuple(PICTURE_FORMATS)
):
    """{image: picture path}: `output` is the file for one image, a folder for several (each
    picture named after its image, with `suffix`)."""
    if output is None:
        return {}
    if len(images) == 1 and not os.path.isdir(output):
        if os.path.splitext(output)[1].lower() not in formats:
            raise LSNetError(
                f"{option} {output}: a picture file ({', '.join(formats)}) for one image, "
                "or a folder"
            )
        return {images[0]: output}
    if not os.path.isdir(output):
        raise LSNetError(f"{option} {output}: not a folder (several images are drawn into one)")
    paths = {}
    for image in images:
        stem = os.path.splitext(os.path.basename(image))[0]
        path = os.path.join(output, f"{stem}{suffix}")
        if path in paths.values():
            raise LSNetError(f"{option}: two images would be drawn to {path}; rename one")
        paths[image] = path
    return paths


def _predict(args):
    from lsnet_keras.litert.labels import labels_for
    from lsnet_keras.litert.runtime import TFLiteClassifier
    from lsnet_keras.preprocess import eval_crop, load_image

    classifier = TFLiteClassifier(args.model, num_threads=args.threads, delegate=args.delegate)
    top_k = args.top_k or min(5, classifier.num_classes)
    if top_k > classifier.num_classes:
        raise LSNetError(f"--top-k {top_k}: the model has {classifier.num_classes} classes")
    labels = labels_for(args.model, classifier.num_classes, args.labels)
    print(f"{args.model}: {classifier.runtime}, input {classifier.input_description()}")
    for image_path in args.images:
        pixels = eval_crop(load_image(image_path), classifier.height, classifier.width)
        top, seconds = classifier.classify_timed(pixels, top_k)
        print(f"{image_path}: {seconds * 1000:.1f} ms")
        for index, probability in top:
            print(f"  {probability:7.4f}  {labels[index]}")


def _android_golden(args):
    from lsnet_keras.litert.android import write_golden

    print(f"wrote {write_golden(args.model, args.image, args.output, overwrite=args.force)}")


def _edgetpu_check(args):
    from lsnet_keras.litert.edgetpu_check import check_edgetpu, format_report

    report = check_edgetpu(args.model)
    print(format_report(report))
    return 0 if report.ok else 1


def _pipeline(args):
    if args.task == "detect":
        return _detect_pipeline(args)
    from lsnet_keras.pipeline import run_pipeline

    run_pipeline(
        args.variant,
        weights=args.weights or "imagenet",
        use_ema=args.ema,
        output_dir=args.output_dir,
        img_size=_square(args.img_size or (224, 224)),
        calibration_dir=args.calibration,
        threads=tuple(args.threads),
        runs=args.runs,
        overwrite=args.force,
    )


def _detect_pipeline(args):
    from lsnet_keras.detection.pipeline import format_detect_report, run_detect_pipeline
    from lsnet_keras.io import require_folder
    from lsnet_keras.model.dense import dense_image_shape

    if args.ema or args.variant.endswith("_distill"):
        raise LSNetError("--task detect: the detectors are lsnet_t, lsnet_s, lsnet_b (no --ema)")
    try:
        img_size = dense_image_shape(args.img_size or (640, 640))[:2]
    except ValueError as err:
        raise LSNetError(f"--img-size: {err}") from None
    if args.calibration:
        require_folder(args.calibration, "calibration")
    show_progress()
    report = run_detect_pipeline(
        args.variant,
        weights=args.weights or "coco",
        output_dir=args.output_dir,
        img_size=img_size,
        calibration_dir=args.calibration,
        threads=tuple(args.threads),
        runs=args.runs,
        overwrite=args.force,
    )
    print(format_detect_report(report))
    print(f"report written to {args.output_dir}")


def _square(img_size):
    """A classifier's side: classifiers take square inputs (the official center crop)."""
    height, width = img_size
    if height != width:
        raise LSNetError(
            f"--img-size {height} {width}: classifiers take square inputs (the official center "
            "crop); give one value"
        )
    return height


WEIGHTS_HELP = (
    "imagenet (the official release, downloaded from the Hugging Face hub and cached), "
    "hf://owner/repo[/file], or a .pth / .safetensors path"
)


def _add_weights(parser, required=False, default=None, extra=""):
    """--weights (and its older name --checkpoint, a path) and --ema, on one sub-command."""
    choice = parser.add_mutually_exclusive_group(required=required)
    choice.add_argument("--weights", default=default, help=WEIGHTS_HELP + extra)
    choice.add_argument(
        "--checkpoint",
        dest="weights",
        default=default,
        metavar="PATH",
        help="a .pth / .safetensors path (the older name of --weights PATH)",
    )
    parser.add_argument(
        "--ema", action="store_true", help="take a training checkpoint's model_ema weights"
    )


def build_parser():
    """The argument parser of `lsnet` (one sub-command per job).

    Example:
        >>> args = ["convert", "--checkpoint", "a.pth", "--output", "a.keras"]
        >>> build_parser().parse_args(args + ["--img-size", "320"]).img_size
        (320, 320)
    """
    parser = options.ArgumentParser(prog="lsnet", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    convert = commands.add_parser(
        "convert", help="official checkpoint (.pth / .safetensors) -> .keras model"
    )
    _add_weights(convert, required=True)
    convert.add_argument(
        "--output", required=True, type=options.output_file(".keras"), help="the .keras file"
    )
    convert.add_argument(
        "--variant",
        type=options.variant,
        help="lsnet_t, lsnet_s, lsnet_b (+ _distill); default: recognized from the checkpoint",
    )
    convert.add_argument(
        "--img-size",
        nargs="+",
        action=options.ImageSize,
        metavar="SIZE",
        help="input size to build for, SIZE or HEIGHT WIDTH (attention biases are resized); "
        "default 224 for classifiers, 640 640 for detectors (multiples of 32, up to 1344)",
    )
    convert.add_argument(
        "--deploy", action="store_true", help="save the reparameterized (inference) form"
    )
    convert.add_argument("--force", action="store_true", help="replace an existing output")
    convert.set_defaults(run=_convert)

    export = commands.add_parser("export", help=".keras / checkpoint -> builtins-only .tflite")
    export.add_argument("model", nargs="?", help="a .keras file (or use --variant/--checkpoint)")
    export.add_argument(
        "--variant", type=options.variant, help="lsnet_t, lsnet_s, lsnet_b (+ _distill)"
    )
    _add_weights(export)
    export.add_argument(
        "--img-size",
        nargs="+",
        action=options.ImageSize,
        metavar="SIZE",
        help="input size with --variant/--weights: SIZE or HEIGHT WIDTH; default 224 for "
        "classifiers, 640 640 for detector checkpoints (a .keras keeps its own)",
    )
    export.add_argument("--precision", choices=PRECISIONS, default="fp32")
    export.add_argument("--target", choices=TARGETS, default="cpu")
    export.add_argument(
        "--io", choices=IO_TYPES, default="float32", help="input/output type of int8 models"
    )
    export.add_argument("--calibration", help="folder of images for int8 calibration")
    export.add_argument(
        "--include-preprocessing",
        action="store_true",
        help="the model takes uint8 RGB crops and normalizes inside",
    )
    export.add_argument(
        "--output", type=options.output_file(".tflite"), help="the .tflite file to write"
    )
    export.add_argument(
        "--android-assets",
        metavar="DIR",
        help="write the Android demo's models (fp16 GPU, int8 CPU; uint8 pixel input) and "
        "labels.txt into DIR instead",
    )
    export.add_argument("--force", action="store_true", help="replace an existing output")
    export.set_defaults(run=_export)

    predict = commands.add_parser("predict", help="top-5 labels and latency of a .tflite model")
    predict.add_argument("model", help="a .tflite classifier")
    predict.add_argument("images", nargs="+", help="image files")
    predict.add_argument(
        "--top-k", type=options.POSITIVE, help="how many classes to show (default 5 or fewer)"
    )
    predict.add_argument("--threads", type=options.THREADS, default=None)
    predict.add_argument("--delegate", choices=["edgetpu"], help="load libedgetpu (Coral)")
    predict.add_argument("--labels", help="labels file, one per line (default: the model's)")
    predict.set_defaults(run=_predict)

    detect = commands.add_parser(
        "detect", help="boxes, scores and names of a .keras / .tflite detector, drawn or JSON"
    )
    detect.add_argument("model", help="a detector: .keras (lsnet convert) or .tflite (export)")
    detect.add_argument("images", nargs="+", help="image files, any size (letterboxed)")
    detect.add_argument(
        "--score-threshold",
        type=options.PROBABILITY,
        default=0.3,
        help="keep detections scoring at least this; default 0.3 (0.05 is MMDetection's)",
    )
    detect.add_argument("--json", type=options.output_file(".json"), help="write detections here")
    detect.add_argument(
        "--output", help="draw the detections: a picture file for one image, a folder for several"
    )
    detect.add_argument("--threads", type=options.THREADS, default=None)
    detect.add_argument("--force", action="store_true", help="replace existing outputs")
    detect.set_defaults(run=_detect)

    segment = commands.add_parser(
        "segment", help="class map of a .keras / .tflite segmenter: a color overlay and a mask PNG"
    )
    segment.add_argument(
        "model", help="a segmenter: .keras (lsnet convert of a Semantic FPN) or .tflite (export)"
    )
    segment.add_argument("images", nargs="+", help="image files, any size (stretched)")
    segment.add_argument(
        "--output", help="the color overlay: a picture file for one image, a folder for several"
    )
    segment.add_argument(
        "--mask",
        help="the class map as 8-bit grayscale PNG (class index per pixel, 0 = wall): a .png "
        "for one image, a folder for several",
    )
    segment.add_argument("--json", type=options.output_file(".json"), help="class shares here")
    segment.add_argument("--force", action="store_true", help="replace existing outputs")
    segment.set_defaults(run=_segment)

    golden = commands.add_parser(
        "android-golden", help="golden files for the Android core's cross-language test"
    )
    golden.add_argument("model", help="an exported .tflite classifier")
    golden.add_argument("image", help="an image (official resize + center crop is applied)")
    golden.add_argument("--output", required=True, help="the golden directory to write")
    golden.add_argument("--force", action="store_true", help="replace existing golden files")
    golden.set_defaults(run=_android_golden)

    check = commands.add_parser(
        "edgetpu-check", help="which ops of a .tflite map to the Coral Edge TPU (compiler 16)"
    )
    check.add_argument("model", help="a full-integer .tflite model")
    check.set_defaults(run=_edgetpu_check)

    pipeline = commands.add_parser(
        "pipeline", help="export fp32/int8/fp16-GPU/int8-Edge TPU, verify, benchmark, report"
    )
    pipeline.add_argument(
        "--variant", type=options.variant, default="lsnet_t", help="lsnet_t, lsnet_s, lsnet_b"
    )
    _add_weights(
        pipeline,
        extra="; default imagenet (classify) or coco (detect), random weights when the hub "
        "cannot be reached; or random",
    )
    pipeline.add_argument(
        "--task",
        choices=["classify", "detect"],
        default="classify",
        help="classify (default) or detect (the RetinaNet detector)",
    )
    pipeline.add_argument(
        "--img-size",
        nargs="+",
        action=options.ImageSize,
        metavar="SIZE",
        help="SIZE or HEIGHT WIDTH; default 224 (classify), 640 640 (detect)",
    )
    pipeline.add_argument("--calibration", help="folder of images for int8 calibration")
    pipeline.add_argument("--output-dir", default="lsnet_out")
    pipeline.add_argument("--threads", type=options.THREADS, nargs="+", default=[1, 2])
    pipeline.add_argument("--runs", type=options.POSITIVE, default=20, help="timed runs per model")
    pipeline.add_argument("--force", action="store_true", help="replace existing files")
    pipeline.set_defaults(run=_pipeline)
    return parser


def main(argv=None):
    """Entry point of the `lsnet` console script; returns the exit status.

    Example:
        >>> main(["convert", "--checkpoint", "missing.pth", "--output", "x.keras"])
        2
    """
    args = build_parser().parse_args(argv)
    return run_command(f"lsnet {args.command}", _run, args)


# Subcommands that build or load Keras models (the others never import TensorFlow).
KERAS_COMMANDS = ("convert", "export", "pipeline")


def _run(args):
    if args.command in KERAS_COMMANDS:
        with interrupts_held():  # a Ctrl-C in TensorFlow's import could be dropped otherwise
            import keras  # noqa: F401
    return args.run(args)


def console():
    """The `lsnet` console script: `main` with TensorFlow's native logging kept off the screen.

    Example:
        $ lsnet export --variant lsnet_t --output lsnet_t.tflite   # our lines only
    """
    quiet_tensorflow_logging()
    with native_logs_silenced():
        status = main()
    sys.exit(status)


if __name__ == "__main__":
    console()
