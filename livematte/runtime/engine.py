"""Frame in, matted frame out: model, temporal smoothing, refinement, and the finishing
(:mod:`livematte.matte.finishing`: main person, edge controls, foreground colours, despill).

Two ways to run it:

- **Every frame through the model** (offline, stills, ``live --adapt off``): ``prepare`` runs on
  its own thread for the next frame while ``infer`` runs the model on the current one (the double
  buffer).
- **The model on its own thread** (live, with a governor): ``model_call`` (the model thread)
  takes the newest frame whenever the model is free and the governor's level allows, and returns
  its smoothed result; ``move`` (the frame thread) moves the newest result that has landed to
  every frame along the optical flow from that result's frame to this one
  (:class:`livematte.matte.motion.Tracker`), and ``finish`` (the finish thread) finishes it on
  the frame's own full-resolution picture (``finish_frame`` does both). Every frame has a matte
  of its own; a frame waits for a model call only where the governor's level has keyframes
  wait for their own results.

Each method keeps its own state across frames and must be called in frame order from one thread:
``prepare`` none; ``infer`` and ``model_call`` the model's recurrent state, the smoother's past
(the two are never used in one run); ``move`` the tracker's frames; ``infer`` and ``finish``
the finishing's state.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from ..assets import sample_portrait
from ..frames import Frame, GuidedMatte, Matted
from ..matte.finishing import CompositeSettings, Finisher
from .governor import Governor, Level
from ..models.base import Matter, resize_to, scaled_size
from ..matte.motion import FLOW_SIDE, MISMATCH_SHARE, Tracker, flow_at, grey_of, warp
from ..matte.refine import guide
from ..matte.smoothing import SmoothingSettings, TemporalSmoother

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Prepared:
    """A frame with its model input ready (every-frame runs).

    model_input: the backend's input for the frame resized to the model's size, then padded up to
    the backend's ``min_side``. guide: ``float32 [h, w]``, the mean of R, G, B in 0..1 at that
    size, without the padding: its shape is the region of the model's output that belongs to the
    frame (and it serves scene cuts, and the coarse matte of a :class:`GuidedMatte`); full_guide:
    the same at the frame's size, for backends whose matte is finished there (None otherwise).
    """

    frame: Frame
    model_input: Any
    guide: np.ndarray
    full_guide: np.ndarray | None
    prepare_ms: float
    ready_at: float  # perf_counter() when prepared: the wait for the model starts here


@dataclass(frozen=True, slots=True)
class ModelResult:
    """A model call's smoothed result, from which the frames after its input are finished (live).

    index: the index of the frame it was made from; epoch: that frame's stream (the frame thread
    counts the source's restarts; a result of another epoch is another picture). grey: that frame's
    grey, ``uint8 [h, w]`` at :data:`~livematte.matte.motion.FLOW_SIDE`, what later frames' flows
    are measured against. planes: ``float32 [k, h, w]`` at the network's output size without the
    padding: the alpha (k = 1), or a :class:`GuidedMatte`'s a, b (k = 2) and its colour
    coefficients (k = 8). level: the governor's level it was made at (``level.model`` names the
    backend). model_ms, smoothing_ms: the call's and the smoothing's wall ms. stream: the count of
    streams the engine's model has started (a new epoch, size or model, a scene cut): the frame
    thread starts its finishing afresh with a result of a new stream.
    """

    index: int
    epoch: int
    stream: int
    grey: np.ndarray
    planes: np.ndarray
    level: Level
    model_ms: float
    smoothing_ms: float


@dataclass(frozen=True, slots=True)
class Moved:
    """A frame with the newest result moved to it (live): from the frame thread to the finish thread.

    planes: as in :class:`ModelResult`, at this frame's place; model: the backend's name in the
    engine (``level.model``); stream: the result's :attr:`ModelResult.stream`; age: frames from the
    result's input to this frame; timings: the frame thread's ms (wait_capture, motion, and
    wait_model where the frame waited for its own result).
    """

    frame: Frame
    planes: np.ndarray
    model: str
    stream: int
    age: int
    timings: dict[str, float]


@dataclass(frozen=True)
class WaitingModel:
    """A second copy of the configured model on ``threads`` runtime threads, for the calls of the
    keyframes that wait for them (live): such a keyframe's frames wait with it, so its call has
    the cores mostly to itself (``assembly.WAITING_MODEL_THREADS``). Its recurrent state is the
    configured model's: the two take turns in one stream."""

    matter: Matter
    threads: int


class Engine:
    """composite: the finishing's settings. governor: chooses the model's level (live: the model on
    its own thread); None runs the model on every frame at the backend's own size (offline,
    stills). fallback: the model of the governor's fallback rung (a level whose ``model`` is its name).
    waiting: the copy that calls the keyframes that wait (the governor's ``wide_waits``), or None."""

    def __init__(self, matter: Matter, smoothing: SmoothingSettings = SmoothingSettings(),
                 refine: str = "bilinear", composite: CompositeSettings = CompositeSettings(),
                 governor: Governor | None = None, fallback: Matter | None = None,
                 waiting: WaitingModel | None = None):
        if waiting is not None and (governor is None or not governor.wide_waits):
            raise ValueError("a waiting keyframes' model needs a governor that prices it (wide_waits)")
        self.matter = matter
        self.waiting = waiting
        self.refine = refine
        self.governor = governor
        # By a level's ``model``: "" is the configured model.
        self.matters: dict[str, Matter] = {"": matter, **({fallback.name: fallback} if fallback else {})}
        self.smoother = TemporalSmoother(smoothing)
        self.finisher = Finisher(composite)
        self._stream = ""  # the model of the stream running now (its state, the smoother's past)
        self._epoch = 0  # model_call's: the epoch of the stream running now
        self.state = matter.initial_state()
        self._input_shape: tuple[int, int] | None = None  # the last model input's guide shape, (h, w)
        self._streams = 0  # streams started by the model calls (ModelResult.stream)
        self.tracker = Tracker() if governor is not None else None  # move's
        self._finished_stream = 0  # finish's: the stream of the last result it finished from

    def reset(self) -> None:
        """Forget the past: a new stream or a scene cut."""
        self.state = self.matters[self._stream].initial_state()
        self.smoother.reset()
        self.finisher.reset()

    # -- every frame through the model ----------------------------------------------------------

    def prepare(self, frame: Frame) -> Prepared:
        start = time.perf_counter()
        image = frame.image
        matter = self.matter
        small = resize_to(image, matter.input_size(image.shape[1], image.shape[0]), matter.antialias)
        # Both guides are made here, beside the running model, not on its thread.
        full_guide = guide(image) if matter.guided else None
        model_input = matter.prepare(pad_to(small, matter.min_side))
        done = time.perf_counter()
        return Prepared(frame, model_input, guide(small), full_guide, (done - start) * 1e3, done)

    def infer(self, prepared: Prepared) -> Matted:
        t0 = time.perf_counter()
        streams = self._streams
        planes, model_ms, smoothing_ms = self._call("", prepared.model_input, prepared.guide, prepared.frame.restart)
        if self._streams != streams:
            self.finisher.reset()
        timings = {**_waits(prepared, t0), "model": model_ms, "smoothing": smoothing_ms}
        return self._finish(prepared.frame, planes, self.matter, prepared.full_guide, timings, age=0)

    def process(self, frame: Frame) -> Matted:
        """Both steps on the calling thread (stills, tests, the serial baseline)."""
        return self.infer(self.prepare(frame))

    # -- the model on its own thread (live) -----------------------------------------------------

    def motion_grey(self, image: np.ndarray) -> np.ndarray:
        """``uint8 [H, W, 3]`` -> its grey at the motion's size (:data:`FLOW_SIDE`), ``uint8 [h, w]``."""
        return grey_of(resize_to(image, scaled_size(image.shape[1], image.shape[0], FLOW_SIDE)))

    def model_call(self, frame: Frame, grey: np.ndarray, level: Level, epoch: int) -> ModelResult:
        """The model thread's work for one frame at ``level``: resized, run, smoothed -> its result.
        ``grey``: the frame's :meth:`motion_grey`; ``epoch``: its stream (a new epoch, a new size
        or another model starts a new stream)."""
        matter = self._matter_for(level)
        image = frame.image
        small = resize_to(image, matter.input_size(image.shape[1], image.shape[0], level.size), matter.antialias)
        model_input = matter.prepare(pad_to(small, matter.min_side))
        new_stream = epoch != self._epoch
        self._epoch = epoch
        planes, model_ms, smoothing_ms = self._call(level.model, model_input, guide(small), new_stream, matter)
        return ModelResult(frame.index, epoch, self._streams, grey, planes, level, model_ms, smoothing_ms)

    def extra_threads(self, level: Level) -> int:
        """The model's runtime threads at ``level`` besides the calling one: busy, working or
        spinning, for the whole call, and not in the calling thread's CPU time."""
        return self.waiting.threads - 1 if self._on_copy(level) else 0

    def _matter_for(self, level: Level) -> Matter:
        """The backend that calls ``level``: the waiting copy, or the level's model."""
        return self.waiting.matter if self._on_copy(level) else self.matters[level.model]

    def _on_copy(self, level: Level) -> bool:
        """Whether ``level``'s calls run on the waiting copy: where the governor prices them as
        its (:meth:`Governor.wide`)."""
        return self.waiting is not None and self.governor.wide(level)

    def finish_frame(self, frame: Frame, grey: np.ndarray, result: ModelResult) -> tuple[Matted, bool]:
        """:meth:`move` then :meth:`finish` on the calling thread -> (its Matted, whether the flow
        left the frame unexplained)."""
        moved, unexplained = self.move(frame, grey, result)
        return self.finish(moved), unexplained

    def move(self, frame: Frame, grey: np.ndarray, result: ModelResult, started: float | None = None
             ) -> tuple[Moved, bool]:
        """The frame thread's work for one frame: ``result`` (the newest landed, of the frame's
        epoch) moved to it along the flow -> (the planes at the frame's place, whether the flow
        left the frame unexplained: the model should take the next frame it can). ``started``:
        ``perf_counter()`` when the frame thread took the frame (its wait for capture ends there)."""
        t0 = time.perf_counter()
        flow, unexplained = self.tracker.to_result(frame.index, grey, result.index, result.grey)
        planes = result.planes if flow is None else warp(result.planes, flow_at(flow, result.planes.shape[1:]))
        timings = {"wait_capture": ((started or t0) - frame.captured_at) * 1e3,
                   "motion": (time.perf_counter() - t0) * 1e3}
        moved = Moved(frame, planes, result.level.model, result.stream, frame.index - result.index, timings)
        return moved, unexplained > MISMATCH_SHARE

    def finish(self, moved: Moved) -> Matted:
        """The finish thread's work for one frame: its moved planes finished on its full-resolution
        picture (refinement, then :class:`Finisher`) -> its Matted."""
        if moved.stream != self._finished_stream:  # another picture, or another model's matte
            self._finished_stream = moved.stream
            self.finisher.reset()
        # No whole guide here: a guided backend makes it band by band as it applies its coefficients.
        return self._finish(moved.frame, moved.planes, self.matters[moved.model], None, moved.timings, age=moved.age)

    # -- shared -------------------------------------------------------------------------------

    def _call(self, model: str, model_input: Any, small_guide: np.ndarray, new_stream: bool,
              matter: Matter | None = None) -> tuple[np.ndarray, float, float]:
        """One model call of ``model`` (on ``matter``, a copy of it, where given) and the smoothing ->
        (``float32 [k, h, w]`` planes, as in :class:`ModelResult`; model ms; smoothing ms)."""
        t0 = time.perf_counter()
        matter = matter or self.matters[model]
        # A restarted source, a new input size or another model starts a new stream: RVM's
        # recurrent state has the old size's shape (OpenVINO refuses it) and the smoother's
        # past is another picture, or another model's planes.
        new_stream = new_stream or small_guide.shape != self._input_shape or model != self._stream
        self._input_shape, self._stream = small_guide.shape, model
        if new_stream or self.smoother.is_cut(small_guide):
            # Not the finishing: it belongs to the thread that finishes the frames, which starts it
            # afresh when it sees this stream's first result.
            self.state = matter.initial_state()
            self.smoother.reset()
            self.smoother.is_cut(small_guide)  # remember this frame as the new stream's first
            self._streams += 1
        matte, self.state = matter.infer(model_input, self.state)
        if isinstance(matte, GuidedMatte) and not self.finisher.settings.wants_colour:
            matte = GuidedMatte(matte.a, matte.b)  # colour coefficients nobody uses: not smoothed
        matte = crop(matte, *small_guide.shape)
        t1 = time.perf_counter()
        if isinstance(matte, GuidedMatte):
            # The coefficients are smoothed with the weights their coarse matte earns; the
            # backend then applies them to each frame's own full-resolution guide. The coarse
            # matte is not clipped: where it saturates, a clipped gate would see no change and
            # hold old coefficients that still move the full-resolution edge (more flicker: README,
            # Measurements behind the code).
            # The colour coefficients, when present, are mixed with the same weights.
            coarse = matte.a * small_guide + matte.b
            planes = [coarse[None], matte.a[None], matte.b[None]]
            if matte.colour_a is not None:
                planes += [matte.colour_a, matte.colour_b]
            planes = self.smoother.apply(np.concatenate(planes))[1:]
        else:
            planes = self.smoother.apply(np.clip(matte, 0.0, 1.0))[None]
        return planes, (t1 - t0) * 1e3, (time.perf_counter() - t1) * 1e3

    def _finish(self, frame: Frame, planes: np.ndarray, matter: Matter, full_guide: np.ndarray | None,
                timings: dict[str, float], age: int) -> Matted:
        """``planes`` (as in :class:`ModelResult`, at this frame's place) finished on the frame's picture."""
        matte = _guided(planes) if matter.guided else planes[0]
        t0 = time.perf_counter()
        full = matter.finish(matte, frame.image, full_guide, self.refine)
        timings["refine"] = (time.perf_counter() - t0) * 1e3
        alpha, colours = self.finisher.apply(frame.image, full, matte, timings, segmentation=matter.segmentation)
        return Matted(frame, alpha, timings, colours, reused=age > 0, result_age=age)

    def warm_up(self, width: int, height: int, runs: int = 3, composite=None, capture_ms: float = 0.0) -> float:
        """Run the model on blank frames of the stream's size, at every size and model the
        governor may ask for, then forget them; -> seconds spent. Call before the threads start.

        The first calls for a new input shape are several times slower (kernel
        selection, memory plans); a live source that is already playing would
        drop its first frames while they run.

        With a governor, the last call's costs at each level, the rest of a frame's work and
        ``composite(image, alpha)`` (the output's, when given) calibrate its start
        (:meth:`Governor.calibrate`), with ``capture_ms``, the source's CPU ms a frame
        (``capture_cost_ms()``).
        """
        start = time.perf_counter()
        blank = np.full((height, width, 3), 128, np.uint8)
        levels = [None] if self.governor is None else self.governor.cost_levels()
        costs: dict[Level, tuple[float, float]] = {}
        for level in levels:
            matter = self._matter_for(level) if level is not None else self.matter
            small = resize_to(blank, matter.input_size(width, height, level and level.size))
            model_input = matter.prepare(pad_to(small, matter.min_side))
            calls = []
            for _ in range(runs):
                wall, cpu = time.perf_counter(), time.process_time()
                matter.infer(model_input, matter.initial_state())
                calls.append(((time.perf_counter() - wall) * 1e3, (time.process_time() - cpu) * 1e3))
            # The quickest call after the first, which pays for first calls: contention (the
            # source's decoder starting beside it) only adds, and one slow call priced 384 px
            # at 70 ms against 43-47 in the runs before and after it.
            costs[level] = min(calls[1:] or calls)
        # The rest of a frame's work, at the top level, then the output's share: the least of three
        # frames after a first (which pays for first calls; contention only adds), of a person,
        # whose matte is soft only at her edge (a blank frame's is soft all over, and its
        # foreground colours cost far more than a real frame's). Timed by the clock, not the
        # process's CPU time: the source's decoder may already be at work on its own threads, and
        # this work runs on this one.
        person = _warm_up_picture(width, height)
        # Per frame, without the model: the busier of the frame and finish threads' ms, the whole
        # frame's with the output's, and the frame thread's (motion).
        rests = []
        if self.governor is None:
            self.process(Frame(-1, person, 0.0, time.perf_counter()))
        else:
            top = self.governor.levels[0]
            result = self.model_call(Frame(-1, person, 0.0, 0.0), self.motion_grey(person), top, epoch=-1)
            for k in range(4):
                start_frame = time.perf_counter()
                moved, _ = self.move(Frame(k, person, 0.0, start_frame), self.motion_grey(person), result)
                moved_at = time.perf_counter()
                matted = self.finish(moved)
                finished_at = time.perf_counter()
                if composite is not None:
                    composite(person, matted.alpha)
                move_ms, finish_ms = (moved_at - start_frame) * 1e3, (finished_at - moved_at) * 1e3
                rests.append((max(move_ms, finish_ms), (time.perf_counter() - start_frame) * 1e3, move_ms))
            self.tracker.reset()
        self.reset()
        if self.governor is not None:
            self.governor.calibrate(costs, tuple(max(0.0, min(figures)) for figures in zip(*rests[1:])),
                                    capture_ms=capture_ms)
        return time.perf_counter() - start


def _warm_up_picture(width: int, height: int) -> np.ndarray:
    """``uint8 [height, width, 3]`` BGR: livematte's sample portrait standing at the bottom centre
    of a plain wall, nine tenths of the frame's height."""
    picture = np.full((height, width, 3), (170, 180, 190), np.uint8)
    portrait = sample_portrait()
    scale = min(0.9 * height / portrait.shape[0], width / portrait.shape[1])
    w, h = max(1, round(portrait.shape[1] * scale)), max(1, round(portrait.shape[0] * scale))
    x, y = (width - w) // 2, height - h
    picture[y:, x:x + w] = cv2.resize(portrait, (w, h), interpolation=cv2.INTER_AREA)
    return picture


def _waits(prepared: Prepared, infer_start: float) -> dict[str, float]:
    """A frame's ms before the infer thread took it: waiting for capture, preparing, waiting for the model."""
    return {"wait_capture": (prepared.ready_at - prepared.frame.captured_at) * 1e3 - prepared.prepare_ms,
            "prepare": prepared.prepare_ms, "wait_model": (infer_start - prepared.ready_at) * 1e3}


def _guided(planes: np.ndarray) -> GuidedMatte:
    """``[2, h, w]`` (a, b) or ``[8, h, w]`` (a, b, colour_a, colour_b) -> a GuidedMatte."""
    if len(planes) > 2:
        return GuidedMatte(planes[0], planes[1], planes[2:5], planes[5:8])
    return GuidedMatte(planes[0], planes[1])


def pad_to(image: np.ndarray, min_side: int) -> np.ndarray:
    """``uint8 [h, w, 3]`` -> ``[max(h, min_side), max(w, min_side), 3]``, the edge pixels repeated
    below and to the right (so :func:`crop` keeps the top-left); a no-op returns the same array."""
    height, width = image.shape[:2]
    bottom, right = max(0, min_side - height), max(0, min_side - width)
    if not (bottom or right):
        return image
    return cv2.copyMakeBorder(image, 0, bottom, 0, right, cv2.BORDER_REPLICATE)


def crop(matte: np.ndarray | GuidedMatte, height: int, width: int) -> np.ndarray | GuidedMatte:
    """A model's output (an alpha or both planes of a GuidedMatte) without what :func:`pad_to` added."""
    if isinstance(matte, GuidedMatte):
        colour = () if matte.colour_a is None else (matte.colour_a[:, :height, :width], matte.colour_b[:, :height, :width])
        return GuidedMatte(matte.a[:height, :width], matte.b[:height, :width], *colour)
    return matte[:height, :width]
