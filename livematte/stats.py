"""Per-stage timings, throughput, latency and frame counts for a run."""

from __future__ import annotations

import json
import threading
import time
from collections import defaultdict, deque
from pathlib import Path

import numpy as np

from .media.atomic import write_atomically


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
        self.repeated = 0
        self._stage_ms: dict[str, deque] = defaultdict(lambda: deque(maxlen=window))
        self._latency_ms: deque = deque(maxlen=window)
        self._dropped_fn = lambda: 0
        self._first_out: float | None = None  # first and last fresh (composited) frame sent
        self._last_out: float | None = None
        self._first_any: float | None = None  # first and last frame sent, repeats included
        self._last_any: float | None = None

    def count_dropped_by(self, fn) -> None:
        """``fn()`` -> frames dropped upstream (e.g. a newest-wins slot's overwrites)."""
        self._dropped_fn = fn

    def frame_in(self) -> None:
        with self._lock:
            self.frames_in += 1

    def stage(self, name: str, ms: float) -> None:
        with self._lock:
            self._stage_ms[name].append(ms)

    def stages(self, timings: dict[str, float]) -> None:
        with self._lock:
            for name, ms in timings.items():
                self._stage_ms[name].append(ms)

    def output(self, captured_at: float | None, repeated: bool = False) -> None:
        """One frame sent; ``captured_at`` of the frame it shows (None for a placeholder)."""
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
                if self._first_out is None:
                    self._first_out = now
                self._last_out = now
                if captured_at is not None:
                    self._latency_ms.append((now - captured_at) * 1e3)

    @property
    def dropped_total(self) -> int:
        return self._dropped_fn()

    def snapshot(self) -> dict:
        """The ``--stats-json`` schema.

        fps: fresh frames per second (each composited with its own matte), first to last;
        output_fps: every frame sent per second, repeats of the last frame included (what a
        virtual camera receives); latency_ms {p50, p95} of fresh frames, capture to output;
        frames_in, frames_out (repeats included), composited (fresh), repeated, dropped
        (never processed); stages_ms: mean ms per stage; elapsed_s.
        """
        with self._lock:
            fps = _rate(self.composited, self._first_out, self._last_out)
            output_fps = _rate(self.frames_out, self._first_any, self._last_any)
            latency = np.array(self._latency_ms) if self._latency_ms else np.zeros(1)
            stages = {name: round(float(np.mean(v)), 3) for name, v in self._stage_ms.items() if v}
            return {
                "fps": round(fps, 2),
                "output_fps": round(output_fps, 2),
                "latency_ms": {"p50": round(float(np.percentile(latency, 50)), 1),
                               "p95": round(float(np.percentile(latency, 95)), 1)},
                "frames_in": self.frames_in,
                "frames_out": self.frames_out,
                "dropped": self.dropped_total,
                "repeated": self.repeated,
                "composited": self.composited,
                "stages_ms": stages,
                "elapsed_s": round(time.perf_counter() - self.started, 2),
            }

    def latencies(self) -> list[float]:
        with self._lock:
            return list(self._latency_ms)

    def line(self) -> str:
        s = self.snapshot()
        stages = " ".join(f"{k} {v:.1f}" for k, v in s["stages_ms"].items())
        return (f"{s['fps']:.1f} fps fresh ({s['output_fps']:.1f} out), latency p50 {s['latency_ms']['p50']:.0f} ms "
                f"p95 {s['latency_ms']['p95']:.0f} ms, in {s['frames_in']} fresh {s['composited']} "
                f"repeated {s['repeated']} dropped {s['dropped']} | ms: {stages}")

    def write_json(self, path: Path) -> None:
        """The :meth:`snapshot` as JSON, written atomically."""
        write_atomically(path, (json.dumps(self.snapshot(), indent=2) + "\n").encode())
