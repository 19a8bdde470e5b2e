"""What each level of the live governor's ladder costs in quality, per motion segment.

    python scripts/eval_levels.py [--clips DIR] [--clip NAME ...] [--preset live] [--json PATH]
                                  [--levels SIZE/STRIDE ... | MODEL] [--lag FRAMES ...]

Every level of the preset's ladder (network size, the fewest frames between model calls, or the
fallback model) is held for a whole clip, run as live runs it, with the model on its own thread,
but on a schedule instead of a clock: a model call takes the newest frame once the last call has
landed and the stride allows (or at once after a frame the flow could not explain), and its
result lands ``lag`` frames after its input; every frame is finished from the newest result that
has landed, moved along the optical flow (:meth:`Engine.finish_frame`), exactly as live. The lag
is the call's measured time in frame periods, rounded up (``--lag`` sets it instead; several
values score each level at each, which shows how the error grows with a result's age). The
mattes are scored against the clips' exact alpha (`scripts/metrics.py`: MAD x1e3, dtSSD x1e2),
over the clip and over each motion segment of its ``meta.json`` (sway, still, fast). The
timing-free counterpart of ``eval_quality.py --mode live``: it says what each level gives, which a
live run mixes with the machine's speed.

``--levels`` scores the levels given (``288/6``: 288 px, calls at least six frames apart;
``384/2w``: 384 px every second frame, each keyframe waiting for its own result; ``selfie``: the
fallback rung) instead of the preset's ladder.

``--follow RUN.json ...`` (``eval_quality.py --mode live --json`` files) scores, for each clip
those runs played, the levels its live run held, each from the frame the governor changed to it
at (the change's time times the rate, rounded up) with the lag its calls had in that run (their
mean wall time there, ``held`` in the run's stats, in frame periods rounded up; the warm-up's
here with ``--follow-lags warm-up``, or where the run has none): the schedule of exactly what
the run held, against which its live MAD is put, clip by clip (a clip that changed level
restarts the model's stream there, live and here alike).

Printed: one row per level (and lag), the mean over clips, the model calls a frame and the
results' mean age in frames; with ``--follow``, one row per clip: the levels held, the
schedule's MAD and dtSSD, the live run's, and live / schedule.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from eval_quality import DEFAULT_CLIPS, find_clips, read_timed_alpha  # noqa: E402

from livematte import assembly, config as livematte_config, models  # noqa: E402
from livematte.sources.capture import FileSource  # noqa: E402
from livematte.frames import Frame  # noqa: E402
from livematte.runtime.governor import Governor, Level, ladder  # noqa: E402
from livematte.runtime.schedule import on_schedule  # noqa: E402
from metrics import SequenceScorer  # noqa: E402


class Following(Governor):
    """A governor that holds each level of a live run's timeline from the frame the run changed to
    it at. changes: ``(frame index, level)``, the first at frame 0; :attr:`frame`: the frame now."""

    def __init__(self, changes: list[tuple[int, Level]], period_s: float):
        super().__init__(list(dict.fromkeys(level for _, level in changes)), period_s)
        self.changes = changes
        self.frame = 0

    @property
    def level(self) -> Level:
        return [level for start, level in self.changes if start <= self.frame][-1]


def score_level(matter, fallback, config, level: Level | list[tuple[int, Level]], clip,
                lag: int | dict[Level, int]) -> tuple[dict, float, float]:
    """One clip with the governor held at ``level`` (or following its changes, ``(frame index,
    level)``), results landing ``lag`` frames after their input (each level's, a dict) -> (the
    scorer's result, model calls a frame, the results' mean age in frames)."""
    governor = Following(level if isinstance(level, list) else [(0, level)], 1 / 30)
    engine = assembly.engine(config, matter, governor=governor, fallback=fallback)
    scorer = SequenceScorer(clip.segments)
    truths = read_timed_alpha(clip.truth)
    frames = ages = 0
    inputs = set()  # the frames the results used were made from: the calls that landed
    source = FileSource(str(clip.input))

    def timed():
        for k, (image, pts) in enumerate(source.frames()):
            governor.frame = k
            yield Frame(k, image, pts, time.perf_counter())

    try:
        for matted in on_schedule(engine, timed(), lag):
            frames += 1
            ages += matted.result_age
            inputs.add(matted.frame.index - matted.result_age)
            _, truth = next(truths)
            scorer.add(np.clip(matted.alpha * 255 + 0.5, 0, 255).astype(np.uint8), truth)
    finally:
        source.close()
    return scorer.result(), len(inputs) / max(frames, 1), ages / max(frames, 1)


def call_lags(matter, fallback, config, levels: list[Level], width: int, height: int, fps: float) -> dict[Level, int]:
    """Each level's lag on this machine: a warm-up's model call at its size, in frame periods, rounded up."""
    engine = assembly.engine(config, matter, governor=Governor(levels, 1 / fps), fallback=fallback)
    engine.warm_up(width, height)
    return {level: max(1, math.ceil(engine.governor._model_cost(level)[0] * fps / 1e3)) for level in levels}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=Path, default=DEFAULT_CLIPS)
    parser.add_argument("--clip", nargs="+", default=None, metavar="NAME")
    parser.add_argument("--preset", default="live")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--levels", nargs="+", default=None, metavar="SIZE/STRIDE",
                        help="levels to score instead of the ladder: 288/6, 384/2w (keyframes wait), or the fallback's model name")
    parser.add_argument("--lag", nargs="+", type=int, default=None, metavar="FRAMES",
                        help="frames from a model call's input to its result (default: the call's measured time)")
    parser.add_argument("--follow", nargs="+", type=Path, default=None, metavar="RUN.json",
                        help="eval_quality.py --mode live --json files: score each clip at the levels its run held")
    parser.add_argument("--follow-lags", choices=("run", "warm-up"), default="run",
                        help="with --follow: each level's lag from its calls in the run (default) or a warm-up here")
    args = parser.parse_args(argv)
    if not args.clips.is_dir():
        parser.error(f"{args.clips}: no such folder")
    runs = _live_runs(args.follow, parser) if args.follow else None
    if runs is not None:
        args.clip = sorted(runs)

    config = livematte_config.load(args.preset)
    matter = models.load(config.model)
    fallback = models.load_fallback(config.live.fallback, config.model, matter)
    clips = find_clips(args.clips, args.clip)
    first = clips[0]
    source = FileSource(str(first.input))
    width, height, fps = source.width, source.height, source.fps
    source.close()
    top = max(matter.input_size(width, height))
    fallback_level = None if fallback is None else Level(max(fallback.input_size(width, height)), 1, fallback.name)
    levels = ladder(top, fallback=fallback_level)
    if args.levels:
        if config.live.fallback in args.levels and fallback_level is None:
            parser.error(f"--levels: {config.live.fallback} did not load (the warning above says why)")
        levels = [fallback_level if text == config.live.fallback else _level(text, parser) for text in args.levels]
    if runs is not None:
        return _follow(runs, matter, fallback, config, clips, (width, height, fps), args.json,
                       args.follow_lags == "run")
    measured = call_lags(matter, fallback, config, levels, width, height, fps) if args.lag is None else {}
    rows = []
    for level in levels:
        for lag in args.lag or [measured[level]]:
            per_clip = []
            for clip in clips:
                result, calls, age = score_level(matter, fallback, config, level, clip, lag)
                per_clip.append({"clip": clip.name, "calls": calls, "age": age, **result})
            rows.append({"level": str(level), "size": level.size, "stride": level.stride, "model": level.model,
                         "lag": lag, "clips": per_clip, "mean": _mean(per_clip)})
            mean = rows[-1]["mean"]
            segments = "  ".join(f"{name} {mean['segments'][name]['mad']:.2f}" for name in sorted(mean["segments"]))
            print(f"{str(level):28} lag {lag}  calls {mean['calls']:.2f}  age {mean['age']:.2f}  MAD {mean['mad']:.2f}  "
                  f"dtSSD {mean['dtssd']:.2f}  MAD by segment: {segments}", flush=True)
    if args.json is not None:
        args.json.write_text(json.dumps({"preset": args.preset, "rows": rows}, indent=1), encoding="utf-8")
    return 0


def _live_runs(paths: list[Path], parser: argparse.ArgumentParser) -> dict[str, dict]:
    """``eval_quality.py --mode live --json`` files -> {clip name: its result}, the last given
    for a clip that several hold."""
    runs = {}
    for path in paths:
        try:
            results = json.loads(path.read_text(encoding="utf-8"))["results"]
            runs.update({result["clip"]: result for result in results if result["stats"]["governor"]["timeline"]})
        except (OSError, ValueError, KeyError, TypeError) as error:
            parser.error(f"--follow {path}: expected an eval_quality.py --mode live --json file ({error})")
    if not runs:
        parser.error("--follow: no live run with a governor's timeline in the files given")
    return runs


def _follow(runs: dict[str, dict], matter, fallback, config, clips, source_format: tuple[int, int, float],
            json_path: Path | None, run_lags: bool) -> int:
    """Score each clip on the schedule of the levels its live run held, each level's calls landing
    as many frames late as in that run (``run_lags``) or as the warm-up's here; print and write the rows."""
    def held(change: dict) -> Level:  # a timeline or held entry (the governor's _level_json) -> its Level
        return Level(change["size"], change["stride"], change.get("model", ""), bool(change.get("waits")))

    def lags_in(run: dict) -> dict[Level, int]:  # each level's lag in the run, from its calls' mean wall ms
        return {held(entry): max(1, math.ceil(entry["call_ms"] * fps / 1e3))
                for entry in run["stats"]["governor"].get("held", []) if run_lags and "call_ms" in entry}

    width, height, fps = source_format
    timelines = {name: [(math.ceil(change["t"] * fps), held(change)) for change in run["stats"]["governor"]["timeline"]]
                 for name, run in runs.items()}
    levels = list(dict.fromkeys(level for timeline in timelines.values() for _, level in timeline))
    lags = call_lags(matter, fallback, config, levels, width, height, fps)
    rows = []
    for clip in clips:
        timeline, live = timelines[clip.name], runs[clip.name]["overall"]
        clip_lags = {**lags, **lags_in(runs[clip.name])}
        result, calls, age = score_level(matter, fallback, config, timeline, clip, clip_lags)
        ratio = live["mad"] / result["overall"]["mad"]
        held_levels = [[start, _text(level), clip_lags[level]] for start, level in timeline]
        rows.append({"clip": clip.name, "levels": held_levels,
                     "calls": calls, "age": age, "schedule": result, "live": live, "live_over_schedule": ratio})
        # A waiting level's keyframes are matted from their own calls: its lag does not count.
        held_text = ", ".join(_text(level) + ("" if level.waits else f" lag {clip_lags[level]}")
                              + (f" from {start}" if start else "") for start, level in timeline)
        print(f"{clip.name[:16]:16} {held_text:40} schedule MAD {result['overall']['mad']:.2f} dtSSD "
              f"{result['overall']['dtssd']:.2f}  live {live['mad']:.2f} / {live['dtssd']:.2f}  live/schedule "
              f"{ratio:.2f}", flush=True)
    print(f"mean over {len(rows)} clips: schedule MAD {np.mean([r['schedule']['overall']['mad'] for r in rows]):.2f}, "
          f"live {np.mean([r['live']['mad'] for r in rows]):.2f}; live/schedule "
          f"{min(r['live_over_schedule'] for r in rows):.2f}-{max(r['live_over_schedule'] for r in rows):.2f}")
    if json_path is not None:
        json_path.write_text(json.dumps({"follow": rows}, indent=1), encoding="utf-8")
    return 0


def _text(level: Level) -> str:
    """Level(384, 2, waits=True) -> "384/2w", as ``--levels`` takes it; a fallback's rung -> its
    model's name ("selfie w" where its frames wait for it, as on one core)."""
    if level.model:
        return level.model + (" w" if level.waits else "")
    return f"{level.size}/{level.stride}{'w' if level.waits else ''}"


def _level(text: str, parser: argparse.ArgumentParser) -> Level:
    """``"288/6"`` -> Level(288, 6); ``"384/2w"`` -> Level(384, 2, waits=True)."""
    waits = text.endswith("w")
    try:
        size, stride = (int(part) for part in text.removesuffix("w").split("/"))
    except ValueError:
        parser.error(f"--levels: got {text!r}, expected SIZE/STRIDE[w] (288/6, 384/2w) or the fallback's name")
    if size < 16 or stride < 1:
        parser.error(f"--levels: got {text!r}, expected a size of at least 16 px and a stride of at least 1")
    return Level(size, stride, waits=waits)


def _mean(per_clip: list[dict]) -> dict:
    """The unweighted mean over clips of the overall MAD, dtSSD and call share, and of each segment's MAD."""
    def avg(values):
        values = [v for v in values if v is not None]
        return float(np.mean(values)) if values else None

    names = sorted({name for clip in per_clip for name in clip["segments"]})
    return {"calls": avg(c["calls"] for c in per_clip), "age": avg(c["age"] for c in per_clip),
            "mad": avg(c["overall"]["mad"] for c in per_clip), "dtssd": avg(c["overall"]["dtssd"] for c in per_clip),
            "segments": {name: {"mad": avg(c["segments"][name]["mad"] for c in per_clip if name in c["segments"])}
                         for name in names}}


if __name__ == "__main__":
    sys.exit(main())
