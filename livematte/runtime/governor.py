"""The live governor: the operating point that holds the source's frame rate on this machine, now.

A :class:`Level` is the network's input size and how often the model runs (``stride``: one
model call every ``stride`` frames; the frames between reuse the last result, moved with
the picture's motion, see :mod:`livematte.matte.motion`), and which model: the configured one, or
a fast fallback (Selfie Segmentation) as the last rung. :func:`ladder` orders the levels
from the preset's (the top) down, each cheaper than the one above.

The run starts at the highest level that the warm-up's measured costs predict will fit
(:meth:`Governor.calibrate`), not at the top: on a slow machine the top level drops most
frames, and walking down from it takes seconds of late, dropped frames.

:class:`Governor` is fed a :class:`Sample` of the run's counters (frames in, dropped, the
infer thread's busy time, process CPU, latency) about every ``WINDOW_S`` and by the infer
thread's per-frame costs, and answers :meth:`Governor.level`. It steps down at once when
the run falls behind (frames dropped, the infer thread never idle, latency or CPU over
budget) and steps up only when the measured costs predict the level above fits with room
to spare, held for a while; a step up that fails soon after doubles the wait before the
next try at that level (hysteresis). Time comes in with every call: the decisions can be
replayed on a recorded or synthetic trace.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..machine import available_cores

if TYPE_CHECKING:
    from ..config import LiveSettings

log = logging.getLogger(__name__)

WINDOW_S = 0.5  # between decisions
SETTLE_S = 1.0  # after a change, the new level's figures before the next decision
UP_HOLD_S = 2.0  # headroom must last this long before a step up; doubled after a failed one
MAX_UP_HOLD_S = 16.0
FAILED_WITHIN_S = 4.0  # a step down this soon after a step up means the step up failed
MIN_LADDER_SIZE = 128  # px: below, RVM's matte is a blob (the README's measurements table)

# Thresholds, as fractions of the budget. Down when over; up only when the level above is
# predicted under the lower ones: the gap between them is the hysteresis.
BUSY_DOWN, BUSY_UP = 0.92, 0.72  # of the infer thread's time
DROPS_DOWN = 0.03  # of the frames in
LATENCY_UP = 0.8  # of the latency target
CPU_UP = 0.9  # of --max-cpu, and of the cores there are
# The start: the highest level whose warm-up costs use at most this much of the budget.
# Lower than the step-up thresholds: decoding and the run's threads contending for the
# cores are not in the warm-up's figures.
START_SHARE = 0.7


@dataclass(frozen=True, order=True)
class Level:
    """size: the network's input, longest side in px; stride: frames per model call (1 = every
    frame); model: the backend's name for a fallback rung, "" for the configured model."""

    size: int
    stride: int
    model: str = ""

    def __str__(self) -> str:
        every = "frame" if self.stride == 1 else f"{self.stride} frames"
        return f"{self.model + ' ' if self.model else ''}{self.size}px every {every}"


def ladder(top_size: int, min_size: int = MIN_LADDER_SIZE, fallback: Level | None = None) -> list[Level]:
    """The levels from the preset's (``top_size``, every frame) down, each cheaper than the last.

    Reuse comes first, at the preset's size: with motion-compensated reuse, fewer model calls
    at the full size lose less than a smaller network (the README's "What each level costs in
    quality"). Then the network shrinks (0.75x, 0.5x) at the longest stride. ``fallback``, a
    faster model's level, comes last.
    """
    sizes = [top_size]
    for factor in (0.75, 0.5):
        size = max(min_size, int(round(top_size * factor / 16)) * 16)
        if size < sizes[-1]:
            sizes.append(size)
    levels = [Level(top_size, stride) for stride in (1, 2, 3, 4)] + [Level(size, 4) for size in sizes[1:]]
    return levels + ([fallback] if fallback is not None else [])


@dataclass(frozen=True)
class Sample:
    """The run's counters at ``time`` (seconds, any monotonic clock), all cumulative except latency.

    frames_in: frames the source delivered; dropped: frames never processed;
    busy_s: seconds the infer thread spent working (not waiting for a frame);
    cpu_s: process CPU seconds (all threads); latency_p95_ms: capture-to-output p95 over the
    last window (None before the first output).
    """

    time: float
    frames_in: int
    dropped: int
    busy_s: float
    cpu_s: float
    latency_p95_ms: float | None


@dataclass(frozen=True)
class Change:
    """One level change, for the stats' timeline: ``time`` seconds into the run."""

    time: float
    level: Level
    reason: str


class Governor:
    """Chooses the level; thread-safe (the prepare thread reads, the infer thread feeds).

    levels: the ladder, top first. period_s: the source's frame period. latency_ms: the
    p95 target, capture to output. max_cpu: the process's CPU budget in percent of one
    core (0: none); max_cpu_default: it is the default, not one the user set (for the
    messages). cores: the cores this process may run on.
    """

    def __init__(self, levels: list[Level], period_s: float, *, latency_ms: float = 100.0,
                 max_cpu: float = 0.0, max_cpu_default: bool = False, cores: int = 1, start: float = 0.0):
        if not levels:
            raise ValueError("the ladder needs at least one level")
        self.levels = levels
        self.period_s = period_s
        self.latency_ms = latency_ms
        self.max_cpu = max_cpu
        self.max_cpu_default = max_cpu_default
        self.cores = cores
        self._lock = threading.Lock()
        self._index = 0
        self._start = start
        self.timeline: list[Change] = [Change(0.0, levels[0], "start")]
        self._last: Sample | None = None
        self._next_decision = start + SETTLE_S
        self._headroom_since: float | None = None
        self._up_hold = {i: UP_HOLD_S for i in range(len(levels))}
        self._last_up: tuple[float, int] | None = None  # (time, index stepped up to)
        # Model calls' costs: each (model, size)'s ms at the machine's speed when it was first
        # seen (the warm-up's, or the run's), times ``_slowdown``, the recent calls' ratio to
        # theirs. One factor for all: a hog that slows the level running now slows the others
        # too, and a level left while the machine was slow is not priced slow for ever after.
        self._model_ms: dict[tuple[str, int], float] = {}
        self._slowdown = 1.0
        self._reuse_ms: float | None = None  # a reused frame's, on the infer thread
        self._window: dict[str, float] = {}  # the last window's figures, for the stats

    def begin(self, now: float) -> None:
        """The run starts now (after the model's load and warm-up): the timeline counts from here."""
        with self._lock:
            self._start = now
            self._next_decision = now + SETTLE_S
            self._last = None

    @property
    def level(self) -> Level:
        with self._lock:
            return self.levels[self._index]

    def calibrate(self, model_ms: dict[Level, tuple[float, float]], frame_ms: tuple[float, float]) -> Level:
        """Start at the highest level the warm-up's costs predict will fit; -> that level.

        model_ms: per level (stride ignored), one model call's (wall, CPU) ms, as the run's
        threads would make it. frame_ms: the (infer thread's wall, whole process's CPU) ms
        per frame of the rest: preparing, finishing, compositing. A level fits when its infer
        thread's ms per frame and its CPU per frame both stay within ``START_SHARE`` of the
        frame period, the CPU's scaled by the cores or the ``max_cpu`` budget. The lowest
        level is taken when none fits.
        """
        with self._lock:
            for level, (wall, _) in model_ms.items():
                self._model_ms[(level.model, level.size)] = wall
            self._slowdown = 1.0
            cores = min(self.cores, self.max_cpu / 100.0) if self.max_cpu else self.cores
            budget_ms = START_SHARE * self.period_s * 1e3
            index = len(self.levels) - 1
            for i, level in enumerate(self.levels):
                wall, cpu = model_ms.get(Level(level.size, 1, level.model), (None, None))
                if wall is None:
                    continue
                infer = wall / level.stride + frame_ms[0]
                process = cpu / level.stride + frame_ms[1]
                if infer <= budget_ms and process <= budget_ms * cores:
                    index = i
                    break
            self._index = index
            reason = (f"calibrated: {_model_ms_text(model_ms)}; the rest {frame_ms[0]:.0f} ms a frame, "
                      f"CPU {frame_ms[1]:.0f} ms")
            self.timeline = [Change(0.0, self.levels[index], reason)]
            return self.levels[index]

    def frame_cost(self, ms: float, *, model: bool, level: Level) -> None:
        """One frame's time on the infer thread: a model call at ``level``, or a reused result."""
        with self._lock:
            if model:
                key = (level.model, level.size)
                if key in self._model_ms:
                    self._slowdown = 0.8 * self._slowdown + 0.2 * ms / self._model_ms[key]
                else:
                    self._model_ms[key] = ms / self._slowdown
            else:
                self._reuse_ms = ms if self._reuse_ms is None else 0.8 * self._reuse_ms + 0.2 * ms

    def _model_cost(self, level: Level) -> float | None:
        """One model call's ms at ``level`` now: measured, or scaled by area from the nearest size
        measured for the same model; None before any."""
        if (level.model, level.size) in self._model_ms:
            return self._model_ms[(level.model, level.size)] * self._slowdown
        seen = [size for model, size in self._model_ms if model == level.model]
        if not seen:
            return None
        nearest = min(seen, key=lambda s: abs(s - level.size))
        return self._model_ms[(level.model, nearest)] * (level.size / nearest) ** 2 * self._slowdown

    def _cost_ms(self, level: Level) -> float | None:
        """Predicted infer-thread ms per frame at ``level``: measured costs, model sizes not yet
        seen scaled from the nearest seen one by area; None before any measurement."""
        model = self._model_cost(level)
        if model is None:
            return None
        reuse = self._reuse_ms if self._reuse_ms is not None else 0.1 * model
        return (model + (level.stride - 1) * reuse) / level.stride

    def update(self, sample: Sample) -> Change | None:
        """Feed the counters; -> the change made, if any. Call about every ``WINDOW_S``."""
        with self._lock:
            last = self._last
            if last is None or sample.time - last.time < WINDOW_S:
                if last is None:
                    self._last = sample
                return None
            self._last = sample
            span = sample.time - last.time
            frames = max(1, sample.frames_in - last.frames_in)
            drops = (sample.dropped - last.dropped) / frames
            busy = (sample.busy_s - last.busy_s) / span
            cpu = 100.0 * (sample.cpu_s - last.cpu_s) / span
            self._window = {"busy": round(busy, 3), "drops": round(drops, 3), "cpu_percent": round(cpu, 1),
                            "latency_p95_ms": sample.latency_p95_ms}
            if sample.time < self._next_decision:
                return None
            over = self._overload(drops, busy, cpu, sample.latency_p95_ms)
            if over:
                self._headroom_since = None
                return self._move(sample.time, self._steps_down(over), over)
            if self._fits_above(busy, cpu, sample.latency_p95_ms):
                if self._headroom_since is None:
                    self._headroom_since = sample.time
                if sample.time - self._headroom_since >= self._up_hold[self._index - 1]:
                    self._headroom_since = None
                    return self._move(sample.time, -1, "headroom")
            else:
                self._headroom_since = None
            return None

    def _overload(self, drops: float, busy: float, cpu: float, latency: float | None) -> str | None:
        if drops > DROPS_DOWN:
            return f"{drops:.0%} of frames dropped"
        if busy > BUSY_DOWN:
            return f"model thread {busy:.0%} busy"
        if latency is not None and latency > self.latency_ms:
            return f"latency p95 {latency:.0f} ms"
        if self.max_cpu and cpu > self.max_cpu:
            return f"CPU {cpu:.0f}% over {self.budget_text()}"
        return None

    def budget_text(self) -> str:
        """The CPU budget for the log: how much, where it came from and how to change it."""
        if self.max_cpu_default:
            return f"the default budget of {self.max_cpu:.0f}%, all cores but one (--max-cpu; 0 lifts it)"
        return f"the budget of {self.max_cpu:.0f}% (--max-cpu or [live] max_cpu; 0 lifts it)"

    def _steps_down(self, reason: str) -> int:
        """How far down to go for ``reason``: one level, or for latency alone to the next level
        with a cheaper model call (a longer stride leaves each keyframe's latency as it is)."""
        if not reason.startswith("latency"):
            return 1
        here = self.levels[self._index]
        for steps, level in enumerate(self.levels[self._index + 1:], 1):
            if level.size < here.size or level.model != here.model:
                return steps
        return 1

    def _fits_above(self, busy: float, cpu: float, latency: float | None) -> bool:
        """Whether the level above is predicted to fit with room to spare."""
        if self._index == 0:
            return False
        here, above = self._cost_ms(self.levels[self._index]), self._cost_ms(self.levels[self._index - 1])
        if here is None or above is None or here <= 0:
            return False
        extra_ms_per_s = (above - here) / self.period_s  # more infer time per second of video, ms
        if busy + extra_ms_per_s / 1e3 > BUSY_UP:
            return False
        cpu_above = cpu + extra_ms_per_s / 10.0  # ms per s -> percent of a core
        if cpu_above > CPU_UP * 100.0 * self.cores or (self.max_cpu and cpu_above > CPU_UP * self.max_cpu):
            return False
        if latency is not None:
            model_here = self._model_cost(self.levels[self._index]) or 0.0
            model_above = self._model_cost(self.levels[self._index - 1]) or 0.0
            if latency + model_above - model_here > LATENCY_UP * self.latency_ms:
                return False
        return True

    def _move(self, now: float, step: int, reason: str) -> Change | None:
        index = min(max(self._index + step, 0), len(self.levels) - 1)
        if index == self._index:
            return None
        if step > 0 and self._last_up is not None:
            up_time, up_index = self._last_up
            if up_index == self._index and now - up_time < FAILED_WITHIN_S:
                # The step up did not hold: wait longer before trying that level again.
                self._up_hold[up_index] = min(MAX_UP_HOLD_S, 2 * self._up_hold[up_index])
        if step < 0:
            self._last_up = (now, index)
        self._index = index
        self._next_decision = now + SETTLE_S
        change = Change(round(now - self._start, 3), self.levels[index], reason)
        self.timeline.append(change)
        return change

    def snapshot(self) -> dict:
        """For ``--stats-json``: the level now, the last window's figures and every change."""
        with self._lock:
            level = self.levels[self._index]
            return {"level": _level_json(level), "window": dict(self._window),
                    "timeline": [{"t": c.time, **_level_json(c.level), "reason": c.reason} for c in self.timeline]}


def _level_json(level: Level) -> dict:
    return {"size": level.size, "stride": level.stride, **({"model": level.model} if level.model else {})}


def _model_ms_text(model_ms: dict[Level, tuple[float, float]]) -> str:
    """``{Level: (wall, cpu)}`` -> "model 384px 61 ms, 288px 35 ms, ..." for the log and timeline."""
    return "model " + ", ".join(f"{level.model + ' ' if level.model else ''}{level.size}px {wall:.0f} ms"
                                for level, (wall, _) in model_ms.items())


def for_live(settings: LiveSettings, matter, source, fallback=None) -> Governor:
    """The governor of a live run of ``source`` (``width``, ``height``, ``fps``) on ``matter``: its
    ladder starts at the size the model would take the source's frames at; ``fallback``, a
    faster model, is its last rung."""
    cores = available_cores()
    top = max(matter.input_size(source.width, source.height))
    last = None if fallback is None else Level(max(fallback.input_size(source.width, source.height)), 1, fallback.name)
    governor = Governor(ladder(top, fallback=last), 1.0 / source.fps, latency_ms=settings.latency_ms,
                        max_cpu=settings.cpu_budget(cores), max_cpu_default=settings.max_cpu is None, cores=cores,
                        start=time.perf_counter())
    budget = f"CPU within {governor.budget_text()}" if governor.max_cpu else "no CPU budget"
    log.info("adaptive: from %s down to %s on %d core(s), %s", governor.levels[0], governor.levels[-1], cores, budget)
    return governor
