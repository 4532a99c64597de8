"""Training logic behind `python -m training.train|evaluate|qat`: tf.data input pipelines,
augmentation, the official recipe, the tf.distribute trainer and evaluation.

- `data`: image folders, TFRecord shards and TFDS datasets as tf.data.
- `augment`: RandAugment, Mixup / CutMix, random erasing (the official training transform).
- `recipe`: optimizer, schedule, losses, model building for fine-tuning and distillation.
- `trainer`: the `tf.distribute` training loop with exact resume; `evaluation`: top-1 / top-5.

Imports: everything below it (model, weights, quantization, litert); nothing imports training.
"""
