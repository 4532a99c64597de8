"""What a run leaves to read: the loss and accuracy curves (`curves.png`) and JSON files.

Example:
    >>> write_json("/tmp/history.json", [{"epoch": 0, "train_loss": 2.0}])
"""

import json

from lsnet_keras.io import atomic_path


def plot_history(history, path):
    """Write the loss and accuracy curves of `history` (a list of epoch dicts) as a PNG.

    Example:
        >>> plot_history([{"epoch": 0, "train_loss": 2.0, "val_loss": 1.5, "val_top1": 0.4,
        ...                "val_top5": 0.9}], "/tmp/curves.png")
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    epochs = [h["epoch"] + 1 for h in history]
    figure, (losses, accuracy) = pyplot.subplots(1, 2, figsize=(11, 4))
    for key, label in (("train_loss", "train"), ("val_loss", "validation")):
        values = [h.get(key) for h in history]
        if any(v is not None for v in values):
            losses.plot(epochs, values, marker="o", label=label)
    for key, label in (("val_top1", "top-1"), ("val_top5", "top-5")):
        values = [h.get(key) for h in history]
        if any(v is not None for v in values):
            accuracy.plot(epochs, [100 * v for v in values], marker="o", label=label)
    losses.set(xlabel="epoch", ylabel="loss", title="loss")
    accuracy.set(xlabel="epoch", ylabel="%", title="validation accuracy")
    for axes in (losses, accuracy):
        axes.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        axes.grid(alpha=0.3)
        axes.legend()
    figure.tight_layout()
    with atomic_path(path, overwrite=True) as tmp:
        figure.savefig(tmp, format="png", dpi=100)
    pyplot.close(figure)


def write_json(path, value):
    """Write `value` as indented JSON, atomically (replacing any earlier file)."""
    with atomic_path(path, overwrite=True) as tmp, open(tmp, "w") as f:
        json.dump(value, f, indent=1)
