"""What our commands show: our lines only, not the C++ logging of TensorFlow, XNNPACK or MLIR.

TensorFlow's native libraries write to file descriptor 2 directly (the oneDNN, CUDA and CPU
feature notices at import, converter and delegate chatter later), partly before
`TF_CPP_MIN_LOG_LEVEL` is read. `native_logs_silenced` points descriptor 2 at /dev/null while
Python's `sys.stderr` keeps the real terminal, so our errors, warnings and progress bars still
show. `import lsnet_keras` imports Keras this way (the import notices are never useful) and the
`lsnet` command runs whole this way. `LSNET_NATIVE_LOGS=1` turns it off, for debugging
TensorFlow itself.

Example:
    >>> with native_logs_silenced():
    ...     import tensorflow  # prints nothing
"""

import contextlib
import os
import sys


@contextlib.contextmanager
def native_logs_silenced():
    """Run the block with file descriptor 2 on /dev/null and `sys.stderr` on the terminal."""
    if os.environ.get("LSNET_NATIVE_LOGS") == "1":
        yield
        return
    python_stderr = sys.stderr
    python_stderr.flush()
    terminal = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    os.close(devnull)
    sys.stderr = open(terminal, "w", buffering=1, encoding="utf-8", errors="replace")
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(terminal, 2)
        sys.stderr.close()
        sys.stderr = python_stderr


def quiet_tensorflow_logging():
    """Keep TensorFlow's own loggers (C++ and Python) to errors, for the rest of the process.

    Example:
        >>> quiet_tensorflow_logging()
    """
    import logging

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    for name in ("tensorflow", "absl"):
        logging.getLogger(name).setLevel(logging.ERROR)
