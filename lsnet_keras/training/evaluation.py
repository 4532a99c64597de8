"""Top-1 / top-5 accuracy of a Keras model (any tf.distribute strategy) or a `.tflite` file.

Both use the official evaluation transform (`lsnet_keras.preprocess`): shorter side to
`int(256 / 224 * size)` bicubic, center crop, ImageNet normalization.

Example:
    >>> from lsnet_keras.training.data import open_dataset
    >>> from lsnet_keras.training.evaluation import evaluate_model
    >>> data = open_dataset("flowers", splits=("val",))  # doctest: +SKIP
    >>> evaluate_model(keras.models.load_model("best.keras"), data.val)  # doctest: +SKIP
    {'top1': 0.91, 'top5': 1.0, 'loss': 0.31, 'count': 500}
"""

import io

import numpy as np
import tensorflow as tf

from lsnet_keras.preprocess import eval_crop, open_image
from lsnet_keras.training.data import DatasetError, eval_dataset


def _check_classes(model_classes, num_classes, name):
    """The model must predict exactly the dataset's classes (label i = output i)."""
    if num_classes and model_classes != num_classes:
        raise DatasetError(
            f"{name} predicts {model_classes} classes but the dataset has {num_classes}: "
            "its labels would be compared with unrelated outputs"
        )


class Evaluator:
    """Sums of (loss, top-1, top-5, count) over a split, computed on every replica.

    Example:
        >>> evaluator = Evaluator(model, tf.distribute.get_strategy())  # doctest: +SKIP
        >>> evaluator(data.val, batch_size=64)["top1"]  # doctest: +SKIP
        0.75
    """

    def __init__(self, model, strategy):
        self.model = model
        self.strategy = strategy
        self.size = int(model.input_shape[1])
        self.top = min(5, int(model.output_shape[-1]))

    def _replica(self, images, labels):
        logits = tf.cast(self.model(images, training=False), tf.float32)
        valid = labels >= 0
        safe = tf.maximum(labels, 0)
        weight = tf.cast(valid, tf.float32)
        loss = tf.nn.sparse_softmax_cross_entropy_with_logits(safe, logits) * weight
        top1 = tf.cast(tf.math.in_top_k(safe, logits, 1), tf.float32) * weight
        top5 = tf.cast(tf.math.in_top_k(safe, logits, self.top), tf.float32) * weight
        return tf.stack(
            [tf.reduce_sum(loss), tf.reduce_sum(top1), tf.reduce_sum(top5), tf.reduce_sum(weight)]
        )

    @tf.function
    def _step(self, batch):
        sums = self.strategy.run(self._replica, args=batch)
        return self.strategy.reduce(tf.distribute.ReduceOp.SUM, sums, axis=None)

    def __call__(self, split, batch_size=64, num_classes=None):
        """Metrics over `split`; `batch_size` is global."""
        _check_classes(int(self.model.output_shape[-1]), num_classes or 0, self.model.name)
        replicas = self.strategy.num_replicas_in_sync
        per_replica = max(1, batch_size // replicas)

        def dataset(context):
            local = context.num_replicas_in_sync // context.num_input_pipelines
            pipeline = (context.input_pipeline_id, context.num_input_pipelines, local)
            return eval_dataset(split, per_replica, self.size, pipeline)

        totals = np.zeros(4)
        for batch in self.strategy.distribute_datasets_from_function(dataset):
            totals += self._step(batch).numpy()
        loss, top1, top5, count = totals
        count = max(count, 1.0)
        return {
            "top1": top1 / count,
            "top5": top5 / count,
            "loss": loss / count,
            "count": int(count),
        }


def evaluate_model(model, split, batch_size=64, strategy=None, num_classes=None):
    """Top-1 / top-5 (fractions), mean loss and image count of a Keras classifier on a split.

    Example:
        >>> evaluate_model(model, data.val)["top1"]  # doctest: +SKIP
        0.75
    """
    return Evaluator(model, strategy or tf.distribute.get_strategy())(
        split, batch_size, num_classes
    )


def _split_images(split):
    """(PIL image, label) of every example of a split, in order."""
    if split.paths is not None:
        for path, label in zip(split.paths, split.labels):
            yield open_image(path), int(label)
    else:
        for index, (encoded, label) in enumerate(split.records().as_numpy_iterator()):
            yield open_image(io.BytesIO(encoded), f"{split.name} record {index}"), int(label)


def evaluate_tflite(path, split, num_threads=None, num_classes=None):
    """Top-1 / top-5 of a `.tflite` classifier (float or quantized) run by the TFLite runtime.

    Example:
        >>> evaluate_tflite("lsnet_t_int8.tflite", data.val)["top5"]  # doctest: +SKIP
        0.92
    """
    from lsnet_keras.litert.runtime import TFLiteClassifier

    classifier = TFLiteClassifier(path, num_threads=num_threads)
    _check_classes(classifier.num_classes, num_classes or 0, path)
    top = min(5, classifier.num_classes)
    top1 = top5 = count = 0
    for image, label in _split_images(split):
        pixels = np.asarray(eval_crop(image, classifier.height, classifier.width))
        scores, _ = classifier.run(classifier.input_tensor(pixels))
        ranked = np.argsort(-scores, kind="stable")[:top]
        top1 += int(ranked[0] == label)
        top5 += int(label in ranked)
        count += 1
    count_ = max(count, 1)
    return {"top1": top1 / count_, "top5": top5 / count_, "count": count}
