"""Wiring the stages into threads, for live use and for offline files.

    capture thread --frames--> prepare thread --prepared(1)--> infer thread --matted--> caller's thread
    (decode / camera)          (resize, layout)                (model, smoothing,        (composite, sink,
                                                                 refine)                   alpha-out, stats)

The one-slot hand-off between prepare and infer is the double buffer: frame
N+1 is prepared while the model runs on frame N. The prepare thread takes a
frame only once that slot is free (``_buffer_free``), so it always prepares
the newest frame and never holds a second one: at most one frame waits for
the model. Live pipelines use
small newest-wins buffers for ``frames`` and ``matted`` (a frame that has
waited longer than ``max_lag`` is dropped, never processed late); offline pipelines use bounded queues (back-pressure, nothing
dropped, order kept). The caller's thread owns the stop event: any worker's
exception stops every stage and is re-raised to the caller.
"""

from __future__ import annotations

import logging
import os
import queue
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from .compositor import Compositor, parse_background
from .engine import Engine
from .errors import LivematteError
from .frames import Frame, Matted, alpha_to_u8
from .stats import Stats
from .workers import END, Channel, LatestSlot, Stopped, Worker, first_error, join_all

log = logging.getLogger(__name__)


class Pipeline:
    """Capture, prepare and infer threads around one source and one engine (a context manager)."""

    def __init__(self, source, engine: Engine, stats: Stats, *, live: bool, depth: int = 4,
                 max_frames: int | None = None, max_lag: float = 0.067):
        self.source, self.engine, self.stats, self.live = source, engine, stats, live
        self.max_frames = max_frames
        self.stop = threading.Event()
        # Live: up to two frames wait, in order, and none older than max_lag is started
        # while a newer one waits; the model's occasional slow call costs no frame.
        self.frames = LatestSlot(self.stop, 2, max_lag) if live else Channel(self.stop, depth)
        self.prepared = Channel(self.stop, 1)
        self._buffer_free = threading.Semaphore(1)
        self.matted = LatestSlot(self.stop) if live else Channel(self.stop, depth)
        if live:
            stats.count_dropped_by(lambda: self.frames.replaced + self.matted.replaced)
        self.workers = [Worker("capture", self._capture, self.stop),
                        Worker("prepare", self._prepare, self.stop),
                        Worker("infer", self._infer, self.stop)]

    def __enter__(self):
        for worker in self.workers:
            worker.start()
        return self

    def __exit__(self, exc_type, exc, tb):
        self.close()
        return False

    def close(self) -> None:
        self.stop.set()
        join_all(self.workers, [self.frames, self.prepared, self.matted])
        self.source.close()

    def next(self, timeout: float | None = None) -> Matted | object:
        """The next matted frame, or ``END``; raises a worker's error, or ``queue.Empty`` on timeout."""
        try:
            return self.matted.get(timeout)
        except Stopped:
            error = first_error(self.workers)
            if error is not None:
                raise error
            raise

    def _capture(self) -> None:
        for index, (image, pts) in enumerate(self.source.frames()):
            if self.max_frames is not None and index >= self.max_frames:
                break
            self.stats.frame_in()
            self.frames.put(Frame(index, image, pts, time.perf_counter()))
            if self.stop.is_set():
                return
        self.frames.put(END)

    def _prepare(self) -> None:
        while True:
            while not self._buffer_free.acquire(timeout=0.05):
                if self.stop.is_set():
                    return
            frame = self.frames.get()
            if frame is END:
                break
            self.prepared.put(self.engine.prepare(frame))
        self.prepared.put(END)

    def _infer(self) -> None:
        while (prepared := self.prepared.get()) is not END:
            self._buffer_free.release()
            matted = self.engine.infer(prepared)
            self.stats.stages(matted.timings)
            self.matted.put(matted)
        self.matted.put(END)


@dataclass
class Outputs:
    """What the caller's thread writes each frame: the sink, and optionally the matte."""

    compositor: Compositor
    sink: object
    alpha_writer: object | None = None

    def emit(self, matted: Matted, stats: Stats, pts: float | None = None) -> object:
        """Composite and send one frame; ``pts`` (default: the frame's own) stamps it in the sink."""
        start = time.perf_counter()
        picture = self.compositor.composite(matted.frame.image, matted.alpha, matted.frame.pts)
        if picture.shape[2] == 4 and not self.sink.accepts_alpha:
            picture = picture[:, :, :3]
        composited = time.perf_counter()
        self.sink.send(picture, matted.frame.pts if pts is None else pts)
        sent = time.perf_counter()
        stats.stage("composite", (composited - start) * 1e3)
        stats.stage("sink", (sent - composited) * 1e3)
        if self.alpha_writer is not None:
            self.alpha_writer.write(alpha_to_u8(matted.alpha), matted.frame.pts)
            stats.stage("alpha_out", (time.perf_counter() - sent) * 1e3)
        stats.output(matted.frame.captured_at)
        return picture


class BackgroundWatcher:
    """Swaps the background when a watched text file (holding a SPEC) changes: no restart needed."""

    def __init__(self, path: Path | None, compositor: Compositor, interval: float = 0.5):
        self.path, self.compositor, self.interval = path, compositor, interval
        self._mtime = self._stat()
        self._next_check = 0.0

    def _stat(self) -> float | None:
        try:
            return os.stat(self.path).st_mtime if self.path else None
        except OSError:
            return None

    def poll(self) -> None:
        now = time.perf_counter()
        if self.path is None or now < self._next_check:
            return
        self._next_check = now + self.interval
        mtime = self._stat()
        if mtime is None or mtime == self._mtime:
            return
        self._mtime = mtime
        try:
            spec = Path(self.path).read_text(encoding="utf-8").strip()
            self.compositor.set_background(parse_background(spec))
            log.info("background: %s", spec)
        except (LivematteError, OSError, UnicodeDecodeError) as e:
            log.warning("kept the current background: %s", e)


def run_live(pipeline: Pipeline, outputs: Outputs, *, out_fps: float, paced: bool,
             watcher: BackgroundWatcher | None = None, stats_every: float = 5.0) -> None:
    """Output loop for live use, on the caller's thread.

    When ``paced``, a frame goes out at least every 1.5 periods of ``out_fps``:
    if inference falls behind, the last composite is sent again so a virtual
    camera never stalls. Paced output is stamped with the output clock (seconds
    since the first frame went out), so a recording of it has increasing
    timestamps, repeats included; the matte file keeps source timestamps.
    """
    stats, sink = pipeline.stats, outputs.sink
    period = 1.0 / out_fps
    last_picture = None
    started: float | None = None
    deadline = time.perf_counter() + 10.0  # the first frame may wait for the model to warm up
    next_report = time.perf_counter() + stats_every
    while not sink.wants_quit:
        if watcher is not None:
            watcher.poll()
        timeout = max(0.0, deadline - time.perf_counter()) if paced else None
        try:
            matted = pipeline.next(timeout)
        except queue.Empty:
            if last_picture is not None:
                sink.send(last_picture, time.perf_counter() - started)
                stats.output(None, repeated=True)
            deadline = time.perf_counter() + period
            continue
        if matted is END:
            break
        if paced:
            started = started if started is not None else time.perf_counter()
            last_picture = outputs.emit(matted, stats, time.perf_counter() - started)
        else:
            outputs.emit(matted, stats)
        deadline = time.perf_counter() + 1.5 * period
        if time.perf_counter() >= next_report:
            next_report += stats_every
            log.info("%s", stats.line())


class Progress:
    """``frames/total, fps, time left`` on one terminal line; silent when not a terminal or quiet."""

    def __init__(self, total: int | None, label: str, quiet: bool = False, stream=sys.stderr):
        self.total, self.label, self.stream = total, label, stream
        self.enabled = not quiet and stream.isatty()
        self.start = time.perf_counter()
        self.done = 0
        self._next_draw = 0.0

    def update(self, n: int = 1) -> None:
        self.done += n
        now = time.perf_counter()
        if self.enabled and now >= self._next_draw:
            self._next_draw = now + 0.25
            self._draw(now)

    def _draw(self, now: float) -> None:
        elapsed = max(now - self.start, 1e-6)
        fps = self.done / elapsed
        if self.total:
            left = (self.total - self.done) / fps if fps > 0 else 0.0
            text = f"{self.label}: {self.done}/{self.total} frames, {fps:.1f} fps, {left:.0f} s left"
        else:
            text = f"{self.label}: {self.done} frames, {fps:.1f} fps"
        self.stream.write("\r" + text + "\x1b[K")
        self.stream.flush()

    def finish(self) -> None:
        if self.enabled:
            self._draw(time.perf_counter())
            self.stream.write("\n")
            self.stream.flush()


def run_offline(pipeline: Pipeline, outputs: Outputs, progress: Progress) -> None:
    """Output loop for files: every frame, in order."""
    while (matted := pipeline.next()) is not END:
        outputs.emit(matted, pipeline.stats)
        progress.update()
    progress.finish()
