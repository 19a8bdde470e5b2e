"""The ``livematte`` command line: argument parsing and error reporting only."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from . import __version__
from .errors import LivematteError
from .models.base import ModelSettings

log = logging.getLogger("livematte")


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"got {text!r}, expected a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"got {value}, expected 0 or more")
    return value


def ratio(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"got {text!r}, expected a number") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"got {value}, expected 0..1 (0 = automatic)")
    return value


def add_model_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("model")
    group.add_argument("--model", choices=("auto", "bshm", "rvm"), default=None,
                       help="matting backend (default: auto = bshm when its weights are present, else rvm)")
    group.add_argument("--model-dir", type=Path, default=None,
                       help="local weights: a ModelScope snapshot folder or .pb (bshm), a .onnx (rvm)")
    group.add_argument("--model-size", type=positive_int, default=None, metavar="PX",
                       help="resize the model's input to this longest side (0 = as is)")
    group.add_argument("--downsample-ratio", type=ratio, default=None, metavar="R",
                       help="RVM's coarse scale, 0..1 (0 = automatic)")
    group.add_argument("--threads", type=positive_int, default=None, help="model CPU threads (0 = all)")


def model_settings(args: argparse.Namespace, base: ModelSettings | None = None) -> ModelSettings:
    """Flags override ``base`` (a preset's settings) field by field."""
    base = base or ModelSettings()
    overrides = {"name": args.model, "model_dir": args.model_dir, "size": args.model_size,
                 "downsample_ratio": args.downsample_ratio, "threads": args.threads}
    from dataclasses import replace

    return replace(base, **{k: v for k, v in overrides.items() if v is not None})


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="livematte", description="Replace the background behind people in video.")
    parser.add_argument("--version", action="version", version=f"livematte {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="more log lines")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    image = commands.add_parser("image", help="matte still images (files, URLs or a folder)")
    image.add_argument("-i", "--input", required=True, nargs="+", help="image file(s), http(s) URL or folder")
    image.add_argument("-d", "--output_dir", "--output-dir", dest="output_dir", type=Path,
                       default=Path("results"), help="where results go (default ./results)")
    image.add_argument("--background", default=None, metavar="SPEC",
                       help="also write <stem>_composite.png: PATH, color:#RRGGBB, blur[:N] or transparent")
    add_model_options(image)
    image.set_defaults(run=run_image)

    models_cmd = commands.add_parser("models", help="list the matting backends, or fetch their weights")
    models_cmd.add_argument("action", nargs="?", choices=("list", "fetch"), default="list")
    models_cmd.add_argument("name", nargs="?", choices=("bshm", "rvm"), help="backend to fetch")
    models_cmd.set_defaults(run=run_models)
    return parser


def run_image(args: argparse.Namespace) -> int:
    from .still import ImageJob, run_images

    job = ImageJob(inputs=args.input, output_dir=args.output_dir, background=args.background,
                   model=model_settings(args, ModelSettings(coarse=768)))
    return 1 if run_images(job) else 0


def run_models(args: argparse.Namespace) -> int:
    from . import models

    if args.action == "fetch":
        if not args.name:
            raise LivematteError("`livematte models fetch` needs a NAME: bshm or rvm")
        print(models.fetch(args.name))
        return 0
    for status in models.status():
        state = "ready" if status.ready else "not downloaded"
        print(f"{status.name:5}  {state:14}  {status.description}")
        print(f"{'':5}  weights: {status.weights or '-'}")
    return 0


def configure_logging(verbose: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("livematte: %(message)s"))
    root = logging.getLogger("livematte")
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    root.propagate = False
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(args.verbose)
    try:
        return args.run(args)
    except LivematteError as e:
        if args.debug:
            raise
        print(f"livematte: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("livematte: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
