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

from lsnet_keras.errors import LSNetError  # noqa: E402


def build_parser():
    """The command-line options (defaults: the official recipe).

    Example:
        >>> build_parser().parse_args(["--data-dir", "d", "--output-dir", "o"]).batch_size
        256
    """
    parser = argparse.ArgumentParser(
        prog="python -m training.train", description=__doc__.split("\n")[0]
    )
    add = parser.add_argument
    add("--data-dir", required=True, help="train/ + val/ class folders, TFRecords or TFDS")
    add("--output-dir", required=True, help="checkpoints, logs, curves.png, .keras models")
    add("--model", default="lsnet_t", help="lsnet_t | lsnet_s | lsnet_b, or a JSON architecture")
    add("--epochs", type=int, default=300)
    add("--batch-size", type=int, default=256, help="global batch (official: 8 x 256 = 2048)")
    add("--img-size", type=int, default=224)
    add("--num-classes", type=int, help="default: the number of class folders")
    add("--resume", action="store_true", help="continue from the latest checkpoint")
    add(
        "--finetune",
        help="start from imagenet (the official weights of --model, from the Hugging Face hub), "
        "hf://owner/repo[/file], an official .pth/.safetensors or a .keras model",
    )
    add("--freeze-backbone", action="store_true", help="train only the head(s)")
    add("--distill-teacher", help="a .keras teacher: hard distillation (official alpha 0.5)")
    add("--distill-alpha", type=float, default=0.5)
    add(
        "--teacher-input",
        choices=("normalized", "pixels"),
        default="normalized",
        help="what the teacher takes: ImageNet-normalized images or 0-255 pixels",
    )
    add("--lr", type=float, default=1e-3, help="for a global batch of 512, scaled linearly")
    add("--min-lr", type=float, default=1e-5)
    add("--warmup-lr", type=float, default=1e-6)
    add("--warmup-epochs", type=int, default=5)
    add("--weight-decay", type=float, help="default 0.025 (0.05 for lsnet_b)")
    add("--clip-grad", type=float, default=0.02, help="adaptive gradient clipping; 0: off")
    add("--no-model-ema", dest="model_ema", action="store_false")
    add("--model-ema-decay", type=float, default=0.99996)
    add("--aa", default="rand-m9-mstd0.5-inc1", help="RandAugment policy, or none")
    add("--reprob", type=float, default=0.25, help="random erasing probability")
    add("--mixup", type=float, default=0.8)
    add("--cutmix", type=float, default=1.0)
    add("--mixup-prob", type=float, default=1.0)
    add("--mixup-switch-prob", type=float, default=0.5)
    add("--smoothing", type=float, default=0.1)
    add("--repeated-aug", type=int, default=3, help="copies per image (1: off)")
    add("--strategy", choices=("default", "mirrored", "multiworker", "tpu"), default="default")
    add("--tpu", help="TPU name or address for --strategy tpu (default: the local TPU VM)")
    add("--cpu-replicas", type=int, default=0, help="split the CPU into N devices (testing)")
    add("--sync-bn", action="store_true", help="BatchNorm statistics over all replicas")
    add("--precision", choices=("float32", "mixed_float16", "mixed_bfloat16"), default="float32")
    add("--save-every", type=int, default=1000, help="checkpoint every N steps (and each epoch)")
    add("--keep-checkpoints", type=int, default=3)
    add("--log-every", type=int, default=50, help="TensorBoard scalars every N steps")
    add("--eval-batch-size", type=int)
    add("--seed", type=int, default=0)
    add("--strict", action="store_true", help="fail on unreadable files instead of skipping")
    add("--label-offset", type=int, default=0, help="subtracted from TFRecord labels")
    add("--deterministic", action="store_true", help="deterministic TensorFlow ops (slower)")
    return parser


def _model(text):
    """A variant name, or a JSON object of LSNet arguments ({"embed_dim": [...], ...})."""
    if not text.lstrip().startswith("{"):
        return text
    import json

    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise LSNetError(f"--model: not a variant name nor valid JSON ({err})") from None


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
        model=_model(args.model),
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


def run(args, fit):
    """Make the `--strategy`, seed and make ops deterministic if `--deterministic`, then call
    `fit(strategy)`; returns the exit status (2 after a one-line error). Shared by
    `training.train` and `training.qat`.

    Example:
        >>> run(build_parser().parse_args(["--data-dir", "d", "--output-dir", "o"]),
        ...     lambda strategy: None)  # doctest: +SKIP
        0
    """
    try:
        from lsnet_keras.training.distribute import make_strategy

        # The strategy first: logical devices and collectives must precede other TF work.
        strategy = make_strategy(args.strategy, args.cpu_replicas, args.tpu)
        if args.deterministic:
            import keras
            import tensorflow as tf

            keras.utils.set_random_seed(args.seed)
            tf.config.experimental.enable_op_determinism()
        fit(strategy)
    except LSNetError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


def main(argv=None):
    """Run `python -m training.train ARGV`; returns the exit status (2: one-line error).

    Example:
        >>> main(["--data-dir", "flowers", "--output-dir", "runs/f"])  # doctest: +SKIP
        0
    """
    from lsnet_keras.training.trainer import train

    args = build_parser().parse_args(argv)
    return run(args, lambda strategy: train(config_from_args(args), strategy))


if __name__ == "__main__":
    sys.exit(main())
