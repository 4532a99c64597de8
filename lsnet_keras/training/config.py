"""Settings of a training run: `TrainConfig` (the official ImageNet recipe by default), the
strategy and precision names, and the error every training failure is reported as.

Example:
    >>> TrainConfig(data_dir="photos", output_dir="runs/photos").epochs
    300
"""

import dataclasses

from lsnet_keras.errors import LSNetError
from lsnet_keras.training.augment import Augment

STRATEGIES = ("default", "mirrored", "multiworker", "tpu")
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")


class TrainingError(LSNetError):
    """A training run that cannot start or continue (one line, naming what to change)."""


@dataclasses.dataclass
class TrainConfig:
    """Every setting of a run; the defaults are the official ImageNet recipe (see README).

    `model` is a variant name or a dict of LSNet architecture arguments (embed_dim, depth,
    num_heads[, key_dim]). `batch_size` is the global batch (the official 8 GPUs x 256 is
    2048) and `lr` the rate for a batch of 512, scaled linearly. `weight_decay` None means
    0.025 (0.05 for LSNet-B).
    """

    data_dir: str
    output_dir: str
    model: str = "lsnet_t"
    epochs: int = 300
    batch_size: int = 256
    img_size: int = 224
    num_classes: int = None
    lr: float = 1e-3
    min_lr: float = 1e-5
    warmup_lr: float = 1e-6
    warmup_epochs: int = 5
    weight_decay: float = None
    clip_grad: float = 0.02
    model_ema: bool = True
    ema_decay: float = 0.99996
    augment: Augment = Augment()
    repeated_aug: int = 3
    teacher: str = None
    distill_alpha: float = 0.5
    teacher_input: str = "normalized"
    finetune: str = None
    freeze_backbone: bool = False
    sync_bn: bool = False
    precision: str = "float32"
    save_every: int = 1000
    keep_checkpoints: int = 3
    log_every: int = 50
    eval_batch_size: int = None
    seed: int = 0
    strict: bool = False
    resume: bool = False
    label_offset: int = 0
    verbose: bool = True
