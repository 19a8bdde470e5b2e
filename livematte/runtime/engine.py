"""Frame in, matted frame out: model, temporal smoothing, refinement, and the finishing
(:mod:`livematte.matte.finishing`: main person, edge controls, foreground colours, despill).

``prepare`` runs on its own thread for the next frame while ``infer`` runs the model on
the current one (the double buffer). Each keeps its own state across frames and must be
called in frame order from one thread: ``prepare`` the last keyframe's picture (for motion)
and the count since it, ``infer`` the model's recurrent state, the smoother's past and
the last keyframe's result.

With a governor (live), ``prepare`` asks it for the level (network size, model-call
stride, and model: the configured one or a fast fallback) and makes each frame a keyframe,
which gets a model call, or a reused frame, which gets the keyframe's result moved along
the optical flow to it (:mod:`livematte.matte.motion`) and finished on its own full-resolution
picture: every frame has a matte of its own. A change of model starts a new stream.
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
from ..matte.motion import FLOW_SIDE, MISMATCH_SHARE, MotionEstimator, flow_at, grey_of, warp
from ..matte.refine import guide
from ..matte.smoothing import SmoothingSettings, TemporalSmoother

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Prepared:
    """A frame with its model input ready.

    model_input: the backend's input for the frame resized to ``input_size``, then padded up to
    the backend's ``min_side``; None for a reused frame. guide: ``float32 [h, w]``, the mean of
    R, G, B in 0..1 at ``input_size``, without the padding: its shape is the region of the
    model's output that belongs to the frame (and it serves scene cuts, and the coarse matte
    of a :class:`GuidedMatte`); full_guide: the same at the frame's size, for backends whose
    matte is finished there (None otherwise). flow: for a reused frame, ``float32 [h, w, 2]``
    from each of its pixels to where it was in the keyframe (None for a keyframe).
    level: the governor's level it was prepared at (None without a governor: the configured
    model at its own size).
    """

    frame: Frame
    model_input: Any
    guide: np.ndarray
    full_guide: np.ndarray | None
    prepare_ms: float
    ready_at: float  # perf_counter() when prepared: the wait for the model starts here
    flow: np.ndarray | None = None
    level: Level | None = None

    @property
    def keyframe(self) -> bool:
        return self.model_input is not None


class Engine:
    """composite: the finishing's settings. governor: chooses each frame's level (live); None runs
    the model on every frame at the backend's own size (offline, stills). fallback: the model
    of the governor's fallback rung (a level whose ``model`` is its name)."""

    def __init__(self, matter: Matter, smoothing: SmoothingSettings = SmoothingSettings(),
                 refine: str = "bilinear", composite: CompositeSettings = CompositeSettings(),
                 governor: Governor | None = None, fallback: Matter | None = None):
        self.matter = matter
        self.refine = refine
        self.governor = governor
        # By a level's ``model``: "" is the configured model.
        self.matters: dict[str, Matter] = {"": matter, **({fallback.name: fallback} if fallback else {})}
        self.smoother = TemporalSmoother(smoothing)
        self.finisher = Finisher(composite)
        self.cut_threshold = smoothing.cut_threshold
        self._stream = ""  # infer's: the model of the stream running now (its state, the smoother's past)
        self.state = matter.initial_state()
        self._input_shape: tuple[int, int] | None = None  # the last frame's guide shape, (h, w)
        self._key_planes: np.ndarray | None = None  # infer's: the last keyframe's smoothed result, [k, h, w]
        # prepare's: the motion since the last keyframe (its grey picture too), its network
        # input and the frames since it
        self._motion = MotionEstimator() if governor is not None else None
        self._key_input: tuple[tuple[int, ...], str] | None = None  # the keyframe's network input shape and model
        self._since_key = 0

    def reset(self) -> None:
        """Forget the past: a new stream or a scene cut."""
        self.state = self.matters[self._stream].initial_state()
        self.smoother.reset()
        self.finisher.reset()

    def prepare(self, frame: Frame) -> Prepared:
        start = time.perf_counter()
        image = frame.image
        level = self.governor.level if self.governor is not None else None
        matter = self.matters[level.model] if level is not None else self.matter
        small = resize_to(image, matter.input_size(image.shape[1], image.shape[0], level and level.size),
                          matter.antialias)
        # Both guides are made here, beside the running model, not on its thread.
        full_guide = guide(image) if matter.guided else None
        flow = model_input = None
        network_input = (small.shape, level.model) if level is not None else None
        if level is not None and not self._is_keyframe(frame, grey := self._motion_grey(image, small),
                                                       network_input, level.stride):
            flow, unexplained = self._motion.to_keyframe(grey)
            if unexplained > MISMATCH_SHARE:  # motion the flow cannot follow: the model runs
                self._new_keyframe(grey, network_input)
                flow = None
            else:
                flow = flow_at(flow, small.shape[:2])
        if flow is None:
            model_input = matter.prepare(pad_to(small, matter.min_side))
        done = time.perf_counter()
        return Prepared(frame, model_input, guide(small), full_guide, (done - start) * 1e3, done, flow, level)

    def _motion_grey(self, image: np.ndarray, small: np.ndarray) -> np.ndarray:
        """The frame's grey at the motion's size (:data:`FLOW_SIDE`): ``small`` (the network's
        input) when it is that size, else the frame reduced to it."""
        size = scaled_size(image.shape[1], image.shape[0], FLOW_SIDE)
        return grey_of(small if (small.shape[1], small.shape[0]) == size else resize_to(image, size))

    def _is_keyframe(self, frame: Frame, grey: np.ndarray, network_input: tuple[tuple[int, ...], str],
                     stride: int) -> bool:
        """Whether this frame gets a model call: every ``stride``-th frame, and any that cannot
        reuse the last keyframe's result (a restart, another network input shape or model,
        whose planes the keyframe's are not, or a scene cut). ``network_input``: the frame's
        (input shape, model)."""
        key = self._motion.key
        self._since_key += 1
        if (frame.restart or key is None or key.shape != grey.shape or network_input != self._key_input
                or self._since_key >= stride or cv2.absdiff(grey, key).mean() > 255 * self.cut_threshold):
            self._new_keyframe(grey, network_input)
            return True
        return False

    def _new_keyframe(self, grey: np.ndarray | None, network_input: tuple[tuple[int, ...], str] | None = None) -> None:
        """``grey`` (None: none yet) starts the motion, on the results of ``network_input``
        (input shape, model)."""
        self._motion.keyframe(grey)
        self._key_input, self._since_key = network_input, 0

    def infer(self, prepared: Prepared) -> Matted:
        if not prepared.keyframe:
            return self._reuse(prepared)
        t0 = time.perf_counter()
        model = prepared.level.model if prepared.level is not None else ""
        matter = self.matters[model]
        # A restarted source, a new input size or another model starts a new stream: RVM's
        # recurrent state has the old size's shape (OpenVINO refuses it) and the smoother's
        # past is another picture, or another model's planes.
        new_stream = prepared.frame.restart or prepared.guide.shape != self._input_shape or model != self._stream
        self._input_shape, self._stream = prepared.guide.shape, model
        if new_stream or self.smoother.is_cut(prepared.guide):
            self.reset()
            self.smoother.is_cut(prepared.guide)  # remember this frame as the new stream's first
        matte, self.state = matter.infer(prepared.model_input, self.state)
        if isinstance(matte, GuidedMatte) and not self.finisher.settings.wants_colour:
            matte = GuidedMatte(matte.a, matte.b)  # colour coefficients nobody uses: not smoothed
        matte = crop(matte, *prepared.guide.shape)
        t1 = time.perf_counter()
        if isinstance(matte, GuidedMatte):
            # The coefficients are smoothed with the weights their coarse matte earns; the
            # backend then applies them to this frame's own full-resolution guide. The coarse
            # matte is not clipped: where it saturates, a clipped gate would see no change and
            # hold old coefficients that still move the full-resolution edge (more flicker: README,
            # Measurements behind the code).
            # The colour coefficients, when present, are mixed with the same weights.
            coarse = matte.a * prepared.guide + matte.b
            planes = [coarse[None], matte.a[None], matte.b[None]]
            if matte.colour_a is not None:
                planes += [matte.colour_a, matte.colour_b]
            mixed = self.smoother.apply(np.concatenate(planes))
            smoothed = _guided(mixed[1:])
            self._key_planes = mixed[1:]
        else:
            smoothed = self.smoother.apply(np.clip(matte, 0.0, 1.0))
            self._key_planes = smoothed[None]
        t2 = time.perf_counter()
        full = matter.finish(smoothed, prepared.frame.image, prepared.full_guide, self.refine)
        t3 = time.perf_counter()
        timings = {**_waits(prepared, t0), "model": (t1 - t0) * 1e3, "smoothing": (t2 - t1) * 1e3,
                   "refine": (t3 - t2) * 1e3}
        alpha, colours = self.finisher.apply(prepared.frame.image, full, smoothed, timings,
                                             segmentation=matter.segmentation)
        return Matted(prepared.frame, alpha, timings, colours)

    def _reuse(self, prepared: Prepared) -> Matted:
        """A frame without a model call: the keyframe's result moved to it, finished on its picture."""
        t0 = time.perf_counter()
        matter = self.matters[self._stream]  # the keyframe's: a change of model is a keyframe
        planes = warp(self._key_planes, prepared.flow)
        if matter.guided:
            matte = _guided(planes)
            # The smoother's next comparison is with this frame's result, in this frame's place.
            self.smoother.remember(np.concatenate([(matte.a * prepared.guide + matte.b)[None], planes]))
        else:
            matte = planes[0]
            self.smoother.remember(matte)
        t1 = time.perf_counter()
        full = matter.finish(matte, prepared.frame.image, prepared.full_guide, self.refine)
        t2 = time.perf_counter()
        timings = {**_waits(prepared, t0), "reuse": (t1 - t0) * 1e3, "refine": (t2 - t1) * 1e3}
        alpha, colours = self.finisher.apply(prepared.frame.image, full, matte, timings,
                                             segmentation=matter.segmentation)
        return Matted(prepared.frame, alpha, timings, colours, reused=True)

    def warm_up(self, width: int, height: int, runs: int = 3, composite=None) -> float:
        """Run the model on blank frames of the stream's size, at every size and model the
        governor may ask for, then forget them; -> seconds spent. Call before the threads start.

        The first calls for a new input shape are several times slower (kernel
        selection, memory plans); a live source that is already playing would
        drop its first frames while they run.

        With a governor, the last call's costs at each level, the rest of a frame's work and
        ``composite(image, alpha)`` (the output's, when given) calibrate its start
        (:meth:`Governor.calibrate`).
        """
        start = time.perf_counter()
        blank = np.full((height, width, 3), 128, np.uint8)
        levels = ([None] if self.governor is None else
                  list(dict.fromkeys(Level(level.size, 1, level.model) for level in self.governor.levels)))
        costs: dict[Level, tuple[float, float]] = {}
        for level in levels:
            matter = self.matters[level.model] if level is not None else self.matter
            small = resize_to(blank, matter.input_size(width, height, level and level.size))
            model_input = matter.prepare(pad_to(small, matter.min_side))
            for _ in range(runs):
                wall, cpu = time.perf_counter(), time.process_time()
                matter.infer(model_input, matter.initial_state())
                costs[level] = ((time.perf_counter() - wall) * 1e3, (time.process_time() - cpu) * 1e3)
        # The finish, smoothing and the rest, at the top level, then the output's share: the
        # least of three frames after a first (which pays for first calls; contention only adds),
        # of a person, whose matte is soft only at her edge (a blank frame's is soft all over, and
        # its foreground colours cost far more than a real frame's).
        person = _warm_up_picture(width, height)
        top_wall = costs[levels[0]][0]
        # Timed by the clock, not the process's CPU time: the source's decoder may already be at
        # work on its own threads, and this work runs on this one.
        rests = []  # per frame: the infer thread's ms and the whole frame's, both without the model
        for _ in range(4 if self.governor is not None else 1):
            start_frame = time.perf_counter()
            matted = self.process(Frame(-1, person, 0.0, time.perf_counter()))
            infer_ms = (time.perf_counter() - start_frame) * 1e3 - matted.timings.get("model", top_wall)
            if composite is not None:
                composite(person, matted.alpha)
            rests.append((infer_ms, (time.perf_counter() - start_frame) * 1e3 - matted.timings.get("model", top_wall)))
        self.reset()
        if self.governor is not None:
            self._new_keyframe(None)
            self.governor.calibrate(costs, tuple(max(0.0, min(figures)) for figures in zip(*rests[1:])))
        return time.perf_counter() - start

    def process(self, frame: Frame) -> Matted:
        """Both steps on the calling thread (stills, tests, the serial baseline)."""
        return self.infer(self.prepare(frame))


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
