"""The Keras 3 model: LSNet's layers, the network, its deploy form and loading it from files.

- `serialization`: registration and `get_config` of every layer (one place).
- `ops`: tensor helpers (PyTorch padding, crops with cheap gradients, the 7x7 strips).
- `conv`, `ska`, `attention`, `block`: the layers; `lsnet`: the `LSNet` model and `lsnet_t/s/b`.
- `reparam`: BatchNorm folding, RepVGG fusion and the per-target formulation (`reparameterize`).
- `loading`: a model from a checkpoint or a `.keras` file (`model_from_checkpoint`,
  `load_keras_model`, `convert_checkpoint`).

Backend-neutral `keras.ops` only. Imports: `lsnet_keras.config`, `errors`, `io` and
`lsnet_keras.weights` (checkpoint reading and the key table); nothing above (quantization,
litert, training).
"""
