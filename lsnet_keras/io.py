"""Files in and out: checked inputs, atomic writes, and outputs removed when a job fails.

Writes go to a temporary file beside the target, renamed into place when complete; a temporary
file left by a killed run (`.NAME.tmp-PID.EXT` of a process that is gone) is removed by the next
write to the same target.

Example:
    >>> from lsnet_keras.io import atomic_path
    >>> with atomic_path("/tmp/example.txt", overwrite=True) as tmp:
    ...     _ = open(tmp, "w").write("done")
"""

import contextlib
import glob
import os

from lsnet_keras.errors import LSNetError


def require_file(path, what="input"):
    """`path` as a string if it is a readable regular file, else LSNetError saying why.

    Example:
        >>> require_file("/tmp", "model")
        Traceback (most recent call last):
        ...
        lsnet_keras.errors.LSNetError: /tmp: is a folder, not a model file
    """
    path = os.fspath(path)
    a = "an" if what[:1] in "aeiou" else "a"
    if os.path.isdir(path):
        raise LSNetError(f"{path}: is a folder, not {a} {what} file")
    if not os.path.lexists(path):
        raise LSNetError(f"{path}: {what} file not found")
    if not os.path.exists(path):
        raise LSNetError(f"{path}: broken symbolic link, not {a} {what} file")
    if not os.path.isfile(path):
        raise LSNetError(f"{path}: not a regular file, not {a} {what} file")
    if not os.access(path, os.R_OK):
        raise LSNetError(f"{path}: cannot read the {what} file (permission denied)")
    return path


def require_folder(path, what="input"):
    """`path` as a string if it is a folder, else LSNetError saying why.

    Example:
        >>> require_folder("/nonexistent", "data")
        Traceback (most recent call last):
        ...
        lsnet_keras.errors.LSNetError: /nonexistent: data folder not found
    """
    path = os.fspath(path)
    a = "an" if what[:1] in "aeiou" else "a"
    if os.path.lexists(path) and not os.path.isdir(path):
        raise LSNetError(f"{path}: is a file, not {a} {what} folder")
    if not os.path.isdir(path):
        raise LSNetError(f"{path}: {what} folder not found")
    return path


def walk_files(folder, skipped):
    """Files under `folder`, sorted; links to folders are followed, except loops.

    A link back to a folder being walked (or already walked) and a folder that cannot be
    listed are appended to `skipped` as (path, reason) instead.

    Example:
        >>> walk_files("/nonexistent", [])
        []
    """
    seen = {os.path.realpath(folder)}
    found = []

    def unreadable(err):
        skipped.append((err.filename, f"folder not readable ({err.strerror})"))

    for dirpath, dirnames, files in os.walk(folder, followlinks=True, onerror=unreadable):
        here = os.path.realpath(dirpath)
        for name in sorted(dirnames):
            target = os.path.realpath(os.path.join(dirpath, name))
            if here == target or here.startswith(target + os.sep):
                reason = "symbolic link loop"
            elif target in seen:
                reason = "folder already scanned (through a symbolic link)"
            else:
                seen.add(target)
                continue
            dirnames.remove(name)
            skipped.append((os.path.join(dirpath, name), reason))
        found += [os.path.join(dirpath, name) for name in files]
    return sorted(found)


def refuse_existing(paths, overwrite=False):
    """Raise LSNetError naming the first of `paths` that exists, unless `overwrite`.

    Example:
        >>> refuse_existing(["/nonexistent/a.tflite"])
    """
    existing = [os.fspath(p) for p in paths if os.path.lexists(p)]
    if existing and not overwrite:
        raise LSNetError(f"{existing[0]}: already exists; pass --force (overwrite=True) to replace")
    for path in existing:
        if os.path.isdir(path):
            raise LSNetError(f"{path}: is a folder, cannot replace it with a file")


def _process_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temporaries(path):
    """Remove the temporary files of earlier writes to `path` whose process is gone.

    Example:
        >>> remove_stale_temporaries("/tmp/model.keras")
        []
    """
    folder, name = os.path.split(os.path.abspath(os.fspath(path)))
    base, extension = os.path.splitext(name)
    removed = []
    for tmp in glob.glob(os.path.join(glob.escape(folder), f".{glob.escape(base)}.tmp-*")):
        pid = os.path.basename(tmp)[len(base) + 6 :].removesuffix(extension)
        if pid.isdigit() and int(pid) != os.getpid() and not _process_alive(int(pid)):
            with contextlib.suppress(FileNotFoundError):
                os.remove(tmp)
            removed.append(tmp)
    return removed


@contextlib.contextmanager
def atomic_path(path, overwrite=False):
    """Yield a temporary path in the target's folder; on success rename it to `path`.

    On any error (and Ctrl-C) the temporary file is removed and `path` is left as it was.
    Refuses to replace an existing file unless `overwrite`.

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
    remove_stale_temporaries(path)
    base, extension = os.path.splitext(os.path.basename(path))
    tmp = os.path.join(folder, f".{base}.tmp-{os.getpid()}{extension}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


@contextlib.contextmanager
def outputs_removed_on_failure(paths):
    """Remove those of `paths` that did not exist before, if the block fails (or is stopped).

    For jobs that write several files: a failure part-way leaves nothing that blocks a rerun.

    Example:
        >>> with outputs_removed_on_failure(["/tmp/a.tflite", "/tmp/b.tflite"]):
        ...     pass
    """
    new = [os.fspath(p) for p in paths if not os.path.lexists(p)]
    try:
        yield
    except BaseException:
        for path in new:
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)
        raise
