"""Train or fine-tune LSNet on one device, several GPUs, several hosts or a TPU (tf.distribute).

A custom loop (`tf.function` step under `strategy.run`) so that resuming is exact: the
`tf.train.Checkpoint` holds the model, the EMA model, the optimizer (its step drives the
schedule), the global step and the epoch's running loss and history; the data position follows
from the step (`training.data.train_dataset` is deterministic). TensorFlow writes checkpoints
atomically (data first, then the `checkpoint` index by rename), so a kill leaves the previous
one usable.

`RunSetup` (`run_setup.py`) builds what the loop needs; this module holds the step, the loop,
saving and restoring checkpoints, evaluation and the run's outputs.

Output folder: `checkpoints/` (every `save_every` steps and each epoch), `logs/` (TensorBoard),
`history.json`, `curves.png`, `config.json`, `best.keras`, `final.keras`, `final_ema.keras`.

Example:
    >>> from lsnet_keras.training.config import TrainConfig
    >>> from lsnet_keras.training.trainer import train
    >>> config = TrainConfig(data_dir="flowers", output_dir="runs/flowers", epochs=30,
    ...                      batch_size=64, finetune="lsnet_t.pth")
    >>> history = train(config)  # doctest: +SKIP
"""

import dataclasses
import json
import math
import os
import time

import keras
import tensorflow as tf

from lsnet_keras.io import atomic_path
from lsnet_keras.training.config import TrainingError
from lsnet_keras.training.data import train_dataset
from lsnet_keras.training.evaluation import Evaluator
from lsnet_keras.training.history import plot_history, write_json
from lsnet_keras.training.recipe import hard_distillation_loss, soft_cross_entropy
from lsnet_keras.training.run_setup import RunSetup


class Trainer(RunSetup):
    """One training run: set up by `RunSetup` (settings, data, models, optimizer, checkpoint
    manager), then the step, the loop, checkpoints and the outputs (see `train`).

    Example:
        >>> history = Trainer(TrainConfig("flowers", "runs/flowers")).fit()  # doctest: +SKIP
    """

    # --- the step -------------------------------------------------------------------------
    def _replica_step(self, images, targets):
        c = self.config
        with tf.GradientTape() as tape:
            outputs = self.train_model(images, training=True)
            if self.teacher is not None:
                teacher_images = images
                if c.teacher_input == "pixels":
                    mean = tf.constant([0.485, 0.456, 0.406]) * 255.0
                    teacher_images = images * (tf.constant([0.229, 0.224, 0.225]) * 255.0) + mean
                teacher = tf.cast(self.teacher(teacher_images, training=False), tf.float32)
                per_example = hard_distillation_loss(
                    targets, outputs[0], outputs[1], teacher, c.distill_alpha
                )
            else:
                per_example = soft_cross_entropy(targets, outputs)
            loss = tf.nn.compute_average_loss(per_example, global_batch_size=c.batch_size)
            scaled = self.optimizer.scale_loss(loss)
        variables = self.train_model.trainable_variables
        gradients = tape.gradient(scaled, variables)
        self.optimizer.apply_gradients(zip(gradients, variables))
        return loss

    def _update_ema(self):
        decay = self.config.ema_decay

        def average(ema, value):
            return ema.assign(decay * ema + (1.0 - decay) * value)

        for ema, value in self._ema_pairs:
            self.strategy.extended.update(ema, average, args=(value,), group=False)

    @tf.function
    def train_step(self, iterator):
        """One optimizer step on the next global batch of `iterator` (a distributed iterator);
        returns the loss. AGC, the EMA update and the step count are part of it.

        Example:
            >>> loss = trainer.train_step(iter(trainer._epoch_data(0, 0)))  # doctest: +SKIP
        """
        losses = self.strategy.run(self._replica_step, args=next(iterator))
        loss = self.strategy.reduce(tf.distribute.ReduceOp.SUM, losses, axis=None)
        if self.ema is not None:
            self._update_ema()
        self.step.assign_add(1)
        return loss

    # --- the loop --------------------------------------------------------------------------
    def _epoch_data(self, epoch, start):
        c = self.config
        per_replica = c.batch_size // self._replicas

        def dataset(context):
            local = context.num_replicas_in_sync // context.num_input_pipelines
            return train_dataset(
                self.data.train,
                epoch,
                self.steps_per_epoch,
                per_replica,
                c.img_size,
                self.num_classes,
                start_step=start,
                pipeline=(context.input_pipeline_id, context.num_input_pipelines, local),
                seed=c.seed,
                repeats=c.repeated_aug,
                augment=c.augment,
            )

        return iter(self.strategy.distribute_datasets_from_function(dataset))

    def _save(self):
        path = self.manager.save(checkpoint_number=int(self.step))
        if not self.chief:
            tf.io.gfile.rmtree(self.manager.directory)
        return path

    def _restore(self):
        latest = tf.train.latest_checkpoint(self.checkpoint_dir)
        if not latest:
            if self.config.resume:
                self._log("--resume: no checkpoint yet, starting from step 0")
            return
        run_config = os.path.join(self.out, "config.json")
        saved = json.load(open(run_config)) if os.path.isfile(run_config) else {}
        for key, value in self._fixed_settings().items():
            if key in saved and saved[key] != value:
                raise TrainingError(
                    f"--resume: {key} was {saved.get(key)} in this run, now {value}; "
                    "resume with the same settings or start another --output-dir"
                )
        self.checkpoint.restore(latest).assert_existing_objects_matched()
        step = int(self.step)
        epoch, offset = divmod(step, self.steps_per_epoch)
        self._log(
            f"resumed {latest}: step {step} (epoch {epoch + 1}, step {offset} of "
            f"{self.steps_per_epoch})"
        )

    def _fixed_settings(self):
        c = self.config
        return {
            "batch_size": c.batch_size,
            "img_size": c.img_size,
            "num_classes": self.num_classes,
            "steps_per_epoch": self.steps_per_epoch,
            "seed": c.seed,
            "repeated_aug": c.repeated_aug,
        }

    def _write_config(self):
        c = self.config
        settings = dataclasses.asdict(c)
        settings.update(self._fixed_settings())
        settings.update(
            peak_lr=self.peak_lr,
            weight_decay=self.weight_decay,
            replicas=self._replicas,
            class_names=self.data.class_names,
        )
        write_json(os.path.join(self.out, "config.json"), settings)

    def _export(self, model, name):
        with atomic_path(os.path.join(self.out, name), overwrite=True) as tmp:
            model.save(tmp)

    def _evaluate(self, model):
        if self.data.val is None:
            return {}
        batch = self.config.eval_batch_size or self.config.batch_size
        batch = max(self._replicas, batch - batch % self._replicas)
        if id(model) not in self._evaluators:
            self._evaluators[id(model)] = Evaluator(model, self.strategy)
        metrics = self._evaluators[id(model)](self.data.val, batch, self.num_classes)
        return {f"val_{k}": v for k, v in metrics.items() if k != "count"}

    def fit(self):
        """Run (or continue) training; returns the history (one dict per epoch).

        Example:
            >>> history = Trainer(TrainConfig("flowers", "runs/flowers")).fit()  # doctest: +SKIP
            >>> history[-1]["val_top1"]  # doctest: +SKIP
            0.91
        """
        c = self.config
        self._restore()
        if self.chief and int(self.step) == 0:
            self._write_config()
        history = json.loads(self.history_json.numpy().decode())
        writers = {}
        if self.chief:
            for name in ("train", "validation"):
                writers[name] = tf.summary.create_file_writer(os.path.join(self.out, "logs", name))
        best = max((h.get("val_top1", -1) for h in history), default=-1)
        for epoch in range(int(self.step) // self.steps_per_epoch, c.epochs):
            start = int(self.step) - epoch * self.steps_per_epoch
            if start == 0:
                self.epoch_loss.assign(0.0)
            iterator = self._epoch_data(epoch, start)
            self._log(f"epoch {epoch + 1}/{c.epochs}")
            bar = keras.utils.Progbar(
                self.steps_per_epoch,
                stateful_metrics=["loss", "lr"],
                verbose=1 if self.chief and c.verbose else 0,
            )
            began = time.time()
            for index in range(start, self.steps_per_epoch):
                loss = float(self.train_step(iterator))
                step = int(self.step)
                if not math.isfinite(loss):
                    last = self.manager.latest_checkpoint or "none (nothing was saved yet)"
                    raise TrainingError(
                        f"the loss is {loss} at step {step} (epoch {epoch + 1}): training "
                        f"stopped; last good checkpoint: {last}"
                    )
                self.epoch_loss.assign_add(loss)
                lr = float(self.schedule(step - 1))
                bar.update(index + 1, [("loss", loss), ("lr", lr)])
                if self.chief and (step % c.log_every == 0 or index == start):
                    with writers["train"].as_default(step=step):
                        tf.summary.scalar("loss", loss)
                        tf.summary.scalar("learning_rate", lr)
                if step % c.save_every == 0 and index + 1 < self.steps_per_epoch:
                    self._save()
            record = {
                "epoch": epoch,
                "step": int(self.step),
                "lr": float(self.schedule(int(self.step) - 1)),
                "train_loss": float(self.epoch_loss.numpy()) / self.steps_per_epoch,
                "seconds": round(time.time() - began, 2),
            }
            record.update(self._evaluate(self.model))
            self._log_skipped()
            history.append(record)
            self.history_json.assign(json.dumps(history))
            self._save()
            self._log("  ".join(f"{k} {v:.4g}" for k, v in record.items() if k != "epoch"))
            if self.chief:
                with writers["train"].as_default(step=int(self.step)):
                    tf.summary.scalar("epoch_loss", record["train_loss"])
                with writers["validation"].as_default(step=int(self.step)):
                    for key in ("val_loss", "val_top1", "val_top5"):
                        if key in record:
                            tf.summary.scalar(key.removeprefix("val_"), record[key])
                write_json(os.path.join(self.out, "history.json"), history)
                if record.get("val_top1", -1) > best:
                    best = record["val_top1"]
                    self._export(self.model, "best.keras")
        self._finish(history)
        return history

    def _finish(self, history):
        summary = {}
        if self.ema is not None and history:
            summary = {f"ema_{k}": v for k, v in self._evaluate(self.ema).items()}
        if self.chief and history:
            self._export(self.model, "final.keras")
            if self.ema is not None:
                self._export(self.ema, "final_ema.keras")
            history[-1].update(summary)
            write_json(os.path.join(self.out, "history.json"), history)
            try:
                plot_history(history, os.path.join(self.out, "curves.png"))
            except ImportError:
                self._log("pip install matplotlib for curves.png")
            self._log(f"wrote {self.out}: final.keras, history.json, curves.png, logs/")


def train(config, strategy=None):
    """Train (or resume / fine-tune) as `config` says; returns the per-epoch history.

    Example:
        >>> history = train(TrainConfig("flowers", "runs/flowers", epochs=3,
        ...                             batch_size=32, img_size=64))  # doctest: +SKIP
    """
    return Trainer(config, strategy).fit()
