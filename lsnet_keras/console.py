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
    """Keep TensorFlow's own loggers (C++ and Python) to errors and drop Keras' one-token
    softmax warning, for the rest of the process.

    Example:
        >>> quiet_tensorflow_logging()
    """
    import logging
    import warnings

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    for name in ("tensorflow", "absl"):
        logging.getLogger(name).setLevel(logging.ERROR)
    # At 64 px and below stage 4 is one token: its attention softmax is over one key (exactly 1),
    # which Keras flags as a likely mistake. It is not one here.
    warnings.filterwarnings("ignore", "You are using a softmax over axis -1 .* has size 1")


def show_progress(logger_name="lsnet_keras"):
    """Print the library's INFO progress lines (a long export's steps) on stderr, once.

    Example:
        >>> show_progress()
    """
    import logging

    logger = logging.getLogger(logger_name)
    if not any(getattr(h, "lsnet_progress", False) for h in logger.handlers):
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        handler.lsnet_progress = True
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False  # TensorFlow's import gives the root logger a handler too
