"""Packaging for lsnet-keras: the LSNet family in Keras 3, ported from the official PyTorch code."""

from setuptools import find_packages, setup

TORCH = ["torch==2.13.0"]
# KERAS_BACKEND=jax (CPU; on GPU/TPU install the matching jax[...] wheel instead). 0.10 shares
# numpy >= 2 and ml_dtypes 0.5-0.x with tensorflow 2.21.
JAX = ["jax>=0.10.2,<0.11"]
# python -m training.train: TensorBoard logs (tf.summary needs the tensorboard package),
# curves.png (matplotlib), TFDS data (tensorflow-datasets; 4.9.10 imports importlib_resources
# without declaring it).
TRAIN = [
    "tensorboard>=2.16",
    "pycocotools>=2.0.8",  # python -m training.detect: COCO-format data and COCO mAP
    "matplotlib>=3.7",
    "tensorflow-datasets>=4.9",
    "importlib_resources>=6",
]

# benchmarks/mobile_latency.py: the ONNX Runtime contenders (fp32, and its static int8).
BENCH = ["onnx>=1.17,<2", "onnxruntime>=1.20,<2"]

setup(
    name="lsnet-keras",
    version="0.1.0",
    description="LSNet (CVPR 2025) in Keras 3 with the official weights, for LiteRT on mobile",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["lsnet_keras", "lsnet_keras.*"]),
    package_data={"lsnet_keras": ["assets/*"]},
    install_requires=[
        "tensorflow==2.21.0",
        "keras>=3.13,<4",
        "numpy>=1.26,<3",
        "safetensors>=0.4",
        "pillow>=10",
        "flatbuffers>=24",  # TFLite metadata (also a TensorFlow dependency)
        "ai-edge-litert==2.3.0",  # runs .tflite files; its WebGPU accelerator checks the GPU path
        "huggingface_hub>=2.4,<3",  # weights="imagenet" / hf:// downloads into the HF cache
    ],
    extras_require={
        # Only needed to read official .pth checkpoints. Always pinned: a bare
        # `torch` requirement pulls gigabytes of CUDA wheels.
        "torch": TORCH,
        "train": TRAIN,
        "jax": JAX,
        "bench": BENCH,
        # The tests: the PyTorch reference, the backend matrix (tests/test_backends.py), the
        # training tests, the latency benchmark's smoke test, and scikit-learn's digits images
        # that the QAT benchmark and tests train on.
        "dev": [
            *TORCH,
            *JAX,
            *TRAIN,
            *BENCH,
            "pytest>=8",
            "pytest-xdist>=3.5",
            "ruff>=0.6",
            "scikit-learn>=1.5",
        ],
    },
    entry_points={"console_scripts": ["lsnet=lsnet_keras.cli:console"]},
)
