"""Errors a user can act on, and the command boundary that prints them as one line.

Example:
    >>> from lsnet_keras.errors import LSNetError
    >>> str(LSNetError("model.keras: file not found"))
    'model.keras: file not found'
"""

import contextlib
import os
import signal
import sys

# Set LSNET_TRACEBACK=1 to see the traceback of an unexpected error (a bug report).
TRACEBACK_VARIABLE = "LSNET_TRACEBACK"


# Our commands: `python -m MODULE` for these modules, and the `lsnet` console script.
COMMAND_MODULES = (
    "lsnet_keras.cli",
    "training.train",
    "training.evaluate",
    "training.qat",
    "training.fit",
    "training.detect",
)
CONSOLE_SCRIPTS = ("lsnet", "lsnet.exe", "lsnet-script.py")


class LSNetError(ValueError):
    """Base of the library's user-facing errors; the CLI prints them as one line."""


class WriteError(LSNetError, OSError):
    """An output that cannot be written (read-only folder, full disk), named in one line.

    Also an OSError, so `except OSError` around a library call still catches it.

    Example:
        >>> isinstance(WriteError("a.keras: cannot write it (No space left on device)"), OSError)
        True
    """


def _terminated(signum, frame):
    raise SystemExit(128 + signum)  # unwinds: `finally` blocks remove temporary files


def _main_module(orig_argv):
    """MODULE of `python [options] -m MODULE ...`, else None."""
    arguments = iter(orig_argv[1:])
    for argument in arguments:
        if argument == "-m":
            return next(arguments, None)
        if argument.startswith("-m"):
            return argument[2:]
        if argument in ("-W", "-X"):  # options with a separate value
            next(arguments, None)
        elif argument in ("-c", "-") or not argument.startswith("-"):
            return None  # a command string, stdin or a script: not -m
    return None


def started_as_command(argv=None, orig_argv=None):
    """True if this process was started as one of our commands (`lsnet`, `python -m
    lsnet_keras.cli`, `python -m training.train|evaluate|qat|fit`), from how Python was run.

    Example:
        >>> started_as_command(["/venv/bin/lsnet", "convert"], ["python", "/venv/bin/lsnet"])
        True
        >>> started_as_command(["-m"], ["python", "-X", "dev", "-m", "training.train"])
        True
        >>> started_as_command(["app.py"], ["python", "app.py"])
        False
    """
    if started_as_lsnet_command(argv, orig_argv):
        return True
    orig_argv = getattr(sys, "orig_argv", []) if orig_argv is None else orig_argv
    return _main_module(orig_argv) in COMMAND_MODULES


def started_as_lsnet_command(argv=None, orig_argv=None):
    """True if this process is the `lsnet` command (the console script or `python -m
    lsnet_keras.cli`), which runs whole under `console.native_logs_silenced`.

    Example:
        >>> started_as_lsnet_command(["-m"], ["python", "-m", "lsnet_keras.cli", "predict"])
        True
        >>> started_as_lsnet_command(["-m"], ["python", "-m", "training.train"])
        False
    """
    argv = sys.argv if argv is None else argv
    orig_argv = getattr(sys, "orig_argv", []) if orig_argv is None else orig_argv
    if argv and os.path.basename(argv[0]) in CONSOLE_SCRIPTS:
        return True
    return _main_module(orig_argv) == "lsnet_keras.cli"


@contextlib.contextmanager
def interrupts_held(then=KeyboardInterrupt):
    """Hold Ctrl-C and SIGTERM until the block ends (in the main thread; else nothing).

    Then a held Ctrl-C raises `then`, and a held SIGTERM is delivered again to the handler that
    was there before (`run_command`'s exits 143). For imports of native code: TensorFlow's calls
    back into Python (protobuf's descriptor pool), where an exception raised by a signal is
    printed as a traceback and dropped; in ai-edge-litert's, it turns into an ImportError
    ("initialization failed") that reads as a missing runtime. Held, the signal ends the
    command as soon as the import is done.

    Example:
        >>> with interrupts_held():
        ...     import json
    """
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught = []
    held = (signal.SIGINT, signal.SIGTERM)
    previous = {s: signal.signal(s, lambda signum, frame: caught.append(signum)) for s in held}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if signal.SIGTERM in caught:
        signal.raise_signal(signal.SIGTERM)
    if caught:
        raise then


def _interrupted(signum, frame):
    raise SystemExit(130)  # quiet (no traceback), and unwinds like KeyboardInterrupt


def quiet_interrupts_if_command():
    """In one of our commands, make Ctrl-C exit quietly with 130 from now on; else do nothing.

    Why here: `import lsnet_keras` imports Keras and TensorFlow (seconds) before any line of
    `lsnet_keras.cli` or `training.*` runs, and a Ctrl-C then would print a KeyboardInterrupt
    traceback from deep inside TensorFlow. So the package's `__init__` calls this first: when
    the process was started as one of our commands (`started_as_command`), SIGINT raises
    SystemExit(130) until `run_command` takes over (which turns a KeyboardInterrupt inside the
    job into 130 itself). A library user's program is left alone: its Ctrl-C during
    `import lsnet_keras` stays a normal KeyboardInterrupt.

    Example:
        >>> quiet_interrupts_if_command()  # under pytest or in a notebook: nothing changes
        False
    """
    import threading

    if not started_as_command() or threading.current_thread() is not threading.main_thread():
        return False
    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        return False  # the program installed its own handler: keep it
    signal.signal(signal.SIGINT, _interrupted)
    return True


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
    quietly; SIGTERM unwinds like Ctrl-C (temporary files are removed) and exits 143. Inside
    the job Ctrl-C is a KeyboardInterrupt, also when `quiet_interrupts_if_command` made it a
    quiet exit around it.

    Example:
        >>> def fail():
        ...     raise LSNetError("x.keras: file not found")
        >>> run_command("lsnet convert", fail)
        2
    """
    previous = signal.signal(signal.SIGTERM, _terminated)
    quiet = signal.getsignal(signal.SIGINT) is _interrupted
    if quiet:
        signal.signal(signal.SIGINT, signal.default_int_handler)
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
        if quiet:
            signal.signal(signal.SIGINT, _interrupted)
    print(f"{prog}: error: {message}", file=sys.stderr)
    return 2
