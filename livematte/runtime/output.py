"""The output stage, on the caller's thread: each matted frame composited and sent.

    pipeline.next() --Matted--> Outputs.emit: compositor -> sink (and the matte -> alpha writer) -> stats

:func:`output_loop` takes the pipeline's matted frames in order until the source
ends, the sink quits or the run's stop event is set. :class:`Outputs` composites
each with its own matte and sends it; when the output is paced and no new frame
is ready in time, it sends the last one again. :func:`progress_bar` is the
``video`` command's progress line.
"""

from __future__ import annotations

import logging
import queue
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..compose.compositor import Compositor
from ..frames import Matted, alpha_to_u8
from .pipeline import Pipeline
from .stats import Stats
from .workers import END, Stopped

log = logging.getLogger(__name__)


@dataclass
class Outputs:
    """What the caller's thread writes each frame: the sink, and optionally the matte."""

    compositor: Compositor
    sink: object
    alpha_writer: object | None = None
    # The last frame sent, for repeats: (picture, its matte as uint8, the source pts it shows).
    last: tuple[np.ndarray, np.ndarray, float] | None = None
    last_out_pts: float | None = None  # the sink's stamp of the latest frame sent
    # Called with each fresh picture sent and its Matted, on this thread, after the sink (the web
    # page's newest-frame slot): it must only hand references over, never wait.
    tap: Callable[[np.ndarray, Matted], None] | None = None
    clock_offset: float | None = None  # paced output: pts = perf_counter() - clock_offset, kept across pipelines

    def emit(self, matted: Matted, stats: Stats, pts: float | None = None) -> None:
        """Composite and send one frame; ``pts`` (default: the frame's own) stamps it in the sink.

        A ``source_timed`` sink (a live recording, ``sinks.threaded``) gets the frame's own pts
        whatever ``pts`` says, and no repeats (:meth:`repeat` tells it to ``hold()``): it keeps
        time on the source's timeline, the audio's.
        """
        start = time.perf_counter()
        picture = self.compositor.composite(matted.frame.image, matted.alpha, matted.frame.pts, matted.foreground)
        if picture.shape[2] == 4 and not self.sink.accepts_alpha:
            picture = picture[:, :, :3]
        composited = time.perf_counter()
        source_timed = getattr(self.sink, "source_timed", False)
        self.last_out_pts = matted.frame.pts if pts is None or source_timed else pts
        self.sink.send(picture, self.last_out_pts)
        sent = time.perf_counter()
        stats.stage("composite", (composited - start) * 1e3)
        stats.stage("sink", (sent - composited) * 1e3)
        alpha = alpha_to_u8(matted.alpha) if self.alpha_writer is not None else None
        if alpha is not None:
            self.alpha_writer.write(alpha, matted.frame.pts)
            stats.stage("alpha_out", (time.perf_counter() - sent) * 1e3)
        self.last = (picture, alpha, matted.frame.pts)
        stats.output(matted.frame.captured_at, reused=matted.reused, age=matted.result_age)
        if self.tap is not None:
            self.tap(picture, matted)

    def repeat(self, stats: Stats, pts: float) -> None:
        """Send the last frame again, stamped ``pts``, when no new one is ready in time.

        Its matte goes to ``--alpha-out`` again too, with the source time of the frame it
        shows (moved on by one tick of the matte file's clock), so that the matte file
        holds one matte per output frame, in output order.
        """
        if self.last is None:
            return
        picture, alpha, source_pts = self.last
        if getattr(self.sink, "source_timed", False):  # a recording: it fills its own ticks, if any
            self.sink.hold()
        else:
            self.last_out_pts = pts
            self.sink.send(picture, pts)
        if alpha is not None:
            self.alpha_writer.write(alpha, source_pts, repeat=True)
        stats.output(None, repeated=True)

    def end_audio(self, fps: float) -> None:
        """A recording that stops before its source's end keeps the audio up to its last frame."""
        end_audio_at = getattr(self.sink, "end_audio_at", None)
        if end_audio_at is not None and self.last_out_pts is not None:
            end_audio_at(self.last_out_pts + 1.0 / fps)


def output_loop(pipeline: Pipeline, outputs: Outputs, *, paced: bool, out_fps: float,
                stats_every: float | None = None, progress=None,
                interrupt: Callable[[], bool] | None = None) -> None:
    """Every matted frame, in order, to ``outputs`` until the source ends, the sink quits or the
    pipeline's stop event is set (Ctrl-C in ``live``): then it returns normally, so that every
    output is finished and kept. A stage's error is raised here.

    When ``paced``, a frame goes out at least every 1.5 periods of ``out_fps``:
    if inference falls behind, the last composite is sent again so a virtual
    camera never stalls. Paced output is stamped with the output clock, which
    starts at the first frame's source time, so its timestamps increase, repeats included;
    a ``source_timed`` sink (a live recording) keeps each frame's source time instead, the
    audio's timeline, and fills the gaps itself (:meth:`Outputs.emit`).
    Unpaced output keeps each frame's own time.

    ``stats_every``: seconds between lines of running figures in the log (None: none).
    ``progress``: counts the frames sent (``update(1)``) and is closed at the end (``close()``).
    ``interrupt``: asked between frames; True returns at once, as a quitting sink does.
    """
    stats, sink = pipeline.stats, outputs.sink
    period = 1.0 / out_fps
    deadline = time.perf_counter() + 10.0  # the first frame may wait for the model to warm up
    next_report = time.perf_counter() + stats_every if stats_every is not None else None
    try:
        while not sink.wants_quit and not (interrupt is not None and interrupt()):
            timeout = max(0.0, deadline - time.perf_counter()) if paced else None
            try:
                matted = pipeline.next(timeout)
            except queue.Empty:
                if outputs.clock_offset is not None:
                    outputs.repeat(stats, time.perf_counter() - outputs.clock_offset)
                deadline = time.perf_counter() + period
                continue
            except Stopped:  # stopped by the caller; a stage's error would have been raised instead
                break
            if matted is END:
                break
            if paced:
                if outputs.clock_offset is None:
                    outputs.clock_offset = time.perf_counter() - matted.frame.pts
                outputs.emit(matted, stats, time.perf_counter() - outputs.clock_offset)
            else:
                outputs.emit(matted, stats)
            if progress is not None:
                progress.update(1)
            deadline = time.perf_counter() + 1.5 * period
            if next_report is not None and time.perf_counter() >= next_report:
                next_report += stats_every
                log.info("%s", stats.line())
    finally:
        if progress is not None:
            progress.close()


def hold(outputs: Outputs, stats: Stats, out_fps: float, until: Callable[[], bool]) -> None:
    """Send the last frame again once a period of ``out_fps`` until ``until()`` or the sink quits:
    a paced output (a virtual camera) keeps its rate while no pipeline runs (paused, or a new
    engine warming up)."""
    period = 1.0 / out_fps
    next_at = time.perf_counter()
    while not until() and not outputs.sink.wants_quit:
        if outputs.clock_offset is not None:
            outputs.repeat(stats, time.perf_counter() - outputs.clock_offset)
        next_at += period
        time.sleep(max(0.0, next_at - time.perf_counter()))


def progress_bar(total: int | None, label: str, quiet: bool = False):
    """A progress line on stderr (tqdm): frames done of ``total``, frames per second and time
    left; silent with ``quiet`` or when stderr is not a terminal."""
    from tqdm import tqdm

    return tqdm(total=total, desc=label, unit="frame", mininterval=0.25, dynamic_ncols=True,
                disable=True if quiet else None)
