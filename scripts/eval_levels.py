"""What each level of the live governor's ladder costs in quality, per motion segment.

    python scripts/eval_levels.py [--clips DIR] [--clip NAME ...] [--preset live] [--json PATH]
                                  [--levels SIZE/STRIDE ... | MODEL]

Every level of the preset's ladder (network size, frames per model call, or the fallback
model) is held for a whole clip while every frame goes through the engine in order, as if
the machine kept up: reused frames get the keyframe's result moved along the optical flow,
exactly as live. The mattes are scored against the clips' exact alpha (`scripts/metrics.py`:
MAD x1e3, dtSSD x1e2), over the clip and over each motion segment of its ``meta.json``
(sway, still, fast). The timing-free counterpart of ``eval_quality.py --mode live``: it says
what the governor gives up at each step, which a live run mixes with the machine's speed.

``--levels`` scores the levels given (``288/6``: 288 px, a model call every sixth frame;
``selfie``: the fallback rung) instead of the preset's ladder.

Printed: one row per level, the mean over clips, and the share of frames that got a model call
(a frame the flow cannot explain is a keyframe whatever the stride).
"""

from __future__ import annotations

import argparse
import json
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
from metrics import SequenceScorer  # noqa: E402


def score_level(matter, fallback, config, level: Level, clip) -> tuple[dict, float]:
    """One clip with the governor held at ``level`` -> (the scorer's result, the share of frames
    that got a model call)."""
    engine = assembly.engine(config, matter, governor=Governor([level], 1 / 30), fallback=fallback)
    scorer = SequenceScorer(clip.segments)
    truths = read_timed_alpha(clip.truth)
    calls = frames = 0
    source = FileSource(str(clip.input))
    try:
        for k, (image, pts) in enumerate(source.frames()):
            prepared = engine.prepare(Frame(k, image, pts, time.perf_counter()))
            calls += prepared.keyframe
            frames += 1
            alpha = engine.infer(prepared).alpha
            _, truth = next(truths)
            scorer.add(np.clip(alpha * 255 + 0.5, 0, 255).astype(np.uint8), truth)
    finally:
        source.close()
    return scorer.result(), calls / max(frames, 1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=Path, default=DEFAULT_CLIPS)
    parser.add_argument("--clip", nargs="+", default=None, metavar="NAME")
    parser.add_argument("--preset", default="live")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--levels", nargs="+", default=None, metavar="SIZE/STRIDE",
                        help="levels to score instead of the ladder: 288/6, or the fallback's model name")
    args = parser.parse_args(argv)
    if not args.clips.is_dir():
        parser.error(f"{args.clips}: no such folder")

    config = livematte_config.load(args.preset)
    matter = models.load(config.model)
    fallback = models.load_fallback(config.live.fallback, config.model, matter)
    clips = find_clips(args.clips, args.clip)
    first = clips[0]
    source = FileSource(str(first.input))
    width, height = source.width, source.height
    source.close()
    top = max(matter.input_size(width, height))
    fallback_level = None if fallback is None else Level(max(fallback.input_size(width, height)), 1, fallback.name)
    levels = ladder(top, fallback=fallback_level)
    if args.levels:
        if config.live.fallback in args.levels and fallback_level is None:
            parser.error(f"--levels: {config.live.fallback} did not load (the warning above says why)")
        levels = [fallback_level if text == config.live.fallback else _level(text, parser) for text in args.levels]
    rows = []
    for level in levels:
        per_clip = []
        for clip in clips:
            result, calls = score_level(matter, fallback, config, level, clip)
            per_clip.append({"clip": clip.name, "calls": calls, **result})
        rows.append({"level": str(level), "clips": per_clip, "mean": _mean(per_clip)})
        mean = rows[-1]["mean"]
        segments = "  ".join(f"{name} {mean['segments'][name]['mad']:.2f}" for name in sorted(mean["segments"]))
        print(f"{str(level):28} calls {mean['calls']:.2f}  MAD {mean['mad']:.2f}  dtSSD {mean['dtssd']:.2f}  "
              f"MAD by segment: {segments}", flush=True)
    if args.json is not None:
        args.json.write_text(json.dumps({"preset": args.preset, "rows": rows}, indent=1), encoding="utf-8")
    return 0


def _level(text: str, parser: argparse.ArgumentParser) -> Level:
    """``"288/6"`` -> Level(288, 6)."""
    try:
        size, stride = (int(part) for part in text.split("/"))
    except ValueError:
        parser.error(f"--levels: got {text!r}, expected SIZE/STRIDE (288/6) or the fallback's name")
    if size < 16 or stride < 1:
        parser.error(f"--levels: got {text!r}, expected a size of at least 16 px and a stride of at least 1")
    return Level(size, stride)


def _mean(per_clip: list[dict]) -> dict:
    """The unweighted mean over clips of the overall MAD, dtSSD and call share, and of each segment's MAD."""
    def avg(values):
        values = [v for v in values if v is not None]
        return float(np.mean(values)) if values else None

    names = sorted({name for clip in per_clip for name in clip["segments"]})
    return {"calls": avg(c["calls"] for c in per_clip),
            "mad": avg(c["overall"]["mad"] for c in per_clip), "dtssd": avg(c["overall"]["dtssd"] for c in per_clip),
            "segments": {name: {"mad": avg(c["segments"][name]["mad"] for c in per_clip if name in c["segments"])}
                         for name in names}}


if __name__ == "__main__":
    sys.exit(main())
