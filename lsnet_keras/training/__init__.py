"""Training logic behind `python -m training.train|evaluate|qat`: tf.data input pipelines,
augmentation, the official recipe, the tf.distribute trainer and evaluation.

- `data`: `open_dataset`, image folders, and the tf.data pipelines (`train_dataset`,
  `eval_dataset`); `records`: TFRecord shards and TFDS datasets, `write_tfrecords`.
- `augment`: RandAugment, Mixup / CutMix, random erasing (the official training transform).
- `recipe`: optimizer, schedule, losses, model building for fine-tuning and distillation.
- `run_setup`: what a run builds before its first step (checks, data, models, optimizer).
- `trainer`: the `tf.distribute` training loop with exact resume; `evaluation`: top-1 / top-5.

Imports: everything below it (model, weights, quantization, litert); nothing imports training.
"""
