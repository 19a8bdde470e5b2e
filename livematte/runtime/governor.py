"""The live governor: the model's level that the matte's CPU budget allows on this machine, now.

Live, the model runs on its own thread and every frame is finished from the newest result that
has landed, moved along the optical flow (:mod:`livematte.runtime.engine`). A :class:`Level` is
the network's input size and how often the model may run (``stride``: a call takes a frame at
least ``stride`` frames after the last call's; 1: whenever the model is free), and which model:
the configured one, or a fast fallback (Selfie Segmentation) as the last rung, for a machine that
cannot run the configured model at its smallest size at all; and whether its keyframes wait
(``waits``): the frame the model takes waits for its own result, so that it is matted from its
own picture and the frames between from a result one to ``stride - 1`` frames old. A result's
age costs more matte than anything else here (a frame's own 384 px result gives MAD 3.64, one a
frame old 4.45: README, What each level costs in quality), so where a call and the rest of a
frame's work fit well within the latency target, waiting buys the better matte for a latency of
one call. :func:`ladder` lists the levels: three network sizes, four strides, waiting or not (on
one core, waiting only), and the fallback.

What a level costs is CPU: the model thread's (one call's CPU ms times the calls a second it
makes: ``fps / stride``, or as many as it can when its calls take longer) plus the rest of the
matte's work (capture, motion, finishing, compositing), which does not depend on the level. The
outputs' encoders are not the matte's: they run on threads of their own at a lower priority
(:mod:`livematte.sinks.threaded`) and drop frames of their own when they cannot keep up, so a
slow encoder never moves the level. What a level gives is a matte whose error grows with the
age of the results the frames are finished from (:func:`result_ages`: a call's time in frames,
and the stride), measured (:data:`QUALITY`): on a machine whose 384 px call takes two frame
periods, 288 px whenever free (results a frame old) beats 384 px (two to three frames old), at
less CPU. The governor holds the level with the best predicted matte among those whose
predicted CPU fits the budget (``--max-cpu``) and the cores there are.

The run starts at the best level the warm-up's measured costs predict will fit
(:meth:`Governor.calibrate`). :class:`Governor` is then fed a :class:`Sample` of the run's
counters about every ``WINDOW_S`` and the model thread's per-call costs, and answers
:meth:`Governor.level`. It steps down at once when the run falls behind (frames dropped, the
frame thread never idle, latency, CPU over budget, results far older than predicted: a starved
model), to the best level cheaper than the CPU it uses now, and steps up only when the measured
costs predict a better level fits with room to spare, held for a while; a step up that fails
soon after doubles the wait before the next try at that level (hysteresis). Time
comes in with every call: the decisions can be replayed on a recorded or synthetic trace.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from ..machine import available_cores

if TYPE_CHECKING:
    from ..config import LiveSettings

log = logging.getLogger(__name__)

WINDOW_S = 0.5  # between decisions
SETTLE_S = 1.0  # after a change, the new level's figures before the next decision
# The latency a decision reads is of the frames captured from this long after the run's start or a
# level change on (the pipeline's latency_since): the frames before carry the pipeline's start (384
# px every second frame, waiting, two cores: the first six frames 64-89 ms, the keyframes after
# 50-62) or the old level's backlog, and the p95 of the last 30 frames that the first decision (1.1
# s) reads would count them.
LATENCY_SETTLE_S = 0.5
UP_HOLD_S = 2.0  # headroom must last this long before a step up; doubled after a failed one
MAX_UP_HOLD_S = 16.0
FAILED_WITHIN_S = 4.0  # a step down this soon after a step up means the step up failed
MIN_LADDER_SIZE = 128  # px: below, RVM's matte is a blob (the README's measurements table)

# Thresholds, as fractions of the budget. Down when over; up only when the level above is
# predicted under the lower ones: the gap between them is the hysteresis.
BUSY_DOWN = 0.92  # of the frame thread's time
DROPS_DOWN = 0.03  # of the frames in
# A window's drops count from this many frames: one frame dropped in half a second (a hiccup of the
# source or the scheduler) is 7 % of 15, and stepped 288 px every third frame, waiting, down on s18
# in a run with the null sink and one recording to .mov that otherwise held it (2026-12-06).
MIN_DROPS = 2
LATENCY_UP = 0.8  # of the latency target
CPU_UP = 0.9  # of --max-cpu, and of the cores there are
CPU_WINDOWS = 4  # the CPU against the budget: the mean of this many windows
# A waiting level late with the matte itself using this share of the cores (two or more) is slowed
# by its own load, not by another program's (Governor.update). With --max-cpu 0 on two cores,
# 384 px every second frame, waiting, went late at 172-224 % of a core (clip00 at 172 %, in a
# round where the others that held used 157-168 %); a hog that takes a core leaves the matte 100 %.
FILLS_CORES = 0.8
BETTER_BY = 0.1  # MAD x1e3: a level predicted better by less is not worth a change
DOWN_TO = 0.75  # a step down goes to a level that costs at most this share of the CPU used now
# The start: the highest level whose warm-up costs (the source's decoding included; the rest of the
# matte's CPU at WARM_UP_REST_LIVE times the warm-up's figure) are predicted to use at most this
# much of the budget. Below CPU_UP: the warm-up's calls are its quickest, with no other thread of
# the run at work beside them (0.9 here started 288 px every second frame, waiting, on two clips of
# nine, where it used 103-107 % of a 100 % budget).
START_SHARE = 0.85
# A level whose keyframes wait for their own results fits where a keyframe is predicted within
# WAIT_LATENCY of the latency target, and the frame thread, which waits once a stride, keeps up
# within WAIT_BUSY of the stride's frame periods. On one core too: while a keyframe waits, the frames
# wait with it, so its call has the core that the model, behind the frames at nice 10, otherwise
# only gets between them (live on one core, 288 px every second frame without waits gave results
# 6-7 frames old, 139 ms a call; with waits, 15 calls a second of 27-43 ms, 83-95 % of the core;
# over the nine clips, interleaved, MAD 8.46 against 9.77 and 9.41 against 9.46, the latency p95
# 84-92 ms against 33-53). A keyframe's latency: its call, then the rest of
# its work and the frames queued behind the wait, WAIT_REST times the rest's CPU a frame (measured
# live on two cores: a keyframe's capture-to-output was its call plus 1.1-1.5 times that; 1.5 here
# let 384 px keyframes wait that then went over, and scored worse on the clips). Such a level is
# over when its latency p95 passes WAIT_LATENCY_DOWN of the target. A keyframe gives up waiting
# at WAIT_GIVE_UP of the target after its capture, and is finished as any other frame.
WAIT_LATENCY = 0.7
WAIT_REST = 2.0
WAIT_LATENCY_DOWN = 0.85
WAIT_BUSY = 0.85
WAIT_GIVE_UP = 0.75
# The rest of the matte live against the warm-up's figure for it (its frames one at a time on one
# thread, the caches warm): measured 1.1-1.24 (s18 and the nine clips, one core and two, at levels
# that kept up). Until the run has measured the rest, its CPU is priced at this (Governor._rest): at
# the warm-up's own figure the start level used 101-108 % of a 100 % budget on up to four clips of
# nine (two cores), and on one core went late after a second on up to seven, until the first
# decision stepped it down (README, Quality live). A keyframe's latency there is still judged on
# the warm-up's figure, which WAIT_REST and WAIT_LATENCY were set against: judged on this too, one
# core started at 192 px every second frame on most clips where 288 px every third fits (nine
# clips, interleaved: MAD 8.19 against 6.10). A level that falls behind is replaced by one priced
# at this too (Governor._best).
WARM_UP_REST_LIVE = 1.2
# How a level is priced (Governor._model_cost, Governor._rest): as the run's recent calls ran
# (LIVE); without the stretch a late level's backlog puts on its calls (UNLOADED: a step down on
# one core, Governor._best); or as the warm-up timed them (WARM_UP: a step down from a level whose
# keyframes went late with the matte itself filling the cores, Governor.update). In both of the
# last two the rest of the matte is at most WARM_UP_REST_LIVE times the warm-up's figure.
LIVE, UNLOADED, WARM_UP = "live", "unloaded", "warm-up"


@dataclass(frozen=True, order=True)
class Level:
    """size: the network's input, longest side in px; stride: the fewest frames from one model
    call's input to the next's (1: the model takes a frame whenever it is free); model: the
    backend's name for a fallback rung, "" for the configured model; waits: the frame the model
    takes waits for its own result (a latency of one call), so that it, the keyframe, is matted
    from its own picture and only the frames between are moved along the flow."""

    size: int
    stride: int
    model: str = ""
    waits: bool = False

    def __str__(self) -> str:
        every = "whenever free" if self.stride == 1 else f"every {self.stride}+ frames"
        return f"{self.model + ' ' if self.model else ''}{self.size}px {every}{', waits' if self.waits else ''}"


def ladder(top_size: int, min_size: int = MIN_LADDER_SIZE, fallback: Level | None = None,
           waiting_only: bool = False) -> list[Level]:
    """The levels the governor chooses from: the preset's size (``top_size``) and 0.75x and 0.5x
    of it, each taking a frame whenever free or at most every 2, 3 or 4 frames, with its
    keyframes waiting for their own results or not (``waiting_only``: waiting), top first;
    ``fallback``, a faster model's level, last (``waiting_only``: waiting, then not). Which is
    best depends on the machine: a smaller network whose results land sooner can beat a larger
    one whose results are older (:func:`predicted_mad`), and a level whose keyframes wait fits
    only where a call lands within the latency allowed (:meth:`Governor._waiting_fits`).

    A live run on one core takes ``waiting_only``: there a call that no frame waits for runs (at
    nice 10) in what the frames leave of the core, and its results were 14-20 frames old at p50
    (288 px every third frame, 192 px every fourth: MAD 10-27 on the clips where a run held one),
    where a waited-for call has the core and its results are a stride old at most. The fallback
    not waiting is the last rung, for where nothing fits (no frame should wait then): in a slow
    spell, Selfie with every frame waiting for it kept 30 fps on s18 but at a latency p95 of 98 ms."""
    sizes = [top_size]
    for factor in (0.75, 0.5):
        size = max(min_size, int(round(top_size * factor / 16)) * 16)
        if size < sizes[-1]:
            sizes.append(size)
    waiting = (True,) if waiting_only else (False, True)
    levels = [Level(size, stride, "", waits) for size in sizes for stride in (1, 2, 3, 4) for waits in waiting]
    if fallback is None:
        return levels
    return levels + ([replace(fallback, waits=True)] if waiting_only else []) + [fallback]


# The matte's error against the result's age, measured (scripts/eval_levels.py on the nine ground-
# truth clips, RVM, results landing a fixed number of frames after their input; README: "What
# each level costs in quality"): mean MAD x1e3 = base + per_frame x the results' mean age in
# frames, by network size as a share of the preset's, fitted by least squares to every level
# measured with results up to 5.3 frames old, waiting or not (within 0.31 of each). Fitted first
# to ages up to 2.3 at 288 and 192 px, the slopes were 0.57 and 0.55, and a 288 px call every
# third frame, 5.5 frames old on one core, was predicted 7.96, level with 192 px waiting; 288 px
# 5.3 frames old measures 8.67 against 7.95 (23.55 against 10.57 on the clip with a fast swing).
# A fallback model's matte: FALLBACK_MAD.
QUALITY = {1.0: (3.56, 0.84), 0.75: (4.59, 0.77), 0.5: (7.45, 0.79)}
FALLBACK_MAD = (11.1, 0.3)


def predicted_mad(level: Level, top_size: int, mean_age: float) -> float:
    """The matte's predicted MAD (x1e3) at ``level`` with results ``mean_age`` frames old on average."""
    if level.model:
        base, per_frame = FALLBACK_MAD
    else:
        share = level.size / top_size
        base, per_frame = QUALITY[min(QUALITY, key=lambda known: abs(known - share))]
    return base + per_frame * mean_age


def result_ages(level: Level, call_frames: float) -> tuple[float, float]:
    """The (mean, oldest) age in frames of the results frames use at ``level`` when a call takes
    ``call_frames`` frame periods: a result lands ``lag`` frames after its input (its call, rounded
    up), and calls take a frame every ``max(stride, lag)`` frames. Where keyframes wait, a
    keyframe's result is its own (age 0) and the frames up to the next keyframe's are 1 to
    ``stride - 1`` frames from it (the call lands within the stride: :meth:`Governor._waiting_fits`)."""
    if level.waits:
        return (level.stride - 1) / 2, level.stride - 1
    lag = max(1, math.ceil(call_frames + 0.1))
    interval = max(level.stride, lag)
    return lag + (interval - 1) / 2, lag + interval - 1


@dataclass(frozen=True)
class Sample:
    """The run's counters at ``time`` (seconds, any monotonic clock), all cumulative except the p95s.

    frames_in: frames the source delivered; dropped: frames never processed; busy_s: seconds the
    frame thread spent on frames (not waiting for one; a keyframe's wait for its result included);
    cpu_s: CPU seconds of the matte's threads (capture, frames, model, output; not the encoders');
    model_cpu_s: of those, the model thread's;
    latency_p95_ms: capture-to-output p95 of the recent frames captured since the level settled
    (:data:`LATENCY_SETTLE_S`; None before the first such output);
    age_p95: the p95 of the recent frames' result ages, frames (None before the first);
    waited_s: of busy_s, the seconds the frame thread waited for keyframes' results;
    finish_busy_s: seconds the finish thread spent working.
    """

    time: float
    frames_in: int
    dropped: int
    busy_s: float
    cpu_s: float
    model_cpu_s: float
    latency_p95_ms: float | None
    age_p95: float | None = None
    waited_s: float = 0.0
    finish_busy_s: float = 0.0


@dataclass(frozen=True)
class Change:
    """One level change, for the stats' timeline: ``time`` seconds into the run."""

    time: float
    level: Level
    reason: str


class Governor:
    """Chooses the level; thread-safe (the model thread reads it and feeds call costs, the frame
    thread feeds samples).

    levels: the ladder, top first. period_s: the source's frame period. latency_ms: the
    p95 target, capture to output. max_cpu: the matte's CPU budget in percent of one core (0:
    none); max_cpu_default: it is the default, not one the user set (for the messages). cores:
    the cores this process may run on. wide_waits: the configured model's keyframes that wait are
    called on a copy of it with more runtime threads (:class:`~livematte.runtime.engine.WaitingModel`),
    whose calls are priced apart (:meth:`cost_key`).
    """

    def __init__(self, levels: list[Level], period_s: float, *, latency_ms: float = 100.0,
                 max_cpu: float = 0.0, max_cpu_default: bool = False, cores: int = 1, start: float = 0.0,
                 wide_waits: bool = False):
        if not levels:
            raise ValueError("the ladder needs at least one level")
        self.levels = levels
        self.period_s = period_s
        self.latency_ms = latency_ms
        self.max_cpu = max_cpu
        self.max_cpu_default = max_cpu_default
        self.cores = cores
        self.wide_waits = wide_waits
        self._lock = threading.Lock()
        self._index = 0
        self._start = start
        self.timeline: list[Change] = [Change(0.0, levels[0], "start")]
        self._last: Sample | None = None
        self._next_decision = start + SETTLE_S
        self._headroom_since: float | None = None
        self._up_hold = {i: UP_HOLD_S for i in range(len(levels))}
        self._last_up: tuple[float, int] | None = None  # (time, index stepped up to)
        # Model calls' costs, (wall, CPU) ms: each cost_key's at the machine's speed when it
        # was first seen (the warm-up's, or the run's), times ``_slowdown``, the recent calls'
        # ratio to theirs. One factor for all: a hog that slows the level running now slows the
        # others too, and a level left while the machine was slow is not priced slow for ever after.
        self._model_ms: dict[tuple[str, int, bool], tuple[float, float]] = {}
        self._slowdown = 1.0
        self._stretch = 1.0  # the recent calls' wall / CPU against the first ones'
        self._rest_percent: float | None = None  # the matte's CPU besides the model, % of a core
        self._rest_measured = False  # _rest_percent is the run's own figure, not the warm-up's
        self._warm_up_rest: float | None = None  # the warm-up's figure for it
        self._capture_ms = 0.0  # of the rest, the source's decoding a frame (the warm-up's figure)
        self._frame_ms: float | None = None  # the frame thread's ms a frame, waits for results left out
        self._recent_cpu: list[float] = []  # the last windows' CPU %, newest last
        # Per level held, by index, in the order first held: [seconds, CPU % x seconds] of its windows.
        self._held: dict[int, list[float]] = {}
        # Per level called, its model calls: [count, wall ms summed] (the snapshot's ``held``).
        self._calls: dict[Level, list[float]] = {}
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

    def wide(self, level: Level) -> bool:
        """Whether a call at ``level`` runs on the wide copy (:attr:`wide_waits`): the configured
        model's keyframes that wait, two or more frames apart. Where every frame waits, each call
        runs beside the last frame's finishing, and two runtime threads slow each other there
        (288 px every frame, waiting, went over the latency on four clips of nine)."""
        return self.wide_waits and level.waits and level.stride > 1 and not level.model

    def cost_key(self, level: Level) -> tuple[str, int, bool]:
        """What a call at ``level`` is priced by: its model, its size, and whether it is :meth:`wide`."""
        return level.model, level.size, self.wide(level)

    def cost_levels(self) -> list[Level]:
        """One level for each cost the ladder needs, for the warm-up to time."""
        return list(dict.fromkeys(Level(level.size, 2, level.model, True) if self.wide(level)
                                  else Level(level.size, 1, level.model) for level in self.levels))

    @property
    def capacity(self) -> float:
        """The CPU the matte may use, percent of one core: the budget, or the cores there are."""
        cores = 100.0 * self.cores
        return min(cores, self.max_cpu) if self.max_cpu else cores

    def calibrate(self, model_ms: dict[Level, tuple[float, float]], frame_ms: tuple[float, ...],
                  capture_ms: float = 0.0) -> Level:
        """Start at the highest level the warm-up's costs predict will fit; -> that level.

        model_ms: per level (stride ignored), one model call's (wall, CPU) ms. frame_ms: the
        ms per frame of the rest (motion, finishing, compositing): the busiest thread's, the whole
        frame's with the output's share, and optionally the frame thread's own (the motion: what a
        keyframe's wait adds to; the busiest thread's where not given). capture_ms: the source's
        CPU ms a frame (decoding), which the run's CPU counts too. Of the levels that fit (the frame
        thread keeps up within ``START_SHARE`` of the frame period, the predicted CPU, the rest's
        at :data:`WARM_UP_REST_LIVE` times the warm-up's, within ``START_SHARE`` of
        :attr:`capacity`), the one with the best predicted matte; the cheapest when none fits.
        The run's first window's figure for the rest replaces the warm-up's (:meth:`update`).
        """
        with self._lock:
            for level, costs in model_ms.items():
                self._model_ms[self.cost_key(level)] = costs
            self._slowdown = self._stretch = 1.0
            self._capture_ms = capture_ms
            self._rest_percent = self._warm_up_rest = (frame_ms[1] + capture_ms) / (self.period_s * 10.0)
            self._frame_ms = frame_ms[2] if len(frame_ms) > 2 else frame_ms[0]
            index = None
            if frame_ms[0] <= START_SHARE * self.period_s * 1e3:
                index = self._best(START_SHARE)
            self._index = index if index is not None else self._cheapest()
            reason = (f"calibrated: {_model_ms_text(model_ms)}; the rest {frame_ms[0]:.0f} ms a frame, "
                      f"{frame_ms[1]:.0f} ms with the output, {capture_ms:.0f} ms decoding")
            self.timeline = [Change(0.0, self.levels[self._index], reason)]
            return self.levels[self._index]

    def model_cost(self, level: Level, wall_ms: float, cpu_ms: float) -> None:
        """One model call at ``level``: its wall and CPU ms on the model thread."""
        with self._lock:
            calls = self._calls.setdefault(level, [0, 0.0])
            calls[0] += 1
            calls[1] += wall_ms
            key = self.cost_key(level)
            if key in self._model_ms:
                wall, cpu = self._model_ms[key]
                self._slowdown = 0.8 * self._slowdown + 0.2 * cpu_ms / cpu
                self._stretch = 0.8 * self._stretch + 0.2 * (wall_ms / max(cpu_ms, 1e-3)) / (wall / cpu)
            else:
                self._model_ms[key] = (wall_ms / (self._slowdown * self._stretch), cpu_ms / self._slowdown)

    def _model_cost(self, level: Level, pricing: str = LIVE) -> tuple[float, float] | None:
        """One model call's (wall, CPU) ms at ``level`` now: measured, or scaled by area from the
        nearest size measured for the same model; None before any. The wall ms is stretched by
        how much longer than their CPU time the recent calls took against the first ones (a model
        thread that gets less than a core, beside the frames), unless priced :data:`UNLOADED`;
        priced :data:`WARM_UP`, neither that nor the recent calls' slowdown applies."""
        key = self.cost_key(level)
        slowdown = 1.0 if pricing == WARM_UP else self._slowdown
        if key in self._model_ms:
            wall, cpu = self._model_ms[key]
            scale = slowdown
        else:
            seen = [size for model, size, wide in self._model_ms if (model, wide) == (key[0], key[2])]
            if not seen:
                return None
            nearest = min(seen, key=lambda s: abs(s - level.size))
            scale = (level.size / nearest) ** 2 * slowdown
            wall, cpu = self._model_ms[(key[0], nearest, key[2])]
        return wall * scale * (self._stretch if pricing == LIVE else 1.0), cpu * scale

    def calls_per_s(self, level: Level, pricing: str = LIVE) -> float | None:
        """The model calls a second at ``level``: one every ``stride`` frames, or back to back
        when a call takes longer; None before any cost is known."""
        cost = self._model_cost(level, pricing)
        if cost is None:
            return None
        return min(1.0 / (self.period_s * level.stride), 1e3 / max(cost[0], 1e-3))

    def _ages(self, level: Level) -> tuple[float, float] | None:
        """The (mean, oldest) result age predicted at ``level`` (:func:`result_ages`); None before any cost."""
        cost = self._model_cost(level)
        return None if cost is None else result_ages(level, cost[0] / (self.period_s * 1e3))

    def _quality(self, level: Level) -> float:
        """``level``'s predicted MAD with its predicted ages (infinite before any cost is known)."""
        ages = self._ages(level)
        return math.inf if ages is None else predicted_mad(level, self.levels[0].size, ages[0])

    def _fits(self, level: Level, share: float, pricing: str = LIVE) -> bool:
        """Whether ``level``'s predicted CPU is within ``share`` of :attr:`capacity` (and, for a level
        whose keyframes wait, whether its calls land in time: :meth:`_waiting_fits`), priced by
        ``pricing`` (:data:`LIVE`, :data:`UNLOADED`, :data:`WARM_UP`)."""
        predicted = self._predicted_cpu(level, pricing)
        return (predicted is not None and predicted <= share * self.capacity
                and self._waiting_fits(level, share, pricing))

    def _waiting_fits(self, level: Level, share: float, pricing: str = LIVE) -> bool:
        """Whether a keyframe may wait for its call at ``level``: its latency (its call, and
        :data:`WAIT_REST` times the rest of a frame's work) is predicted within :data:`WAIT_LATENCY`
        of the latency target (times ``share``, the room :meth:`_fits` keeps), and the frame
        thread, waiting for one call a stride, within :data:`WAIT_BUSY` of the stride's frame
        periods. True for a level whose keyframes do not wait. ``pricing``: as :meth:`_fits` takes it."""
        if not level.waits:
            return True
        cost = self._model_cost(level, pricing)
        if cost is None or self._frame_ms is None or self._rest_percent is None:
            return False
        period_ms = self.period_s * 1e3
        # All the matte's work a frame but the model's. Before the run has measured it, the warm-up's
        # own figure: WAIT_REST and WAIT_LATENCY were set against it (its CPU is priced live: _rest).
        rest = self._rest(pricing) if self._rest_measured else self._warm_up_rest
        rest_ms = rest * period_ms / 100.0
        if self.cores >= 2:
            # The source's decoding runs on its own thread beside the wait, on another core, and
            # before the frame's capture time: not in a keyframe's latency. On one core it shares
            # the core with the call.
            rest_ms = max(0.0, rest_ms - self._capture_ms)
            frame_ms = self._frame_ms
        else:
            # On one core the output's and the capture's work shares the core with the frames and
            # the calls they wait for: a stride's frames take all of the rest, not the frame thread's share.
            frame_ms = max(self._frame_ms, rest_ms)
        return (cost[0] + WAIT_REST * rest_ms <= share * WAIT_LATENCY * self.latency_ms
                and cost[0] + level.stride * frame_ms <= WAIT_BUSY * level.stride * period_ms)

    def give_up_s(self) -> float:
        """Seconds after its capture at which a keyframe stops waiting for its own result."""
        return WAIT_GIVE_UP * self.latency_ms / 1e3

    def _best(self, share: float, cheaper_than: float | None = None,
              shorter_waits_than: Level | None = None, pricing: str = LIVE) -> int | None:
        """The index of the level with the best predicted matte among those that fit within ``share``
        of the capacity (and cost under ``cheaper_than`` % of a core, and where they wait, wait for
        calls at most :data:`DOWN_TO` of ``shorter_waits_than``'s); None when none does.

        ``pricing`` (:meth:`_fits`): :data:`UNLOADED`, the levels are priced as they run on a core
        that keeps up, for a step down on one core from a level that did not: the calls' wall time
        without the stretch measured there, and the rest of the matte at most
        :data:`WARM_UP_REST_LIVE` times the warm-up's figure. A
        level that falls behind on one core inflates its own costs: its backlog runs beside each
        call (288 px calls of 26 ms of CPU took 55-58 ms), and results that land late cost the flow
        more (the rest at 65-75 % of the core, against 55 % at 192 px every second frame, waiting,
        which kept up). Priced at those, even that level seemed too slow for its keyframes to wait,
        and the run went to the fallback, whose matte is twice as far from the truth; 192 px every
        second frame then held at a latency p95 of 43-62 ms (README: Quality live). :data:`WARM_UP`:
        for a step down with the matte itself filling the cores (:meth:`update`)."""
        def waits_less(level: Level) -> bool:
            if shorter_waits_than is None or not level.waits:
                return True
            return self._model_cost(level)[0] <= DOWN_TO * self._model_cost(shorter_waits_than)[0]

        fitting = [i for i, level in enumerate(self.levels) if self._fits(level, share, pricing) and waits_less(level)
                   and (cheaper_than is None or self._predicted_cpu(level, pricing) < cheaper_than)]
        return min(fitting, key=lambda i: (self._quality(self.levels[i]), i)) if fitting else None

    def _predicted_cpu(self, level: Level, pricing: str = LIVE) -> float | None:
        """The matte's CPU at ``level``, percent of one core: the rest's, measured, and the model's
        (``pricing``: as :meth:`_fits` takes it)."""
        cost, calls = self._model_cost(level, pricing), self.calls_per_s(level, pricing)
        if cost is None or self._rest_percent is None:
            return None
        return self._rest(pricing) + cost[1] * calls / 10.0

    def _rest(self, pricing: str = LIVE) -> float:
        """The matte's CPU besides the model's, % of a core: as measured (before the run has
        measured it, :data:`WARM_UP_REST_LIVE` times the warm-up's figure), or priced other than
        :data:`LIVE`, at most that (:meth:`_best`)."""
        if not self._rest_measured:
            return WARM_UP_REST_LIVE * self._warm_up_rest
        if pricing != LIVE and self._warm_up_rest is not None:
            return min(self._rest_percent, WARM_UP_REST_LIVE * self._warm_up_rest)
        return self._rest_percent

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
            dropped = sample.dropped - last.dropped
            drops = dropped / frames
            # The busier of the frame thread and the finish thread at work. A keyframe's wait is not
            # work: it ends by the give-up time, and what it costs the frames behind it shows in
            # their latency and drops, which have rules of their own.
            waited = sample.waited_s - last.waited_s
            frame_busy = (sample.busy_s - last.busy_s - waited) / span
            finish_busy = (sample.finish_busy_s - last.finish_busy_s) / span
            busy, busy_thread = max((frame_busy, "frame"), (finish_busy, "finish"))
            worked = max(1, frames - (sample.dropped - last.dropped))
            frame_ms = 1e3 * max(0.0, frame_busy * span) / worked
            self._frame_ms = frame_ms if self._frame_ms is None else 0.8 * self._frame_ms + 0.2 * frame_ms
            cpu = 100.0 * (sample.cpu_s - last.cpu_s) / span
            model_cpu = 100.0 * (sample.model_cpu_s - last.model_cpu_s) / span
            rest = max(0.0, cpu - model_cpu)
            # The first window's figure replaces the warm-up's estimate (its quickest frames, no thread of the run beside them).
            self._rest_percent = rest if not self._rest_measured else 0.8 * self._rest_percent + 0.2 * rest
            self._rest_measured = True
            held = self._held.setdefault(self._index, [0.0, 0.0])
            held[0] += span
            held[1] += cpu * span
            self._window = {"busy": round(busy, 3), "drops": round(drops, 3), "cpu_percent": round(cpu, 1),
                            "model_cpu_percent": round(model_cpu, 1), "latency_p95_ms": sample.latency_p95_ms,
                            "age_p95": sample.age_p95}
            if sample.time < self._next_decision:
                return None
            # The CPU budget is judged on the last CPU_WINDOWS windows, not one half-second's noise.
            self._recent_cpu = (self._recent_cpu + [cpu])[-CPU_WINDOWS:]
            recent_cpu = sum(self._recent_cpu) / len(self._recent_cpu)
            over = self._overload(drops if dropped >= MIN_DROPS else 0.0, busy, busy_thread, recent_cpu,
                                  sample.latency_p95_ms, sample.age_p95)
            if over is not None:
                reason, over_budget = over
                self._headroom_since = None
                level = self.levels[self._index]
                now_cost = max(recent_cpu, self._predicted_cpu(level) or 0.0)
                if level.waits and not over_budget:
                    cheaper = None
                    if self._fills_the_cores(recent_cpu):
                        # Late with the matte itself filling the cores: its own load stretches the
                        # calls (a wide call's threads wait for each other on cores the rest of the
                        # matte shares), so a level that loads them less waits for shorter calls, the
                        # same size at a longer stride too. The best matte among the levels cheaper
                        # than this one, all priced as the warm-up timed them.
                        cheaper = self._best(CPU_UP, cheaper_than=self._predicted_cpu(level, WARM_UP) - 0.5,
                                             pricing=WARM_UP)
                    if cheaper is None:
                        # Late or busy for the keyframes' waits: the best matte among the levels that
                        # cost no more and wait for no call as long as this one's; on one core, priced
                        # as they run when they keep up (with more, a level's calls are stretched by
                        # what else runs on the machine, a hog, more than by its own backlog).
                        cheaper = self._best(CPU_UP, cheaper_than=now_cost + 0.5, shorter_waits_than=level,
                                             pricing=UNLOADED if self.cores == 1 else LIVE)
                else:
                    # The best matte among the levels cheaper than what this one costs now.
                    cheaper = self._best(CPU_UP, cheaper_than=DOWN_TO * now_cost)
                return self._move(sample.time, cheaper if cheaper is not None else self._cheaper(), reason)
            better = self._better(sample.latency_p95_ms)
            if better is not None:
                if self._headroom_since is None:
                    self._headroom_since = sample.time
                if sample.time - self._headroom_since >= self._up_hold[better]:
                    self._headroom_since = None
                    return self._move(sample.time, better, "headroom")
            else:
                self._headroom_since = None
            return None

    def _fills_the_cores(self, cpu: float) -> bool:
        """Whether the matte's own CPU (``cpu``, % of a core) fills the cores (:data:`FILLS_CORES`
        of them, two or more), as the budget lets it: it, not another program, is what slows its
        calls. (Over a smaller budget, the budget's own rule steps it down.)"""
        cores = 100.0 * self.cores
        return self.cores >= 2 and self.capacity >= cores and cpu >= FILLS_CORES * cores

    def _overload(self, drops: float, busy: float, busy_thread: str, cpu: float, latency: float | None,
                  age: float | None) -> tuple[str, bool] | None:
        """What is over at the level held -> (the reason, for the log; whether it is the CPU
        budget), or None."""
        if drops > DROPS_DOWN:
            return f"{drops:.0%} of frames dropped", False
        if busy > BUSY_DOWN:
            return f"{busy_thread} thread {busy:.0%} busy", False
        limit = self.latency_ms * (WAIT_LATENCY_DOWN if self.levels[self._index].waits else 1.0)
        if latency is not None and latency > limit:
            waiting = " with keyframes waiting" if limit < self.latency_ms else ""
            return f"latency p95 {latency:.0f} ms{waiting}", False
        if self.max_cpu and cpu > self.max_cpu:
            return f"CPU {cpu:.0f}% over {self.budget_text()}", True
        ages = self._ages(self.levels[self._index])
        if age is not None and ages is not None and age > 2 * ages[1] + 2:
            # The model gets far less CPU than its calls were measured with: it is starved.
            return f"results {age:.0f} frames old at p95, over {2 * ages[1] + 2:.0f}", False
        return None

    def budget_text(self) -> str:
        """The CPU budget for the log: how much, where it came from and how to change it."""
        if self.max_cpu_default:
            return f"the default budget of {self.max_cpu:.0f}%, all cores but one (--max-cpu; 0 lifts it)"
        return f"the budget of {self.max_cpu:.0f}% (--max-cpu or [live] max_cpu; 0 lifts it)"

    def _better(self, latency: float | None) -> int | None:
        """The level to step up to: the best predicted matte that fits with room to spare, when it
        is better than this level's by ``BETTER_BY``; None otherwise."""
        if latency is not None and latency > LATENCY_UP * self.latency_ms:
            return None
        best = self._best(CPU_UP)
        if best is None or self._quality(self.levels[best]) > self._quality(self.levels[self._index]) - BETTER_BY:
            return None
        return best

    def _cheaper(self) -> int:
        """For a step down when none fits: the next level down the list whose keyframes do not
        wait, predicted to cost less than this one, or no more where this one's keyframes wait
        (the waits go: on one core, Selfie with every frame waiting for it, then not); any next
        one where no cost is known; or this one, the cheapest there is."""
        now = self._predicted_cpu(self.levels[self._index])
        waits = self.levels[self._index].waits
        for index in range(self._index + 1, len(self.levels)):
            if self.levels[index].waits:
                continue
            cost = self._predicted_cpu(self.levels[index])
            if now is None or cost is None or cost < now or (waits and cost <= now):
                return index
        return self._index

    def _cheapest(self) -> int:
        """The level predicted to cost the least CPU, to the percent, with the better matte among
        those, its keyframes not waiting (nothing fits: no frame should wait); the last (the
        fallback, or the smallest network at the longest stride) where no cost is known. The
        fallback model is the cheapest only where RVM's smallest calls are dear: a fallback call
        every frame can cost as much as 192 px every fourth."""
        known = [(round(cost), self._quality(level), index) for index, level in enumerate(self.levels)
                 if not level.waits and (cost := self._predicted_cpu(level)) is not None]
        return min(known)[2] if known else len(self.levels) - 1

    def _move(self, now: float, index: int, reason: str) -> Change | None:
        """Go to level ``index``: up when the reason is headroom, else down."""
        if index == self._index:
            return None
        up = reason == "headroom"
        if not up and self._last_up is not None:
            up_time, up_index = self._last_up
            if up_index == self._index and now - up_time < FAILED_WITHIN_S:
                # The step up did not hold: wait longer before trying that level again.
                self._up_hold[up_index] = min(MAX_UP_HOLD_S, 2 * self._up_hold[up_index])
        if up:
            self._last_up = (now, index)
        self._index = index
        self._next_decision = now + SETTLE_S
        self._recent_cpu = []  # the new level's CPU only
        change = Change(round(now - self._start, 3), self.levels[index], reason)
        self.timeline.append(change)
        return change

    def _prediction(self, level: Level) -> dict:
        """What ``level`` is predicted to cost and give, for the snapshot (None where nothing is known yet)."""
        ages = self._ages(level)
        return {"cpu_percent": _rounded(self._predicted_cpu(level)), "calls_per_s": _rounded(self.calls_per_s(level)),
                "age": _rounded(ages and ages[0]), "mad": _rounded(ages and self._quality(level))}

    def snapshot(self) -> dict:
        """For ``--stats-json``: the level now, the last window's figures, what each level is
        predicted to cost (CPU % of a core, model calls a second) against the capacity, every change,
        and each level held (``held``): its seconds, the matte's CPU measured there, % of a core
        (what ``--max-cpu`` holds: the matte's threads, not the encoders'), and its model calls'
        mean wall ms (``call_ms``: how many frames after its input a result lands, which
        ``scripts/eval_levels.py --follow`` replays)."""
        with self._lock:
            level = self.levels[self._index]
            predicted = {str(each): self._prediction(each) for each in self.levels}
            return {"level": _level_json(level), "window": dict(self._window), "capacity_percent": self.capacity,
                    "predicted": predicted,
                    "timeline": [{"t": c.time, **_level_json(c.level), "reason": c.reason} for c in self.timeline],
                    "held": [{**_level_json(self.levels[index]), "seconds": round(seconds, 2),
                              "cpu_percent": round(cpu / seconds, 1), **self._call_ms(self.levels[index])}
                             for index, (seconds, cpu) in self._held.items() if seconds > 0]}

    def _call_ms(self, level: Level) -> dict:
        """``{"call_ms": the mean wall ms of the model calls at level}``, {} where it made none."""
        count, wall_ms = self._calls.get(level, (0, 0.0))
        return {"call_ms": round(wall_ms / count, 1)} if count else {}


def _rounded(value: float | None) -> float | None:
    """``value`` to one decimal, None as it is."""
    return None if value is None else round(value, 1)


def _level_json(level: Level) -> dict:
    return {"size": level.size, "stride": level.stride, **({"model": level.model} if level.model else {}),
            **({"waits": True} if level.waits else {})}


def _model_ms_text(model_ms: dict[Level, tuple[float, float]]) -> str:
    """``{Level: (wall, cpu)}`` -> "model 384px 61 ms, 288px 35 ms, ...; waiting keyframes' 384px
    40 ms, ..." (the wide copy's calls, where there is one) for the log and timeline."""
    def listed(levels: list[Level]) -> str:
        return ", ".join(f"{level.model + ' ' if level.model else ''}{level.size}px {model_ms[level][0]:.0f} ms"
                         for level in levels)

    wide = [level for level in model_ms if level.waits]
    text = "model " + listed([level for level in model_ms if not level.waits])
    return text + (f"; waiting keyframes' {listed(wide)}" if wide else "")


def for_live(settings: LiveSettings, matter, source, fallback=None, wide_waits: bool = False) -> Governor:
    """The governor of a live run of ``source`` (``width``, ``height``, ``fps``) on ``matter``: its
    ladder starts at the size the model would take the source's frames at; ``fallback``, a
    faster model, is its last rung; ``wide_waits``: as :class:`Governor` takes it."""
    cores = available_cores()
    top = max(matter.input_size(source.width, source.height))
    last = None if fallback is None else Level(max(fallback.input_size(source.width, source.height)), 1, fallback.name)
    governor = Governor(ladder(top, fallback=last, waiting_only=cores < 2), 1.0 / source.fps,
                        latency_ms=settings.latency_ms, max_cpu=settings.cpu_budget(cores),
                        max_cpu_default=settings.max_cpu is None, cores=cores, start=time.perf_counter(),
                        wide_waits=wide_waits)
    budget = f"CPU within {governor.budget_text()}" if governor.max_cpu else "no CPU budget"
    log.info("adaptive: from %s down to %s on %d core(s), %s", governor.levels[0], governor.levels[-1], cores, budget)
    return governor
