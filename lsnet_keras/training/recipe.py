"""The official training recipe in Keras 3: schedule, AdamW + AGC, init, fine-tuning, losses.

Official `main.py` defaults (DeiT/timm recipe): AdamW (eps 1e-8), lr 1e-3 x global batch / 512,
weight decay 0.025 (0.05 for LSNet-B) except on 1-D parameters and attention biases, cosine
schedule stepped per epoch (5 warm-up epochs from 1e-6, minimum 1e-5), adaptive gradient
clipping 0.02, model EMA 0.99996, label smoothing 0.1, hard distillation (alpha 0.5).

Example:
    >>> from lsnet_keras.training.recipe import WarmupCosine
    >>> schedule = WarmupCosine(4e-3, steps_per_epoch=100, epochs=300)
    >>> round(float(schedule(500)), 6)  # epoch 5: the first cosine epoch
    0.003999
"""

import math

import keras
import numpy as np
import tensorflow as tf

from lsnet_keras.errors import LSNetError
from lsnet_keras.model.attention import Attention
from lsnet_keras.model.block import Block
from lsnet_keras.model.loading import load_keras_model, model_from_checkpoint
from lsnet_keras.model.lsnet import BUILDERS, LSNet, build_variant
from lsnet_keras.weights.mapping import export_state_dict, load_weights

BASE_BATCH = 512


def scaled_lr(lr, global_batch):
    """The official linear scaling: lr * global batch / 512.

    Example:
        >>> scaled_lr(1e-3, 2048)
        0.004
    """
    return lr * global_batch / BASE_BATCH


@keras.saving.register_keras_serializable(package="lsnet_keras")
class WarmupCosine(keras.optimizers.schedules.LearningRateSchedule):
    """timm's CosineLRScheduler as the official run steps it: once per epoch.

    Epoch t < warmup: warmup_lr + t * (peak - warmup_lr) / warmup; then
    min_lr + (peak - min_lr) * (1 + cos(pi * t / epochs)) / 2.

    Example:
        >>> WarmupCosine(1e-3, steps_per_epoch=10, epochs=20, warmup_epochs=0)(0).numpy()
        0.001
    """

    def __init__(self, peak, steps_per_epoch, epochs, warmup_epochs=5, warmup_lr=1e-6, min_lr=1e-5):
        self.peak = peak
        self.steps_per_epoch = steps_per_epoch
        self.epochs = epochs
        self.warmup_epochs = warmup_epochs
        self.warmup_lr = warmup_lr
        self.min_lr = min_lr

    def __call__(self, step):
        epoch = tf.floor(tf.cast(step, tf.float32) / self.steps_per_epoch)
        warm = self.warmup_lr + epoch * (self.peak - self.warmup_lr) / max(self.warmup_epochs, 1)
        cosine = self.min_lr + 0.5 * (self.peak - self.min_lr) * (
            1.0 + tf.cos(math.pi * epoch / self.epochs)
        )
        return tf.where(epoch < self.warmup_epochs, warm, cosine)

    def get_config(self):
        return {
            "peak": self.peak,
            "steps_per_epoch": self.steps_per_epoch,
            "epochs": self.epochs,
            "warmup_epochs": self.warmup_epochs,
            "warmup_lr": self.warmup_lr,
            "min_lr": self.min_lr,
        }


def unit_axes(model):
    """{variable path: axes of one output unit} for AGC (timm's `unitwise_norm` in NHWC).

    PyTorch normalizes each output unit over all its other axes; in Keras that is axes
    (0, 1, 2) of a convolution kernel (kh, kw, in, out), (0, 1) of a depthwise kernel,
    0 of a Dense kernel, 1 of the attention biases (heads, offsets), and everything of a vector.

    Example:
        >>> import lsnet_keras
        >>> axes = unit_axes(lsnet_keras.lsnet_t(num_classes=10, input_shape=64))
        >>> axes["head/linear/kernel"]
        (0,)
    """
    axes = {}
    for variable in model.trainable_variables:
        rank = len(variable.shape)
        axes[variable.path] = tuple(range(rank - 1)) if rank > 1 else None
    for layer in model._flatten_layers():
        if isinstance(layer, keras.layers.DepthwiseConv2D):
            axes[layer.kernel.path] = (0, 1)
        elif isinstance(layer, Attention):
            axes[layer.attention_biases.path] = (1,)
    return axes


def _norm(x, axes):
    """L2 norm over `axes` (kept for broadcasting), or of the whole tensor when None."""
    return tf.sqrt(tf.reduce_sum(tf.square(x), axis=axes, keepdims=axes is not None))


class AdamWAGC(keras.optimizers.AdamW):
    """AdamW with timm's adaptive gradient clipping applied to the all-reduced gradients.

    Each unit's gradient norm is capped at `clip_factor * max(|unit weights|, 1e-3)`. The
    clipping sits in `update_step`, which Keras calls after the cross-replica all-reduce, so it
    sees the global gradient as PyTorch DDP's does. `axes`: `unit_axes(model)`.

    Example:
        >>> import lsnet_keras
        >>> model = lsnet_keras.lsnet_t(num_classes=10, input_shape=64)
        >>> optimizer = AdamWAGC(unit_axes(model), learning_rate=1e-3, weight_decay=0.025)
    """

    def __init__(self, axes, clip_factor=0.02, eps=1e-3, **kwargs):
        super().__init__(**kwargs)
        self.unit_axes = dict(axes)
        self.clip_factor = clip_factor
        self.clip_eps = eps
        self._axes_by_index = []

    def build(self, var_list):
        super().build(var_list)
        self._axes_by_index = [self.unit_axes.get(v.path, None) for v in var_list]

    def update_step(self, gradient, variable, learning_rate):
        if self.clip_factor:
            axes = self._axes_by_index[self._get_variable_index(variable)]
            weight_norm = _norm(tf.convert_to_tensor(variable), axes)
            max_norm = tf.maximum(weight_norm, self.clip_eps) * self.clip_factor
            grad_norm = _norm(gradient, axes)
            clipped = gradient * (max_norm / tf.maximum(grad_norm, 1e-6))
            gradient = tf.where(grad_norm < max_norm, gradient, clipped)
        return super().update_step(gradient, variable, learning_rate)


def make_optimizer(model, schedule, weight_decay, clip_grad=0.02, loss_scale=False):
    """AdamW (eps 1e-8) + AGC, no weight decay on 1-D variables and attention biases.

    Example:
        >>> import lsnet_keras
        >>> model = lsnet_keras.lsnet_t(num_classes=10, input_shape=64)
        >>> make_optimizer(model, 1e-3, 0.025).weight_decay
        0.025
    """
    optimizer = AdamWAGC(
        unit_axes(model),
        clip_factor=clip_grad,
        learning_rate=schedule,
        weight_decay=weight_decay,
        epsilon=1e-8,
    )
    no_decay = [
        v for v in model.trainable_variables if len(v.shape) <= 1 or "attention_biases" in v.path
    ]
    optimizer.exclude_from_weight_decay(var_list=no_decay)
    if loss_scale:
        return keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer


def official_init(model, seed=0):
    """The official initialization: PyTorch's default uniform for convolutions and biases,
    zero BatchNorm scale closing each residual branch (FFN, attention), trunc-normal heads.

    Example:
        >>> import lsnet_keras
        >>> official_init(lsnet_keras.lsnet_t(num_classes=10, input_shape=64))
    """
    rng = np.random.default_rng(seed)
    for layer in model._flatten_layers():
        if isinstance(layer, keras.layers.DepthwiseConv2D | keras.layers.Conv2D):
            kernel = layer.kernel
            kh, kw, channels_in, _ = kernel.shape
            fan_in = (
                kh * kw * (1 if isinstance(layer, keras.layers.DepthwiseConv2D) else channels_in)
            )
            bound = 1.0 / math.sqrt(fan_in)
            kernel.assign(rng.uniform(-bound, bound, kernel.shape).astype(kernel.dtype))
            if layer.bias is not None:
                layer.bias.assign(rng.uniform(-bound, bound, layer.bias.shape).astype(kernel.dtype))
        if isinstance(layer, Block):
            layer.ffn.pw2.bn.gamma.assign(np.zeros(layer.ffn.pw2.bn.gamma.shape))
            if layer.kind == "attention":
                layer.mixer.proj.bn.gamma.assign(np.zeros(layer.mixer.proj.bn.gamma.shape))
    for name in ("head", "head_dist"):
        try:
            dense = model.get_layer(name).linear
        except ValueError:
            continue
        # trunc_normal_(std=0.02) truncates at +-2, i.e. 100 std: a plain normal.
        normal = rng.normal(0, 0.02, dense.kernel.shape)
        dense.kernel.assign(normal.astype(dense.kernel.dtype))
        dense.bias.assign(np.zeros(dense.bias.shape))


def distillation_heads(model):
    """A Keras model sharing `model`'s weights that returns [head, head_dist] logits.

    For training a `distillation=True` LSNet (whose own output is the mean of both heads).

    Example:
        >>> import lsnet_keras
        >>> student = lsnet_keras.lsnet_t(num_classes=10, distillation=True, input_shape=64)
        >>> [o.shape for o in distillation_heads(student).outputs]
        [(None, 10), (None, 10)]
    """
    outputs = [model.get_layer("head").output, model.get_layer("head_dist").output]
    return keras.Model(model.input, outputs, name=f"{model.name}_heads")


def soft_cross_entropy(targets, logits):
    """Per-example cross-entropy against soft targets (timm SoftTargetCrossEntropy).

    Example:
        >>> float(soft_cross_entropy(tf.constant([[0.5, 0.5]]), tf.zeros((1, 2)))[0])
        0.6931471824645996
    """
    return -tf.reduce_sum(targets * tf.nn.log_softmax(tf.cast(logits, tf.float32)), axis=-1)


def hard_distillation_loss(targets, head, head_dist, teacher_logits, alpha=0.5):
    """Official hard distillation: (1 - alpha) CE(head, targets) + alpha CE(head_dist, argmax T).

    Example:
        >>> hard_distillation_loss(tf.constant([[1.0, 0.0]]), tf.zeros((1, 2)), tf.zeros((1, 2)),
        ...                        tf.constant([[0.0, 5.0]])).shape
        TensorShape([1])
    """
    teacher_labels = tf.argmax(teacher_logits, axis=-1)
    distill = tf.nn.sparse_softmax_cross_entropy_with_logits(
        teacher_labels, tf.cast(head_dist, tf.float32)
    )
    return (1.0 - alpha) * soft_cross_entropy(targets, head) + alpha * distill


def _transfer(source, net, path):
    """Load `source`'s weights into `net`; heads whose shape differs keep `net`'s init."""
    state, fresh = export_state_dict(source), export_state_dict(net)
    replaced = []
    for prefix in ("head.", "head_dist."):
        keys = [k for k in fresh if k.startswith(prefix)]
        old = {k: v for k, v in state.items() if k.startswith(prefix)}
        state = {k: v for k, v in state.items() if not k.startswith(prefix)}
        if keys and set(old) == set(keys) and all(old[k].shape == fresh[k].shape for k in keys):
            state.update(old)
        elif keys:
            state.update({k: fresh[k] for k in keys})
            replaced.append(prefix[:-1])
    load_weights(net, state, source=path)
    return replaced


def build_model(name, num_classes, img_size, distillation=False, finetune=None, seed=0):
    """(model, message): a variant with the official init, or fine-tuned from a checkpoint.

    `name`: a variant (lsnet_t, lsnet_s, lsnet_b) or a dict of LSNet architecture arguments.
    `finetune`: "imagenet" (the official weights of variant `name`, from the Hugging Face
    hub), an `hf://` handle, an official `.pth` / `.safetensors` or a training-form `.keras`;
    the architecture comes from it, and a head of another class count is replaced by a new one.

    Example:
        >>> model, note = build_model("lsnet_t", 10, 64, distillation=True)
        >>> model.output_shape, model.distillation
        ((None, 10), True)
    """
    if not finetune:
        head = {"num_classes": num_classes, "input_shape": img_size}
        if isinstance(name, dict):  # a custom architecture: LSNet's embed_dim, depth, ...
            try:
                model = LSNet(**name, **head, distillation=distillation)
            except TypeError as err:
                raise LSNetError(f"--model: not LSNet architecture arguments ({err})") from None
        else:
            base = name.removesuffix("_distill")
            if base not in BUILDERS:
                raise LSNetError(
                    f"--model: expected lsnet_t, lsnet_s, lsnet_b or a JSON architecture, "
                    f"got {name!r}"
                )
            model = build_variant(base + "_distill" * distillation, **head)
        official_init(model, seed)
        return model, f"{model.name}: random init (official rules)"
    if str(finetune).endswith(".keras"):
        source = load_keras_model(finetune)
    else:
        variant = name if finetune == "imagenet" and isinstance(name, str) else None
        source = model_from_checkpoint(finetune, variant, input_shape=img_size)
    if not isinstance(source, LSNet) or source.deploy or source.features_only:
        raise LSNetError(f"{finetune}: fine-tune from a training-form LSNet classifier")
    base = source.name.removesuffix("_distill")
    model = LSNet(
        **source.architecture(),
        num_classes=num_classes,
        distillation=distillation,
        input_shape=img_size,
        name=base + ("_distill" if distillation else ""),
    )
    official_init(model, seed)
    replaced = _transfer(source, model, finetune)
    new = f"; new {' and '.join(replaced)} for {num_classes} classes" if replaced else ""
    return model, f"{model.name}: weights from {finetune}{new}"
