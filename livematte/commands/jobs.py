"""The ``live`` and ``video`` jobs: typed settings in, a finished run (or a clear error) out."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import shutil
import tempfile
import threading
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from .. import models
from ..sources.capture import FileSource, open_source
from ..compose.compositor import Compositor, parse_background
from ..config import Config
from ..runtime.engine import Engine, live_engine
from ..errors import LivematteError
from ..media.reading import VIDEO_SUFFIXES
from ..media.writing import ALPHA_KINDS, output_kind
from ..media.outpaths import check_outputs, unique_stems
from ..runtime.output import progress_bar
from ..runtime.run import run
from ..sinks import NullSink
from ..runtime.stats import Stats
from ..compose.watcher import BackgroundWatcher
from ..runtime.workers import available_cores

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LiveJob:
    config: Config
    camera: str | None = None
    source: str | None = None
    realtime: bool = False
    loop: bool = False
    sink: str = "vcam"
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


DEFAULT_WEB = "127.0.0.1:8750"  # --sink web without --web


def _alpha_writer(stack: contextlib.ExitStack, path: Path | None, width: int, height: int, rate: Fraction):
    """The ``--alpha-out`` writer, entered on ``stack`` (finished on success, removed on error)."""
    if path is None:
        return None
    from ..media.writing import AlphaWriter

    return stack.enter_context(AlphaWriter(path, width=width, height=height, rate=rate))


def _check_alpha_path(path: Path | None) -> None:
    if path is not None and output_kind(path) not in ALPHA_KINDS:
        raise LivematteError(f"{path}: mattes are written as .mkv (FFV1) or to a folder of PNGs")


def check_live_job(job: LiveJob) -> None:
    """What can be checked without a source or a model, so that a typo costs no start-up."""
    if job.sink == "file":
        if job.output is None:
            raise LivematteError("--sink file needs -o FILE")
        output_kind(job.output)  # a known extension, or a folder for PNGs
    elif job.output is not None:
        raise LivematteError(f"-o is the file for --sink file, but the sink is {job.sink}")
    if job.web_token is not None and job.web is None and job.sink != "web":
        raise LivematteError("--web-token is the web page's token; it needs --web [HOST:]PORT")
    if job.web is not None or job.sink == "web":
        from ..web.server import check_token, parse_address

        parse_address(job.web or DEFAULT_WEB)
        if job.web_token is not None:
            check_token(job.web_token)
    if job.realtime and job.source is None:
        raise LivematteError("--realtime plays a --source file like a camera; it needs --source PATH")
    if job.loop and job.source is None:
        raise LivematteError("--loop plays a --source file over and over; it needs --source PATH")
    _check_alpha_path(job.alpha_out)
    check_outputs([job.source] if job.source else [], [job.output, job.alpha_out, job.stats_json],
                  overwrite=job.overwrite)
    if job.sink == "preview":
        from ..sinks.preview import check_display

        check_display()


def _open_sink(job: LiveJob, source, fps: float):
    if job.sink in ("null", "web"):  # web: the page is the only output
        return NullSink()
    if job.sink == "vcam":
        from ..sinks.vcam import VirtualCameraSink

        return VirtualCameraSink(source.width, source.height, fps, device=job.device, backend=job.vcam_backend)
    if job.sink == "preview":
        from ..sinks.preview import PreviewSink

        return PreviewSink()
    if job.sink == "file":
        from ..sinks.file import FileSink

        return FileSink(job.output, source.width, source.height, Fraction(fps).limit_denominator(1001),
                        audio=getattr(source, "audio", None), **job.config.output.writer_options())
    raise LivematteError(f"unknown sink {job.sink!r}, expected vcam, preview, file, null or web")


def run_live_job(job: LiveJob, matter=None, *, camera_opener=None, stop: threading.Event | None = None) -> Stats:
    """Run until the source ends, ``--frames`` are done, the preview window quits or ``stop``
    is set (the command line sets it on Ctrl-C and SIGTERM): then every output (recording,
    matte file, stats) is finished and kept.

    ``camera_opener`` replaces ``cv2.VideoCapture`` for ``--camera`` (the hardware boundary; tests).
    """
    config = job.config
    check_live_job(job)
    compositor = Compositor(parse_background(config.output.background), config.composite.light_wrap)
    if compositor.transparent and job.sink == "vcam":
        raise LivematteError("a virtual camera cannot carry transparency; use --background key[:#RRGGBB]")
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
        sink = stack.enter_context(_open_sink(job, source, out_fps))
        _check_alpha_support(compositor, sink)
        # A file played flat out has no rate to hold: every frame gets the model, as offline.
        governed = config.live.adapt and source.live
        model_settings = live_model(config) if governed else config.model
        if matter is None:
            matter = models.load(model_settings)
            stack.callback(matter.close)
        _warn_unused_refine(config, matter)
        fallback = models.load_fallback(config.live.fallback, model_settings, matter) if governed else None
        if fallback is not None:
            stack.callback(fallback.close)
        engine = live_engine(config, matter, source, compositor, governed=governed, fallback=fallback)
        stats.governor = engine.governor
        if job.sink == "preview":
            sink.on_key = _background_cycler(compositor, config.output.background)
        alpha_writer = _alpha_writer(stack, job.alpha_out, source.width, source.height,
                                     Fraction(out_fps).limit_denominator(1001))
        if job.watch_background is not None:
            stack.enter_context(BackgroundWatcher(job.watch_background, compositor))
        background = f"from {job.watch_background}" if job.watch_background else compositor.background.spec
        control = _serve_web(stack, job, config, compositor, source, stats, matter, governed, fallback)
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


def live_model(config: Config):
    """The model's settings for a governed live run: its threads within the CPU budget."""
    threads = config.live.model_threads(config.model.threads, available_cores())
    if threads != config.model.threads:
        log.info("model threads %d -> %d: the CPU budget is %.0f%%", config.model.threads, threads,
                 config.live.cpu_budget(available_cores()))
    return dataclasses.replace(config.model, threads=threads)


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
               stats: Stats, matter, governed: bool, fallback):
    """With ``--web`` (or ``--sink web``): the page's server, entered on ``stack``, its two addresses
    printed; -> the run's control, or None without a page. The control builds an engine for a new
    preset or model size as the run built its first, on the same models."""
    if job.web is None and job.sink != "web":
        return None
    from ..web.control import LiveControl
    from ..web.server import WebServer, parse_address

    uploads = Path(tempfile.mkdtemp(prefix="livematte-web-"))
    stack.callback(shutil.rmtree, uploads, ignore_errors=True)

    def build_engine(tuned: Config) -> Engine:
        sized = _Sized(matter, tuned.model.size_for(matter.name))
        engine = live_engine(tuned, sized, source, compositor, governed=governed, fallback=fallback)
        stats.governor = engine.governor
        return engine

    control = LiveControl(config, compositor, matter.name, uploads=uploads, build_engine=build_engine)
    host, port = parse_address(job.web or DEFAULT_WEB)
    server = stack.enter_context(WebServer(control, stats, host=host, port=port, token=job.web_token))
    for name, url in server.urls().items():
        print(f"{name}: {url}", flush=True)
    return control


def _warn_unused_refine(config: Config, matter) -> None:
    if config.refine.mode != "bilinear" and matter.guided:
        log.warning("--refine %s is for models that return a plain matte (bshm, modnet); %s finishes its matte "
                    "with its own guided filter, so it is ignored", config.refine.mode, matter.name)


def _check_alpha_support(compositor: Compositor, sink) -> None:
    if compositor.transparent and not sink.accepts_alpha:
        raise LivematteError(f"{sink.name} output cannot carry transparency: write .webm, .mov or PNGs, "
                             "or use --background key[:#RRGGBB]")


def _background_cycler(compositor: Compositor, configured: str):
    """Preview key ``b``: cycle the configured background, blur, green key, transparent."""
    specs = list(dict.fromkeys([configured, "blur:25", "key:#00FF00", "transparent"]))
    position = [0]

    def on_key(key: str) -> None:
        if key != "b":
            return
        position[0] = (position[0] + 1) % len(specs)
        compositor.set_background(parse_background(specs[position[0]]))
        log.info("background: %s", specs[position[0]])

    return on_key


@dataclass(frozen=True)
class VideoJob:
    """INPUT is a video file, a stream URL, or a folder of videos (then ``output`` is a folder)."""

    config: Config
    input: str
    output: Path | None = None
    format: str | None = None
    alpha_out: Path | None = None
    quiet: bool = False
    max_frames: int | None = None
    overwrite: bool = False  # -y: replace outputs that exist


@dataclass(frozen=True)
class PlannedVideo:
    input: str
    output: Path
    alpha_out: Path | None
    kind: str  # output kind: mp4, mkv, webm, mov or png


def list_videos(folder: Path) -> list[Path]:
    found = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES)
    if not found:
        raise LivematteError(f"no videos ({', '.join(sorted(VIDEO_SUFFIXES))}) in folder {folder}")
    return found


def output_name(stem: str, job: VideoJob) -> str:
    """``<stem>.<format>``; transparent backgrounds default to WebM (VP9 with alpha), others to MP4."""
    fmt = job.format or ("webm" if job.config.output.background.strip().lower() in ("transparent", "none")
                         else "mp4")
    return stem if fmt == "png" else f"{stem}.{fmt}"


def plan_outputs(job: VideoJob) -> list[PlannedVideo]:
    """Input, output and matte file for every video the job names, all checked before any work:
    known kinds, no output overwriting an input, no two outputs with the same name, and (without
    ``overwrite``) none that exists already.

    In a folder, inputs that share a name stem keep their extension in the output's name
    (``a.mkv``, ``a.mp4`` -> ``a_mkv.mp4``, ``a_mp4.mp4``).
    """
    if Path(job.input).is_dir():
        if job.output is None:
            raise LivematteError("a folder of videos needs -o DIR for the results")
        if job.output.exists() and not job.output.is_dir():
            raise LivematteError(f"{job.output} is a file; a folder of videos needs -o DIR for the results")
        videos = [str(v) for v in list_videos(Path(job.input))]
        stems = unique_stems(videos, lambda v: Path(v).stem)
        plan = [(video, job.output / output_name(stem, job),
                 job.alpha_out / f"{stem}_alpha.mkv" if job.alpha_out else None)
                for video, stem in zip(videos, stems)]
    else:
        stem = Path(job.input.split("?")[0]).stem or "video"
        output = job.output or Path(output_name(f"{stem}_livematte", job))
        if job.output is not None and job.format is not None and output_kind(output) != job.format:
            raise LivematteError(f"--format {job.format} contradicts -o {output} ({output_kind(output)}); "
                                 "drop one of them")
        plan = [(job.input, output, job.alpha_out)]
    planned = [PlannedVideo(video, output, alpha, job.format or output_kind(output))
               for video, output, alpha in plan]
    for item in planned:
        _check_alpha_path(item.alpha_out)
    check_outputs([item.input for item in planned],
                  [path for item in planned for path in (item.output, item.alpha_out)], overwrite=job.overwrite)
    return planned


@dataclass(frozen=True)
class VideoResult:
    """What a ``video`` job did: each finished input's figures, in order, and the inputs that failed."""

    done: dict[str, Stats]  # input -> its run's Stats
    failed: tuple[str, ...] = ()


def run_video_job(job: VideoJob) -> VideoResult:
    """Process every input; those that fail are named in the log and in the result's ``failed``
    (a single input's error is raised instead)."""
    plan = plan_outputs(job)
    compositor = Compositor(parse_background(job.config.output.background), job.config.composite.light_wrap)
    with contextlib.ExitStack() as stack:
        stack.callback(compositor.close)
        # A bad single input is reported before seconds go into loading the model; the
        # source opened for that check is the one processed.
        opened = stack.enter_context(contextlib.closing(FileSource(plan[0].input, strict=True))) if len(plan) == 1 else None
        matter = models.load(job.config.model)
        stack.callback(matter.close)
        _warn_unused_refine(job.config, matter)
        done, failed = {}, []
        for index, item in enumerate(plan):
            if len(plan) > 1:
                log.info("[%d/%d] %s", index + 1, len(plan), item.input)
            try:
                # strict: a half-read file must not pass as a whole
                with contextlib.closing(opened or FileSource(item.input, strict=True)) as source:
                    done[item.input] = process_video(job, matter, compositor, source, item.output, item.alpha_out)
            except LivematteError as e:
                if len(plan) == 1:
                    raise
                failed.append(item.input)
                log.error("failed: %s: %s", item.input, e)
    if failed:
        log.error("%d of %d videos failed", len(failed), len(plan))
    return VideoResult(done, tuple(failed))


def process_video(job: VideoJob, matter, compositor: Compositor, source: FileSource, output: Path,
                  alpha_out: Path | None, *, keep_from: float | None = None, progress=None) -> Stats:
    """Every frame of ``source`` through a fresh engine into ``output`` (and the matte into
    ``alpha_out``); -> the run's figures.

    keep_from: seconds; frames before it go through the model, so that its recurrent state and
        the smoother are warm, but are not written (a cluster segment's pre-roll).
    progress: what counts the frames matted (``update(n)``, ``close()``); default the progress line.
    """
    from ..sinks.file import FileSink

    config = job.config
    info = source.info
    engine = Engine(matter, config.smoothing, config.refine.mode, config.composite)
    engine.warm_up(info.width, info.height)
    stats = Stats()
    with contextlib.ExitStack() as stack:
        sink = stack.enter_context(FileSink(output, info.width, info.height, info.rate, audio=source.audio,
                                            kind=job.format, **config.output.writer_options()))
        _check_alpha_support(compositor, sink)
        alpha_writer = _alpha_writer(stack, alpha_out, info.width, info.height, info.rate)
        if keep_from is not None:
            sink, alpha_writer = _From(keep_from, sink), alpha_writer and _From(keep_from, alpha_writer)
        if progress is None:
            total = min(filter(None, (info.frame_count, job.max_frames)), default=None)
            progress = progress_bar(total, Path(source.path).name, job.quiet)
        run(source, engine, compositor, sink, live=False, max_frames=job.max_frames, alpha_writer=alpha_writer,
            stats=stats, progress=progress)
    snap = stats.snapshot()
    log.info("%s -> %s: %d frames, %.1f fps", source.path, output, snap["composited"],
             snap["composited"] / max(snap["elapsed_s"], 1e-6))
    return stats


class _From:
    """A sink or matte writer that takes frames from ``start`` seconds on and drops earlier ones."""

    def __init__(self, start: float, writer):
        self.start, self.writer = start, writer
        self.accepts_alpha = getattr(writer, "accepts_alpha", True)
        self.wants_quit = False

    def send(self, image, pts: float) -> None:
        if pts >= self.start:
            self.writer.send(image, pts)

    def write(self, alpha, pts: float, **kwargs) -> None:
        if pts >= self.start:
            self.writer.write(alpha, pts, **kwargs)
