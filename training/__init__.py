"""Command-line recipes over `lsnet_keras.trainer`: `python -m training.train`, `.evaluate`."""
