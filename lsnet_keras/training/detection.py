"""Fine-tune RetinaNet-LSNet on COCO-format data: the official recipe, resumable, distributed.

The released `retinanet_lsnet_*_fpn_1x_coco` recipe is the default: AdamW, lr 1e-4 for a
batch of 16 (scaled linearly with the global batch), weight decay 0.05 with none on the
attention biases, linear warm-up over 500 steps from 0.001 of the rate, then x0.1 after epochs
8 and 11 of 12; MaxIoU assignment, focal loss and L1 on the box deltas
(`lsnet_keras.detection.targets`); images fitted to the model's fixed input keeping their
ratio (the letterbox of `lsnet detect`, padded bottom and right) and flipped horizontally
with probability 0.5.

Starting points (`finetune`): "coco" (the official detector of `model`; its classifier is
re-initialized when the dataset has other than 80 classes), "imagenet" or a classification
checkpoint (the backbone only, as the official training starts), an MMDetection RetinaNet
checkpoint, or a `.keras` detector; none trains from scratch.

The loop is `lsnet_keras.training.trainer`'s design: a `tf.train.Checkpoint` of the model, the
optimizer and the step, saved every `save_every` steps and at each epoch's end (TensorFlow
writes them atomically); the epoch's image order and flips follow from the seed and the
epoch, so a resumed run sees exactly what the killed one had left. After each epoch the model
is evaluated with pycocotools on the val split (`lsnet_keras.detection.evaluation`).

Output folder: `checkpoints/`, `logs/` (TensorBoard), `history.json`, `config.json`,
`best.keras` (best val mAP) and `final.keras`.

Example:
    >>> from lsnet_keras.training.detection import DetectTrainConfig, train_detector
    >>> history = train_detector(DetectTrainConfig("shapes", "runs/shapes", finetune="coco",
    ...                                            img_size=(320, 320)))  # doctest: +SKIP
"""

import dataclasses
import json
import logging
import math
import os
import time

import keras
import numpy as np
import tensorflow as tf

from lsnet_keras.config import MMDET_MEAN, MMDET_STD, VARIANTS
from lsnet_keras.detection.dataset import open_coco
from lsnet_keras.detection.evaluation import evaluate_detector
from lsnet_keras.detection.run import KerasDetector
from lsnet_keras.detection.targets import detection_loss, image_anchors
from lsnet_keras.io import atomic_path
from lsnet_keras.model.retinanet import LSNetRetinaNet
from lsnet_keras.training.augment import decode_image
from lsnet_keras.training.config import TrainingError
from lsnet_keras.training.history import write_json

logger = logging.getLogger(__name__)

BASE_BATCH = 16  # the official lr is for 8 GPUs x 2 images
PRIOR_PROBABILITY = 0.01  # RetinaHead's classifier bias: every class starts at p = 0.01
HEAD_INIT_STD = 0.01


@dataclasses.dataclass
class DetectTrainConfig:
    """Every setting of a detection run; the defaults are the official 1x COCO recipe.

    `model` is a variant name or a dict of LSNet architecture arguments; `img_size` the
    model's fixed (height, width) input (multiples of 32); `lr` is for a batch of 16.
    """

    data_dir: str
    output_dir: str
    model: object = "lsnet_t"
    finetune: str = None
    epochs: int = 12
    batch_size: int = 16
    img_size: tuple = (640, 640)
    lr: float = 1e-4
    weight_decay: float = 0.05
    warmup_steps: int = 500
    warmup_ratio: float = 0.001
    decay_epochs: tuple = (8, 11)
    flip: float = 0.5
    train_split: str = "train"
    val_split: str = "val"
    save_every: int = 500
    keep_checkpoints: int = 3
    log_every: int = 50
    seed: int = 0
    resume: bool = False
    verbose: bool = True


class WarmupStepDecay(keras.optimizers.schedules.LearningRateSchedule):
    """MMDetection's `step` policy with linear warm-up: x0.1 after each of `decay_epochs`.

    Example:
        >>> schedule = WarmupStepDecay(1e-4, steps_per_epoch=10, decay_epochs=(1,),
        ...                            warmup_steps=5, warmup_ratio=0.001)
        >>> [round(float(schedule(step)) / 1e-4, 4) for step in (0, 5, 9, 10)]
        [0.001, 1.0, 1.0, 0.1]
    """

    def __init__(self, peak, steps_per_epoch, decay_epochs, warmup_steps, warmup_ratio):
        self.peak = peak
        self.steps_per_epoch = steps_per_epoch
        self.decay_epochs = tuple(decay_epochs)
        self.warmup_steps = warmup_steps
        self.warmup_ratio = warmup_ratio

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        epoch = tf.floor(step / self.steps_per_epoch)
        decays = tf.add_n([tf.cast(epoch >= e, tf.float32) for e in self.decay_epochs] + [0.0])
        rate = self.peak * tf.pow(0.1, decays)
        if self.warmup_steps:
            progress = tf.minimum(step / self.warmup_steps, 1.0)
            rate *= 1.0 - (1.0 - self.warmup_ratio) * (1.0 - progress)
        return rate

    def get_config(self):
        return {
            "peak": self.peak,
            "steps_per_epoch": self.steps_per_epoch,
            "decay_epochs": self.decay_epochs,
            "warmup_steps": self.warmup_steps,
            "warmup_ratio": self.warmup_ratio,
        }


def init_classifier(head, everything=False):
    """MMDetection's RetinaHead initialization: normal(0, 0.01) kernels, zero biases, and the
    classifier's bias at the prior p = 0.01; `everything` False re-initializes only the
    classifier (a COCO detector fine-tuned on other classes)."""
    layers = [head.retina_cls]
    if everything:
        layers += [*head.cls_convs, *head.reg_convs, head.retina_reg]
    rng = np.random.default_rng(0)
    for layer in layers:
        layer.kernel.assign(rng.normal(0, HEAD_INIT_STD, layer.kernel.shape).astype("float32"))
        layer.bias.assign(np.zeros(layer.bias.shape, "float32"))
    prior = -math.log((1 - PRIOR_PROBABILITY) / PRIOR_PROBABILITY)
    head.retina_cls.bias.assign(np.full(head.retina_cls.bias.shape, prior, "float32"))


def build_detector(model, num_classes, img_size, finetune=None):
    """The RetinaNet-LSNet a run trains, its weights from `finetune` (see the module).

    Example:
        >>> build_detector("lsnet_t", 3, (64, 64)).num_classes
        3
    """
    from lsnet_keras.weights.mapping import export_state_dict, load_backbone_weights, load_weights

    architecture = VARIANTS[model] if isinstance(model, str) else dict(model)
    name = f"{model}_retinanet" if isinstance(model, str) else "lsnet_retinanet"
    detector = LSNetRetinaNet(
        **architecture, num_classes=num_classes, input_shape=tuple(img_size), name=name
    )
    if finetune is None:
        init_classifier(detector.head, everything=True)
        return detector
    if str(finetune).endswith(".keras"):
        from lsnet_keras.model.loading import load_keras_model

        trained = load_keras_model(finetune)
        if getattr(trained, "task", None) != "detect" or trained.num_classes != num_classes:
            raise TrainingError(
                f"{finetune}: expected a detector of {num_classes} classes, got "
                f"{getattr(trained, 'num_classes', '?')} ({trained.name})"
            )
        detector.set_weights(trained.get_weights())
        return detector
    from lsnet_keras.weights.hub import read_weights

    if finetune == "imagenet":
        load_backbone_weights(detector, "imagenet")
        init_classifier(detector.head, everything=True)
        return detector
    state, source = read_weights(finetune, name)
    if "bbox_head.retina_cls.weight" not in state:  # a classifier or a backbone
        load_backbone_weights(detector, state)
        init_classifier(detector.head, everything=True)
        return detector
    classes = state["bbox_head.retina_cls.weight"].shape[0] // detector.head.num_anchors
    if classes != num_classes:
        own = export_state_dict(detector)
        for key in ("bbox_head.retina_cls.weight", "bbox_head.retina_cls.bias"):
            state[key] = own[key]
        logger.info(
            "%s: %d classes, classifier re-initialized for %d", source, classes, num_classes
        )
    load_weights(detector, state, source=source)
    if classes != num_classes:
        init_classifier(detector.head)
    return detector


def _fit_image(path, boxes, labels, flip, height, width):
    """Decode, fit into (height, width) keeping the ratio, flip, normalize, pad with zeros."""
    image = tf.cast(decode_image(tf.io.read_file(path)), tf.float32)
    shape = tf.cast(tf.shape(image)[:2], tf.float32)
    scale = tf.minimum(height / shape[0], width / shape[1])
    size = tf.cast(tf.floor(shape * scale + 0.5), tf.int32)
    size = tf.clip_by_value(size, 1, [height, width])
    image = tf.image.resize(image, size, "bilinear", antialias=False)
    factors = tf.cast(size, tf.float32) / shape  # (h, w) scales, as mmcv rescales boxes
    boxes = boxes * tf.stack([factors[1], factors[0], factors[1], factors[0]])
    new_width = tf.cast(size[1], tf.float32)
    flipped = tf.stack(
        [new_width - boxes[:, 2], boxes[:, 1], new_width - boxes[:, 0], boxes[:, 3]], axis=1
    )
    image = tf.cond(flip, lambda: tf.reverse(image, [1]), lambda: image)
    boxes = tf.where(flip, flipped, boxes)
    boxes = tf.where(labels[:, None] >= 0, boxes, 0.0)
    image = (image - tf.constant(MMDET_MEAN)) / tf.constant(MMDET_STD)
    return tf.image.pad_to_bounding_box(image, 0, 0, height, width), boxes, labels


def epoch_order(split, epoch, seed, flip):
    """(image indices, flip flags) of one epoch: a permutation of the images with boxes.

    Example:
        >>> epoch_order(split, epoch=0, seed=0, flip=0.5)  # doctest: +SKIP
    """
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(np.array(split.trainable(), "int64"))
    return order, rng.random(len(order)) < flip


def train_batches(split, order, flips, img_size, batch_size, max_boxes):
    """A tf.data pipeline of (images, {"boxes", "labels"}) batches in the given order.

    Example:
        >>> order, flips = epoch_order(split, 0, 0, 0.5)  # doctest: +SKIP
        >>> batches = train_batches(split, order, flips, (320, 320), 16, 20)  # doctest: +SKIP
    """
    height, width = img_size
    boxes = np.zeros((len(order), max_boxes, 4), "float32")
    labels = np.full((len(order), max_boxes), -1, "int32")
    for row, index in enumerate(order):
        count = len(split.labels[index])
        boxes[row, :count] = split.boxes[index]
        labels[row, :count] = split.labels[index]
    paths = np.array([split.paths[i] for i in order], dtype=object).astype(str)
    data = tf.data.Dataset.from_tensor_slices((paths, boxes, labels, flips))
    data = data.map(
        lambda *example: _fit_image(*example, height, width),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    )
    data = data.batch(batch_size, drop_remainder=True)
    return data.map(lambda x, b, y: (x, {"boxes": b, "labels": y})).prefetch(2)


class DetectionTrainer:
    """One detection run: data, model, optimizer, checkpoints, then `fit` (see the module).

    Example:
        >>> trainer = DetectionTrainer(DetectTrainConfig("shapes", "runs/s"))  # doctest: +SKIP
    """

    def __init__(self, config, strategy=None):
        from lsnet_keras.io import require_folder, require_writable
        from lsnet_keras.training.distribute import is_chief

        self.config = c = config
        self.strategy = strategy or tf.distribute.get_strategy()
        self.chief = is_chief(self.strategy)
        self.out = os.fspath(c.output_dir)
        self.checkpoint_dir = os.path.join(self.out, "checkpoints")
        require_folder(c.data_dir, "data")
        require_writable(self.checkpoint_dir)
        if not c.resume and tf.train.latest_checkpoint(self.checkpoint_dir):
            raise TrainingError(
                f"{self.checkpoint_dir} holds checkpoints: pass --resume to continue, or choose "
                "another --output-dir"
            )
        replicas = self.strategy.num_replicas_in_sync
        if c.batch_size % replicas:
            raise TrainingError(
                f"--batch-size {c.batch_size} does not split over {replicas} replicas"
            )
        self.data = open_coco(c.data_dir, c.train_split, c.val_split)
        train = self.data.train
        self.num_classes = len(self.data.class_names)
        self.steps_per_epoch = len(train.trainable()) // c.batch_size
        if not self.steps_per_epoch:
            raise TrainingError(
                f"{train.annotation_file}: {len(train.trainable())} images with boxes, fewer "
                f"than one batch of {c.batch_size}"
            )
        self.max_boxes = max(len(boxes) for boxes in train.boxes)
        logger.info(
            "%s: %d images with boxes (%d without, %d boxes skipped, %d crowd), %d classes",
            train.annotation_file,
            len(train.trainable()),
            train.empty_images,
            train.skipped_boxes,
            train.crowd_boxes,
            self.num_classes,
        )
        self.peak_lr = c.lr * c.batch_size / BASE_BATCH
        with self.strategy.scope():
            self.model = build_detector(c.model, self.num_classes, c.img_size, c.finetune)
            self.schedule = WarmupStepDecay(
                self.peak_lr, self.steps_per_epoch, c.decay_epochs, c.warmup_steps, c.warmup_ratio
            )
            self.optimizer = keras.optimizers.AdamW(
                self.schedule, weight_decay=c.weight_decay, beta_1=0.9, beta_2=0.999, epsilon=1e-8
            )
            self.optimizer.exclude_from_weight_decay(var_names=["attention_biases"])
            self.optimizer.build(self.model.trainable_variables)
            self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
            self.history_json = tf.Variable("[]", trainable=False, name="history")
        self.anchors = image_anchors(self.model.level_sizes())
        self.checkpoint = tf.train.Checkpoint(
            model=self.model, optimizer=self.optimizer, step=self.step, history=self.history_json
        )
        self.manager = tf.train.CheckpointManager(
            self.checkpoint, self.checkpoint_dir, c.keep_checkpoints, step_counter=self.step
        )

    def _replica_step(self, images, targets):
        with tf.GradientTape() as tape:
            outputs = self.model(images, training=True)
            cls_loss, box_loss = detection_loss(
                outputs, targets["boxes"], targets["labels"], self.anchors, self.num_classes
            )
            loss = (cls_loss + box_loss) / self.strategy.num_replicas_in_sync
        variables = self.model.trainable_variables
        self.optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return tf.stack([cls_loss, box_loss]) / self.strategy.num_replicas_in_sync

    @tf.function
    def train_step(self, iterator):
        """One optimizer step on the next global batch; returns (focal loss, L1 loss).

        Example:
            >>> trainer.train_step(iter(batches))  # doctest: +SKIP
        """
        losses = self.strategy.run(self._replica_step, args=next(iterator))
        self.step.assign_add(1)
        return self.strategy.reduce(tf.distribute.ReduceOp.SUM, losses, axis=None)

    def _epoch_data(self, epoch, start):
        c = self.config
        order, flips = epoch_order(self.data.train, epoch, c.seed, c.flip)
        first = start * c.batch_size
        batches = train_batches(
            self.data.train, order[first:], flips[first:], c.img_size, c.batch_size, self.max_boxes
        )
        return iter(self.strategy.experimental_distribute_dataset(batches))

    def _settings(self):
        c = self.config
        settings = dataclasses.asdict(c)
        settings.update(
            num_classes=self.num_classes,
            class_names=self.data.class_names,
            category_ids=self.data.category_ids,
            steps_per_epoch=self.steps_per_epoch,
            peak_lr=self.peak_lr,
        )
        return settings

    def _restore(self):
        latest = self.manager.latest_checkpoint
        if not latest:
            return
        saved_file = os.path.join(self.out, "config.json")
        saved = json.load(open(saved_file)) if os.path.isfile(saved_file) else {}
        for key in ("batch_size", "img_size", "num_classes", "steps_per_epoch", "seed", "model"):
            now = json.loads(json.dumps(self._settings()[key]))
            if key in saved and saved[key] != now:
                raise TrainingError(
                    f"--resume: {key} was {saved[key]} in this run, now {now}; resume with the "
                    "same settings or start another --output-dir"
                )
        self.checkpoint.restore(latest).assert_existing_objects_matched()
        epoch, offset = divmod(int(self.step), self.steps_per_epoch)
        logger.info(
            "resumed %s: step %d (epoch %d, step %d of %d)",
            latest, int(self.step), epoch + 1, offset, self.steps_per_epoch,
        )  # fmt: skip

    def evaluate(self):
        """COCO metrics of the model on the val split (pycocotools).

        Example:
            >>> trainer.evaluate()["mAP"]  # doctest: +SKIP
            0.31
        """
        detector = KerasDetector.from_model(self.model, self.data.class_names)
        return evaluate_detector(detector, self.data.val, self.data.category_ids)

    def _export(self, name):
        with atomic_path(os.path.join(self.out, name), overwrite=True) as tmp:
            self.model.save(tmp)

    def fit(self):
        """Run (or continue) training; returns the history (one dict per epoch).

        Example:
            >>> history = DetectionTrainer(config).fit()  # doctest: +SKIP
            >>> history[-1]["val_mAP"]  # doctest: +SKIP
            0.31
        """
        c = self.config
        self._restore()
        os.makedirs(self.out, exist_ok=True)
        if self.chief and int(self.step) == 0:
            write_json(os.path.join(self.out, "config.json"), self._settings())
        history = json.loads(self.history_json.numpy().decode())
        writer = (
            tf.summary.create_file_writer(os.path.join(self.out, "logs")) if self.chief else None
        )
        best = max((h["val_mAP"] for h in history), default=-1.0)
        for epoch in range(int(self.step) // self.steps_per_epoch, c.epochs):
            start = int(self.step) - epoch * self.steps_per_epoch
            iterator = self._epoch_data(epoch, start)
            logger.info("epoch %d/%d", epoch + 1, c.epochs)
            bar = keras.utils.Progbar(
                self.steps_per_epoch,
                stateful_metrics=["focal", "l1", "lr"],
                verbose=1 if self.chief and c.verbose else 0,
            )
            began, totals = time.time(), np.zeros(2)
            for index in range(start, self.steps_per_epoch):
                losses = self.train_step(iterator).numpy()
                step = int(self.step)
                if not np.isfinite(losses).all():
                    last = self.manager.latest_checkpoint or "none (nothing was saved yet)"
                    raise TrainingError(
                        f"the loss is {losses.sum()} at step {step} (epoch {epoch + 1}): "
                        f"training stopped; last good checkpoint: {last}"
                    )
                totals += losses
                lr = float(self.schedule(step - 1))
                bar.update(index + 1, [("focal", losses[0]), ("l1", losses[1]), ("lr", lr)])
                if writer is not None and (step % c.log_every == 0 or index == start):
                    with writer.as_default(step=step):
                        tf.summary.scalar("train/focal_loss", losses[0])
                        tf.summary.scalar("train/l1_loss", losses[1])
                        tf.summary.scalar("train/learning_rate", lr)
                if step % c.save_every == 0 and index + 1 < self.steps_per_epoch:
                    self.manager.save(checkpoint_number=step)
            steps = self.steps_per_epoch - start
            record = {
                "epoch": epoch,
                "step": int(self.step),
                "focal_loss": float(totals[0] / steps),
                "l1_loss": float(totals[1] / steps),
                "seconds": round(time.time() - began, 2),
            }
            record.update({f"val_{k}": v for k, v in self.evaluate().items()})
            history.append(record)
            self.history_json.assign(json.dumps(history))
            self.manager.save(checkpoint_number=int(self.step))
            logger.info("  ".join(f"{k} {v:.4g}" for k, v in record.items() if k != "epoch"))
            if self.chief:
                with writer.as_default(step=int(self.step)):
                    for key in ("val_mAP", "val_AP50", "val_AP_small"):
                        tf.summary.scalar(key.replace("val_", "val/"), record[key])
                write_json(os.path.join(self.out, "history.json"), history)
                if record["val_mAP"] > best:
                    best = record["val_mAP"]
                    self._export("best.keras")
        if self.chief and history:
            self._export("final.keras")
            logger.info("wrote %s: final.keras, best.keras, history.json, logs/", self.out)
        return history


def train_detector(config, strategy=None):
    """Train (or resume / fine-tune) a detector as `config` says; the per-epoch history.

    Example:
        >>> history = train_detector(DetectTrainConfig("shapes", "runs/s", epochs=1,
        ...                                            batch_size=4))  # doctest: +SKIP
    """
    return DetectionTrainer(config, strategy).fit()
