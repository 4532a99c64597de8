"""Atomic file writes: a temporary file beside the target, renamed into place when complete.

Example:
    >>> from lsnet_keras.io import atomic_path
    >>> with atomic_path("/tmp/example.txt", overwrite=True) as tmp:
    ...     _ = open(tmp, "w").write("done")
"""

import contextlib
import os

from lsnet_keras.errors import LSNetError


def refuse_existing(paths, overwrite=False):
    """Raise LSNetError naming the first of `paths` that exists, unless `overwrite`.

    Example:
        >>> refuse_existing(["/nonexistent/a.tflite"])
    """
    existing = [os.fspath(p) for p in paths if os.path.exists(p)]
    if existing and not overwrite:
        raise LSNetError(f"{existing[0]}: already exists; pass --force (overwrite=True) to replace")


@contextlib.contextmanager
def atomic_path(path, overwrite=False):
    """Yield a temporary path in the target's folder; on success rename it to `path`.

    On any error the temporary file is removed and `path` is left as it was. Refuses to
    replace an existing file unless `overwrite`.

    Example:
        >>> import keras
        >>> with atomic_path("/tmp/model.keras", overwrite=True) as tmp:
        ...     keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)]).save(tmp)
    """
    path = os.fspath(path)
    refuse_existing([path], overwrite)
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise LSNetError(f"{path}: the folder {folder} does not exist")
    base, extension = os.path.splitext(os.path.basename(path))
    tmp = os.path.join(folder, f".{base}.tmp-{os.getpid()}{extension}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
