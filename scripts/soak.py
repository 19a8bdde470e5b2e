"""Soak test: the live pipeline for many frames on the null sink; memory, threads and fps must stay flat.

    python scripts/soak.py [--source VIDEO] [--frames 10000] [--preset live] [--realtime] [--json PATH]

The source (default: the built-in demo clip) is played in a loop. With ``--realtime`` it
is paced at its frame rate through the live pipeline (newest-wins buffers, repeats on the
output); without, it runs flat out through the same stages with back-pressure, so every
frame is processed and the run takes as long as the machine needs. After a warm-up
of 1,000 frames it reports RSS growth, the thread count, and the fps of the first and
last 1,000 frames. Pass/fail bounds (printed): RSS growth at most 50 MB, the last
1,000 frames' fps within 10 % of the first 1,000's.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import threading
import time
from pathlib import Path

import psutil

from livematte import assembly, config
from livematte.runtime.run import run
from livematte.sinks import NullSink
from livematte.runtime.stats import Stats
from livematte.sources.capture import FileSource

WARM_UP, WINDOW = 1000, 1000


class RecordingSink(NullSink):
    """Null sink that notes when each frame went out, and the process's RSS every 100 frames."""

    def __init__(self):
        super().__init__()
        self.sent_at: list[float] = []
        self.rss_mb: list[tuple[int, float]] = []
        self.threads: list[tuple[int, int]] = []
        self._process = psutil.Process()

    def send(self, image, pts):
        super().send(image, pts)
        self.sent_at.append(time.perf_counter())
        if self.frames % 100 == 0:
            self.rss_mb.append((self.frames, self._process.memory_info().rss / 2**20))
            self.threads.append((self.frames, threading.active_count()))


def window_fps(times: list[float], start: int, count: int) -> float:
    chunk = times[start:start + count]
    return (len(chunk) - 1) / (chunk[-1] - chunk[0])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", default=None, help="video to loop (default: the built-in demo clip)")
    parser.add_argument("--frames", type=int, default=10_000)
    parser.add_argument("--preset", default="live")
    parser.add_argument("--realtime", action="store_true", help="play at the source's rate (default: flat out)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if args.frames < WARM_UP + 2 * WINDOW:
        parser.error(f"--frames must be at least {WARM_UP + 2 * WINDOW}")
    if args.source is None:
        from livematte.sources.demo_clip import prepare_inputs

        args.source = str(prepare_inputs()[0])
    settings = config.load(args.preset)
    sink = RecordingSink()
    stats = Stats()
    with contextlib.ExitStack() as stack:
        # As ``livematte live --source VIDEO --sink null [--realtime]`` builds its run: governed with
        # its thread cap and fallback when played as a camera; flat out, every frame gets the model.
        source = FileSource(args.source, realtime=args.realtime, loop=True)
        stack.callback(source.close)
        compositor = assembly.compositor(settings)
        stack.callback(compositor.close)
        governed = args.realtime and settings.live.adapt
        loaded = assembly.load_models(settings, stack, governed=governed)
        engine = assembly.live_engine(settings, loaded, source, compositor, governed=governed)
        stats.governor = engine.governor
        threads_before = threading.active_count()
        started = time.perf_counter()
        run(source, engine, compositor, sink, live=args.realtime, paced=args.realtime, max_frames=args.frames,
            stats=stats, stats_every=60, audio_ends_with_video=True)
    elapsed = time.perf_counter() - started
    threads_after = threading.active_count()

    rss_at = dict(sink.rss_mb)
    base_frame = min((f for f in rss_at if f >= WARM_UP), default=min(rss_at))
    rss_start, rss_end = rss_at[base_frame], sink.rss_mb[-1][1]
    first = window_fps(sink.sent_at, WARM_UP, WINDOW)
    last = window_fps(sink.sent_at, len(sink.sent_at) - WINDOW, WINDOW)
    drift = (last - first) / first
    result = {
        "frames_out": len(sink.sent_at), "elapsed_s": round(elapsed, 1), "preset": args.preset,
        "realtime": args.realtime, "rss_mb_after_warm_up": round(rss_start, 1), "rss_mb_end": round(rss_end, 1),
        "rss_growth_mb": round(rss_end - rss_start, 1),
        "threads": {"before": threads_before, "max_during": max(n for _, n in sink.threads),
                    "after": threads_after},
        "fps_first_1000": round(first, 2), "fps_last_1000": round(last, 2), "fps_drift": round(drift, 4),
        "dropped": stats.dropped_total, "stats": stats.snapshot(),
    }
    print(json.dumps(result, indent=2))
    ok = result["rss_growth_mb"] <= 50 and abs(drift) <= 0.10 and threads_after <= threads_before
    print(f"soak: RSS growth {result['rss_growth_mb']:+.1f} MB (limit 50), fps first/last 1000 "
          f"{first:.1f}/{last:.1f} ({drift:+.1%}, limit 10%), threads {threads_before} -> "
          f"{result['threads']['max_during']} -> {threads_after}: {'PASS' if ok else 'FAIL'}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
