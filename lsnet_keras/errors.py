"""Errors a user can act on, and the command boundary that prints them as one line.

Example:
    >>> from lsnet_keras.errors import LSNetError
    >>> str(LSNetError("model.keras: file not found"))
    'model.keras: file not found'
"""

import os
import signal
import sys

# Set LSNET_TRACEBACK=1 to see the traceback of an unexpected error (a bug report).
TRACEBACK_VARIABLE = "LSNET_TRACEBACK"


class LSNetError(ValueError):
    """Base of the library's user-facing errors; the CLI prints them as one line."""


def _terminated(signum, frame):
    raise SystemExit(128 + signum)  # unwinds: `finally` blocks remove temporary files


def _describe(err):
    """One line for an exception that is not an LSNetError."""
    if isinstance(err, OSError) and err.strerror:
        where = f"{err.filename}: " if err.filename else ""
        return f"{where}{err.strerror}"
    if isinstance(err, MemoryError):
        return "out of memory (try a smaller --img-size or --batch-size)"
    text = str(err).strip().splitlines()
    detail = f": {text[0]}" if text else ""
    return (
        f"unexpected {type(err).__name__}{detail} (a bug: please report it; "
        f"{TRACEBACK_VARIABLE}=1 shows the traceback)"
    )


def run_command(prog, function, *args):
    """Run `function(*args)` as a command: its return value (or 0) is the exit status.

    A failure prints one line, `PROG: error: ...`, on stderr and returns 2; Ctrl-C returns 130
    quietly; SIGTERM unwinds like Ctrl-C (temporary files are removed) and exits 143.

    Example:
        >>> def fail():
        ...     raise LSNetError("x.keras: file not found")
        >>> run_command("lsnet convert", fail)
        2
    """
    previous = signal.signal(signal.SIGTERM, _terminated)
    try:
        return function(*args) or 0
    except KeyboardInterrupt:
        return 130
    except LSNetError as err:
        message = " ".join(str(err).splitlines())
    except Exception as err:
        if os.environ.get(TRACEBACK_VARIABLE):
            raise
        message = _describe(err)
    finally:
        signal.signal(signal.SIGTERM, previous)
    print(f"{prog}: error: {message}", file=sys.stderr)
    return 2
