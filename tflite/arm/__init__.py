"""Our .tflite files on XNNPACK's ARM kernels: qemu-aarch64 runs the aarch64 ai-edge-litert
wheel for an emulated Cortex-A53, A55 or A76, and a TCG plugin counts each invoke's
instructions, loads and stores exactly (`run.py`; set up by `setup.sh`)."""
