"""The ``livematte`` command line: argument parsing and error reporting only."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import difflib
import logging
import os
import signal
import sys
import threading
from pathlib import Path

from . import __version__
from .media import image_header
from . import models
from .errors import LivematteError

log = logging.getLogger("livematte")

# The demo's own file: a second `livematte demo` (the README's first command) replaces it without -y.
DEMO_OUTPUT = Path("livematte-demo.mp4")


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors, as livematte's own: ``livematte video: error: ...``, the usage
    left to ``--help``; a mistyped flag, command or choice names the closest one there is."""

    def error(self, message: str):
        if "did you mean" not in message and not message.startswith("argument "):
            message += f"; `{self.prog} --help` shows the usage"
        self.exit(2, f"{self.prog}: error: {message}\n")

    def parse_args(self, args=None, namespace=None):
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:
            # Reported by the command's own parser: its name, and its flags to suggest from.
            parser = self._command_parser(parsed)
            flags = [flag for action in parser._actions for flag in action.option_strings]
            typed = next((extra.split("=", 1)[0] for extra in extras if extra.startswith("-")), None)
            close = difflib.get_close_matches(typed, flags, n=1) if typed else []
            parser.error(f"unrecognized argument{'s' if len(extras) > 1 else ''}: {' '.join(extras)}"
                         + (f"; did you mean {close[0]}?" if close else ""))
        return parsed

    def _command_parser(self, parsed: argparse.Namespace) -> argparse.ArgumentParser:
        for action in self._actions:
            if isinstance(action, argparse._SubParsersAction):
                return action.choices.get(getattr(parsed, action.dest, None), self)
        return self

    def _check_value(self, action, value):
        if action.choices is not None and value not in action.choices:
            names = [str(choice) for choice in action.choices]
            close = difflib.get_close_matches(str(value), names, n=1)
            raise argparse.ArgumentError(action, f"invalid choice: {value!r} (choose from {', '.join(names)})"
                                         + (f"; did you mean {close[0]}?" if close else ""))


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
    from .models.base import MAX_SIZE, MIN_SIZE

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
    from .models.runtimes import RUNTIMES as ONNX_RUNTIMES
    from .models.selfie import RUNTIMES as TFLITE_RUNTIMES

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
    from .models.base import ModelSettings

    parser.add_argument("--download-timeout", type=positive_float, default=None, metavar="S",
                        help="seconds allowed for fetching missing weights "
                             f"(default {ModelSettings.download_timeout:g})")


def model_overrides(args: argparse.Namespace) -> dict:
    return {"name": args.model, "model_dir": args.model_dir, "size": args.model_size,
            "threads": args.threads, "runtime": args.runtime, "download_timeout": args.download_timeout}


def model_settings(args: argparse.Namespace):
    """The model flags over ``ModelSettings()``'s defaults, through the config's typed merge."""
    from . import config
    from .models.base import ModelSettings

    return config.merge(ModelSettings(), model_overrides(args), "command line [model]")


def strength(text: str) -> float:
    from .matte.smoothing import MAX_STRENGTH

    value = _number(text, float)
    if not 0.0 <= value <= MAX_STRENGTH:
        raise argparse.ArgumentTypeError(f"got {value}, expected 0..{MAX_STRENGTH} (0 = off)")
    return value


def frame_rate(text: str) -> float:
    from .config import MAX_FPS, MIN_FPS

    value = _number(text, float)
    if not MIN_FPS <= value <= MAX_FPS:
        raise argparse.ArgumentTypeError(f"got {value}, expected {MIN_FPS}..{MAX_FPS} frames per second")
    return value


def add_pipeline_options(parser: argparse.ArgumentParser, default_preset: str) -> None:
    from .matte.refine import MODES as REFINE_MODES

    group = parser.add_argument_group("settings")
    group.add_argument("--preset", default=default_preset,
                       help=f"a settings preset (default {default_preset}; `livematte presets` lists them)")
    group.add_argument("--config", type=Path, default=None, metavar="FILE",
                       help="a TOML file laid out like the presets; overrides the preset")
    group.add_argument("--background", default=None, metavar="SPEC",
                       help="PATH (image or looping video), color:COLOUR, key[:COLOUR], blur[:N], transparent; "
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
    from .matte.finishing import FOREGROUND_MODES, SUBJECTS

    group = parser.add_argument_group("composite")
    group.add_argument("--foreground", choices=FOREGROUND_MODES, default=None,
                       help="the person's colours at soft edges: auto (the model's own estimate, else blur "
                            "fusion; default), blur (blur fusion), off (the frame's raw colours)")
    group.add_argument("--despill", nargs="?", const="auto", default=None, metavar="auto|off|COLOUR",
                       help="remove a green/blue screen's colour from soft edges: detect the key colour "
                            "(auto, the default when the flag has no value) or give it: #RRGGBB, #RGB or a CSS name")
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


def composite_overrides(args: argparse.Namespace) -> dict:
    grow = -args.shrink if args.shrink is not None else args.grow
    return {"foreground": args.foreground, "despill": args.despill, "grow": grow, "feather": args.feather,
            "threshold": args.threshold, "light_wrap": args.light_wrap, "subject": args.subject}


def load_config(args: argparse.Namespace, *, capture: dict | None = None, live: dict | None = None, **output):
    """The preset, ``--config`` and every settings flag (``capture``/``live``/``output``: section key ->
    flag value, None for flags not given) through ``config.load``."""
    from . import config

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


def _common_options(default) -> argparse.ArgumentParser:
    options = argparse.ArgumentParser(add_help=False)
    options.add_argument("-v", "--verbose", action="store_true", default=default, help="more log lines")
    options.add_argument("--debug", action="store_true", default=default, help="show tracebacks for errors")
    return options


# What ``live``'s log line of figures (livematte.runtime.stats.Stats.line) means, for ``live --help``.
LIVE_FIGURES = """\
the figures in the log, every 5 s and once more at the end, e.g.
  30.0 fps, latency 25 ms (p95 57), 384px every 4 frames, CPU 78%, 3 dropped
fps      fresh frames per second: new frames composited, each with a matte
         of its own (repeats of the last frame, sent to keep a virtual
         camera's rate, do not count)
latency  capture to output of those frames, the median, ms (p95: 19 frames
         in 20 were faster)
level    played as a camera with --adapt on: the network's input size and
         how often the model runs (the frames between move its last matte
         with the picture); a model's name when the governor has stepped
         down to a faster one
CPU      the whole process since the first frame, percent of one core
         (100 = one core busy)
dropped  frames skipped because a newer one was ready (shown when there are)
-v adds the frame counts: in (from the source), fresh (reused: of those, the
ones whose matte was moved from the last model call), repeated (the last
frame sent again), dropped; sent: frames sent per second, repeats included
(what a virtual camera receives); model calls per second; and each stage's
mean ms (wait_*: waiting, not working). --stats-json writes them all.
"""


def build_parser() -> argparse.ArgumentParser:
    from .config import X264_PRESETS
    from .media.writing import OUTPUT_KINDS, PRORES_PROFILES

    parser = _Parser(prog="livematte", description="Replace the background behind people in video.",
                                     parents=[_common_options(False)])
    parser.add_argument("--version", action="version", version=f"livematte {__version__}")
    # The same options after the command too (`livematte video ... --debug`); SUPPRESS keeps
    # a command from resetting what was given before it.
    common = _common_options(argparse.SUPPRESS)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    image = commands.add_parser("image", parents=[common], help="matte still images (files, URLs or a folder)")
    image.add_argument("-i", "--input", required=True, nargs="+",
                       help="image file(s), http(s) URL or folder; inputs that share a name (pic.bmp, "
                            "pic.webp) keep their extension in the output names (pic_bmp_alpha.png)")
    image.add_argument("-d", "--output_dir", "--output-dir", dest="output_dir", type=Path,
                       default=Path("results"), help="where results go (default ./results)")
    add_overwrite_options(image, "PNGs in -d DIR")
    image.add_argument("--background", default=None, metavar="SPEC",
                       help="also write <stem>_composite.png: PATH, color:COLOUR (#RRGGBB, #RGB or a CSS name), "
                            "blur[:N] or transparent")
    add_max_pixels_option(image)
    add_model_options(image)
    image.set_defaults(run=run_image)

    live = commands.add_parser("live", parents=[common],
                               help="live background replacement: camera or stream to a virtual camera",
                               epilog=LIVE_FIGURES, formatter_class=argparse.RawDescriptionHelpFormatter)
    where = live.add_mutually_exclusive_group()
    where.add_argument("--camera", default=None, metavar="N|PATH", help="camera index or device path (default 0)")
    where.add_argument("--source", default=None, metavar="PATH", help="a video file or stream URL instead of a camera")
    live.add_argument("--realtime", action="store_true",
                      help="play --source at its own frame rate, newest frame wins, like a camera")
    live.add_argument("--loop", action="store_true", help="play --source over and over (until Ctrl-C or --frames)")
    live.add_argument("--mirror", action="store_true",
                      help="flip the picture left to right as it is read, the selfie view of call apps "
                           "(camera or --source; the matte and the output follow)")
    live.add_argument("--sink", choices=("vcam", "preview", "file", "null", "web"), default=None,
                      help="where the output goes (default vcam, or file when -o is given; web: only the "
                           "web page, on --web or 127.0.0.1:8750)")
    live.add_argument("-o", "--output", type=Path, default=None,
                      help="record to this file (.mp4 .mkv .webm .mov, or a folder for PNGs); "
                           "Ctrl-C stops and keeps it, with the source's audio")
    live.add_argument("--device", default=None, help="virtual camera device, e.g. /dev/video10")
    live.add_argument("--alpha-out", type=Path, default=None, metavar="PATH",
                      help="also write every output frame's matte: FFV1 gray .mkv, or PNGs into a folder")
    live.add_argument("--stats-json", type=Path, default=None, metavar="PATH", help="write the run's figures as JSON")
    add_overwrite_options(live, "-o, --alpha-out and --stats-json files")
    live.add_argument("--watch-background", type=Path, default=None, metavar="FILE",
                      help="a text file holding a background SPEC; edit it to switch backgrounds while running")
    live.add_argument("--web", default=None, metavar="[HOST:]PORT",
                      help="also serve a local web page: live preview and control at /, a transparent overlay "
                           "for an OBS Browser Source at /overlay (HOST defaults to 127.0.0.1; PORT 0 picks one)")
    live.add_argument("--web-token", default=None, metavar="TOKEN",
                      help="the web page's token (16+ characters of A-Z a-z 0-9 _ -; default: random per run)")
    live.add_argument("--fps", type=frame_rate, default=None,
                      help="frame rate of the virtual camera or preview (default: the source's); "
                           "a recording keeps each frame's own time")
    live.add_argument("--adapt", choices=("on", "off"), default=None,
                      help="on (default): trade the network's size and model calls for holding the source's "
                           "frame rate; off: the preset's size on every frame")
    live.add_argument("--max-cpu", type=non_negative_float, default=None, metavar="PERCENT",
                      help="CPU budget for the whole process, percent of one core (100 = one core; 0 = none; "
                           "default: all cores but one)")
    live.add_argument("--width", type=non_negative_int, default=None, help="camera width to ask for")
    live.add_argument("--height", type=non_negative_int, default=None, help="camera height to ask for")
    add_pipeline_options(live, "live")
    live.set_defaults(run=run_live)

    video = commands.add_parser("video", parents=[common],
                                help="process a video file (or a folder of them), every frame, with audio")
    video.add_argument("input", help="video file, stream URL, or folder of videos")
    video.add_argument("-o", "--output", type=Path, default=None,
                       help="output file (.mp4 .mkv .webm .mov, or a folder for PNGs); a folder for batch input, "
                            "where videos that share a name (a.mkv, a.mp4) keep their extension in it "
                            "(a_mkv.mp4, a_mp4.mp4). Never an input's own name")
    video.add_argument("--format", choices=OUTPUT_KINDS, default=None,
                       help="output kind when the name does not say (webm/mov/png keep transparency)")
    video.add_argument("--alpha-out", type=Path, default=None, metavar="PATH",
                       help="also write the matte: FFV1 gray .mkv or a PNG folder (a folder for batch input)")
    video.add_argument("--crf", type=non_negative_int, default=None,
                       help="quality, lower is better: H.264 (.mp4 .mkv) 0..51, default 18; VP9 (.webm) "
                            "0..63, default lossless (the README's table gives sizes and alpha error)")
    video.add_argument("--prores", choices=tuple(PRORES_PROFILES), default=None,
                       help="ProRes profile of .mov: 4444 (default) or 4444xq; alpha is lossless in both")
    # Not argparse choices: a bad name is the config's one-line error (exit 1), as in a config file.
    video.add_argument("--encoder-preset", default=None, metavar="NAME",
                       help=f"H.264 (and VP9) speed preset: {', '.join(X264_PRESETS)} (default veryfast)")
    video.add_argument("-q", "--quiet", action="store_true", help="no progress line")
    add_overwrite_options(video, "outputs (-o, --alpha-out; in a batch, every video's)")
    cluster = video.add_argument_group("cluster (needs the ray extra: pip install \"livematte[ray]\")")
    cluster.add_argument("--cluster", default=None, metavar="ray|auto|ray://HOST:PORT",
                         help="matte on Ray, segment by segment: ray starts a local instance sized to this "
                              "machine; auto joins the cluster RAY_ADDRESS names (or one `ray start` began "
                              "here); ray://HOST:PORT joins through Ray Client. Same output as without it")
    cluster.add_argument("--segment-seconds", type=positive_float, default=None, metavar="S",
                         help="with --cluster: cut videos into segments of about S seconds, at keyframes "
                              "where there are some (default 30)")
    add_pipeline_options(video, "offline")
    video.set_defaults(run=run_video)

    demo = commands.add_parser("demo", parents=[common],
                               help="replace the background of a built-in clip: a person on a call in a busy room")
    demo.add_argument("-o", "--output", type=Path, default=None,
                      help=f"where the result goes (default ./{DEMO_OUTPUT}, replaced on every run)")
    demo.add_argument("--alpha-out", type=Path, default=None, metavar="PATH", help="also write the matte")
    demo.add_argument("-q", "--quiet", action="store_true", help="no progress line")
    add_overwrite_options(demo, "-o and --alpha-out files")
    add_pipeline_options(demo, "offline")
    demo.set_defaults(run=run_demo)

    bench = commands.add_parser(
        "bench", parents=[common], help="measure the real pipeline end to end, presets side by side",
        description="Run the real pipeline on one source for each preset and report fps, latency, "
                    "per-stage ms, CPU and memory. Without --source a built-in synthetic clip is used; "
                    "real footage of people gives the representative figures.")
    bench.add_argument("--source", default=None, metavar="PATH",
                       help="a video file (default: a built-in synthetic 1280x720 30 fps clip)")
    bench.add_argument("--preset", nargs="+", default=None, metavar="NAME",
                       help="presets to compare (default: live offline)")
    bench.add_argument("--frames", type=non_negative_int, default=300, metavar="N",
                       help="frames per preset, at most the clip's length (default 300)")
    bench.add_argument("--encode", action="store_true", help="encode H.264 to a temporary file instead of the null sink")
    bench.add_argument("--realtime", action="store_true",
                       help="play the source at its own rate, newest frame wins (live latency and drops)")
    bench.add_argument("--cores", type=non_negative_int, default=0, metavar="N",
                       help="run on N of this machine's cores, like `taskset`: a slower machine (default: all)")
    bench.add_argument("--adapt", choices=("on", "off"), default=None,
                       help="with --realtime: the live governor on (default) or off, as for `livematte live`")
    bench.add_argument("--max-cpu", type=non_negative_float, default=None, metavar="PERCENT",
                       help="with --realtime: the CPU budget, as for `livematte live`")
    bench.add_argument("--json", type=Path, default=None, metavar="PATH", help="write the figures as JSON")
    bench.add_argument("--plot", type=Path, default=None, metavar="PATH",
                       help="write a PNG of per-frame latency and the stage breakdown "
                            '(needs matplotlib: pip install "livematte[plot]")')
    add_overwrite_options(bench, "--json and --plot files")
    add_model_options(bench)
    bench.set_defaults(run=run_bench)

    presets_cmd = commands.add_parser("presets", parents=[common], help="list the settings presets")
    presets_cmd.set_defaults(run=run_presets)

    models_cmd = commands.add_parser("models", parents=[common],
                                     help="list the matting backends, or fetch their weights")
    models_cmd.add_argument("action", nargs="?", choices=("list", "fetch"), default="list")
    models_cmd.add_argument("name", nargs="?", choices=tuple(models.BACKENDS), help="backend to fetch")
    add_download_timeout(models_cmd)
    models_cmd.set_defaults(run=run_models)

    cameras_cmd = commands.add_parser("cameras", parents=[common],
                                      help="list the cameras --camera can open, with their formats and sizes "
                                           "(exit status 1 when there is none)")
    cameras_cmd.set_defaults(run=run_cameras)
    return parser


def run_image(args: argparse.Namespace) -> int:
    from .commands.image import ImageJob, run_images

    job = ImageJob(inputs=args.input, output_dir=args.output_dir, background=args.background,
                   model=model_settings(args), overwrite=args.overwrite)
    return 1 if run_images(job) else 0


def run_live(args: argparse.Namespace) -> int:
    from .commands.jobs import LiveJob, run_live_job

    sink = args.sink or ("file" if args.output is not None else "vcam")
    if args.fps is not None and sink not in ("vcam", "preview"):
        raise LivematteError(f"--fps sets the rate of a virtual camera or preview; --sink {sink} "
                             "keeps each frame's own time")
    config = load_config(args, capture={"width": args.width, "height": args.height, "mirror": args.mirror or None},
                         fps=args.fps,
                         live={"adapt": None if args.adapt is None else args.adapt == "on", "max_cpu": args.max_cpu})
    job = LiveJob(config=config, camera=args.camera, source=args.source, realtime=args.realtime, loop=args.loop,
                  sink=sink, output=args.output, device=args.device, alpha_out=args.alpha_out,
                  stats_json=args.stats_json, watch_background=args.watch_background, max_frames=args.frames,
                  web=args.web, web_token=args.web_token, overwrite=args.overwrite)
    # Ctrl-C and SIGTERM are how a live session ends: they stop it, and the recording,
    # matte and stats files are finished and kept. A second one abandons them.
    stop = threading.Event()
    signalled: list[int] = []  # the run's own end sets ``stop`` too; only a signal is reported

    def request_stop(signum, frame):
        if signalled:
            raise KeyboardInterrupt
        signalled.append(signum)
        stop.set()

    with _signals_handled_by(request_stop):
        run_live_job(job, stop=stop)
    if signalled:
        kept = [str(p) for p in (args.output, args.alpha_out, args.stats_json) if p is not None]
        print("livematte: stopped" + (f"; kept {', '.join(kept)}" if kept else ""), file=sys.stderr)
    return 0


@contextlib.contextmanager
def _signals_handled_by(handler):
    # A signal the parent chose to ignore (SIGINT for a shell's background job) stays ignored.
    previous = {signum: signal.signal(signum, handler) for signum in (signal.SIGINT, signal.SIGTERM)
                if signal.getsignal(signum) is not signal.SIG_IGN}
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


def run_video(args: argparse.Namespace) -> int:
    from .commands.jobs import run_video_job

    if args.cluster is None:
        if args.segment_seconds is not None:
            raise LivematteError("--segment-seconds cuts videos for --cluster; add --cluster ray (or auto, "
                                 "ray://HOST:PORT)")
        return 1 if run_video_job(video_job(args)).failed else 0
    from .cluster import require_ray

    require_ray()
    from .cluster.driver import ClusterJob, run_cluster_job
    from .cluster.plan import DEFAULT_SEGMENT_SECONDS

    job = ClusterJob(video=video_job(args), address=args.cluster,
                     segment_seconds=args.segment_seconds or DEFAULT_SEGMENT_SECONDS)
    return 1 if run_cluster_job(job).failed else 0


def video_job(args: argparse.Namespace):
    """The ``video`` command's arguments -> its checked ``VideoJob`` (warning about flags it ignores)."""
    from .config import merge
    from .commands.jobs import VideoJob, plan_outputs

    config = load_config(args, encoder_preset=args.encoder_preset, prores=args.prores)
    job = VideoJob(config=config, input=args.input, output=args.output, format=args.format,
                   alpha_out=args.alpha_out, quiet=args.quiet, max_frames=args.frames, overwrite=args.overwrite)
    kinds = {item.kind for item in plan_outputs(job)}
    if args.crf is not None:
        # One flag, each codec's own key: the H.264 scale is 0..51, VP9's 0..63.
        quality = {"crf": args.crf if kinds & {"mp4", "mkv"} else None,
                   "webm_crf": args.crf if "webm" in kinds else None}
        job = dataclasses.replace(job, config=dataclasses.replace(
            config, output=merge(config.output, quality, "--crf")))
        if kinds - {"mp4", "mkv", "webm"}:
            log.warning("--crf is for H.264 (.mp4, .mkv) and VP9 (.webm); ignored for %s (use --prores for .mov)",
                        ", ".join(sorted(kinds - {"mp4", "mkv", "webm"})))
    if args.prores is not None and kinds != {"mov"}:
        log.warning("--prores is for .mov; ignored for %s", ", ".join(sorted(kinds - {"mov"})))
    if args.encoder_preset is not None and kinds & {"mov", "png"}:
        log.warning("--encoder-preset is for H.264 and VP9; ignored for %s", ", ".join(sorted(kinds & {"mov", "png"})))
    return job


def run_demo(args: argparse.Namespace) -> int:
    from .commands.demo import prepare_inputs
    from .commands.jobs import VideoJob, run_video_job
    from .media.outpaths import check_outputs

    # Files the user named are guarded like any output; the demo's own file is simply replaced.
    check_outputs([], [args.output, args.alpha_out], overwrite=args.overwrite)
    output = args.output or DEMO_OUTPUT
    clip, backdrop = prepare_inputs()
    if args.background is None:
        args.background = str(backdrop)
    config = load_config(args)
    job = VideoJob(config=config, input=str(clip), output=output, alpha_out=args.alpha_out,
                   quiet=args.quiet, max_frames=args.frames, overwrite=True)
    failed = run_video_job(job).failed
    if not failed:
        print(f"livematte: demo written to {output}", file=sys.stderr)
    return 1 if failed else 0


def run_bench(args: argparse.Namespace) -> int:
    from .commands.bench import DEFAULT_PRESETS, BenchJob, run_bench as bench
    from .media.outpaths import check_outputs

    check_outputs([args.source] if args.source else [], [args.json, args.plot], overwrite=args.overwrite)

    bench(BenchJob(presets=tuple(args.preset or DEFAULT_PRESETS), source=args.source, frames=args.frames,
                   encode=args.encode, realtime=args.realtime, json_path=args.json, plot_path=args.plot,
                   model_overrides=model_overrides(args), cores=args.cores,
                   live_overrides={"adapt": None if args.adapt is None else args.adapt == "on",
                                   "max_cpu": args.max_cpu}))
    return 0


def run_presets(args: argparse.Namespace) -> int:
    from . import config

    for name, description in config.presets().items():
        print(f"{name:10}  {description}")
    return 0


def run_models(args: argparse.Namespace) -> int:
    from .models.base import ModelSettings

    if args.action == "fetch":
        if not args.name:
            raise LivematteError(f"`livematte models fetch` needs a NAME: {' or '.join(models.BACKENDS)}")
        print(models.fetch(args.name, args.download_timeout or ModelSettings.download_timeout))
        return 0
    width = max(map(len, models.BACKENDS))
    for status in models.status():
        state = "needs an extra" if status.install else "ready" if status.ready else "not downloaded"
        print(f"{status.name:{width}}  {state:14}  {status.description}")
        if status.install:
            print(f"{'':{width}}  install: {status.install}")
        print(f"{'':{width}}  weights: {status.weights or '-'}")
        if status.weights is None and not status.install:
            print(f"{'':{width}}  fetch:   livematte models fetch {status.name}")
    return 0


def run_cameras(args: argparse.Namespace) -> int:
    from .sources.cameras import describe, list_cameras

    cameras = list_cameras()
    if not cameras:
        print("livematte: no camera found on this machine", file=sys.stderr)
        return 1
    print("\n".join(describe(cameras)))
    return 0


def configure_logging(verbose: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("livematte: %(message)s"))
    root = logging.getLogger("livematte")
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    root.propagate = False
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


class Terminated(BaseException):
    """SIGTERM, raised on the main thread so that every ``with`` block unwinds as for Ctrl-C."""


def _raise_terminated(signum, frame):
    raise Terminated


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(args.verbose)
    image_header.set_max_pixels(getattr(args, "max_pixels", image_header.DEFAULT_MAX_PIXELS))
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        return args.run(args)
    except LivematteError as e:
        if args.debug:
            raise
        print(f"livematte: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("livematte: interrupted; unfinished output removed", file=sys.stderr)
        return 130
    except Terminated:
        print("livematte: terminated; unfinished output removed", file=sys.stderr)
        return 143
    finally:
        signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
