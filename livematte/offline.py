"""The offline job: every frame of a file (or of every video in a folder), in order, with its audio,
into an encoded file; checked before any work, written under the final name only when whole.

``livematte video`` and ``demo`` run it (:mod:`livematte.commands`), and so does each segment of
a ``--cluster`` run (:mod:`livematte.cluster`), which is why it lives below both.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from pathlib import Path

from . import assembly, sinks
from .compose.backgrounds import is_transparent
from .compose.compositor import Compositor
from .config import Config
from .errors import LivematteError
from .media.formats import output_kind
from .media.outpaths import check_outputs, unique_stems
from .media.reading import VIDEO_SUFFIXES
from .runtime.output import progress_bar
from .runtime.run import run
from .runtime.stats import Stats
from .sources.capture import FileSource

log = logging.getLogger(__name__)


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
    fmt = job.format or ("webm" if is_transparent(job.config.output.background) else "mp4")
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
        assembly.check_alpha_path(item.alpha_out)
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
    compositor = assembly.compositor(job.config)
    with contextlib.ExitStack() as stack:
        stack.callback(compositor.close)
        # A bad single input is reported before seconds go into loading the model; the
        # source opened for that check is the one processed.
        opened = stack.enter_context(contextlib.closing(FileSource(plan[0].input, strict=True))) if len(plan) == 1 else None
        matter = assembly.load_models(job.config, stack, governed=False).matter
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
    config = job.config
    info = source.info
    engine = assembly.video_engine(config, matter, info.width, info.height)
    stats = Stats()
    with contextlib.ExitStack() as stack:
        sink = stack.enter_context(assembly.sink(sinks.FILE, config, info.width, info.height, info.rate,
                                                 output=output, audio=source.audio, file_kind=job.format))
        assembly.check_alpha_support(compositor, sink)
        alpha_writer = assembly.alpha_writer(stack, alpha_out, info.width, info.height, info.rate)
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
