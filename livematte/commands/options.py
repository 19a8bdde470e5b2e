"""The flags several commands share, their values checked as they are parsed, and the parsed
flags turned into typed settings (:func:`load_config`, :func:`model_settings`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from .. import models
from ..compose.backgrounds import describe
from ..media import image_header

# The demo's own file: a second `livematte demo` (the README's first command) replaces it without -y.
DEMO_OUTPUT = Path("livematte-demo.mp4")
DEFAULT_WEB = "127.0.0.1:8750"  # the web page's address for --sink web without --web


def _number(text: str, kind: type) -> int | float:
    """``text`` as ``kind`` (int or float), or argparse's one-line error."""
    try:
        return kind(text)
    except ValueError:
        expected = "a whole number" if kind is int else "a number"
        raise argparse.ArgumentTypeError(f"got {text!r}, expected {expected}") from None


def non_negative_int(text: str) -> int:
    """0 or more."""
    value = _number(text, int)
    if value < 0:
        raise argparse.ArgumentTypeError(f"got {value}, expected 0 or more")
    return value


def non_negative_float(text: str) -> float:
    """0 or more."""
    value = _number(text, float)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"got {value}, expected 0 or more")
    return value


def model_size(text: str) -> int:
    """0 (the backend's default) or MIN_SIZE..MAX_SIZE pixels."""
    from ..models.base import MAX_SIZE, MIN_SIZE

    value = _number(text, int)
    if value != 0 and not MIN_SIZE <= value <= MAX_SIZE:
        raise argparse.ArgumentTypeError(f"got {value}, expected 0 (the backend's default) or {MIN_SIZE}..{MAX_SIZE}")
    return value


def positive_float(text: str) -> float:
    """More than 0."""
    value = _number(text, float)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"got {value}, expected more than 0")
    return value


def count(text: str) -> int:
    """1 or more."""
    value = _number(text, int)
    if value < 1:
        raise argparse.ArgumentTypeError(f"got {value}, expected 1 or more")
    return value


def add_model_options(parser: argparse.ArgumentParser) -> None:
    from ..models.runtimes import RUNTIMES as ONNX_RUNTIMES
    from ..models.selfie import RUNTIMES as TFLITE_RUNTIMES

    RUNTIMES = tuple(dict.fromkeys(ONNX_RUNTIMES + TFLITE_RUNTIMES))
    group = parser.add_argument_group("model")
    group.add_argument("--model", choices=models.NAMES, default=None,
                       help="matting backend (default: auto = bshm when its weights are present, else rvm; "
                            "`livematte models` says what each is for)")
    group.add_argument("--model-dir", type=Path, default=None,
                       help="local weights: a ModelScope snapshot folder or .pb (bshm), a .onnx (rvm, modnet), "
                            "a .tflite or a folder of them (selfie)")
    group.add_argument("--model-size", type=model_size, default=None, metavar="PX",
                       help="resize the model's input to this longest side, 32..4096, for any model "
                            "(0 = the backend's default: bshm the frame as is, rvm and modnet 512); "
                            "selfie's input is fixed")
    group.add_argument("--threads", type=non_negative_int, default=None, help="model CPU threads (0 = all)")
    group.add_argument("--runtime", choices=RUNTIMES, default=None,
                       help="inference runtime: openvino or onnxruntime for rvm and modnet (auto: OpenVINO "
                            "on CPUs, onnxruntime on CUDA GPUs), litert or opencv for selfie (auto: litert)")
    add_download_timeout(group)


def add_download_timeout(parser) -> None:
    from ..models.base import ModelSettings

    parser.add_argument("--download-timeout", type=positive_float, default=None, metavar="S",
                        help="seconds allowed for fetching missing weights "
                             f"(default {ModelSettings.download_timeout:g})")


def model_overrides(args: argparse.Namespace) -> dict:
    return {"name": args.model, "model_dir": args.model_dir, "size": args.model_size,
            "threads": args.threads, "runtime": args.runtime, "download_timeout": args.download_timeout}


def model_settings(args: argparse.Namespace):
    """The model flags over ``ModelSettings()``'s defaults, through the config's typed merge."""
    from .. import config
    from ..models.base import ModelSettings

    return config.merge(ModelSettings(), model_overrides(args), "command line [model]")


def strength(text: str) -> float:
    from ..matte.smoothing import MAX_STRENGTH

    value = _number(text, float)
    if not 0.0 <= value <= MAX_STRENGTH:
        raise argparse.ArgumentTypeError(f"got {value}, expected 0..{MAX_STRENGTH} (0 = off)")
    return value


def frame_rate(text: str) -> float:
    from ..config import MAX_FPS, MIN_FPS

    value = _number(text, float)
    if not MIN_FPS <= value <= MAX_FPS:
        raise argparse.ArgumentTypeError(f"got {value}, expected {MIN_FPS}..{MAX_FPS} frames per second")
    return value


def add_pipeline_options(parser: argparse.ArgumentParser, default_preset: str) -> None:
    from ..matte.refine import MODES as REFINE_MODES

    group = parser.add_argument_group("settings")
    group.add_argument("--preset", default=default_preset,
                       help=f"a settings preset (default {default_preset}; `livematte presets` lists them)")
    group.add_argument("--config", type=Path, default=None, metavar="FILE",
                       help="a TOML file laid out like the presets; overrides the preset")
    group.add_argument("--background", default=None, metavar="SPEC",
                       help=f"PATH (image or looping video), {describe('COLOUR')}; "
                            "COLOUR is #RRGGBB, #RGB or a CSS name (red, royalblue)")
    group.add_argument("--smoothing", type=strength, default=None, metavar="S",
                       help="temporal smoothing strength 0..0.95 (0 = off)")
    group.add_argument("--refine", choices=REFINE_MODES, default=None,
                       help="how a plain matte (bshm, modnet) is brought to full resolution; "
                            "rvm and selfie finish their own with a guided filter")
    group.add_argument("--frames", type=count, default=None, metavar="N", help="stop after N frames (1 or more)")
    add_max_pixels_option(group)
    add_composite_options(parser)
    add_model_options(parser)


def add_max_pixels_option(parser) -> None:
    default = image_header.DEFAULT_MAX_PIXELS
    parser.add_argument("--max-pixels", type=count, default=default, metavar="N",
                        help="refuse pictures (backgrounds, image inputs, web uploads) of more than N pixels, "
                             f"read from their header before anything is decoded (default {default}: "
                             "a 12K frame is 80 million, a 100 MP camera's photo 102 million. Decoded, a picture "
                             "takes 3 bytes a pixel, 360 MB at the default, kept for the run as a background; "
                             "`image` of a 102 MP photo peaks at 2.3 GB)")


def add_composite_options(parser: argparse.ArgumentParser) -> None:
    """The ``[composite]`` section's flags; values are checked by CompositeSettings (one-line errors)."""
    from ..matte.finishing import FOREGROUND_MODES, PLATE_MODES, SUBJECTS

    group = parser.add_argument_group("composite")
    group.add_argument("--foreground", choices=FOREGROUND_MODES, default=None,
                       help="the person's colours at soft edges: auto (the model's own estimate, else blur "
                            "fusion; default), blur (blur fusion), off (the frame's raw colours)")
    group.add_argument("--despill", nargs="?", const="auto", default=None, metavar="auto|off|COLOUR",
                       help="remove a green/blue screen's colour from soft edges and the light it casts just "
                            "inside them: measure the screen (auto, the default when the flag has no value) "
                            "or give it: #RRGGBB, #RGB or a CSS name")
    edge = group.add_mutually_exclusive_group()
    edge.add_argument("--grow", type=int, default=None, metavar="PX", help="move the matte's edge out by PX pixels")
    edge.add_argument("--shrink", type=int, default=None, metavar="PX", help="move the matte's edge in by PX pixels")
    group.add_argument("--feather", type=lambda t: _number(t, float), default=None, metavar="PX",
                       help="soften the edge outwards over PX pixels")
    group.add_argument("--threshold", type=lambda t: _number(t, float), default=None, metavar="T",
                       help="a hard matte: 1 at or above T (0..1), 0 below; 0 = off")
    group.add_argument("--light-wrap", type=lambda t: _number(t, float), default=None, metavar="S",
                       help="the new background's light on the person's edge, strength 0..1 (0 = off)")
    group.add_argument("--subject", choices=SUBJECTS, default=None,
                       help="all people (default) or the main one only (largest, most central; others fade out)")
    group.add_argument("--plate", choices=PLATE_MODES, default=None,
                       help="auto: learn the background from the frames and use it at the soft edge (hair "
                            "without the old background; offline it follows a camera that pans or drifts, "
                            "live only a still one; it steps aside where the camera jumps or the background "
                            "moves by itself; 10-27 ms a 720p frame on one core); off (default)")


def composite_overrides(args: argparse.Namespace) -> dict:
    grow = -args.shrink if args.shrink is not None else args.grow
    return {"foreground": args.foreground, "despill": args.despill, "grow": grow, "feather": args.feather,
            "threshold": args.threshold, "light_wrap": args.light_wrap, "subject": args.subject, "plate": args.plate}


def load_config(args: argparse.Namespace, *, capture: dict | None = None, live: dict | None = None, **output):
    """The preset, ``--config`` and every settings flag (``capture``/``live``/``output``: section key ->
    flag value, None for flags not given) through ``config.load``."""
    from .. import config

    smoothing = {}
    if args.smoothing is not None:
        smoothing = {"strength": args.smoothing, "enabled": args.smoothing > 0}
    return config.load(args.preset, args.config, {
        "model": model_overrides(args), "smoothing": smoothing, "refine": {"mode": args.refine},
        "capture": capture or {}, "live": live or {}, "output": {"background": args.background, **output},
        "composite": composite_overrides(args)})


def add_overwrite_options(parser: argparse.ArgumentParser, outputs: str) -> None:
    """-y / -n, as in ffmpeg: an output that exists is refused (-n, the default) or replaced (-y)."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument("-y", "--overwrite", action="store_true", default=False,
                       help=f"replace {outputs} that exist already (default: refuse them before any work)")
    group.add_argument("-n", "--no-overwrite", dest="overwrite", action="store_false",
                       help="refuse outputs that exist already (the default)")


# What ``live``'s log line of figures (livematte.runtime.stats.Stats.line) means, for ``live --help``.
LIVE_FIGURES = """\
the figures in the log, every 5 s and once more at the end, e.g.
  30.0 fps, latency 25 ms (p95 57), 384px every 2+ frames, age 2 (p95 3),
  CPU 148%, 3 dropped
fps      fresh frames per second: new frames composited, each with a matte
         of its own (repeats of the last frame, sent to keep a virtual
         camera's rate, do not count)
latency  capture to output of those frames, the median, ms (p95: 19 frames
         in 20 were faster)
level    played as a camera with --adapt on: the network's input size and
         how often the model may take a frame (whenever free, or at most
         every n frames); the model runs on its own thread and every frame
         is finished from its newest result, moved with the picture; a
         model's name when the governor has stepped down to a faster one
age      how many frames before each frame the model's input was, for the
         result it was finished from: the median (p95)
CPU      the whole process since the first frame, percent of one core
         (100 = one core busy)
dropped  frames skipped because a newer one was ready (shown when there are)
-v adds the frame counts: in (from the source), fresh (reused: of those, the
ones whose matte was moved from an earlier frame's model call), repeated (the
last frame sent again), dropped; sent: frames sent per second, repeats
included (what a virtual camera receives); model calls per second; and each
stage's mean ms (wait_*: waiting, not working). --stats-json writes them all.
"""
