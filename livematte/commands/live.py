"""``livematte live``: a camera (or a file played as one) through the model to a virtual camera,
a window, a file or the web page, until Ctrl-C; every output finished and kept when it stops."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import logging
import shutil
import signal
import sys
import tempfile
import threading
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from .. import assembly, sinks
from ..compose.backgrounds import parse_background, preview_cycle
from ..compose.compositor import Compositor
from ..compose.watcher import BackgroundWatcher
from ..config import Config
from ..errors import LivematteError
from ..media.formats import output_kind
from ..media.outpaths import check_outputs
from ..runtime.engine import Engine
from ..runtime.run import run
from ..runtime.stats import Stats
from ..sources.capture import open_source
from .options import DEFAULT_WEB, load_config

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LiveJob:
    config: Config
    camera: str | None = None
    source: str | None = None
    realtime: bool = False
    loop: bool = False
    sink: str = sinks.SINKS[0].name
    output: Path | None = None
    device: str | None = None
    vcam_backend: str | None = None
    alpha_out: Path | None = None
    stats_json: Path | None = None
    watch_background: Path | None = None
    max_frames: int | None = None
    stats_every: float = 5.0
    web: str | None = None  # [HOST:]PORT of the web page (livematte.web); None: no page
    web_token: str | None = None  # the page's token; None: a random one
    overwrite: bool = False  # -y: replace outputs (-o, --alpha-out, --stats-json) that exist
    vfr: bool = False  # a recording keeps each frame's own time rather than the source's rate



def check_live_job(job: LiveJob) -> None:
    """What can be checked without a source or a model, so that a typo costs no start-up."""
    kind = sinks.sink_kind(job.sink)
    if kind.writes_file:
        if job.output is None:
            raise LivematteError(f"--sink {kind.name} needs -o FILE")
        output_kind(job.output)  # a known extension, or a folder for PNGs
    elif job.output is not None:
        raise LivematteError(f"-o is the file for --sink {sinks.FILE.name}, but the sink is {job.sink}")
    if job.vfr and not kind.writes_file:
        raise LivematteError("--vfr is how a recording keeps time; it needs -o FILE")
    if job.web_token is not None and job.web is None and not kind.page_only:
        raise LivematteError("--web-token is the web page's token; it needs --web [HOST:]PORT")
    if job.web is not None or kind.page_only:
        from ..web.server import check_token, parse_address

        parse_address(job.web or DEFAULT_WEB)
        if job.web_token is not None:
            check_token(job.web_token)
    if job.realtime and job.source is None:
        raise LivematteError("--realtime plays a --source file like a camera; it needs --source PATH")
    if job.loop and job.source is None:
        raise LivematteError("--loop plays a --source file over and over; it needs --source PATH")
    assembly.check_alpha_path(job.alpha_out)
    check_outputs([job.source] if job.source else [], [job.output, job.alpha_out, job.stats_json],
                  overwrite=job.overwrite)
    if kind.check is not None:
        kind.check()


def run_live_job(job: LiveJob, matter=None, *, camera_opener=None, stop: threading.Event | None = None) -> Stats:
    """Run until the source ends, ``--frames`` are done, the preview window quits or ``stop``
    is set (the command line sets it on Ctrl-C and SIGTERM): then every output (recording,
    matte file, stats) is finished and kept.

    ``camera_opener`` replaces ``cv2.VideoCapture`` for ``--camera`` (the hardware boundary; tests).
    """
    config = job.config
    check_live_job(job)
    kind = sinks.sink_kind(job.sink)
    compositor = assembly.compositor(config)
    if compositor.transparent and not kind.alpha:
        compositor.close()
        raise LivematteError(f"a {kind.label} cannot carry transparency; {assembly.opaque_hint()}")
    stop = stop if stop is not None else threading.Event()
    stats = Stats()
    # Unwound in reverse: watcher, matte file (finished, or removed after an error), sink,
    # compositor, source: whatever failed on the way in. The run's threads are joined before.
    with contextlib.ExitStack() as stack:
        source = open_source(job.camera, job.source, job.realtime, config.capture, should_stop=stop.is_set,
                             opener=camera_opener, loop=job.loop)
        stack.callback(source.close)
        stack.callback(compositor.close)
        out_fps = config.output.fps or source.fps
        # The sink before the model: a missing virtual camera is reported at once.
        sink = stack.enter_context(assembly.sink(
            kind, config, source.width, source.height, Fraction(out_fps).limit_denominator(1001), output=job.output,
            audio=getattr(source, "audio", None), device=job.device, backend=job.vcam_backend, live=source.live,
            vfr=job.vfr))
        assembly.check_alpha_support(compositor, sink)
        # A file played flat out has no rate to hold: every frame gets the model, as offline.
        governed = config.live.adapt and source.live
        loaded = assembly.load_models(config, stack, governed=governed, matter=matter)
        engine = assembly.live_engine(config, loaded, source, compositor, governed=governed)
        stats.governor = engine.governor
        if kind.window:
            sink.on_key = _background_cycler(compositor, config.output.background)
        alpha_writer = assembly.alpha_writer(stack, job.alpha_out, source.width, source.height,
                                     Fraction(out_fps).limit_denominator(1001), live=source.live)
        for output in (sink, alpha_writer):  # those on a thread of their own count their frames
            if hasattr(output, "figures"):
                stats.add_output(output.thread.name, output.figures)
        if job.watch_background is not None:
            stack.enter_context(BackgroundWatcher(job.watch_background, compositor))
        background = f"from {job.watch_background}" if job.watch_background else compositor.background.spec
        control = _serve_web(stack, job, config, compositor, source, stats, loaded, governed)
        log.info("live: %s %dx%d at %.3g fps -> %s, preset %s, background %s", source.name, source.width,
                 source.height, source.fps, job.sink, config.preset, background)
        # The run sets ``stop`` before it joins its threads: a camera waiting out an outage
        # only looks at that.
        run(source, engine, compositor, sink, live=source.live, paced=source.live, out_fps=out_fps,
            max_frames=job.max_frames, alpha_writer=alpha_writer, stop=stop, stats=stats,
            stats_every=job.stats_every, audio_ends_with_video=True, control=control)
    log.info("done: %s", stats.line())
    if job.stats_json is not None:
        stats.write_json(job.stats_json)
    return stats


class _Sized:
    """``matter`` fed at another longest side, ``size`` px (0: the backend's default), without reloading it."""

    def __init__(self, matter, size: int):
        self._matter = matter
        self._size = size or getattr(matter, "DEFAULT_SIZE", 0)

    def __getattr__(self, name):
        return getattr(self._matter, name)

    def input_size(self, width: int, height: int, size: int | None = None) -> tuple[int, int]:
        return self._matter.input_size(width, height, self._size if size is None else size)


def _serve_web(stack: contextlib.ExitStack, job: LiveJob, config: Config, compositor: Compositor, source,
               stats: Stats, loaded: assembly.Models, governed: bool):
    """With ``--web`` (or ``--sink web``): the page's server, entered on ``stack``, its two addresses
    printed; -> the run's control, or None without a page. The control builds an engine for a new
    preset or model size as the run built its first, on the same models."""
    if job.web is None and not sinks.sink_kind(job.sink).page_only:
        return None
    from ..web.control import LiveControl
    from ..web.server import WebServer, parse_address

    uploads = Path(tempfile.mkdtemp(prefix="livematte-web-"))
    stack.callback(shutil.rmtree, uploads, ignore_errors=True)

    matter, waiting = loaded.matter, loaded.waiting

    def build_engine(tuned: Config) -> Engine:
        size = tuned.model.size_for(matter.name)
        sized_waiting = None if waiting is None else dataclasses.replace(waiting, matter=_Sized(waiting.matter, size))
        sized = loaded._replace(matter=_Sized(matter, size), waiting=sized_waiting)
        engine = assembly.live_engine(tuned, sized, source, compositor, governed=governed)
        stats.governor = engine.governor
        return engine

    control = LiveControl(config, compositor, matter.name, uploads=uploads, build_engine=build_engine)
    host, port = parse_address(job.web or DEFAULT_WEB)
    server = stack.enter_context(WebServer(control, stats, host=host, port=port, token=job.web_token))
    for name, url in server.urls().items():
        print(f"{name}: {url}", flush=True)
    return control


def _background_cycler(compositor: Compositor, configured: str):
    """Preview key ``b``: cycle the configured background, then each kind's (blur, green key, transparent)."""
    specs = preview_cycle(configured)
    position = [0]

    def on_key(key: str) -> None:
        if key != "b":
            return
        position[0] = (position[0] + 1) % len(specs)
        compositor.set_background(parse_background(specs[position[0]]))
        log.info("background: %s", specs[position[0]])

    return on_key


def main(args: argparse.Namespace) -> int:
    """``livematte live``."""
    sink = sinks.sink_kind(args.sink) if args.sink else sinks.default_sink(args.output)
    if args.fps is not None and not sink.paced:
        paced = [kind.label for kind in sinks.SINKS if kind.paced]
        raise LivematteError(f"--fps sets the rate of a {' or '.join(paced)}; --sink {sink.name} "
                             "keeps the source's rate")
    config = load_config(args, capture={"width": args.width, "height": args.height, "mirror": args.mirror or None},
                         fps=args.fps,
                         live={"adapt": None if args.adapt is None else args.adapt == "on", "max_cpu": args.max_cpu})
    job = LiveJob(config=config, camera=args.camera, source=args.source, realtime=args.realtime, loop=args.loop,
                  sink=sink.name, output=args.output, device=args.device, alpha_out=args.alpha_out,
                  stats_json=args.stats_json, watch_background=args.watch_background, max_frames=args.frames,
                  web=args.web, web_token=args.web_token, overwrite=args.overwrite, vfr=args.vfr)
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


