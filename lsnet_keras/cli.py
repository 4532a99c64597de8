"""The `lsnet` command: a thin layer over the library's functions.

Example:
    $ lsnet convert --variant lsnet_t --checkpoint lsnet_t.pth --output lsnet_t.keras
"""

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _convert(args):
    from lsnet_keras.convert import convert_checkpoint

    model = convert_checkpoint(
        args.checkpoint,
        args.output,
        variant=args.variant,
        input_shape=args.img_size,
        deploy=args.deploy,
        overwrite=args.force,
    )
    form = "deployment" if args.deploy else "training"
    print(
        f"wrote {args.output}: {model.name} ({form} form), input {model.image_shape}, "
        f"{model.count_params():,} parameters"
    )


def build_parser():
    """The argument parser of `lsnet` (one sub-command per job).

    Example:
        >>> args = ["convert", "--checkpoint", "a.pth", "--output", "a.keras"]
        >>> build_parser().parse_args(args).img_size
        224
    """
    parser = argparse.ArgumentParser(prog="lsnet", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    convert = commands.add_parser(
        "convert", help="official checkpoint (.pth / .safetensors) -> .keras model"
    )
    convert.add_argument("--checkpoint", required=True, help="official .pth or .safetensors")
    convert.add_argument("--output", required=True, help="the .keras file to write")
    convert.add_argument(
        "--variant",
        help="lsnet_t, lsnet_s, lsnet_b (+ _distill); default: recognized from the checkpoint",
    )
    convert.add_argument(
        "--img-size",
        type=int,
        default=224,
        help="input size to build for (attention biases are resized); default 224",
    )
    convert.add_argument(
        "--deploy", action="store_true", help="save the reparameterized (inference) form"
    )
    convert.add_argument("--force", action="store_true", help="replace an existing output")
    convert.set_defaults(run=_convert)
    return parser


def main(argv=None):
    """Entry point of the `lsnet` console script; returns the exit status.

    Example:
        >>> main(["convert", "--checkpoint", "missing.pth", "--output", "x.keras"])
        2
    """
    args = build_parser().parse_args(argv)
    from lsnet_keras.errors import LSNetError

    try:
        args.run(args)
    except LSNetError as err:
        print(f"lsnet {args.command}: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
