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
import errno
import glob
import os

from lsnet_keras.errors import LSNetError, WriteError

# OSErrors of a write that say nothing about the input: no space, quota, file size limit,
# read-only file system. Raised by write() without a file name; named here.
WRITE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS)


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


def require_writable(path):
    """Raise WriteError if `path` cannot be created: its nearest existing folder is read-only.

    A missing folder on the way is fine (it will be created). Checked before the slow part of a
    job; a full disk shows only when writing (`atomic_path` names the file then).

    Example:
        >>> require_writable("/proc/model.keras")
        Traceback (most recent call last):
        ...
        lsnet_keras.errors.WriteError: /proc/model.keras: cannot write it: /proc is not writable
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    while not os.path.lexists(folder):
        folder = os.path.dirname(folder)
    if not os.path.isdir(folder):
        raise WriteError(f"{path}: cannot write it: {folder} is a file, not a folder")
    if not os.access(folder, os.W_OK):
        read_only = os.statvfs(folder).f_flag & os.ST_RDONLY
        why = "is on a read-only file system" if read_only else "is not writable"
        raise WriteError(f"{path}: cannot write it: {folder} {why}")


def check_outputs(paths, overwrite=False):
    """The checks of outputs before any work: `refuse_existing`, then `require_writable`.

    Example:
        >>> check_outputs(["/tmp/new_model.tflite"])
    """
    refuse_existing(paths, overwrite)
    for path in paths:
        require_writable(path)


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
    Refuses to replace an existing file unless `overwrite`, or to start in a read-only folder.
    A failed write (full disk, file size limit, read-only) is a WriteError naming `path`.

    Example:
        >>> import keras
        >>> with atomic_path("/tmp/model.keras", overwrite=True) as tmp:
        ...     keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)]).save(tmp)
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise LSNetError(f"{path}: the folder {folder} does not exist")
    check_outputs([path], overwrite)
    remove_stale_temporaries(path)
    base, extension = os.path.splitext(os.path.basename(path))
    tmp = os.path.join(folder, f".{base}.tmp-{os.getpid()}{extension}")
    try:
        yield tmp
        os.replace(tmp, path)
    except OSError as err:
        if err.errno not in WRITE_ERRNOS and err.filename != tmp:
            raise  # not the write's (reading an input inside the block, say)
        raise WriteError(f"{path}: cannot write it: {err.strerror or err}") from err
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


@contextlib.contextmanager
def outputs_removed_on_failure(paths, folder=None):
    """Remove those of `paths` that did not exist before, if the block fails (or is stopped).

    For jobs that write several files: a failure part-way leaves nothing that blocks a rerun.
    `folder` (where the files go) is created if missing, and removed again on failure if it is
    still empty (with the empty parents created for it).

    Example:
        >>> with outputs_removed_on_failure(["/tmp/out/a.tflite"], folder="/tmp/out"):
        ...     pass
    """
    new = [os.fspath(p) for p in paths if not os.path.lexists(p)]
    created = []
    if folder is not None:
        missing = os.path.abspath(os.fspath(folder))
        while not os.path.lexists(missing):
            created.append(missing)  # deepest first
            missing = os.path.dirname(missing)
        try:
            os.makedirs(folder, exist_ok=True)
        except OSError as err:
            raise WriteError(f"{folder}: cannot create the folder ({err.strerror})") from err
    try:
        yield
    except BaseException:
        for path in new:
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)
        for path in created:
            with contextlib.suppress(OSError):
                os.rmdir(path)  # only if empty
        raise
