"""Command-line options checked where they are parsed, before TensorFlow is imported.

Each checker is an argparse `type`: a wrong value ends the command with one line naming the
option, the value and what was expected (`ArgumentParser.error`), never later in a traceback.

Example:
    >>> parser = ArgumentParser(prog="demo")
    >>> _ = parser.add_argument("--img-size", type=IMAGE_SIZE, default=224)
    >>> parser.parse_args(["--img-size", "160"]).img_size
    160
"""

import argparse
import os
import sys

from lsnet_keras.config import VARIANTS

# Input sizes a model is built for: stage 4 needs at least one pixel (stride 64); the upper
# bound keeps the calibration and verification batches within a workstation's memory.
IMAGE_SIZE_RANGE = (32, 1024)
VARIANT_NAMES = tuple(sorted(VARIANTS)) + tuple(f"{v}_distill" for v in sorted(VARIANTS))


class ArgumentParser(argparse.ArgumentParser):
    """argparse with one-line errors: `PROG: error: MESSAGE (see PROG --help)`, exit 2."""

    def error(self, message):
        print(f"{self.prog}: error: {message} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(2)


def _integer(text):
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None


def int_range(low, high=None):
    """An argparse type: an integer in [low, high] (no upper bound if `high` is None).

    Example:
        >>> int_range(1, 8)("4")
        4
    """

    def check(text):
        value = _integer(text)
        if value < low or (high is not None and value > high):
            expected = f"from {low} to {high}" if high is not None else f"at least {low}"
            raise argparse.ArgumentTypeError(f"expected a whole number {expected}, got {value}")
        return value

    check.__name__ = "integer"
    return check


def float_range(low, high=None):
    """An argparse type: a finite number in [low, high] (no upper bound if `high` is None).

    Example:
        >>> float_range(0, 1)("0.25")
        0.25
    """

    def check(text):
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not (value >= low and (high is None or value <= high)):
            expected = f"from {low} to {high}" if high is not None else f"at least {low}"
            raise argparse.ArgumentTypeError(f"expected a number {expected}, got {text}")
        return value

    check.__name__ = "number"
    return check


POSITIVE = int_range(1)
COUNT = int_range(0)
IMAGE_SIZE = int_range(*IMAGE_SIZE_RANGE)
THREADS = int_range(1, 1024)
PROBABILITY = float_range(0.0, 1.0)
NON_NEGATIVE = float_range(0.0)


# Dense models (detector, segmenter) up to MMDetection's long side, multiples of 32.
DENSE_SIZE_RANGE = (32, 1344)


class ImageSize(argparse.Action):
    """`--img-size N` (square) or `--img-size H W`: stored as an (H, W) tuple.

    Example:
        >>> parser = ArgumentParser(prog="demo")
        >>> _ = parser.add_argument("--img-size", nargs="+", action=ImageSize)
        >>> parser.parse_args(["--img-size", "256", "384"]).img_size
        (256, 384)
    """

    def __call__(self, parser, namespace, values, option_string=None):
        if len(values) > 2:
            parser.error(f"{option_string}: one value (square) or two (height width), got {values}")
        try:
            sides = [int_range(*DENSE_SIZE_RANGE)(value) for value in values]
        except argparse.ArgumentTypeError as err:
            parser.error(f"argument {option_string}: {err}")
        setattr(namespace, self.dest, (sides[0], sides[-1]))


def variant(text):
    """An argparse type: a released variant name (lsnet_t, lsnet_s, lsnet_b, + _distill).

    Example:
        >>> variant("lsnet_t_distill")
        'lsnet_t_distill'
    """
    if text not in VARIANT_NAMES:
        raise argparse.ArgumentTypeError(
            f"unknown variant {text!r}; expected one of {', '.join(VARIANT_NAMES)}"
        )
    return text


def output_file(*extensions):
    """An argparse type: a file name ending in one of `extensions` (not an existing folder).

    Example:
        >>> output_file(".tflite")("model.tflite")
        'model.tflite'
    """

    def check(text):
        if not text.lower().endswith(extensions):
            raise argparse.ArgumentTypeError(f"{text!r} must end in {' or '.join(extensions)}")
        if os.path.isdir(text):
            raise argparse.ArgumentTypeError(f"{text!r} is a folder, expected a file name")
        return text

    check.__name__ = "file name"
    return check
