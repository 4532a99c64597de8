"""Tools for the exported `.tflite` models (see `tflite/gpu_check.py`)."""
