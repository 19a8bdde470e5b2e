"""Score livematte's composites against the exact truth, with and without foreground colours.

Each clip in ../shared/data/composited was built as ``I = a * F + (1 - a) * B`` from a portrait
photo ``F`` with a known alpha ``a``; ../shared/tools/composite_truth.py rebuilds ``a`` and ``F``
for every frame. This script mattes every clip once, in frame order, with the engine users run
(a preset's model, smoothing and ``[composite]`` settings), and composites each frame's matte over
new backgrounds (green, white) in several ways, all from the same matte in the same run:

- ``plain``: the raw frame's colours (``--foreground off``), what livematte did before;
- ``auto``: the engine's foreground colours (RVM's own estimate), the default;
- ``blur``: blur fusion on the same matte (the estimator for per-frame models).

``--decompose`` adds three that split the error into the matte's part and the colours' part:

- ``plain@true-a``: the raw frame's colours with the TRUE alpha;
- ``blur@true-a``: blur fusion's colours from, and composited with, the TRUE alpha (the
  estimator's own error);
- ``true-F``: the TRUE foreground colours (the frame's own where the true alpha is 0) with the
  engine's alpha: what perfect colours would give with this matte (the matte's own error).

Each is compared with the truth composite ``a * F + (1 - a) * B'``: the mean absolute error in
levels (0..255, over the three channels) over the edge band (truth ``0.02 < a < 0.98``, dilated by
5 px) and over the whole frame, per clip and as the mean over the clips.

    python scripts/eval_composite.py [--preset offline] [--frames N] [--json out.json]

Needs ../shared (the data and the tool); ``--shared DIR`` points elsewhere.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import av
import cv2
import numpy as np

from livematte import assembly, config, models
from livematte.compose.compositor import blend
from livematte.frames import Frame
from livematte.runtime.engine import Engine
from livematte.matte.foreground import blur_fusion

REPO_ROOT = Path(__file__).resolve().parents[1]
BACKGROUNDS = {"green": (0, 255, 0), "white": (255, 255, 255)}  # BGR
VARIANTS = ("plain", "auto", "blur")
DECOMPOSITION = ("plain@true-a", "blur@true-a", "true-F")
BAND_LOW, BAND_HIGH, BAND_DILATE = 0.02, 0.98, 5


def load_truth(shared: Path):
    """composite_truth.truth from the shared tools, imported where it lies (never copied)."""
    tools = shared / "tools"
    if not (tools / "composite_truth.py").is_file():
        sys.exit(f"eval_composite: no {tools / 'composite_truth.py'}; give --shared DIR")
    sys.path.insert(0, str(tools))
    from composite_truth import truth

    return truth


def edge_band(alpha: np.ndarray) -> np.ndarray:
    """bool [H, W]: truth ``0.02 < a < 0.98``, dilated by 5 px."""
    band = ((alpha > BAND_LOW) & (alpha < BAND_HIGH)).astype(np.uint8)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * BAND_DILATE + 1, 2 * BAND_DILATE + 1))
    return cv2.dilate(band, kernel).astype(bool)


def score_clip(clip: Path, portraits: Path, truth, engine: Engine, frames: int | None,
               variants: tuple[str, ...] = VARIANTS) -> dict:
    """-> {background: {variant: {"band": mean abs error, "frame": mean abs error}}} over the clip,
    for ``variants`` (of :data:`VARIANTS` and :data:`DECOMPOSITION`)."""
    sums = {bg: {v: {"band": 0.0, "frame": 0.0} for v in variants} for bg in BACKGROUNDS}
    band_px = frame_px = 0
    ms = {"auto": 0.0, "blur": 0.0}
    engine.reset()
    with av.open(str(clip / "input.mp4")) as container:
        pictures = container.decode(video=0)
        for t, ((alpha_true, fg_true), picture) in enumerate(zip(truth(clip, portraits), pictures)):
            if frames is not None and t >= frames:
                break
            image = picture.to_ndarray(format="bgr24")
            matted = engine.process(Frame(t, image, t / 30.0, time.perf_counter()))
            ms["auto"] += matted.timings.get("foreground", 0.0)
            start = time.perf_counter()
            blurred = blur_fusion(image, matted.alpha)
            ms["blur"] += (time.perf_counter() - start) * 1e3
            people = {"plain": (image, matted.alpha), "auto": (matted.colours, matted.alpha),
                      "blur": (blurred, matted.alpha)}
            if "true-F" in variants:
                fg_bgr = np.where(alpha_true[..., None] > 0, fg_true[..., ::-1], image).astype(np.uint8)
                people.update({"plain@true-a": (image, alpha_true),
                               "blur@true-a": (blur_fusion(image, alpha_true), alpha_true),
                               "true-F": (fg_bgr, matted.alpha)})
            band = edge_band(alpha_true)
            a3 = alpha_true[..., None]
            band_px += int(band.sum())
            frame_px += band.size
            for name, bgr in BACKGROUNDS.items():
                behind = np.empty_like(image)
                behind[:] = bgr
                target = a3 * fg_true[..., ::-1] + (1 - a3) * np.float32(behind)
                for variant in variants:
                    person, alpha = people[variant]
                    error = np.abs(blend(person, behind, alpha).astype(np.float32) - target).mean(axis=2)
                    sums[name][variant]["band"] += float(error[band].sum())
                    sums[name][variant]["frame"] += float(error.sum())
            count = t + 1
    result = {name: {v: {"band": s["band"] / max(band_px, 1), "frame": s["frame"] / frame_px}
                     for v, s in scored.items()} for name, scored in sums.items()}
    result["ms_per_frame"] = {k: v / count for k, v in ms.items()}
    result["frames"] = count
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=REPO_ROOT.parent / "shared",
                        help="the shared folder holding data/ and tools/ (default ../shared)")
    parser.add_argument("--preset", default="offline", help="settings preset (default offline, `video`'s)")
    parser.add_argument("--frames", type=int, default=None, help="frames per clip (default all)")
    parser.add_argument("--clips", nargs="*", default=None, help="clip folder names (default all nine)")
    parser.add_argument("--decompose", action="store_true",
                        help="also score with the true alpha and with the true foreground (matte vs colour error)")
    parser.add_argument("--json", type=Path, default=None, help="write the figures as JSON")
    args = parser.parse_args(argv)
    variants = VARIANTS + (DECOMPOSITION if args.decompose else ())
    truth = load_truth(args.shared)
    data = args.shared / "data"
    clips = sorted(p for p in (data / "composited").iterdir() if (p / "input.mp4").is_file())
    if args.clips:
        clips = [p for p in clips if p.name in args.clips]
    settings = config.load(args.preset)
    matter = models.load(settings.model)
    engine = assembly.engine(settings, matter)
    results = {}
    header = f"{'clip':20} {'bg':5} " + " ".join(f"{v + ' band':>17} {v + ' frame':>18}" for v in variants)
    print(f"preset {args.preset}, model {matter.name} on {matter.device}; mean abs error in levels (0..255)")
    print(header)
    for clip in clips:
        results[clip.name] = res = score_clip(clip, data / "portraits", truth, engine, args.frames, variants)
        for name in BACKGROUNDS:
            print(f"{clip.name:20} {name:5} " + " ".join(
                f"{res[name][v]['band']:17.2f} {res[name][v]['frame']:18.3f}" for v in variants), flush=True)
    summary = {}
    for name in BACKGROUNDS:
        summary[name] = {v: {k: float(np.mean([results[c][name][v][k] for c in results])) for k in ("band", "frame")}
                         for v in variants}
        print(f"{'MEAN':20} {name:5} " + " ".join(
            f"{summary[name][v]['band']:17.2f} {summary[name][v]['frame']:18.3f}" for v in variants))
    for name in BACKGROUNDS:
        for v in variants[1:]:
            ratio = summary[name][v]["band"] / summary[name]["plain"]["band"]
            print(f"{name}: {v} edge-band error = {ratio:.1%} of plain; whole frame "
                  f"{summary[name][v]['frame']:.3f} vs plain {summary[name]['plain']['frame']:.3f}")
    ms = {k: float(np.mean([results[c]["ms_per_frame"][k] for c in results])) for k in ("auto", "blur")}
    print(f"foreground ms/frame at 1280x720: auto (engine) {ms['auto']:.1f}, blur fusion {ms['blur']:.1f}")
    if args.json:
        args.json.write_text(json.dumps({"preset": args.preset, "clips": results, "mean": summary,
                                         "foreground_ms": ms}, indent=1))
    matter.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
