"""Class names shipped with the package (no TensorFlow needed).

Example:
    >>> from lsnet_keras.labels import imagenet_labels
    >>> labels = imagenet_labels()
    >>> len(labels), labels[0], labels[999]
    (1000, 'tench', 'toilet tissue')
"""

from importlib import resources


def imagenet_labels():
    """The 1000 ImageNet-1k class names, index `i` naming class `i` (see `data/README.md`)."""
    text = resources.files("lsnet_keras").joinpath("data/imagenet_labels.txt").read_text("utf-8")
    return text.splitlines()
