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
import queue
import sys
import threading
import time
from dataclasses import dataclass

import cv2
import numpy as np

from .compositor import Compositor
from .engine import Engine
from .frames import Frame, Matted, alpha_to_u8
from .stats import Stats
from .workers import END, Channel, LatestSlot, Stopped, Worker, first_error, join_all

log = logging.getLogger(__name__)


class Pipeline:
    """Capture, prepare and infer threads around one source and one engine (a context manager)."""

    def __init__(self, source, engine: Engine, stats: Stats, *, live: bool, depth: int = 4,
                 max_frames: int | None = None, max_lag: float = 0.067, stop: threading.Event | None = None):
        self.source, self.engine, self.stats, self.live = source, engine, stats, live
        self.max_frames = max_frames
        # The run's one stop event: set by the caller (Ctrl-C in ``live``) or by a failing stage.
        self.stop = stop if stop is not None else threading.Event()
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
            if error is None:
                raise
        # Raised here, outside the ``except``, so that its traceback is the worker's own
        # and not chained to the ``Stopped`` that only woke this thread.
        raise error

    def _capture(self) -> None:
        size = (self.source.height, self.source.width)
        last_shape = size
        for index, (image, pts) in enumerate(self.source.frames()):
            if self.max_frames is not None and index >= self.max_frames:
                break
            # A source that changes size mid-stream (concatenated segments, a camera back in
            # another mode) is fitted into the size the outputs were opened with, and
            # everything learnt from the old picture is forgotten.
            restart = image.shape[:2] != last_shape
            if restart:
                log.info("%s changed size from %dx%d to %dx%d; fitted into %dx%d from here", self.source.name,
                         last_shape[1], last_shape[0], image.shape[1], image.shape[0], size[1], size[0])
                last_shape = image.shape[:2]
            if image.shape[:2] != size:
                image = fit_into(image, size[1], size[0])
            self.stats.frame_in()
            self.frames.put(Frame(index, image, pts, time.perf_counter(), restart))
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


def fit_into(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """``uint8 [h, w, 3]`` -> ``uint8 [height, width, 3]``: scaled to fit whole, aspect kept,
    centred on black (the bars are matted as background like any other)."""
    h, w = image.shape[:2]
    scale = min(width / w, height / h)
    new_w, new_h = max(1, min(width, round(w * scale))), max(1, min(height, round(h * scale)))
    fitted = np.zeros((height, width, 3), np.uint8)
    x, y = (width - new_w) // 2, (height - new_h) // 2
    fitted[y:y + new_h, x:x + new_w] = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_AREA)
    return fitted


@dataclass
class Outputs:
    """What the caller's thread writes each frame: the sink, and optionally the matte."""

    compositor: Compositor
    sink: object
    alpha_writer: object | None = None
    # The last frame sent, for repeats: (picture, its matte as uint8, the source pts it shows).
    last: tuple[np.ndarray, np.ndarray, float] | None = None
    last_out_pts: float | None = None  # the sink's stamp of the latest frame sent

    def emit(self, matted: Matted, stats: Stats, pts: float | None = None) -> None:
        """Composite and send one frame; ``pts`` (default: the frame's own) stamps it in the sink."""
        start = time.perf_counter()
        picture = self.compositor.composite(matted.frame.image, matted.alpha, matted.frame.pts)
        if picture.shape[2] == 4 and not self.sink.accepts_alpha:
            picture = picture[:, :, :3]
        composited = time.perf_counter()
        self.last_out_pts = matted.frame.pts if pts is None else pts
        self.sink.send(picture, self.last_out_pts)
        sent = time.perf_counter()
        stats.stage("composite", (composited - start) * 1e3)
        stats.stage("sink", (sent - composited) * 1e3)
        alpha = alpha_to_u8(matted.alpha) if self.alpha_writer is not None else None
        if alpha is not None:
            self.alpha_writer.write(alpha, matted.frame.pts)
            stats.stage("alpha_out", (time.perf_counter() - sent) * 1e3)
        self.last = (picture, alpha, matted.frame.pts)
        stats.output(matted.frame.captured_at)

    def repeat(self, stats: Stats, pts: float) -> None:
        """Send the last frame again, stamped ``pts``, when no new one is ready in time.

        Its matte goes to ``--alpha-out`` again too, with the source time of the frame it
        shows (moved on by one tick of the matte file's clock), so that the matte file
        holds one matte per output frame, in output order.
        """
        if self.last is None:
            return
        picture, alpha, source_pts = self.last
        self.last_out_pts = pts
        self.sink.send(picture, pts)
        if alpha is not None:
            self.alpha_writer.write(alpha, source_pts, repeat=True)
        stats.output(None, repeated=True)


def run_live(pipeline: Pipeline, outputs: Outputs, *, out_fps: float, paced: bool,
             stats_every: float = 5.0) -> None:
    """Output loop for live use, on the caller's thread, until the source ends, the sink
    quits or the pipeline's stop event is set (Ctrl-C): then it returns normally, so that
    every output is finished and kept.

    When ``paced``, a frame goes out at least every 1.5 periods of ``out_fps``:
    if inference falls behind, the last composite is sent again so a virtual
    camera never stalls. Paced output is stamped with the output clock, which
    starts at the first frame's source time, so a recording of it has increasing
    timestamps (repeats included) and its audio, on the source's timeline, stays in step.
    """
    stats, sink = pipeline.stats, outputs.sink
    period = 1.0 / out_fps
    clock_offset: float | None = None  # output pts = perf_counter() - clock_offset
    deadline = time.perf_counter() + 10.0  # the first frame may wait for the model to warm up
    next_report = time.perf_counter() + stats_every
    while not sink.wants_quit:
        timeout = max(0.0, deadline - time.perf_counter()) if paced else None
        try:
            matted = pipeline.next(timeout)
        except queue.Empty:
            if clock_offset is not None:
                outputs.repeat(stats, time.perf_counter() - clock_offset)
            deadline = time.perf_counter() + period
            continue
        except Stopped:  # stopped by the caller; a stage's error would have been raised instead
            break
        if matted is END:
            break
        if paced:
            if clock_offset is None:
                clock_offset = time.perf_counter() - matted.frame.pts
            outputs.emit(matted, stats, time.perf_counter() - clock_offset)
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
