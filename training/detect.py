"""Fine-tune RetinaNet-LSNet on a COCO-format dataset: the official recipe, COCO mAP per epoch.

DATA holds `annotations/instances_train.json` and `annotations/instances_val.json` with the
images in `train/` and `val/` (`--train-split train2017 --val-split val2017` for COCO itself).

Examples:
    # from the official COCO detector, its classifier re-initialized for your classes
    $ python -m training.detect --data-dir parts --finetune coco --img-size 320 \\
          --epochs 12 --batch-size 16 --output-dir runs/parts
    # the official starting point: the ImageNet backbone, neck and head from scratch
    $ python -m training.detect --data-dir coco --finetune imagenet --train-split train2017 \\
          --val-split val2017 --img-size 640 --output-dir runs/coco
"""

import logging
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from lsnet_keras import options  # noqa: E402
from lsnet_keras.errors import run_command  # noqa: E402
from training.train import _model  # noqa: E402


def build_parser():
    """The command-line options (defaults: the official 1x COCO recipe).

    Example:
        >>> args = build_parser().parse_args(["--data-dir", "d", "--output-dir", "o"])
        >>> args.lr, args.batch_size, args.img_size
        (0.0001, 16, (640, 640))
    """
    parser = options.ArgumentParser(
        prog="python -m training.detect", description=__doc__.split("\n")[0]
    )
    add = parser.add_argument
    add("--data-dir", required=True, help="annotations/instances_<split>.json + <split>/ images")
    add("--output-dir", required=True, help="checkpoints, logs, history.json, .keras models")
    add("--model", type=_model, default="lsnet_t", help="lsnet_t | lsnet_s | lsnet_b, or JSON")
    add(
        "--finetune",
        help="coco (the official detector), imagenet (the backbone), an MMDetection / "
        "classification .pth / .safetensors, an hf:// handle or a .keras detector; "
        "default: from scratch",
    )
    add(
        "--img-size",
        nargs="+",
        action=options.ImageSize,
        default=(640, 640),
        metavar="H [W]",
        help="the model's fixed input, multiples of 32 (default 640)",
    )
    add("--epochs", type=options.POSITIVE, default=12)
    add("--batch-size", type=options.POSITIVE, default=16, help="global (official 8 x 2)")
    add("--lr", type=options.float_range(1e-12), default=1e-4, help="for a batch of 16, scaled")
    add("--weight-decay", type=options.NON_NEGATIVE, default=0.05)
    add("--warmup-steps", type=options.COUNT, default=500)
    add("--decay-epochs", type=options.POSITIVE, nargs="*", default=[8, 11], help="x0.1 after")
    add("--flip", type=options.PROBABILITY, default=0.5, help="horizontal flip probability")
    add("--train-split", default="train")
    add("--val-split", default="val")
    add("--resume", action="store_true", help="continue from the latest checkpoint")
    add("--save-every", type=options.POSITIVE, default=500, help="checkpoint every N steps")
    add("--keep-checkpoints", type=options.POSITIVE, default=3)
    add("--log-every", type=options.POSITIVE, default=50, help="TensorBoard scalars every N steps")
    add("--strategy", choices=("default", "mirrored", "multiworker", "tpu"), default="default")
    add("--tpu", help="TPU name or address for --strategy tpu")
    add("--cpu-replicas", type=options.COUNT, default=0, help="split the CPU into N (testing)")
    add("--seed", type=options.COUNT, default=0)
    add("--deterministic", action="store_true", help="deterministic TensorFlow ops (slower)")
    return parser


def config_from_args(args):
    """The `DetectTrainConfig` of parsed arguments.

    Example:
        >>> args = build_parser().parse_args(["--data-dir", "d", "--output-dir", "o"])
        >>> config_from_args(args).decay_epochs
        (8, 11)
    """
    from lsnet_keras.training.detection import DetectTrainConfig

    return DetectTrainConfig(
        data_dir=args.data_dir,
        output_dir=args.output_dir,
        model=args.model,
        finetune=args.finetune,
        epochs=args.epochs,
        batch_size=args.batch_size,
        img_size=tuple(args.img_size),
        lr=args.lr,
        weight_decay=args.weight_decay,
        warmup_steps=args.warmup_steps,
        decay_epochs=tuple(args.decay_epochs),
        flip=args.flip,
        train_split=args.train_split,
        val_split=args.val_split,
        save_every=args.save_every,
        keep_checkpoints=args.keep_checkpoints,
        log_every=args.log_every,
        seed=args.seed,
        resume=args.resume,
    )


def main(argv=None):
    """Run `python -m training.detect ARGV`; returns the exit status (2: one-line error).

    Example:
        >>> main(["--data-dir", "shapes", "--output-dir", "runs/s"])  # doctest: +SKIP
        0
    """
    args = build_parser().parse_args(argv)
    if any(side % 32 for side in args.img_size):
        build_parser().error(f"--img-size {args.img_size}: multiples of 32 only")

    def start():
        from lsnet_keras.training.detection import train_detector
        from lsnet_keras.training.distribute import make_strategy

        # The strategy first: logical devices and collectives must precede other TF work.
        strategy = make_strategy(args.strategy, args.cpu_replicas, args.tpu)
        if args.deterministic:
            import keras
            import tensorflow as tf

            keras.utils.set_random_seed(args.seed)
            tf.config.experimental.enable_op_determinism()
        logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
        logging.getLogger("lsnet_keras").setLevel(logging.INFO)
        train_detector(config_from_args(args), strategy)

    return run_command("python -m training.detect", start)


if __name__ == "__main__":
    sys.exit(main())
