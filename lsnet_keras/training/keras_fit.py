"""Fine-tuning with Keras' own `model.fit` on any Keras backend (TensorFlow, JAX, PyTorch).

On JAX the batch is split over every local device (GPUs, TPU cores, or host CPUs made with
`XLA_FLAGS=--xla_force_host_platform_device_count=N`) by `keras.distribution.DataParallel`:
weights replicated, gradients averaged by XLA. No tf.distribute involved; `training.train`
keeps its tf.distribute path for TensorFlow. The input pipeline is `lsnet_keras.data` (tf.data).

Example (KERAS_BACKEND=jax set before Python starts):
    >>> from lsnet_keras.training.keras_fit import compile_for_finetune, data_parallel
    >>> from lsnet_keras.training.recipe import build_model
    >>> devices = data_parallel()  # first: the model's variables are created replicated
    >>> model, note = build_model("lsnet_t", 5, 224, finetune="lsnet_t.pth")  # doctest: +SKIP
    >>> compile_for_finetune(model, learning_rate=1e-4)  # doctest: +SKIP
"""

import keras

from lsnet_keras.errors import LSNetError


def data_parallel(devices=None):
    """Under JAX, make `keras.distribution.DataParallel` over `devices` (default: all local
    devices) the global distribution and return the device list; other backends: `[]`.

    Call it before building the model so that its variables are created replicated.

    Example:
        >>> data_parallel() if keras.backend.backend() != "jax" else []
        []
    """
    if keras.backend.backend() != "jax":
        return []
    found = keras.distribution.list_devices()
    devices = found if devices is None else list(devices)
    if not devices or any(d not in found for d in devices):
        raise LSNetError(f"devices: expected some of {found}, got {devices}")
    keras.distribution.set_distribution(keras.distribution.DataParallel(devices=devices))
    return devices


def compile_for_finetune(model, learning_rate, weight_decay=0.025):
    """Compile `model` with AdamW (eps 1e-8, no decay on 1-D variables and attention biases)
    and cross-entropy on soft targets (the mixup/label-smoothing targets of `lsnet_keras.data`).

    Backend-neutral: the AGC clipping of `training.train`'s optimizer is TensorFlow-only.

    Example:
        >>> import lsnet_keras
        >>> model = lsnet_keras.lsnet_t(num_classes=3, input_shape=64)
        >>> compile_for_finetune(model, learning_rate=1e-4)
        >>> model.optimizer.weight_decay
        0.025
    """
    optimizer = keras.optimizers.AdamW(
        learning_rate=learning_rate, weight_decay=weight_decay, epsilon=1e-8
    )
    optimizer.exclude_from_weight_decay(
        var_list=[
            v
            for v in model.trainable_variables
            if len(v.shape) <= 1 or "attention_biases" in v.path
        ]
    )
    loss = keras.losses.CategoricalCrossentropy(from_logits=True)
    model.compile(optimizer=optimizer, loss=loss, metrics=["categorical_accuracy"])
