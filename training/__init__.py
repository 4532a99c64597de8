"""Command-line recipes over `lsnet_keras.training`: `python -m training.train|evaluate|qat`."""
