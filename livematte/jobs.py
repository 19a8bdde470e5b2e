"""The ``live`` and ``video`` jobs: typed settings in, a finished run (or a clear error) out."""

from __future__ import annotations

import contextlib
import logging
import threading
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from . import models
from .capture import FileSource, open_source
from .compositor import Compositor, parse_background
from .config import Config
from .engine import Engine
from .errors import LivematteError
from .pipeline import BackgroundWatcher, Outputs, Pipeline, Progress, run_live, run_offline
from .sinks import NullSink
from .stats import Stats
from .videoio import VIDEO_SUFFIXES

log = logging.getLogger(__name__)



@dataclass(frozen=True)
class LiveJob:
    config: Config
    camera: str | None = None
    source: str | None = None
    realtime: bool = False
    sink: str = "vcam"
    output: Path | None = None
    device: str | None = None
    vcam_backend: str | None = None
    alpha_out: Path | None = None
    stats_json: Path | None = None
    watch_background: Path | None = None
    max_frames: int | None = None
    stats_every: float = 5.0


def _alpha_writer(stack: contextlib.ExitStack, path: Path | None, width: int, height: int, rate: Fraction):
    """The ``--alpha-out`` writer, entered on ``stack`` (finished on success, removed on error)."""
    if path is None:
        return None
    from .videoio import AlphaWriter

    return stack.enter_context(AlphaWriter(path, width=width, height=height, rate=rate))


def _open_sink(job: LiveJob, width: int, height: int, fps: float):
    if job.sink == "null":
        return NullSink()
    if job.sink == "vcam":
        from .sinks.vcam import VirtualCameraSink

        return VirtualCameraSink(width, height, fps, device=job.device, backend=job.vcam_backend)
    if job.sink == "preview":
        from .sinks.preview import PreviewSink

        return PreviewSink()
    if job.sink == "file":
        if job.output is None:
            raise LivematteError("--sink file needs -o FILE")
        from .sinks.file import FileSink

        return FileSink(job.output, width, height, Fraction(fps).limit_denominator(1001),
                        crf=job.config.output.crf, preset=job.config.output.preset)
    raise LivematteError(f"unknown sink {job.sink!r}, expected vcam, preview, file or null")


def run_live_job(job: LiveJob, matter=None, *, camera_opener=None) -> Stats:
    """``camera_opener`` replaces ``cv2.VideoCapture`` for ``--camera`` (the hardware boundary; tests)."""
    config = job.config
    compositor = Compositor(parse_background(config.output.background))
    if compositor.transparent and job.sink == "vcam":
        raise LivematteError("a virtual camera cannot carry transparency; use --background key[:#RRGGBB]")
    stopping = threading.Event()
    stats = Stats()
    # Unwound in reverse: stop flag, pipeline threads, matte file (finished, or removed
    # after an error), sink, source — whatever failed on the way in.
    with contextlib.ExitStack() as stack:
        source = open_source(job.camera, job.source, job.realtime, config.capture, should_stop=stopping.is_set,
                             opener=camera_opener)
        stack.callback(source.close)
        out_fps = config.output.fps or source.fps
        matter = matter or models.load(config.model)
        engine = Engine(matter, config.smoothing, config.refine)
        log.debug("model warm-up %.2f s", engine.warm_up(source.width, source.height))
        log.info("live: %s %dx%d at %.3g fps -> %s, preset %s, background %s", source.name, source.width,
                 source.height, source.fps, job.sink, config.preset, compositor.background.spec)
        sink = stack.enter_context(_open_sink(job, source.width, source.height, out_fps))
        _check_alpha_support(compositor, sink)
        if job.sink == "preview":
            sink.on_key = _background_cycler(compositor, config.output.background)
        alpha_writer = _alpha_writer(stack, job.alpha_out, source.width, source.height,
                                     Fraction(out_fps).limit_denominator(1001))
        pipeline = stack.enter_context(Pipeline(source, engine, stats, live=source.live, max_frames=job.max_frames,
                                                max_lag=2.0 / source.fps))
        # Before the pipeline joins its threads: a camera waiting out an outage only
        # looks at ``stopping``.
        stack.callback(stopping.set)
        run_live(pipeline, Outputs(compositor, sink, alpha_writer), out_fps=out_fps, paced=source.live,
                 watcher=BackgroundWatcher(job.watch_background, compositor), stats_every=job.stats_every)
    log.info("done: %s", stats.line())
    if job.stats_json is not None:
        stats.write_json(job.stats_json)
    return stats


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


def plan_outputs(job: VideoJob) -> list[tuple[str, Path, Path | None]]:
    """(input, output, alpha output) for every video the job names."""
    if Path(job.input).is_dir():
        if job.output is None:
            raise LivematteError("a folder of videos needs -o DIR for the results")
        return [(str(video), job.output / output_name(video.stem, job),
                 job.alpha_out / f"{video.stem}_alpha.mkv" if job.alpha_out else None)
                for video in list_videos(Path(job.input))]
    stem = Path(job.input.split("?")[0]).stem or "video"
    return [(job.input, job.output or Path(output_name(f"{stem}_livematte", job)), job.alpha_out)]


def run_video_job(job: VideoJob) -> int:
    """Process every input; -> the number that failed (each named in the log)."""
    plan = plan_outputs(job)
    compositor = Compositor(parse_background(job.config.output.background))
    # A bad single input is reported before seconds go into loading the model; the
    # source opened for that check is the one processed.
    opened = FileSource(plan[0][0], strict=True) if len(plan) == 1 else None
    matter = models.load(job.config.model)
    failed = 0
    for index, (source, output, alpha_out) in enumerate(plan):
        if len(plan) > 1:
            log.info("[%d/%d] %s", index + 1, len(plan), source)
        try:
            # strict: a half-read file must not pass as a whole
            process_video(job, matter, compositor, opened or FileSource(source, strict=True), output, alpha_out)
        except LivematteError as e:
            if len(plan) == 1:
                raise
            failed += 1
            log.error("failed: %s: %s", source, e)
    if failed:
        log.error("%d of %d videos failed", failed, len(plan))
    return failed


def process_video(job: VideoJob, matter, compositor: Compositor, source: FileSource, output: Path,
                  alpha_out: Path | None) -> Stats:
    from .sinks.file import FileSink

    config = job.config
    source_path = source.path
    info = source.info
    output.parent.mkdir(parents=True, exist_ok=True)
    engine = Engine(matter, config.smoothing, config.refine)
    engine.warm_up(info.width, info.height)
    stats = Stats()
    with contextlib.ExitStack() as stack:
        sink = stack.enter_context(FileSink(output, info.width, info.height, info.rate,
                                            audio_from=source_path if info.has_audio else None,
                                            crf=config.output.crf, preset=config.output.preset, kind=job.format))
        _check_alpha_support(compositor, sink)
        alpha_writer = _alpha_writer(stack, alpha_out, info.width, info.height, info.rate)
        total = min(filter(None, (info.frame_count, job.max_frames)), default=None)
        pipeline = stack.enter_context(Pipeline(source, engine, stats, live=False, max_frames=job.max_frames))
        run_offline(pipeline, Outputs(compositor, sink, alpha_writer), Progress(total, Path(source_path).name, job.quiet))
    snap = stats.snapshot()
    log.info("%s -> %s: %d frames, %.1f fps", source_path, output, snap["composited"],
             snap["composited"] / max(snap["elapsed_s"], 1e-6))
    return stats
