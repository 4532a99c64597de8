"""Train or fine-tune LSNet: the official ImageNet recipe in Keras 3, on 1 to many devices.

Examples:
    # fine-tune LSNet-T (official weights) on a folder of images, 10 classes found in it
    $ python -m training.train --data-dir flowers --finetune lsnet_t.pth --epochs 30 \\
          --batch-size 64 --output-dir runs/flowers
    # the official ImageNet run on 8 GPUs (global batch 8 x 256)
    $ python -m training.train --data-dir imagenet --model lsnet_t --batch-size 2048 \\
          --strategy mirrored --output-dir runs/lsnet_t
"""

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from lsnet_keras import options  # noqa: E402
from lsnet_keras.errors import run_command  # noqa: E402


def build_parser():
    """The command-line options (defaults: the official recipe).

    Example:
        >>> build_parser().parse_args(["--data-dir", "d", "--output-dir", "o"]).batch_size
        256
    """
    parser = options.ArgumentParser(
        prog="python -m training.train", description=__doc__.split("\n")[0]
    )
    add = parser.add_argument
    add("--data-dir", required=True, help="train/ + val/ class folders, TFRecords or TFDS")
    add("--output-dir", required=True, help="checkpoints, logs, curves.png, .keras models")
    add("--model", type=_model, default="lsnet_t", help="lsnet_t | lsnet_s | lsnet_b, or JSON")
    add("--epochs", type=options.POSITIVE, default=300)
    add("--batch-size", type=options.POSITIVE, default=256, help="global (official 8 x 256)")
    add("--img-size", type=options.IMAGE_SIZE, default=224)
    add("--num-classes", type=options.POSITIVE, help="default: the number of class folders")
    add("--resume", action="store_true", help="continue from the latest checkpoint")
    add(
        "--finetune",
        help="start from imagenet (the official weights of --model, from the Hugging Face hub), "
        "hf://owner/repo[/file], an official .pth/.safetensors or a .keras model",
    )
    add("--freeze-backbone", action="store_true", help="train only the head(s)")
    add("--distill-teacher", help="a .keras teacher: hard distillation (official alpha 0.5)")
    add("--distill-alpha", type=options.PROBABILITY, default=0.5)
    add(
        "--teacher-input",
        choices=("normalized", "pixels"),
        default="normalized",
        help="what the teacher takes: ImageNet-normalized images or 0-255 pixels",
    )
    add("--lr", type=POSITIVE_RATE, default=1e-3, help="for a global batch of 512, scaled")
    add("--min-lr", type=options.NON_NEGATIVE, default=1e-5)
    add("--warmup-lr", type=options.NON_NEGATIVE, default=1e-6)
    add("--warmup-epochs", type=options.COUNT, default=5)
    add("--weight-decay", type=options.NON_NEGATIVE, help="default 0.025 (0.05 for lsnet_b)")
    add("--clip-grad", type=options.NON_NEGATIVE, default=0.02, help="adaptive clipping; 0: off")
    add("--no-model-ema", dest="model_ema", action="store_false")
    add("--model-ema-decay", type=options.PROBABILITY, default=0.99996)
    add("--aa", default="rand-m9-mstd0.5-inc1", help="RandAugment policy, or none")
    add("--reprob", type=options.PROBABILITY, default=0.25, help="random erasing probability")
    add("--mixup", type=options.NON_NEGATIVE, default=0.8)
    add("--cutmix", type=options.NON_NEGATIVE, default=1.0)
    add("--mixup-prob", type=options.PROBABILITY, default=1.0)
    add("--mixup-switch-prob", type=options.PROBABILITY, default=0.5)
    add("--smoothing", type=options.PROBABILITY, default=0.1)
    add("--repeated-aug", type=options.POSITIVE, default=3, help="copies per image (1: off)")
    add("--strategy", choices=("default", "mirrored", "multiworker", "tpu"), default="default")
    add("--tpu", help="TPU name or address for --strategy tpu (default: the local TPU VM)")
    add("--cpu-replicas", type=options.COUNT, default=0, help="split the CPU into N (testing)")
    add("--sync-bn", action="store_true", help="BatchNorm statistics over all replicas")
    add("--precision", choices=("float32", "mixed_float16", "mixed_bfloat16"), default="float32")
    add("--save-every", type=options.POSITIVE, default=1000, help="checkpoint every N steps")
    add("--keep-checkpoints", type=options.POSITIVE, default=3)
    add("--log-every", type=options.POSITIVE, default=50, help="TensorBoard scalars every N steps")
    add("--eval-batch-size", type=options.POSITIVE)
    add("--seed", type=options.COUNT, default=0)
    add("--strict", action="store_true", help="fail on unreadable files instead of skipping")
    add("--label-offset", type=options.COUNT, default=0, help="subtracted from TFRecord labels")
    add("--deterministic", action="store_true", help="deterministic TensorFlow ops (slower)")
    return parser


POSITIVE_RATE = options.float_range(1e-12)


def _model(text):
    """A variant name, or a JSON object of LSNet arguments ({"embed_dim": [...], ...})."""
    if not text.lstrip().startswith(("{", "[")):
        return options.variant(text)
    import json

    try:
        architecture = json.loads(text)
    except json.JSONDecodeError as err:
        raise argparse.ArgumentTypeError(f"not a variant name nor valid JSON ({err})") from None
    if not isinstance(architecture, dict):
        raise argparse.ArgumentTypeError("expected a JSON object of LSNet arguments")
    return architecture


def config_from_args(args):
    """The `TrainConfig` of parsed command-line arguments.

    Example:
        >>> args = build_parser().parse_args(["--data-dir", "d", "--output-dir", "o"])
        >>> config_from_args(args).augment.mixup
        0.8
    """
    from lsnet_keras.training.augment import Augment
    from lsnet_keras.training.config import TrainConfig

    augment = Augment(
        rand_augment=args.aa,
        reprob=args.reprob,
        mixup=args.mixup,
        cutmix=args.cutmix,
        mixup_prob=args.mixup_prob,
        switch_prob=args.mixup_switch_prob,
        smoothing=args.smoothing,
    )
    return TrainConfig(
        data_dir=args.data_dir,
        output_dir=args.output_dir,
        model=args.model,
        epochs=args.epochs,
        batch_size=args.batch_size,
        img_size=args.img_size,
        num_classes=args.num_classes,
        lr=args.lr,
        min_lr=args.min_lr,
        warmup_lr=args.warmup_lr,
        warmup_epochs=args.warmup_epochs,
        weight_decay=args.weight_decay,
        clip_grad=args.clip_grad,
        model_ema=args.model_ema,
        ema_decay=args.model_ema_decay,
        augment=augment,
        repeated_aug=args.repeated_aug,
        teacher=args.distill_teacher,
        distill_alpha=args.distill_alpha,
        teacher_input=args.teacher_input,
        finetune=args.finetune,
        freeze_backbone=args.freeze_backbone,
        sync_bn=args.sync_bn,
        precision=args.precision,
        save_every=args.save_every,
        keep_checkpoints=args.keep_checkpoints,
        log_every=args.log_every,
        eval_batch_size=args.eval_batch_size,
        seed=args.seed,
        strict=args.strict,
        resume=args.resume,
        label_offset=args.label_offset,
    )


def run(args, fit, prog="python -m training.train"):
    """Make the `--strategy`, seed and make ops deterministic if `--deterministic`, then call
    `fit(strategy)`; returns the exit status (2 after a one-line error). Shared by
    `training.train` and `training.qat`.

    Example:
        >>> run(build_parser().parse_args(["--data-dir", "d", "--output-dir", "o"]),
        ...     lambda strategy: None)  # doctest: +SKIP
        0
    """

    def start():
        from lsnet_keras.training.distribute import make_strategy

        # The strategy first: logical devices and collectives must precede other TF work.
        strategy = make_strategy(args.strategy, args.cpu_replicas, args.tpu)
        if args.deterministic:
            import keras
            import tensorflow as tf

            keras.utils.set_random_seed(args.seed)
            tf.config.experimental.enable_op_determinism()
        fit(strategy)

    return run_command(prog, start)


def main(argv=None):
    """Run `python -m training.train ARGV`; returns the exit status (2: one-line error).

    Example:
        >>> main(["--data-dir", "flowers", "--output-dir", "runs/f"])  # doctest: +SKIP
        0
    """
    args = build_parser().parse_args(argv)

    def fit(strategy):
        from lsnet_keras.training.trainer import train

        train(config_from_args(args), strategy)

    return run(args, fit)


if __name__ == "__main__":
    sys.exit(main())
