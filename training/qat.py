"""Quantization-aware fine-tuning of a trained float LSNet, then int8 TFLite export.

The float model (`--finetune`: `imagenet`, an `hf://` handle, an official `.pth` /
`.safetensors` or a training-form `.keras`) is reparameterized and fake-quantized
(`lsnet_keras.quantization.quantize_model`) for one `--target` graph, fine-tuned with the
training pipeline of `python -m training.train` (same data options, checkpoints, `--resume`,
`--strategy`), optionally distilling from the float model itself (`--distill`), and exported at
the end as a full-integer `.tflite` without a representative dataset. The output folder holds
what `training.train` writes (the QAT model is `final.keras` / `best.keras`) plus
`<name>_int8_<target>.tflite`.

Example:
    $ python -m training.qat --data-dir flowers --finetune runs/flowers/best.keras \\
          --target edgetpu --epochs 5 --batch-size 64 --distill --output-dir runs/flowers_qat
"""

import dataclasses
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

from lsnet_keras import options  # noqa: E402
from lsnet_keras.litert.export import export_tflite  # noqa: E402
from lsnet_keras.model.loading import load_keras_model  # noqa: E402
from lsnet_keras.quantization.qat_model import quantize_model  # noqa: E402
from lsnet_keras.training.config import TrainConfig, TrainingError  # noqa: E402
from lsnet_keras.training.recipe import build_model, soft_cross_entropy  # noqa: E402
from lsnet_keras.training.trainer import Trainer  # noqa: E402
from training.train import build_parser as train_parser  # noqa: E402
from training.train import config_from_args, run  # noqa: E402

# Fine-tuning defaults (training.train's are the 300-epoch ImageNet recipe): short, a low
# learning rate (for a batch of 512, scaled linearly like training.train's), no warm-up, no
# mixup / cutmix / repeated augmentation, no EMA, no AGC.
QAT_DEFAULTS = {
    "epochs": 10,
    "lr": 5e-5,
    "min_lr": 1e-6,
    "warmup_epochs": 0,
    "mixup": 0.0,
    "cutmix": 0.0,
    "repeated_aug": 1,
    "model_ema": False,
    "clip_grad": 0.0,
}


def build_parser():
    """training.train's options with QAT defaults, plus the quantization options.

    Example:
        >>> args = build_parser().parse_args(["--data-dir", "d", "--output-dir", "o",
        ...                                   "--finetune", "float.keras", "--target", "edgetpu"])
        >>> args.target, args.epochs, args.distill
        ('edgetpu', 10, False)
    """
    parser = train_parser()
    parser.prog = "python -m training.qat"
    parser.description = __doc__.split("\n")[0]
    parser.set_defaults(**QAT_DEFAULTS)
    add = parser.add_argument
    add("--target", choices=("cpu", "gpu", "edgetpu"), default="cpu", help="int8 graph layout")
    add("--float-layers", nargs="*", default=[], help="blocks / head kept in float (globs)")
    add(
        "--weight-bits",
        type=options.int_range(4, 8),
        default=8,
        help="8..5 (int8 storage) or 4 (int4, CPU only)",
    )
    add("--distill", action="store_true", help="distill from the float model (soft targets)")
    add("--export-io", choices=("float32", "int8", "uint8"), default="uint8", help="int8 I/O")
    return parser


@dataclasses.dataclass
class QATConfig(TrainConfig):
    """TrainConfig plus the quantization settings (see `quantize_model`) and the export I/O."""

    target: str = "cpu"
    float_layers: tuple = ()
    weight_bits: int = 8
    distill: bool = False
    export_io: str = "uint8"


def qat_config(args):
    """A QATConfig from parsed arguments (training.train's settings plus the QAT ones).

    Example:
        >>> qat_config(build_parser().parse_args(["--data-dir", "d", "--output-dir", "o",
        ...                                       "--finetune", "f.keras"])).target
        'cpu'
    """
    base = config_from_args(args)
    return QATConfig(
        **{f.name: getattr(base, f.name) for f in dataclasses.fields(base)},
        target=args.target,
        float_layers=tuple(args.float_layers),
        weight_bits=args.weight_bits,
        distill=args.distill,
        export_io=args.export_io,
    )


class QATTrainer(Trainer):
    """`lsnet_keras.training.trainer.Trainer` whose model is the QAT form of `config.finetune`.

    The loss is the cross-entropy, mixed with the float model's soft targets (`distill`, weight
    `distill_alpha`) or another teacher's (`teacher`); the end of training exports the int8
    `.tflite` next to `final.keras`.

    Example:
        >>> history = QATTrainer(qat_config(args)).fit()  # doctest: +SKIP
    """

    def _build_models(self):
        c = self.config
        if not c.finetune:
            raise TrainingError("QAT fine-tunes a trained float model: pass --finetune")
        if c.precision != "float32":
            raise TrainingError("QAT runs in float32 (fake-quant is float32): drop --precision")
        if c.teacher and c.distill:
            raise TrainingError("--distill uses the float model as teacher: drop one of them")
        float_model, note = build_model(
            c.model, self.num_classes, c.img_size, False, c.finetune, c.seed
        )
        self._log(f"{note}; quantization-aware for --target {c.target}")
        self.model = quantize_model(float_model, c.target, c.float_layers, c.weight_bits)
        if c.freeze_backbone:
            for layer in self.model.layers:
                layer.trainable = layer.name == "head"
        self.train_model = self.model
        self.teacher = float_model if c.distill else None
        if c.teacher:
            self.teacher = load_keras_model(c.teacher, lsnet_only=False)
        if self.teacher is not None:
            self.teacher.trainable = False
        self.ema = None

    def _replica_step(self, images, targets):
        c = self.config
        with tf.GradientTape() as tape:
            logits = self.model(images, training=True)
            per_example = soft_cross_entropy(targets, logits)
            if self.teacher is not None:
                teacher = tf.cast(self.teacher(images, training=False), tf.float32)
                distill = soft_cross_entropy(tf.nn.softmax(teacher), logits)
                per_example = (1 - c.distill_alpha) * per_example + c.distill_alpha * distill
            loss = tf.nn.compute_average_loss(per_example, global_batch_size=c.batch_size)
        variables = self.model.trainable_variables
        self.optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return loss

    def _finish(self, history):
        super()._finish(history)
        c = self.config
        if self.chief and history:
            path = os.path.join(self.out, f"{self.model.name}_int8_{c.target}.tflite")
            export_tflite(self.model, path, "int8", c.target, c.export_io, overwrite=True)
            self._log(f"wrote {path} (full-integer, {c.export_io} I/O)")


def main(argv=None):
    """Run `python -m training.qat ARGV`; returns the exit status (2: one-line error).

    Example:
        >>> main(["--data-dir", "flowers", "--finetune", "best.keras",
        ...       "--output-dir", "runs/q"])  # doctest: +SKIP
        0
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.finetune:  # before the output folder is made
        parser.error("--finetune is required: QAT fine-tunes a trained float model")
    return run(
        args,
        lambda strategy: QATTrainer(qat_config(args), strategy).fit(),
        "python -m training.qat",
    )


if __name__ == "__main__":
    sys.exit(main())
