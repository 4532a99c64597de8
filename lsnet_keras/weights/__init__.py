"""Checkpoints as data: reading official `.pth` / `.safetensors` files safely, and the explicit
table from each official key to its Keras variable.

- `checkpoint`: `read_state_dict` (no code ever runs: `torch.load(weights_only=True)`).
- `mapping`: `checkpoint_table`, `load_weights`, `export_state_dict`, `guess_variant`.
- `resize`: bicubic resizing of attention-bias tables for other input sizes.
- `hub`: `weights="imagenet"` and `hf://owner/repo[/file]` handles, fetched with
  `huggingface_hub` into the Hugging Face cache (`resolve_weights`, `read_weights`).

NumPy, safetensors, huggingface_hub and (for `.pth`) torch only: no Keras import here. Imports
only `lsnet_keras.config` and `lsnet_keras.errors`; the Keras model is passed in, never imported.
"""
