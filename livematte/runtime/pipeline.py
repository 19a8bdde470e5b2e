"""The pipeline's threads, for live use and for offline files.

Every frame through the model (offline, stills, ``live --adapt off``)::

    capture thread --frames--> prepare thread --prepared(1)--> infer thread --matted--> caller's thread
    (decode / camera)          (resize, layout)                (model, smoothing,        (livematte.runtime.output:
                                                                 refine)                   composite, sink,
                                                                                           alpha-out, stats)

The one-slot hand-off between prepare and infer is the double buffer: frame N+1 is prepared
while the model runs on frame N. The prepare thread takes a frame only once that slot is free
(``_buffer_free``), so it always prepares the newest frame and never holds a second one.

Live with a governor, the model on its own thread::

    capture thread --frames--> frame thread --moved(2)--> finish thread -------matted--> caller's thread
                               |  ^ (motion: the newest    (refine, foreground,
                  newest frame v  |  result moved to        despill: every frame
                               model thread  every frame)   on its own picture)
                               (the governor's level; its
                               recurrent state and smoothing)

The frame thread posts each frame to the model thread (newest wins) and moves the newest result
that has landed to it; the finish thread finishes it on the frame's own picture (on one core the
frame thread does both: a thread more there only queues). No frame waits for a model call, except
at a level whose keyframes wait (:class:`~livematte.runtime.governor.Level`): there the frame the
model takes waits for its own result, up to the governor's give-up time after its capture, and
the frames between are moved from it. The frames before a stream's first result has landed are
dropped: there is no matte for them yet. The model thread takes the newest frame whenever it is
free and the level's stride allows, or early when the flow could not explain a frame (within the
level's rate: :func:`call_slot`; not where keyframes wait: there it takes only a keyframe, which
waits for it); on one core it runs at a
lower priority (``MODEL_NICE``), so the frames go first and the model takes what is left.

Live pipelines use small fresh-frame buffers for ``captured`` and ``matted`` (a frame that has
waited longer than ``max_lag`` is dropped, never processed late); offline pipelines use bounded
queues (back-pressure, nothing dropped, order kept), each bounded in bytes as well as in frames
(:data:`QUEUE_BYTES`), so that large pictures do not pile up. The caller's thread owns the stop
event: any worker's exception stops every stage and is re-raised to the caller, which takes the
matted frames with :meth:`Pipeline.next` (:func:`livematte.runtime.output.output_loop`;
:func:`livematte.runtime.run.run` wires a whole run).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

import cv2
import numpy as np

from ..machine import available_cores
from .engine import Engine
from ..frames import Frame, Matted
from .governor import LATENCY_SETTLE_S, WINDOW_S, Level, Sample
from .stats import Stats
from .workers import (END, Channel, FreshBuffer, Latest, Stopped, Worker, first_error, join_all, lower_priority,
                      return_freed_pictures, thread_cpu_s)

log = logging.getLogger(__name__)

# The bytes of pictures an offline hand-off may hold besides its ``depth`` of frames: a 4K frame
# with its float32 matte and foreground is nine times a 720p one, so a depth that costs little at
# 720p would hold hundreds of MB at 4K. A bigger item still goes, alone.
QUEUE_BYTES = 64 * 2**20

# The model thread's niceness (Linux): on a core the frames and the model both want, the frame
# thread, capture and the output go first and the model's calls stretch instead of the frames.
# On one core the frames' work is most of it, and a model at 5 still took a quarter of the core
# from them (39 of 282 frames of s18 dropped). With more cores the model has one mostly to itself,
# at the frames' priority: a keyframe that waits for its call waits for it alone. (Nice 5, the
# value before keyframes could wait, was tried again and did no better: README, Quality live. With
# every level waiting on one core, nice 0 was tried: a call whose keyframe had given up then took
# the core from the frames; nine clips, interleaved, MAD 9.86 and 30 frames dropped, against 8.67
# and 14 at nice 10.)
MODEL_NICE = {1: 10}
MODEL_NICE_MANY_CORES = 0


@dataclass(frozen=True, slots=True)
class ModelRequest:
    """A frame offered to the model thread: its grey at the motion's size, its stream (epoch),
    whether the flow could not explain the frame before it (the model should take it at once), and
    whether the frame thread waits for its result (a keyframe, at a level whose keyframes wait)."""

    frame: Frame
    grey: np.ndarray
    epoch: int
    urgent: bool
    waited_for: bool = False


def model_takes(last: tuple[int, int] | None, index: int, epoch: int, urgent: bool, level: Level) -> bool:
    """Whether the model, free, takes frame ``index`` of stream ``epoch`` at ``level``: the first
    frame, a new stream's, one ``level.stride`` frames on from the last call's slot ``last`` (its
    frame index, epoch: :func:`call_slot`), or, early, one after a frame the flow could not explain
    (``urgent``), except where keyframes wait: there the next keyframe is at most a stride away and
    gets its own result, and an urgent frame waiting too would make every frame of a fast swing
    wait for a call. The live pipeline's rule, and the schedule's (:mod:`livematte.runtime.schedule`)."""
    return _stride_up(last, index, epoch, level) or (urgent and not level.waits and index > last[0])


def call_slot(last: tuple[int, int] | None, index: int, epoch: int, level: Level) -> tuple[int, int]:
    """The slot (frame index, epoch) that a call taking frame ``index`` fills, which the next
    call's stride counts from (:func:`model_takes`): its own frame, or, for an urgent call taken
    before its stride was up, the frame it was due at. An urgent call comes earlier, never in
    addition: over a fast swing the calls keep the level's rate, one a stride, which its CPU is
    priced at. (Urgent calls that ignored the stride took 288 px every third or fourth frame to
    145-154 % of a 100 % budget over clip04's fast swing: README, Quality live.)"""
    if _stride_up(last, index, epoch, level):
        return index, epoch
    return last[0] + level.stride, epoch


def _stride_up(last: tuple[int, int] | None, index: int, epoch: int, level: Level) -> bool:
    """Whether frame ``index`` of stream ``epoch`` is the first, a new stream's, or ``level.stride``
    frames on from the slot ``last`` (:func:`call_slot`)."""
    return last is None or epoch != last[1] or index >= last[0] + level.stride


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
        self.matted = FreshBuffer(self.stop) if live else self._queue(depth)
        self._unmatted = 0  # frames that came before their stream's first result (live, the model on its thread)
        if live:
            stats.count_dropped_by(lambda: self.captured.replaced + self.matted.replaced + self._unmatted)
        # The model on its own thread: live, with a governor to choose its level.
        self.asynchronous = live and engine.governor is not None
        if self.asynchronous:
            self.requests, self.results = Latest(self.stop), Latest(self.stop)
            self._model_worker = Worker("model", self._model, self.stop)
            # The model thread's: the (frame index, epoch) of the call it is on (None when free),
            # and of its last call's slot (:func:`call_slot`).
            self._model_on: tuple[int, int] | None = None
            self._last_call: tuple[int, int] | None = None
            # Frame thread to finish thread (two cores or more): moved planes, in order, two at
            # most (back-pressure). On one core the frame thread finishes its frames itself:
            # another thread there adds its queue to the latency and runs nothing beside it.
            self.moved = Channel(self.stop, 2) if available_cores() >= 2 else None
            self._finish_busy_s = 0.0  # the finish thread's seconds at work
            self.workers = [Worker("capture", self._capture, self.stop), Worker("frames", self._frames, self.stop),
                            *([Worker("finish", self._finish, self.stop)] if self.moved is not None else []),
                            self._model_worker]
            self._channels = [self.captured, self.requests, self.results,
                              *([self.moved] if self.moved is not None else []), self.matted]
        else:
            self.prepared = Channel(self.stop, 1)
            self._buffer_free = threading.Semaphore(1)
            self.workers = [Worker("capture", self._capture, self.stop),
                            Worker("prepare", self._prepare, self.stop),
                            Worker("infer", self._infer, self.stop)]
            self._channels = [self.captured, self.prepared, self.matted]
        self._output_thread = threading.current_thread()  # the caller's: it composites and sends
        self._output_cpu_start: float | None = None  # its CPU seconds when the pipeline started
        self._runtime_cpu_s = 0.0  # the model runtime's own threads' (the model thread's alone writes it)

    def _queue(self, depth: int) -> Channel:
        """An offline hand-off: up to ``depth`` frames and :data:`QUEUE_BYTES` of pictures."""
        return Channel(self.stop, depth, QUEUE_BYTES, picture_bytes)

    def __enter__(self):
        if self.engine.governor is not None:
            self.engine.governor.begin(time.perf_counter())
        self._output_cpu_start = thread_cpu_s(self._output_thread)
        for worker in self.workers:
            worker.start()
        if self._output_cpu_start is not None:
            self.stats.count_threads_cpu_by(self.threads_cpu_s)
        return self

    def __exit__(self, exc_type, exc, tb):
        self.close()
        return False

    def close(self) -> None:
        self.stop.set()
        join_all(self.workers, self._channels)
        if self._output_cpu_start is not None:
            self.stats.add_threads_cpu(self.threads_cpu_s())
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
        while (prepared := self.prepared.get()) is not END:
            self._buffer_free.release()
            matted = self.engine.infer(prepared)
            self.stats.stages(matted.timings)
            self.matted.put(matted)
        self.matted.put(END)

    def _frames(self) -> None:
        """Every frame: offered to the model, the newest result moved to it (see the module doc)."""
        engine, governor = self.engine, self.engine.governor
        epoch, urgent = 0, False
        busy_s, waited_s, next_sample = 0.0, 0.0, time.perf_counter()
        latency_since = next_sample + LATENCY_SETTLE_S  # the frames whose latency the governor reads
        unmatted = None  # the last frame dropped for want of its stream's first result, with its grey
        while (frame := self.captured.get()) is not END:
            start = time.perf_counter()
            if frame.restart:
                epoch += 1
                engine.tracker.reset()
            grey = engine.motion_grey(frame.image)
            keyframe = self._is_keyframe(frame, epoch, urgent)
            self.requests.put(ModelRequest(frame, grey, epoch, urgent, keyframe))
            waited = 0.0
            if keyframe:
                waited, landed = self._wait_for_own(frame, grey, epoch)
                self.stats.keyframe(gave_up=not landed)
            waited_s += waited
            result = self.results.peek(lambda landed: landed.epoch == epoch)
            if result is None:
                # The stream's first call has not landed: nothing to matte this frame with. Its
                # motion is kept, so the first result is followed to the frames after it.
                engine.tracker.see(frame.index, grey)
                self._unmatted += 1
                unmatted = (frame, grey)
                busy_s += time.perf_counter() - start
                continue
            unmatted = None
            moved, urgent = engine.move(frame, grey, result, start)
            if waited:
                moved.timings["wait_model"] = waited * 1e3
            now = time.perf_counter()
            busy_s += now - start
            if now >= next_sample:
                next_sample = now + WINDOW_S / 2
                change = governor.update(Sample(now, self.stats.frames_in, self.stats.dropped_total, busy_s,
                                                self.matte_cpu_s(), self.model_cpu_s(),
                                                self.stats.recent_latency_p95(since=latency_since),
                                                self.stats.recent_age_p95(), waited_s, self._finish_busy_s))
                if change is not None:
                    latency_since = now + LATENCY_SETTLE_S
                    log.info("level: %s (%s)", change.level, change.reason)
            busy_s += self._hand_on(moved)
        if unmatted is not None:
            # The source ended before its stream's first result landed (a run of a few frames): its
            # last frame waits for it, so that the run has at least that frame.
            result = self.results.get(lambda landed: landed.epoch == epoch)
            if result is not END:
                self._unmatted -= 1
                self._hand_on(engine.move(*unmatted, result)[0])
        self.requests.close()
        (self.moved if self.moved is not None else self.matted).put(END)

    def _hand_on(self, moved) -> float:
        """A moved frame to the finish thread, or (one core) finished on this one; -> the seconds
        this thread spent finishing it."""
        if self.moved is not None:
            self.moved.put(moved)
            return 0.0
        return self._finish_one(moved)

    def _finish(self) -> None:
        """The finish thread: every moved frame, in order (see :meth:`_finish_one`)."""
        while (moved := self.moved.get()) is not END:
            self._finish_busy_s += self._finish_one(moved)
        self.matted.put(END)

    def _finish_one(self, moved) -> float:
        """A moved frame finished on its own picture and handed to the output; -> seconds it took."""
        start = time.perf_counter()
        matted = self.engine.finish(moved)
        self.stats.stages(matted.timings)
        self.matted.put(matted)
        return time.perf_counter() - start

    def _is_keyframe(self, frame: Frame, epoch: int, urgent: bool) -> bool:
        """Whether ``frame`` is a keyframe that waits for its own result: the level's keyframes
        wait, the model is free and the stride lets it take this frame. A frame that comes while
        the model is still on a call is not one, and the model does not take it later (``ready``
        in :meth:`_model`): on one core a call no frame waits for runs in what the frames leave of
        the core, and its result lands so late that the next keyframe finds the model busy again
        (live, after the first second's keyframes gave up: 288 px calls of 107-178 ms, results
        4-12 frames old, where a waited-for call took 25-50 ms)."""
        level = self.engine.governor.level
        return level.waits and self._model_on is None and model_takes(self._last_call, frame.index, epoch,
                                                                      urgent, level)

    def _wait_for_own(self, frame: Frame, grey: np.ndarray, epoch: int) -> tuple[float, bool]:
        """A keyframe (:meth:`_is_keyframe`) waits until its own result lands or until the
        governor's give-up time after its capture; -> (the seconds waited, whether it landed). The
        frame's motion step is measured first, beside the call, for the frames after it."""
        self.engine.tracker.see(frame.index, grey)
        start = time.perf_counter()
        landed = self.results.get(lambda result: result.epoch == epoch and result.index >= frame.index,
                                  until=frame.captured_at + self.engine.governor.give_up_s())
        return time.perf_counter() - start, landed is not None

    def _model(self) -> None:
        """The newest frame the level allows, through the model; each result published as it lands.
        ``_model_on`` and ``_last_call`` tell the frame thread which frame it is on, and the slot
        its last call filled (:func:`call_slot`)."""
        lower_priority(MODEL_NICE.get(available_cores(), MODEL_NICE_MANY_CORES))
        engine, governor = self.engine, self.engine.governor
        slot = None  # the call's (call_slot)

        def ready(request: ModelRequest) -> bool:
            nonlocal slot
            level = governor.level
            takes = ((request.waited_for or not level.waits)
                     and model_takes(self._last_call, request.frame.index, request.epoch, request.urgent, level))
            if takes:  # marked under the requests' lock: a frame posted after this sees the model busy
                self._model_on = (request.frame.index, request.epoch)
                slot = call_slot(self._last_call, request.frame.index, request.epoch, level)
            return takes

        while (request := self.requests.get(ready, take=True)) is not END:
            level = governor.level
            wall, cpu = time.perf_counter(), time.thread_time()
            result = engine.model_call(request.frame, request.grey, level, request.epoch)
            wall_ms, cpu_ms = (time.perf_counter() - wall) * 1e3, (time.thread_time() - cpu) * 1e3
            # The runtime's own threads of a wide call are busy (working or spinning) all through
            # the network's run, and no thread of ours: counted at its length (OpenVINO, RVM 384 px
            # on two threads: 58.7 ms of process CPU against 30.2 + 30.2), not through the
            # smoothing after it (~3 ms a call).
            runtime_ms = engine.extra_threads(level) * result.model_ms
            cpu_ms += runtime_ms
            self._runtime_cpu_s += runtime_ms / 1e3
            governor.model_cost(level, wall_ms, cpu_ms)
            self.stats.model_call({"model": result.model_ms, "smoothing": result.smoothing_ms})
            # Free before the result is out: a frame thread woken by it sees the model free.
            self._last_call, self._model_on = slot, None
            self.results.put(result)
        self.results.close()

    def threads_cpu_s(self) -> dict[str, float]:
        """CPU seconds by thread since this pipeline started: each worker's (the model's with its
        runtime's own threads) and the output's (the caller's thread, which composites and sends);
        {} where the platform cannot tell."""
        seconds = {}
        for worker in self.workers:
            value = thread_cpu_s(worker)
            if value is None:
                return {}
            seconds[worker.role] = value
        if self.asynchronous:
            seconds["model"] += self._runtime_cpu_s
        output = thread_cpu_s(self._output_thread)
        if output is None or self._output_cpu_start is None:
            return {}
        seconds["output"] = output - self._output_cpu_start
        return seconds

    def model_cpu_s(self) -> float:
        """CPU seconds of the model: its thread's and its runtime's own threads' (wide calls)."""
        return (thread_cpu_s(self._model_worker) or 0.0) + self._runtime_cpu_s

    def matte_cpu_s(self) -> float:
        """CPU seconds of the matte's threads: capture, the pipeline's, the output's (which
        composites) and the model runtime's own; not the encoders', which run on threads of their
        own (:meth:`threads_cpu_s`, summed). Where the platform cannot tell a thread's CPU time, the
        whole process's."""
        threads = self.threads_cpu_s()
        return sum(threads.values()) if threads else time.process_time()


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
