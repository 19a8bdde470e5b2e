"""One segment of a video on a worker: decoded from its pre-roll, matted and encoded on its own.

The work is the ``video`` command's own (:func:`livematte.offline.process_video`: a fresh engine,
the same writers and settings), on a :class:`SegmentSource` that seeks to the segment's
keyframe and yields its pre-roll and its frames. The pre-roll goes through the model but is
not written. The files are written into a private temporary folder and returned as bytes
(:class:`SegmentOutput`), so that the driver needs no folder shared with the workers.
No Ray here: the actor in :mod:`.driver` holds the model and calls :func:`process_segment`.
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..compose.compositor import Compositor
from ..config import Config
from ..errors import LivematteError
from ..media.reading import VideoReader
from .plan import Segment


@dataclass(frozen=True)
class SegmentTask:
    """What a worker needs for one segment. kind: the output's (mp4, mkv, webm, mov or png);
    alpha_kind: the matte's (mkv or png), None without ``--alpha-out``."""

    input: str
    segment: Segment
    kind: str
    alpha_kind: str | None
    config: Config


@dataclass
class SegmentOutput:
    """A segment's encoded files, as bytes: ``video`` and ``alpha`` map a file name to its bytes
    (one file, or a PNG folder's frames in order). frames: frames written; matted: frames through the model (the pre-roll's included).
    seconds: wall time of its steps (``open``, ``run``, ``collect``) on the worker."""

    video: dict[str, bytes]
    alpha: dict[str, bytes] | None
    frames: int
    matted: int
    seconds: dict[str, float] = field(default_factory=dict)

    def save(self, stem: Path) -> tuple[Path, Path | None]:
        """The files written beside each other as ``stem-video[.ext]`` and ``stem-alpha[.ext]`` (a
        folder for PNG frames); -> their paths (the matte's None without one)."""
        video = _store(stem.with_name(f"{stem.name}-video"), self.video)
        alpha = None if self.alpha is None else _store(stem.with_name(f"{stem.name}-alpha"), self.alpha)
        return video, alpha


class SegmentSource:
    """The frames a segment mattes: its pre-roll, then its own, as ``(image, pts)`` like
    :class:`~livematte.sources.capture.FileSource` (``uint8 [H, W, 3]`` BGR upright, seconds).

    Decoding starts at the segment's keyframe; frames before the pre-roll are decoded and
    dropped. Should the seek land after the pre-roll's first frame (a demuxer without an
    index), the file is read again from its start, so that no frame is missed.
    """

    live = False
    audio = None  # the driver copies the source's audio once, into the joined output

    def __init__(self, path: str, segment: Segment):
        self.path = self.name = path
        self.segment = segment
        self.preroll = self.written = 0  # frames yielded so far of each kind
        self._reader = VideoReader(path, strict=True, start=segment.seek)
        self.info = self._reader.info
        self.width, self.height = self.info.width, self.info.height
        self.fps = self.info.fps or 30.0

    def frames(self) -> Iterator[tuple[np.ndarray, float]]:
        wanted = self.segment.preroll_from if self.segment.preroll_from is not None else self.segment.start
        frames = self._reader.frames()
        first = next(frames, None)
        if first is None:
            return
        if wanted is not None and self.segment.seek is not None and first[1] > wanted:
            frames.close()  # the seek overshot: read from the start
            self._reader.close()
            self._reader = VideoReader(self.path, strict=True)
            frames = self._reader.frames()
            first = next(frames, None)
        yield from self._segment(first, frames)

    def _segment(self, first: tuple[np.ndarray, float], rest: Iterator) -> Iterator[tuple[np.ndarray, float]]:
        for image, pts in _chain(first, rest):
            if self.segment.end is not None and pts >= self.segment.end:
                return  # decoding further would be the next segment's work
            if self.segment.matters(pts):
                if self.segment.writes(pts):
                    self.written += 1
                else:
                    self.preroll += 1
                yield image, pts

    def close(self) -> None:
        self._reader.close()


def _chain(first, rest: Iterator) -> Iterator:
    yield first
    yield from rest


class _Counter:
    """The progress protocol of :func:`livematte.runtime.output.progress_bar` (``update``, ``close``) that
    reports the frames written so far (matted ones less the pre-roll, which comes first) to
    ``report``, at most every ``every`` seconds and once at the end."""

    def __init__(self, report: Callable[[int], None] | None, source: SegmentSource, every: float = 0.5):
        self.report, self.source, self.every = report, source, every
        self.matted = 0
        self._next = time.perf_counter() + every

    def update(self, n: int = 1) -> None:
        self.matted += n
        if self.report is not None and time.perf_counter() >= self._next:
            self._next = time.perf_counter() + self.every
            self.report(max(0, self.matted - self.source.preroll))

    def close(self) -> None:
        if self.report is not None:
            self.report(max(0, self.matted - self.source.preroll))


def process_segment(task: SegmentTask, matter, compositor: Compositor,
                    report: Callable[[int], None] | None = None) -> SegmentOutput:
    """Matte and encode one segment with ``matter`` (loaded once per worker) and ``compositor``;
    -> its files' bytes. ``report(frames written so far)`` is called now and then.
    :class:`LivematteError` for what is wrong with the input (the driver does not retry those)."""
    from ..offline import VideoJob, process_video

    segment = task.segment
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="livematte-segment-") as tmp:
        video = Path(tmp) / ("video" if task.kind == "png" else f"video.{task.kind}")
        alpha = None if task.alpha_kind is None else Path(tmp) / ("alpha" if task.alpha_kind == "png" else "alpha.mkv")
        job = VideoJob(config=task.config, input=task.input, output=video, format=task.kind, alpha_out=alpha,
                       quiet=True)
        with contextlib.closing(SegmentSource(task.input, segment)) as source:
            opened = time.perf_counter()
            keep_from = segment.start if segment.preroll_from is not None else None
            stats = process_video(job, matter, compositor, source, video, alpha, keep_from=keep_from,
                                  progress=_Counter(report, source))
        ran = time.perf_counter()
        if segment.frames is not None and source.written != segment.frames:
            # The plan counted packets; a decoder that dropped some would break "every frame once".
            raise LivematteError(f"{task.input}: segment {segment.index} decoded {source.written} of its "
                                 f"{segment.frames} frames")
        output = SegmentOutput(_read(video), None if alpha is None else _read(alpha), frames=source.written,
                               matted=stats.composited)
    output.seconds = {"open": opened - started, "run": ran - opened, "collect": time.perf_counter() - ran}
    return output


def _read(path: Path) -> dict[str, bytes]:
    """A file, or a folder's files in name order, as name -> bytes."""
    files = sorted(path.iterdir()) if path.is_dir() else [path]
    return {f.name: f.read_bytes() for f in files}


def _store(path: Path, files: dict[str, bytes]) -> Path:
    """Files as :func:`_read` returned them, written back: one file (``path`` with its suffix) or
    a folder of PNG frames at ``path``."""
    if len(files) == 1 and not next(iter(files)).endswith(".png"):
        (name, data), = files.items()
        path = path.with_name(path.name + Path(name).suffix)  # not with_suffix: a stem may hold dots
        path.write_bytes(data)
        return path
    path.mkdir()
    for name, data in files.items():
        (path / name).write_bytes(data)
    return path
