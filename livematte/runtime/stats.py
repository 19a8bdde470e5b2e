"""Per-stage timings, throughput, latency and frame counts for a run."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import defaultdict, deque
from pathlib import Path

import numpy as np

from .governor import Level
from ..media.atomic import write_atomically


def _rate(count: int, first: float | None, last: float | None) -> float:
    """Events per second from the first to the last of ``count`` events."""
    span = (last - first) if first is not None and last is not None else 0.0
    return (count - 1) / span if span > 0 else 0.0


class Stats:
    """Thread-safe counters. Stage times are per processed frame, in ms."""

    def __init__(self, window: int = 2000):
        self._lock = threading.Lock()
        self.started = time.perf_counter()
        self.frames_in = 0
        self.frames_out = 0  # output frames sent, repeats included
        self.composited = 0  # new frames composited (each with its own matte)
        self.reused = 0  # of those, mattes moved from the last model call (live governor) rather than their own call
        self.repeated = 0
        # Live, keyframes that waited for their own results, and of those, the ones that gave up
        # at the governor's give-up time (matted from an older result, as the frames between).
        self.keyframes = {"waited": 0, "gave_up": 0}
        self.governor = None  # the live governor, whose level and timeline the figures include
        self._cpu_first: float | None = None  # process CPU seconds at the first fresh frame sent
        self._fresh_per_second: list[int] = []  # fresh frames sent in each second from the first
        self._stage_ms: dict[str, deque] = defaultdict(lambda: deque(maxlen=window))
        self._latency_ms: deque = deque(maxlen=window)
        self._captured_at: deque = deque(maxlen=window)  # those frames' capture times, perf_counter s
        self._ages: deque = deque(maxlen=window)  # fresh frames' result ages, frames (live, the model on its own thread)
        self.model_calls = 0
        self._first_call: float | None = None
        self._last_call: float | None = None
        self._dropped_fn = lambda: 0
        # CPU seconds by thread: the ended pipelines' (summed), and the running one's, asked for.
        self._threads_cpu_done: dict[str, float] = defaultdict(float)
        self._threads_cpu_fn = None
        self._outputs: dict = {}  # name -> figures() of an output on a thread of its own
        self._first_out: float | None = None  # first and last fresh (composited) frame sent
        self._last_out: float | None = None
        self._first_any: float | None = None  # first and last frame sent, repeats included
        self._last_any: float | None = None

    def count_dropped_by(self, fn) -> None:
        """``fn()`` -> frames dropped upstream (e.g. a newest-wins slot's overwrites)."""
        self._dropped_fn = fn

    def count_threads_cpu_by(self, fn) -> None:
        """``fn()`` -> the running pipeline's CPU seconds by thread (``{"capture": 1.2, ...}``)."""
        self._threads_cpu_fn = fn

    def add_threads_cpu(self, seconds: dict[str, float]) -> None:
        """An ended pipeline's CPU seconds by thread; it stops being asked for them."""
        with self._lock:
            for name, value in seconds.items():
                self._threads_cpu_done[name] += value
            self._threads_cpu_fn = None

    def add_output(self, name: str, figures) -> None:
        """An output on a thread of its own (``sinks.threaded``): ``figures()`` -> {fps, written,
        dropped, repeated, ...}, in the snapshot's ``outputs`` under ``name``."""
        self._outputs[name] = figures

    def frame_in(self) -> None:
        with self._lock:
            self.frames_in += 1

    def keyframe(self, gave_up: bool) -> None:
        """A keyframe waited for its own result; ``gave_up``: it stopped waiting before it landed."""
        with self._lock:
            self.keyframes["waited"] += 1
            self.keyframes["gave_up"] += gave_up

    def stage(self, name: str, ms: float) -> None:
        with self._lock:
            self._stage_ms[name].append(ms)

    def stages(self, timings: dict[str, float]) -> None:
        with self._lock:
            for name, ms in timings.items():
                self._stage_ms[name].append(ms)

    def model_call(self, timings: dict[str, float]) -> None:
        """One model call on the model thread (live): its stages' ms."""
        now = time.perf_counter()
        with self._lock:
            self.model_calls += 1
            if self._first_call is None:
                self._first_call = now
            self._last_call = now
        self.stages(timings)

    def output(self, captured_at: float | None, repeated: bool = False, reused: bool = False,
               age: int | None = None) -> None:
        """One frame sent; ``captured_at`` of the frame it shows (None for a placeholder);
        ``reused``: its matte came without a model call of its own; ``age``: the frames from
        its result's input to it (live, the model on its own thread)."""
        now = time.perf_counter()
        with self._lock:
            self.frames_out += 1
            if self._first_any is None:
                self._first_any = now
            self._last_any = now
            if repeated:
                self.repeated += 1
            else:
                self.composited += 1
                self.reused += reused
                if self._first_out is None:
                    self._first_out = now
                    self._cpu_first = time.process_time()
                self._last_out = now
                second = int(now - self._first_out)
                while len(self._fresh_per_second) <= second:
                    self._fresh_per_second.append(0)
                self._fresh_per_second[second] += 1
                if captured_at is not None:
                    self._latency_ms.append((now - captured_at) * 1e3)
                    self._captured_at.append(captured_at)
                if age is not None:
                    self._ages.append(age)

    @property
    def dropped_total(self) -> int:
        return self._dropped_fn()

    def recent_latency_p95(self, frames: int = 30, since: float | None = None) -> float | None:
        """Latency p95 of the last ``frames`` fresh frames, ms, of those captured at ``since``
        (``time.perf_counter()`` seconds) or later where given; None where there is none."""
        with self._lock:
            recent = [latency for latency, captured in zip(list(self._latency_ms)[-frames:],
                                                           list(self._captured_at)[-frames:])
                      if since is None or captured >= since]
        return float(np.percentile(recent, 95)) if recent else None

    def recent_age_p95(self, frames: int = 30) -> float | None:
        """The p95 of the last ``frames`` fresh frames' result ages, frames; None before the first."""
        with self._lock:
            recent = list(self._ages)[-frames:]
        return float(np.percentile(recent, 95)) if recent else None

    def snapshot(self) -> dict:
        """The ``--stats-json`` schema.

        fps: fresh frames per second (each composited with its own matte), first to last;
        output_fps: every frame sent per second, repeats of the last frame included (what a
        virtual camera receives); latency_ms {p50, p95} of fresh frames, capture to output;
        frames_in, frames_out (repeats included), composited (fresh), reused (fresh, with the
        last model result moved to them), repeated, dropped (never processed); keyframes (live, where
        keyframes wait): {waited, gave_up}, those that waited for their own results and of those, the
        ones that gave up; model_calls_per_s;
        cpu_percent: process CPU over the run (100 = one core); cpu_ms_a_frame: the CPU ms each of
        the pipeline's threads spent a fresh frame (``capture``, ``frames``, ``finish``, ``model``
        with its runtime's own threads, live; ``capture``, ``prepare``, ``infer``, offline; and
        ``output``, the thread that composites and sends), where the platform tells a thread's CPU
        time (Linux); the encoders' threads are not among them; fps_by_second: fresh frames sent
        in each whole second from the first (the last second may be partial); stages_ms: mean ms per stage
        (``model`` per call); elapsed_s; governor (live with ``--adapt on``): the level now, the
        last window's figures and the timeline of level changes; outputs (live, those on a thread of
        their own: the recording, the virtual camera, the matte file): by name, each one's fps
        (frames it wrote a second), written (frames in it, its repeats included), dropped (frames
        handed to it that it left out), repeated (a recording's ticks without a frame of their own).
        """
        with self._lock:
            fps = _rate(self.composited, self._first_out, self._last_out)
            output_fps = _rate(self.frames_out, self._first_any, self._last_any)
            latency = np.array(self._latency_ms) if self._latency_ms else np.zeros(1)
            ages = np.array(self._ages) if self._ages else np.zeros(1)
            stages = {name: round(float(np.mean(v)), 3) for name, v in self._stage_ms.items() if v}
            elapsed = time.perf_counter() - self.started
            model_frames = self.composited - self.reused
            figures = {
                "fps": round(fps, 2),
                "output_fps": round(output_fps, 2),
                "latency_ms": {"p50": round(float(np.percentile(latency, 50)), 1),
                               "p95": round(float(np.percentile(latency, 95)), 1)},
                "frames_in": self.frames_in,
                "frames_out": self.frames_out,
                "dropped": self.dropped_total,
                "repeated": self.repeated,
                "composited": self.composited,
                "reused": self.reused,
                "keyframes": dict(self.keyframes),
                "model_calls_per_s": self._calls_per_s(fps, model_frames),
                "result_age": {"p50": round(float(np.percentile(ages, 50)), 1),
                               "p95": round(float(np.percentile(ages, 95)), 1)},
                "cpu_percent": self._cpu_percent(),
                **self._cpu_ms_a_frame(),
                "fps_by_second": list(self._fresh_per_second),
                "stages_ms": stages,
                "elapsed_s": round(elapsed, 2),
            }
        if self.governor is not None:
            figures["governor"] = self.governor.snapshot()
        if self._outputs:
            figures["outputs"] = {name: output() for name, output in self._outputs.items()}
        return figures

    def _calls_per_s(self, fps: float, model_frames: int) -> float:
        """Model calls a second: counted on the model thread (live), else the share of fresh frames
        that had a call of their own, at the fresh rate."""
        if self.model_calls:
            return round(_rate(self.model_calls, self._first_call, self._last_call), 2)
        return round(fps * model_frames / self.composited, 2) if self.composited else 0.0

    def _cpu_ms_a_frame(self) -> dict:
        """``{"cpu_ms_a_frame": {thread: ms}}`` over the fresh frames so far; {} when nothing is
        known (no thread CPU clocks, or no fresh frame). Called with the lock held."""
        seconds = dict(self._threads_cpu_done)
        running = self._threads_cpu_fn() if self._threads_cpu_fn is not None else {}
        for name, value in running.items():
            seconds[name] = seconds.get(name, 0.0) + value
        if not seconds or not self.composited:
            return {}
        return {"cpu_ms_a_frame": {name: round(1e3 * value / self.composited, 2) for name, value in seconds.items()}}

    def _cpu_percent(self) -> float:
        """Process CPU (all threads) from the first fresh frame sent to now; 100 = one core."""
        if self._first_out is None:
            return 0.0
        span = time.perf_counter() - self._first_out
        return round(100.0 * (time.process_time() - self._cpu_first) / span, 1) if span > 0 else 0.0

    def latencies(self) -> list[float]:
        with self._lock:
            return list(self._latency_ms)

    def line(self, detailed: bool | None = None) -> str:
        """The log's line of running figures (``live``'s every 5 s, and its last).

        Short: fresh fps, latency p50 (p95), the governor's level, process CPU, and frames
        dropped when there are any. ``detailed`` (None: when the log shows ``-v``'s lines) adds
        the frame counts, the rate sent with repeats, model calls per second and the mean ms per
        stage. What each figure means: :meth:`snapshot`, and ``livematte live --help``.
        """
        if detailed is None:
            detailed = logging.getLogger("livematte").isEnabledFor(logging.DEBUG)
        s = self.snapshot()
        latency = s["latency_ms"]
        parts = [f"{s['fps']:.1f} fps", f"latency {latency['p50']:.0f} ms (p95 {latency['p95']:.0f})"]
        if "governor" in s:
            age = s["result_age"]
            parts.append(f"{Level(**s['governor']['level'])}, age {age['p50']:.0f} (p95 {age['p95']:.0f})")
        parts.append(f"CPU {s['cpu_percent']:.0f}%")
        if s["dropped"]:
            parts.append(f"{s['dropped']} dropped")
        for name, output in s.get("outputs", {}).items():
            if output["dropped"]:
                parts.append(f"{name}: {output['fps']:.1f} fps, {output['dropped']} dropped")
        short = ", ".join(parts)
        if not detailed:
            return short
        stages = " ".join(f"{k} {v:.1f}" for k, v in s["stages_ms"].items())
        return (f"{short} | frames in {s['frames_in']}, fresh {s['composited']} ({s['reused']} reused), "
                f"repeated {s['repeated']}, dropped {s['dropped']}; sent {s['output_fps']:.1f} fps with repeats; "
                f"{s['model_calls_per_s']:.1f} model calls/s | ms: {stages}")

    def write_json(self, path: Path) -> None:
        """The :meth:`snapshot` as JSON, written atomically."""
        write_atomically(path, (json.dumps(self.snapshot(), indent=2) + "\n").encode())
