"""The models side by side: speed and matte quality of each, on one core and on several.

    python scripts/compare_models.py [--models rvm modnet selfie] [--cores 1 2] [--preset live]
                                     [--video-preset offline | --no-video] [--source PATH] [--frames 150]
                                     [--clips DIR] [--clip NAME ...] [--json PATH]

For each core count (the process and its children pinned to the first N CPUs) and each model,
in one run and alternating the models' order between core counts so that a load that comes
and goes on a shared machine falls on all of them:

- speed: ``livematte bench --preset PRESET --source SOURCE`` (throughput, null sink): end-to-end
  fps, the model's ms a frame and the process's CPU ms a frame;
- live quality: ``scripts/eval_quality.py --mode live --preset PRESET`` on the composited clips
  (frames dropped under load are scored as what a viewer saw: the last matte).

Once per model, on every core (it does not depend on speed: every frame is matted): video
quality, ``scripts/eval_quality.py --mode video --preset VIDEO_PRESET``. Quality is the mean over
the clips of MAD, dtSSD, Grad and IoU (eval_quality's units). Prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

from speed_quality import load_eval_module  # noqa: E402

METRICS = ("mad", "dtssd", "grad", "iou")


def bench(model: str, preset: str, source: str | None, frames: int) -> dict:
    """``livematte bench`` in a child process (it inherits this one's CPUs) -> its run's JSON entry."""
    with tempfile.TemporaryDirectory(prefix="livematte-compare-") as tmp:
        out = Path(tmp) / "bench.json"
        command = [sys.executable, "-m", "livematte", "bench", "--preset", preset, "--frames", str(frames),
                   "--model", model, "--json", str(out)] + (["--source", source] if source else [])
        subprocess.run(command, check=True, capture_output=True, text=True)
        return json.loads(out.read_text())["runs"][0]


def quality(evaluation, clips, mode: str, preset: str, model: str) -> dict:
    """Mean scores over ``clips`` and, in live mode, the mean fps and total frames dropped."""
    results = [evaluation.evaluate(clip, preset, mode, model, ()) for clip in clips]
    mean = evaluation.mean_by_preset(results)[evaluation.label(results[0])]["overall"]
    if mode == "live":
        stats = [r["stats"] for r in results if r["stats"]]
        mean["fps"] = sum(s["fps"] for s in stats) / max(1, len(stats))
        mean["dropped"] = sum(s["dropped"] for s in stats)
        mean["frames_in"] = sum(s["frames_in"] for s in stats)
    return mean


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["rvm", "modnet", "selfie"])
    parser.add_argument("--cores", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--preset", default="live", help="for bench and live quality (default live)")
    parser.add_argument("--video-preset", default="offline", help="for video quality (default offline)")
    parser.add_argument("--no-video", action="store_true", help="skip video quality (it does not depend on speed)")
    parser.add_argument("--source", default=str(ROOT.parent / "shared" / "data" / "clips" / "s18.mp4"),
                        help="bench's clip (default ../shared/data/clips/s18.mp4; '' for the built-in one)")
    parser.add_argument("--frames", type=int, default=150, help="frames for bench")
    parser.add_argument("--clips", type=Path, default=ROOT.parent / "shared" / "data" / "composited")
    parser.add_argument("--clip", nargs="*", default=None, help="clip names or prefixes (default: all)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)

    evaluation = load_eval_module()
    clips = evaluation.find_clips(args.clips, args.clip)
    everything = sorted(os.sched_getaffinity(0))
    rows = {model: {"video": None, "cores": {}} for model in args.models}
    for model in [] if args.no_video else args.models:
        print(f"compare: {model} video quality ({args.video_preset})", file=sys.stderr, flush=True)
        rows[model]["video"] = quality(evaluation, clips, "video", args.video_preset, model)
    for turn, cores in enumerate(args.cores):
        os.sched_setaffinity(0, everything[:cores])
        for model in args.models if turn % 2 == 0 else reversed(args.models):
            print(f"compare: {model} on {cores} core(s): bench, live quality", file=sys.stderr, flush=True)
            rows[model]["cores"][cores] = {"bench": bench(model, args.preset, args.source or None, args.frames),
                                           "live": quality(evaluation, clips, "live", args.preset, model)}
    os.sched_setaffinity(0, everything)

    print(f"\n{len(clips)} clips; bench and live: preset {args.preset}; video: preset {args.video_preset}")
    print("| model | cores | model ms | fps (bench) | CPU ms/frame | live fps (dropped) | live MAD / dtSSD / Grad / IoU "
          "| video MAD / dtSSD / Grad / IoU |")
    print("|---|---|---|---|---|---|---|---|")
    for model, row in rows.items():
        video = " / ".join(f"{row['video'][k]:.3f}" if k == "iou" else f"{row['video'][k]:.2f}" for k in METRICS) \
            if row["video"] else "-"
        for cores, figures in row["cores"].items():
            run, live = figures["bench"], figures["live"]
            scores = " / ".join(f"{live[k]:.3f}" if k == "iou" else f"{live[k]:.2f}" for k in METRICS)
            print(f"| {model} | {cores} | {run['stages_ms'].get('model', float('nan')):.1f} | {run['fps']:.1f} "
                  f"| {run['cpu_ms_per_frame']:.0f} | {live['fps']:.1f} ({live['dropped']} of {live['frames_in']}) "
                  f"| {scores} | {video} |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
