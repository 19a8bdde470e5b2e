"""The ``livematte`` command line: argument parsing and error reporting only."""

from __future__ import annotations

import argparse
import difflib
import importlib
import logging
import os
import signal
import sys
from pathlib import Path

from . import __version__, models, sinks
from .compose.backgrounds import describe
from .commands.options import (
    DEFAULT_WEB,
    DEMO_OUTPUT,
    LIVE_FIGURES,
    add_download_timeout,
    add_max_pixels_option,
    add_model_options,
    add_overwrite_options,
    add_pipeline_options,
    frame_rate,
    non_negative_float,
    non_negative_int,
    positive_float,
)
from .errors import LivematteError
from .media import image_header

log = logging.getLogger("livematte")

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


def _common_options(default) -> argparse.ArgumentParser:
    options = argparse.ArgumentParser(add_help=False)
    options.add_argument("-v", "--verbose", action="store_true", default=default, help="more log lines")
    options.add_argument("--debug", action="store_true", default=default, help="show tracebacks for errors")
    return options


def build_parser() -> argparse.ArgumentParser:
    from .config import X264_PRESETS
    from .media.formats import OUTPUT_KINDS, PRORES_PROFILES

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
                       help="also write <stem>_composite.png: PATH, "
                            + describe("COLOUR (#RRGGBB, #RGB or a CSS name)", still=True, last=" or "))
    add_max_pixels_option(image)
    add_model_options(image)
    image.set_defaults(run="image:main")

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
    page = next(kind.name for kind in sinks.SINKS if kind.page_only)
    live.add_argument("--sink", choices=sinks.NAMES, default=None,
                      help=f"where the output goes (default {sinks.SINKS[0].name}, or {sinks.FILE.name} when -o is "
                           f"given; {page}: only the web page, on --web or {DEFAULT_WEB})")
    live.add_argument("-o", "--output", type=Path, default=None,
                      help="record to this file (.mp4 .mkv .webm .mov, or a folder for PNGs); "
                           "Ctrl-C stops and keeps it, with the source's audio")
    live.add_argument("--vfr", action="store_true",
                      help="a recording keeps each frame's own time (default: a frame at every tick of the "
                           "source's rate, the last one again where none came in time, in step with the audio)")
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
                           "a recording is at the source's rate")
    live.add_argument("--adapt", choices=("on", "off"), default=None,
                      help="on (default): trade the network's size and model calls for holding the source's "
                           "frame rate; off: the preset's size on every frame")
    live.add_argument("--max-cpu", type=non_negative_float, default=None, metavar="PERCENT",
                      help="CPU budget for the whole process, percent of one core (100 = one core; 0 = none; "
                           "default: all cores but one)")
    live.add_argument("--width", type=non_negative_int, default=None, help="camera width to ask for")
    live.add_argument("--height", type=non_negative_int, default=None, help="camera height to ask for")
    add_pipeline_options(live, "live")
    live.set_defaults(run="live:main")

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
    video.set_defaults(run="video:main")

    demo = commands.add_parser("demo", parents=[common],
                               help="replace the background of a built-in clip: a person on a call in a busy room")
    demo.add_argument("-o", "--output", type=Path, default=None,
                      help=f"where the result goes (default ./{DEMO_OUTPUT}, replaced on every run)")
    demo.add_argument("--alpha-out", type=Path, default=None, metavar="PATH", help="also write the matte")
    demo.add_argument("-q", "--quiet", action="store_true", help="no progress line")
    add_overwrite_options(demo, "-o and --alpha-out files")
    add_pipeline_options(demo, "offline")
    demo.set_defaults(run="demo:main")

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
    bench.set_defaults(run="bench:main")

    presets_cmd = commands.add_parser("presets", parents=[common], help="list the settings presets")
    presets_cmd.set_defaults(run="info:presets")

    models_cmd = commands.add_parser("models", parents=[common],
                                     help="list the matting backends, or fetch their weights")
    models_cmd.add_argument("action", nargs="?", choices=("list", "fetch"), default="list")
    models_cmd.add_argument("name", nargs="?", choices=tuple(models.BACKENDS), help="backend to fetch")
    add_download_timeout(models_cmd)
    models_cmd.set_defaults(run="info:backends")

    cameras_cmd = commands.add_parser("cameras", parents=[common],
                                      help="list the cameras --camera can open, with their formats and sizes "
                                           "(exit status 1 when there is none)")
    cameras_cmd.set_defaults(run="info:cameras")
    return parser


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
    module, _, function = args.run.partition(":")
    try:
        # A command's module is imported only when it runs: `--help` and a typo cost no imports.
        return getattr(importlib.import_module(f".commands.{module}", __package__), function)(args)
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
