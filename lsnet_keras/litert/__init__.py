"""LiteRT / TFLite: everything after the Keras model, on the way to a phone.

- `export`: `export_tflite` (fp32, fp16, dynamic, int8; builtins only, at most 4-D) with
  `metadata` (normalization, labels) and `calibration` images; `labels`: ImageNet names.
- `graph`: a flatbuffer reader for `.tflite` files (ops, tensors, quantization).
- `xnnpack`: how XNNPACK partitions a model; the float islands of the cpu int8 graph.
- `runtime`: `TFLiteClassifier` on ai-edge-litert or tflite-runtime (no Keras, no TensorFlow).
- `gpu_check`: runs a model on the LiteRT GPU accelerator (Mesa lavapipe here), in a child
  process (`gpu_worker`, which imports neither TensorFlow nor this package).
- `fp16_check`: fp16 GPU / XNNPACK outputs of a trained model against Keras fp32.
- `edgetpu_rules` (the Coral compiler's op table) and `edgetpu_check`.
- `android`: the demo app's assets and the cross-language golden files.

Imports: model, quantization and the shared modules. `runtime`, `graph`, `labels` and
`lsnet_keras.preprocess` import without Keras or TensorFlow (TFLite-only installs), so this
`__init__` imports nothing.
"""
