"""A sudden slowdown: a CPU hog takes one core in the middle of a live run, then lets it go.

    python scripts/slowdown.py [--source VIDEO] [--seconds 30] [--hog-at 10] [--hog-for 10]
                               [--json PATH] [-- LIVEMATTE_ARGS ...]

``livematte live --source VIDEO --realtime --loop --sink null`` runs for ``--seconds``; a
second process spinning on one core (pinned to the first core livematte may use) starts at
``--hog-at`` and stops ``--hog-for`` seconds later. Printed: the fresh fps in every second, the
governor's level changes, and the two figures that matter: the lowest fps while the hog ran
(from its second second on) and how long after it stopped the level was back where it was
before it started.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SOURCE = ROOT.parent / "shared" / "data" / "clips" / "s18.mp4"


def spin(core: int, seconds: float) -> None:
    """Keep ``core`` busy for ``seconds`` (a child process: the GIL is not shared with anyone)."""
    os.sched_setaffinity(0, {core})
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--hog-at", type=float, default=10.0)
    parser.add_argument("--hog-for", type=float, default=10.0)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("livematte_args", nargs="*", help="more livematte live arguments, after --")
    args = parser.parse_args(argv)
    if not args.source.is_file():
        parser.error(f"{args.source}: no such file")

    with tempfile.TemporaryDirectory(prefix="livematte-slowdown-") as tmp:
        stats_path = Path(tmp) / "stats.json"
        fps = 30.0
        command = [sys.executable, "-m", "livematte", "live", "--source", str(args.source), "--realtime", "--loop",
                   "--sink", "null", "--frames", str(int(args.seconds * fps)), "--stats-json", str(stats_path),
                   *args.livematte_args]
        live = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
        # The run's clock starts at its first frame out, after the model's load: wait for it.
        started = _wait_for_first_line(live, "live: ")
        core = min(os.sched_getaffinity(live.pid))
        time.sleep(max(0.0, args.hog_at - (time.perf_counter() - started)))
        hog_started = time.perf_counter() - started
        hog = multiprocessing.Process(target=spin, args=(core, args.hog_for), daemon=True)
        hog.start()
        hog.join()
        hog_stopped = time.perf_counter() - started
        _, errors = live.communicate()
        if live.returncode != 0:
            print(errors[-2000:], file=sys.stderr)
            return 1
        stats = json.loads(stats_path.read_text())

    # Three clocks start within a fraction of a second of each other: ours at the "live:" line, the
    # governor's when the pipeline starts right after it, fps_by_second's at the first frame out.
    per_second = stats["fps_by_second"]
    timeline = stats.get("governor", {}).get("timeline", [])
    during = [per_second[s] for s in range(int(hog_started) + 1, int(hog_stopped)) if s < len(per_second)]
    before = _level_at(timeline, hog_started)
    held = _level_at(timeline, hog_stopped) == before
    back = next((c["t"] for c in timeline if c["t"] > hog_stopped and _level(c) == before), None)
    recovered = 0.0 if held else (round(back - hog_stopped, 1) if back is not None else None)
    result = {
        "hog": {"core": core, "from_s": round(hog_started, 1), "to_s": round(hog_stopped, 1)},
        "fps_by_second": per_second,
        "min_fps_during_hog": min(during) if during else None,
        "level_before_hog": list(before) if before else None,
        "recovered_after_s": recovered,
        "timeline": timeline,
        "stats": {k: stats[k] for k in ("fps", "latency_ms", "dropped", "frames_in", "reused", "cpu_percent")},
    }
    print(f"fresh fps by second: {per_second}")
    for change in timeline:
        model = f"{change['model']} " if change.get("model") else ""
        print(f"  t={change['t']:6.1f} s  {model}{change['size']}px every {change['stride']}  ({change['reason']})")
    if held:
        after = "the level held"
    elif recovered is None:
        after = "the level did not come back before the end"
    else:
        after = f"the level was back {recovered} s after"
    print(f"hog on core {core} from {hog_started:.1f} s to {hog_stopped:.1f} s: lowest fps while it ran "
          f"{result['min_fps_during_hog']}; {after}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


def _wait_for_first_line(process: subprocess.Popen, marker: str) -> float:
    """Read the child's stderr until a line holding ``marker``; -> perf_counter() then."""
    for line in process.stderr:
        sys.stderr.write(line)
        if marker in line:
            return time.perf_counter()
    raise SystemExit(f"livematte ended before it started: {process.wait()}")


def _level(change: dict) -> tuple[int, int, str]:
    """A timeline entry's level: (size, stride, model; "" for the configured one)."""
    return change["size"], change["stride"], change.get("model", "")


def _level_at(timeline: list[dict], t: float) -> tuple[int, int, str] | None:
    level = None
    for change in timeline:
        if change["t"] <= t:
            level = _level(change)
    return level


if __name__ == "__main__":
    sys.exit(main())
