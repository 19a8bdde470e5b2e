"""The speed/quality curve: end-to-end fps against matte quality for each preset, side by side.

    python scripts/speed_quality.py [--presets live-fast live offline quality] [--clips DIR]
                                    [--clip NAME ...] [--frames 300] [--json PATH]

Speed is ``livematte bench`` (the real pipeline, null sink, flat out) on one
720p clip of the set; quality is ``scripts/eval_quality.py --mode video`` (every
frame, nothing dropped) on the clips, so the two columns say what each preset
costs and what it buys, independent of live frame drops. Use it to pick a preset
for a machine: the fastest one whose fps clears the camera's rate with room to spare.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path

from livematte.commands.bench import BenchJob, run_bench

ROOT = Path(__file__).resolve().parents[1]


def load_eval_module():
    spec = importlib.util.spec_from_file_location("eval_quality", ROOT / "scripts" / "eval_quality.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look themselves up there
    spec.loader.exec_module(module)
    return module


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", default=["live-fast", "live", "offline", "quality"])
    parser.add_argument("--clips", type=Path, default=ROOT.parent / "shared" / "data" / "composited")
    parser.add_argument("--clip", nargs="*", default=None, help="clip names or prefixes (default: all)")
    parser.add_argument("--frames", type=int, default=300, help="frames for the speed run")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)

    evaluation = load_eval_module()
    clips = evaluation.find_clips(args.clips, args.clip)
    # Speed on the first clip, all presets in one process, one after another.
    speed = run_bench(BenchJob(presets=tuple(args.presets), source=str(clips[0].input), frames=args.frames))
    fps = {run["preset"]: run for run in speed["runs"]}
    rows = []
    for preset in args.presets:
        results = [evaluation.evaluate(clip, preset, "video", None, ()) for clip in clips]
        mean = evaluation.mean_by_preset(results)[preset]["overall"]
        run = fps[preset]
        rows.append({"preset": preset, "fps": run["fps"], "model_ms": run["stages_ms"].get("model"),
                     "cpu_ms_per_frame": run["cpu_ms_per_frame"], "mad": mean["mad"], "dtssd": mean["dtssd"],
                     "grad": mean["grad"], "iou": mean["iou"], "clips": len(results)})
    print(f"\nspeed/quality on {len(clips)} clip(s) from {args.clips} (speed: {clips[0].name}, "
          f"{speed['machine']['cores']} cores, {speed['machine']['cpu']})")
    print(f"{'preset':10} {'fps':>6} {'model ms':>9} {'CPU ms/frame':>13} {'MAD':>6} {'dtSSD':>6} {'Grad':>6} {'IoU':>7}")
    for row in sorted(rows, key=lambda r: -r["fps"]):
        print(f"{row['preset']:10} {row['fps']:6.1f} {row['model_ms']:9.1f} {row['cpu_ms_per_frame']:13.1f} "
              f"{row['mad']:6.2f} {row['dtssd']:6.2f} {row['grad']:6.2f} {row['iou']:7.4f}")
    if args.json:
        args.json.write_text(json.dumps({"machine": speed["machine"], "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
