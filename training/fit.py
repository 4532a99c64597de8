"""Fine-tune LSNet with Keras' `model.fit` on any backend; on JAX across all local devices.

    KERAS_BACKEND=jax python -m training.fit --data-dir photos --finetune lsnet_t.pth \
        --epochs 10 --batch-size 64 --output photos.keras

Under JAX the global batch is split over the local devices by `keras.distribution.DataParallel`
(a TPU VM's cores, several GPUs); it must divide by the device count. The data pipeline and
augmentation are `training.train`'s (tf.data); the optimizer is AdamW without AGC, one learning
rate (warm-up and cosine are `training.train`'s). The `.keras` file exports like any other:
`lsnet export photos.keras --output photos.tflite` (export runs on TensorFlow).
"""

import sys

from lsnet_keras import options
from lsnet_keras.errors import LSNetError, run_command
from training.train import POSITIVE_RATE, _model


def build_parser():
    """The command-line options, checked where parsed (one-line errors, exit 2).

    Example:
        >>> build_parser().parse_args(["--data-dir", "d", "--output", "m.keras"]).epochs
        10
    """
    parser = options.ArgumentParser(
        prog="python -m training.fit", description=__doc__.split("\n")[0]
    )
    add = parser.add_argument
    add("--data-dir", required=True, help="class folders train/<class>/*, or TFRecords / TFDS")
    add("--finetune", help="official .pth / .safetensors or a training-form .keras")
    add(
        "--model",
        type=_model,
        default="lsnet_t",
        help="without --finetune: lsnet_t|s|b or JSON arguments",
    )
    add("--img-size", type=options.IMAGE_SIZE, default=224)
    add("--epochs", type=options.POSITIVE, default=10)
    add(
        "--batch-size",
        type=options.POSITIVE,
        default=64,
        help="global batch, split over the devices",
    )
    add("--lr", type=POSITIVE_RATE, default=1e-4)
    add("--weight-decay", type=options.NON_NEGATIVE, default=0.025)
    add("--seed", type=options.COUNT, default=0)
    add(
        "--output",
        required=True,
        type=options.output_file(".keras"),
        help="the fine-tuned model, a .keras file",
    )
    add("--force", action="store_true", help="replace an existing --output")
    return parser


def fit(args):
    """Build, train and save `args.output`; returns None (the exit status 0 for run_command).

    Example:
        >>> fit(build_parser().parse_args(["--data-dir", "photos", "--output", "p.keras"]))
        ... # doctest: +SKIP
    """
    import keras

    from lsnet_keras.io import atomic_path, check_outputs
    from lsnet_keras.training.data import open_dataset, train_dataset
    from lsnet_keras.training.keras_fit import compile_for_finetune, data_parallel
    from lsnet_keras.training.recipe import build_model

    check_outputs([args.output], args.force)
    devices = data_parallel()
    if devices and args.batch_size % len(devices):
        raise LSNetError(f"--batch-size {args.batch_size}: not divisible by {len(devices)} devices")
    keras.utils.set_random_seed(args.seed)
    data = open_dataset(args.data_dir, splits=("train",))
    classes = len(data.class_names)
    steps = data.train.num_examples // args.batch_size
    if steps == 0:
        raise LSNetError(
            f"--batch-size {args.batch_size}: more than the {data.train.num_examples} "
            "training images"
        )
    model, note = build_model(
        args.model, classes, args.img_size, finetune=args.finetune, seed=args.seed
    )
    print(f"{keras.backend.backend()} on {len(devices) or 1} device(s); {note}")
    compile_for_finetune(model, args.lr, args.weight_decay)
    losses = []
    for epoch in range(args.epochs):
        batches = train_dataset(
            data.train, epoch, steps, args.batch_size, args.img_size, classes, seed=args.seed
        )
        history = model.fit(batches, epochs=epoch + 1, initial_epoch=epoch, verbose=2)
        losses.append(history.history["loss"][-1])
    with atomic_path(args.output, overwrite=args.force) as tmp:
        model.save(tmp)
    print(f"wrote {args.output} (training loss by epoch: {', '.join(f'{x:.4g}' for x in losses)})")


def main(argv=None):
    """Run `python -m training.fit ARGV`; returns the exit status (2: one-line error).

    Example:
        >>> main(["--data-dir", "photos", "--output", "photos.keras"])  # doctest: +SKIP
        0
    """
    args = build_parser().parse_args(argv)
    return run_command("python -m training.fit", fit, args)


if __name__ == "__main__":
    sys.exit(main())
