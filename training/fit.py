"""Fine-tune LSNet with Keras' `model.fit` on any backend; on JAX across all local devices.

    KERAS_BACKEND=jax python -m training.fit --data-dir photos --finetune lsnet_t.pth \
        --epochs 10 --batch-size 64 --output photos.keras

Under JAX the global batch is split over the local devices by `keras.distribution.DataParallel`
(a TPU VM's cores, several GPUs); it must divide by the device count. The data pipeline and
augmentation are `training.train`'s (tf.data); the optimizer is AdamW without AGC, one learning
rate (warm-up and cosine are `training.train`'s). The `.keras` file exports like any other:
`lsnet export photos.keras --output photos.tflite` (export runs on TensorFlow).
"""

import argparse
import sys

from lsnet_keras.errors import LSNetError
from training.train import _model


def build_parser():
    parser = argparse.ArgumentParser(
        prog="python -m training.fit", description=__doc__.split("\n")[0]
    )
    add = parser.add_argument
    add("--data-dir", required=True, help="class folders train/<class>/*, or TFRecords / TFDS")
    add("--finetune", help="official .pth / .safetensors or a training-form .keras")
    add("--model", default="lsnet_t", help="without --finetune: lsnet_t|s|b or JSON arguments")
    add("--img-size", type=int, default=224)
    add("--epochs", type=int, default=10)
    add("--batch-size", type=int, default=64, help="global batch, split over the devices")
    add("--lr", type=float, default=1e-4)
    add("--weight-decay", type=float, default=0.025)
    add("--seed", type=int, default=0)
    add("--output", required=True, help="the fine-tuned model, a .keras file")
    add("--force", action="store_true", help="replace an existing --output")
    return parser


def fit(args):
    """Build, train and save; returns the per-epoch training losses."""
    import keras

    from lsnet_keras.io import atomic_path, refuse_existing
    from lsnet_keras.training.data import open_dataset, train_dataset
    from lsnet_keras.training.keras_fit import compile_for_finetune, data_parallel
    from lsnet_keras.training.recipe import build_model

    if not args.output.endswith(".keras"):
        raise LSNetError(f"--output: expected a .keras file, got {args.output!r}")
    refuse_existing([args.output], args.force)
    devices = data_parallel()
    if devices and args.batch_size % len(devices):
        raise LSNetError(f"--batch-size {args.batch_size}: not divisible by {len(devices)} devices")
    keras.utils.set_random_seed(args.seed)
    data = open_dataset(args.data_dir, splits=("train",))
    classes = len(data.class_names)
    name = _model(args.model)
    model, note = build_model(name, classes, args.img_size, finetune=args.finetune, seed=args.seed)
    print(f"{keras.backend.backend()} on {len(devices) or 1} device(s); {note}")
    compile_for_finetune(model, args.lr, args.weight_decay)
    steps = data.train.num_examples // args.batch_size
    if steps == 0:
        raise LSNetError(f"--batch-size {args.batch_size}: more than the training images")
    losses = []
    for epoch in range(args.epochs):
        batches = train_dataset(
            data.train, epoch, steps, args.batch_size, args.img_size, classes, seed=args.seed
        )
        history = model.fit(batches, epochs=epoch + 1, initial_epoch=epoch, verbose=2)
        losses.append(history.history["loss"][-1])
    with atomic_path(args.output, overwrite=args.force) as tmp:
        model.save(tmp)
    print(f"wrote {args.output}")
    return losses


def main(argv=None):
    """Run `python -m training.fit ARGV`; returns the exit status (2: one-line error).

    Example:
        >>> main(["--data-dir", "photos", "--output", "photos.keras"])  # doctest: +SKIP
        0
    """
    args = build_parser().parse_args(argv)
    try:
        fit(args)
    except LSNetError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
