"""The pipeline's threads, for live use and for offline files.

    capture thread --frames--> prepare thread --prepared(1)--> infer thread --matted--> caller's thread
    (decode / camera)          (resize, layout)                (model, smoothing,        (livematte.runtime.output:
                                                                 refine)                   composite, sink,
                                                                                           alpha-out, stats)

The one-slot hand-off between prepare and infer is the double buffer: frame
N+1 is prepared while the model runs on frame N. The prepare thread takes a
frame only once that slot is free (``_buffer_free``), so it always prepares
the newest frame and never holds a second one: at most one frame waits for
the model. Live pipelines use
small fresh-frame buffers for ``captured`` and ``matted`` (a frame that has
waited longer than ``max_lag`` is dropped, never processed late); offline pipelines use bounded queues (back-pressure, nothing
dropped, order kept), each bounded in bytes as well as in frames (:data:`QUEUE_BYTES`), so that
large pictures do not pile up. The caller's thread owns the stop event: any worker's
exception stops every stage and is re-raised to the caller, which takes the
matted frames with :meth:`Pipeline.next` (:func:`livematte.runtime.output.output_loop`;
:func:`livematte.runtime.run.run` wires a whole run).
"""

from __future__ import annotations

import logging
import threading
import time

import cv2
import numpy as np

from .engine import Engine
from ..frames import Frame, Matted
from .governor import WINDOW_S, Sample
from .stats import Stats
from .workers import END, Channel, FreshBuffer, Stopped, Worker, first_error, join_all, return_freed_pictures

log = logging.getLogger(__name__)

# The bytes of pictures an offline hand-off may hold besides its ``depth`` of frames: a 4K frame
# with its float32 matte and foreground is nine times a 720p one, so a depth that costs little at
# 720p would hold hundreds of MB at 4K. A bigger item still goes, alone.
QUEUE_BYTES = 64 * 2**20


def picture_bytes(item) -> int:
    """The bytes of full-size pictures a hand-off item carries: a Frame's or a Matted's (END: 0)."""
    if isinstance(item, Matted):
        extra = item.foreground.nbytes if item.foreground is not None else 0
        return item.frame.image.nbytes + item.alpha.nbytes + extra
    return item.image.nbytes if isinstance(item, Frame) else 0


class Pipeline:
    """Capture, prepare and infer threads around one source and one engine (a context manager)."""

    def __init__(self, source, engine: Engine, stats: Stats, *, live: bool, depth: int = 4,
                 max_frames: int | None = None, max_lag: float = 0.067, stop: threading.Event | None = None):
        self.source, self.engine, self.stats, self.live = source, engine, stats, live
        self.max_frames = max_frames
        return_freed_pictures()  # the stages hand big pictures from thread to thread
        # The run's one stop event: set by the caller (Ctrl-C in ``live``) or by a failing stage.
        self.stop = stop if stop is not None else threading.Event()
        # Live: up to two frames wait, in order, and none older than max_lag is started
        # while a newer one waits; the model's occasional slow call costs no frame.
        self.captured = FreshBuffer(self.stop, 2, max_lag) if live else self._queue(depth)
        self.prepared = Channel(self.stop, 1)
        self._buffer_free = threading.Semaphore(1)
        self.matted = FreshBuffer(self.stop) if live else self._queue(depth)
        if live:
            stats.count_dropped_by(lambda: self.captured.replaced + self.matted.replaced)
        self.workers = [Worker("capture", self._capture, self.stop),
                        Worker("prepare", self._prepare, self.stop),
                        Worker("infer", self._infer, self.stop)]

    def _queue(self, depth: int) -> Channel:
        """An offline hand-off: up to ``depth`` frames and :data:`QUEUE_BYTES` of pictures."""
        return Channel(self.stop, depth, QUEUE_BYTES, picture_bytes)

    def __enter__(self):
        if self.engine.governor is not None:
            self.engine.governor.begin(time.perf_counter())
        for worker in self.workers:
            worker.start()
        return self

    def __exit__(self, exc_type, exc, tb):
        self.close()
        return False

    def close(self) -> None:
        self.stop.set()
        join_all(self.workers, [self.captured, self.prepared, self.matted])
        # The source is left open: whoever opened it closes it.

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
                fitted = "" if image.shape[:2] == size else f"; fitted into {size[1]}x{size[0]} from here"
                log.info("%s changed size from %dx%d to %dx%d%s", self.source.name,
                         last_shape[1], last_shape[0], image.shape[1], image.shape[0], fitted)
                last_shape = image.shape[:2]
            if image.shape[:2] != size:
                image = fit_into(image, size[1], size[0])
            self.stats.frame_in()
            self.captured.put(Frame(index, image, pts, time.perf_counter(), restart))
            if self.stop.is_set():
                return
        self.captured.put(END)

    def _prepare(self) -> None:
        while True:
            while not self._buffer_free.acquire(timeout=0.05):
                if self.stop.is_set():
                    return
            frame = self.captured.get()
            if frame is END:
                break
            self.prepared.put(self.engine.prepare(frame))
        self.prepared.put(END)

    def _infer(self) -> None:
        governor = self.engine.governor
        busy_s, next_sample = 0.0, time.perf_counter()
        while (prepared := self.prepared.get()) is not END:
            self._buffer_free.release()
            start = time.perf_counter()
            matted = self.engine.infer(prepared)
            self.stats.stages(matted.timings)
            if governor is not None:
                now = time.perf_counter()
                busy_s += now - start
                governor.frame_cost((now - start) * 1e3, model=prepared.keyframe, level=prepared.level)
                if now >= next_sample:
                    next_sample = now + WINDOW_S / 2
                    change = governor.update(Sample(now, self.stats.frames_in, self.stats.dropped_total, busy_s,
                                                    time.process_time(), self.stats.recent_latency_p95()))
                    if change is not None:
                        log.info("level: %s (%s)", change.level, change.reason)
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
