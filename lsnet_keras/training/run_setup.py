"""Setting up a training run: everything `Trainer` does before its first step.

`RunSetup` checks the settings (before any folder is made), opens the data (folder scans cached
in `OUTPUT/data/`), builds the model, the EMA model and the teacher under the strategy's scope
and in the run's precision, the optimizer with the official schedule, and the checkpoint that
holds them with the step, the epoch's running loss and the history. A run that fails here
(data, --finetune, teacher) leaves no folder behind. `Trainer` (`trainer.py`) adds the step and
the loop; subclasses such as `training/qat.py`'s change the models by overriding `_build_models`.

Example:
    >>> from lsnet_keras.training.config import TrainConfig
    >>> from lsnet_keras.training.run_setup import RunSetup
    >>> run = RunSetup(TrainConfig("flowers", "runs/flowers"))  # doctest: +SKIP
    >>> run.model.name, run.optimizer.__class__.__name__  # doctest: +SKIP
    ('lsnet_t', 'AdamWAGC')
"""

import importlib.util
import os

import keras
import tensorflow as tf

from lsnet_keras.io import outputs_removed_on_failure, require_folder, require_writable
from lsnet_keras.model.loading import load_keras_model
from lsnet_keras.model.lsnet import LSNet
from lsnet_keras.training.augment import parse_rand_augment
from lsnet_keras.training.config import PRECISIONS, TrainingError
from lsnet_keras.training.data import SPLIT_NAMES, DatasetError, open_dataset
from lsnet_keras.training.distribute import is_chief
from lsnet_keras.training.recipe import (
    WarmupCosine,
    build_model,
    distillation_heads,
    make_optimizer,
    scaled_lr,
)

# TensorBoard summaries (tf.summary needs the tensorboard package) and curves.png (matplotlib).
TRAIN_EXTRA = ("tensorboard", "matplotlib")


class RunSetup:
    """What a training run sets up before its first step: checks of the settings, the data, the
    models (EMA, teacher), the optimizer and the checkpoint manager. `Trainer` runs it.

    Example:
        >>> run = RunSetup(TrainConfig("flowers", "runs/flowers"))  # doctest: +SKIP
        >>> run.steps_per_epoch, run.num_classes  # doctest: +SKIP
        (11, 5)
    """

    def __init__(self, config, strategy=None):
        self.config = c = config
        self.strategy = strategy or tf.distribute.get_strategy()
        self.chief = is_chief(self.strategy)
        self.out = os.fspath(c.output_dir)
        self.checkpoint_dir = os.path.join(self.out, "checkpoints")
        self._evaluators = {}
        self._check_settings()
        # A run that fails before training (data, --finetune, teacher) leaves no folder behind.
        scans = [os.path.join(self.out, "data", f"{split}_index.json") for split in SPLIT_NAMES]
        with outputs_removed_on_failure(scans, os.path.join(self.out, "data")):
            self._log(f"{self.strategy.__class__.__name__}: {self._replicas} replica(s)")
            self._open_data()
            self._build()

    def _build(self):
        """Models, optimizer and checkpoint manager (after the data: the class count)."""
        c = self.config
        previous = keras.mixed_precision.global_policy()
        keras.mixed_precision.set_global_policy(c.precision)  # layers keep it once built
        try:
            with self.strategy.scope():
                self._build_models()
                self._build_optimizer()
        finally:
            keras.mixed_precision.set_global_policy(previous)
        self.step = tf.Variable(0, dtype=tf.int64, name="step")
        self.epoch_loss = tf.Variable(0.0, dtype=tf.float64, name="epoch_loss")
        self.history_json = tf.Variable("[]", dtype=tf.string, name="history")
        self.checkpoint = tf.train.Checkpoint(
            model=self.model,
            ema=self.ema or self.model,
            optimizer=self.optimizer,
            step=self.step,
            epoch_loss=self.epoch_loss,
            history=self.history_json,
        )
        folder = self.checkpoint_dir
        if not self.chief:
            task = self.strategy.cluster_resolver.task_id
            folder = os.path.join(self.checkpoint_dir, f".worker-{task}")
        self.manager = tf.train.CheckpointManager(self.checkpoint, folder, c.keep_checkpoints)

    def _check_settings(self):
        c = self.config
        missing = [name for name in TRAIN_EXTRA if importlib.util.find_spec(name) is None]
        if missing:
            raise TrainingError(
                f"training needs {' and '.join(missing)} (logs and curves): "
                "pip install 'lsnet-keras[train]'"
            )
        if c.precision not in PRECISIONS:
            raise TrainingError(f"--precision must be one of {', '.join(PRECISIONS)}")
        require_folder(c.data_dir, "data")  # before the output folder is made
        require_writable(os.path.join(self.out, "checkpoints"))  # a read-only --output-dir
        parse_rand_augment(c.augment.rand_augment)  # --aa, before the input pipeline
        if c.teacher_input not in ("normalized", "pixels"):
            raise TrainingError(f"--teacher-input must be normalized or pixels: {c.teacher_input}")
        if not c.resume and tf.train.latest_checkpoint(self.checkpoint_dir):
            raise TrainingError(
                f"{self.checkpoint_dir} holds checkpoints: pass --resume to continue, or choose "
                "another --output-dir"
            )

    @property
    def _replicas(self):
        return self.strategy.num_replicas_in_sync

    def _log(self, message):
        if self.chief and self.config.verbose:
            print(message, flush=True)

    def _open_data(self):
        c = self.config
        cache = os.path.join(self.out, "data") if self.chief else None
        if cache:
            os.makedirs(cache, exist_ok=True)
            if not c.resume:
                for name in os.listdir(cache):
                    os.remove(os.path.join(cache, name))
        self.data = open_dataset(
            c.data_dir, strict=c.strict, label_offset=c.label_offset, cache_dir=cache
        )
        if self.data.train is None:
            raise DatasetError(f"{c.data_dir}: no training split (train/ or train-*-of-*)")
        self._skips_logged = {}
        self._log_skipped()
        found = len(self.data.class_names)
        self.num_classes = c.num_classes or found
        if self.num_classes < found:
            raise TrainingError(f"--num-classes {c.num_classes} < {found} classes in the data")
        if c.batch_size % self._replicas:
            raise TrainingError(
                f"--batch-size {c.batch_size} is not divisible by {self._replicas} replicas"
            )
        self.steps_per_epoch = self.data.train.num_examples // c.batch_size
        if self.steps_per_epoch == 0:
            raise TrainingError(
                f"{self.data.train.num_examples} training images are fewer than one batch of "
                f"{c.batch_size}: lower --batch-size"
            )
        val = self.data.val.num_examples if self.data.val else 0
        self._log(
            f"data ({self.data.kind}): {self.data.train.num_examples} train / {val} val images, "
            f"{found} classes; {self.steps_per_epoch} steps of {c.batch_size} per epoch"
        )

    def _log_skipped(self):
        """Log the files (or records) skipped since the last call: a folder's are all known
        when it is scanned, TFRecord / TFDS records over the pixel budget as they are read."""
        for split in (self.data.train, self.data.val):
            if split is None or len(split.skipped) == self._skips_logged.get(split.name, 0):
                continue
            new = split.skipped[self._skips_logged.get(split.name, 0) :]
            self._skips_logged[split.name] = len(split.skipped)
            first = ", ".join(f"{p} ({why})" for p, why in new[:3])
            self._log(f"{split.name}: skipped {len(new)} files: {first}")

    def _build_models(self):
        c = self.config
        distill = c.teacher is not None
        self.model, note = build_model(
            c.model, self.num_classes, c.img_size, distill, c.finetune, c.seed
        )
        self._log(note)
        if c.sync_bn:
            for layer in self.model._flatten_layers():
                if isinstance(layer, keras.layers.BatchNormalization):
                    layer.synchronized = True
        if c.freeze_backbone:
            for layer in self.model.layers:
                layer.trainable = layer.name in ("head", "head_dist")
        self.train_model = distillation_heads(self.model) if distill else self.model
        self.teacher = None
        if distill:
            self.teacher = load_keras_model(c.teacher, lsnet_only=False)
            self.teacher.trainable = False
            classes = self.teacher.output_shape[-1]
            if classes != self.num_classes:
                raise TrainingError(
                    f"{c.teacher}: the teacher predicts {classes} classes, the data has "
                    f"{self.num_classes}"
                )
        self.ema = None
        if c.model_ema:
            self.ema = LSNet.from_config(self.model.get_config())
            self.ema.set_weights(self.model.get_weights())
            self.ema.trainable = False
            shadow = {w.path: w for w in self.ema.weights}
            floating = [w for w in self.model.weights if "float" in str(w.dtype)]
            self._ema_pairs = [(shadow[w.path].value, w.value) for w in floating]

    def _build_optimizer(self):
        c = self.config
        self.peak_lr = scaled_lr(c.lr, c.batch_size)
        decay = c.weight_decay
        if decay is None:
            decay = 0.05 if str(c.model).startswith("lsnet_b") else 0.025
        self.weight_decay = decay
        schedule = WarmupCosine(
            self.peak_lr, self.steps_per_epoch, c.epochs, c.warmup_epochs, c.warmup_lr, c.min_lr
        )
        self.schedule = schedule
        self.optimizer = make_optimizer(
            self.train_model, schedule, decay, c.clip_grad, c.precision == "mixed_float16"
        )
        self.optimizer.build(self.train_model.trainable_variables)
