"""Score livematte's composites against the exact truth, with and without foreground colours.

Each clip in ../shared/data/composited was built as ``I = a * F + (1 - a) * B`` from a portrait
photo ``F`` with a known alpha ``a``; ../shared/tools/composite_truth.py rebuilds ``a`` and ``F``
for every frame. This script mattes every clip once, in frame order, with the engine users run
(a preset's model, smoothing and ``[composite]`` settings), and composites each frame's matte over
new backgrounds (green, white) in several ways, all from the same matte in the same run:

- ``plain``: the raw frame's colours (``--foreground off``), what livematte did before;
- ``auto``: the engine's foreground colours (RVM's own estimate), the default;
- ``blur``: blur fusion on the same matte (the estimator for per-frame models).

``--plate`` adds ``plate``: a second engine with the same settings and model (the same matte
from the model) and ``[composite] plate = "auto"``: its matte and colours after the background
plate (:mod:`livematte.matte.plate`), learnt over each clip from its first frame.

``--decompose`` adds three that split the error into the matte's part and the colours' part:

- ``plain@true-a``: the raw frame's colours with the TRUE alpha;
- ``blur@true-a``: blur fusion's colours from, and composited with, the TRUE alpha (the
  estimator's own error);
- ``true-F``: the TRUE foreground colours (the frame's own where the true alpha is 0) with the
  engine's alpha: what perfect colours would give with this matte (the matte's own error);
  with ``--plate`` also ``true-F@plate``, the same with the plate engine's alpha.

Each is compared with the truth composite ``a * F + (1 - a) * B'``: the mean absolute error in
levels (0..255, over the three channels) over the edge band (truth ``0.02 < a < 0.98``, dilated by
5 px) and over the whole frame, per clip and as the mean over the clips.

    python scripts/eval_composite.py [--preset offline] [--frames N] [--plate] [--json out.json]
    python scripts/eval_composite.py --clips-dir /tmp/fixed ../shared/data/composited --plate

``--clips-dir`` scores other folders of clips in the same layout (scripts/make_fixed_camera_clips.py
builds fixed-camera ones), each with its own means; a clip with a ``foreground.png`` (built with
``--foreground clean``) is scored against those colours as its ``F``. Needs ../shared (the data and the tool);
``--shared DIR`` points elsewhere.
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

import dataclasses

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
    """composite_truth.truth from the shared tools, imported where it lies (never copied), with a
    clip's own colours where it has them: -> truth(clip, portraits), as the tool's."""
    tools = shared / "tools"
    if not (tools / "composite_truth.py").is_file():
        sys.exit(f"eval_composite: no {tools / 'composite_truth.py'}; give --shared DIR")
    sys.path.insert(0, str(tools))
    from composite_truth import offsets, truth

    def with_own_colours(clip: Path, portraits: Path):
        """The tool's (alpha, F) per frame; F is the clip's ``foreground.png`` (make_fixed_camera_clips.py
        ``--foreground clean``) placed where the tool places the portrait, where the clip has one."""
        own = Path(clip) / "foreground.png"
        if not own.is_file():
            yield from truth(clip, portraits)
            return
        colours = cv2.cvtColor(cv2.imread(str(own)), cv2.COLOR_BGR2RGB).astype(np.float32)
        meta = json.loads((Path(clip) / "meta.json").read_text())
        (width, height), (fh, fw) = meta["size"], colours.shape[:2]
        xs = offsets(meta["frames"], width, fw)
        for t, (alpha, _) in enumerate(truth(clip, portraits)):
            fg = np.zeros((height, width, 3), np.float32)
            fg[height - fh:, xs[t]:xs[t] + fw] = colours
            yield alpha, fg

    return with_own_colours


def edge_band(alpha: np.ndarray) -> np.ndarray:
    """bool [H, W]: truth ``0.02 < a < 0.98``, dilated by 5 px."""
    band = ((alpha > BAND_LOW) & (alpha < BAND_HIGH)).astype(np.uint8)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * BAND_DILATE + 1, 2 * BAND_DILATE + 1))
    return cv2.dilate(band, kernel).astype(bool)


def score_clip(clip: Path, portraits: Path, truth, engine: Engine, frames: int | None,
               variants: tuple[str, ...] = VARIANTS, plated: Engine | None = None) -> dict:
    """-> {background: {variant: {"band": mean abs error, "frame": mean abs error}}} over the clip,
    for ``variants`` (of :data:`VARIANTS`, :data:`DECOMPOSITION` and the plate's, which need
    ``plated``: the engine with the plate)."""
    sums = {bg: {v: {"band": 0.0, "frame": 0.0} for v in variants} for bg in BACKGROUNDS}
    band_px = frame_px = 0
    ms = {"auto": 0.0, "blur": 0.0, "plate": 0.0}
    engine.reset()
    if plated is not None:
        plated.reset()
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
            if plated is not None:
                with_plate = plated.process(Frame(t, image, t / 30.0, time.perf_counter()))
                ms["plate"] += with_plate.timings.get("plate", 0.0)
                people["plate"] = (with_plate.colours, with_plate.alpha)
            if "true-F" in variants:
                fg_bgr = np.where(alpha_true[..., None] > 0, fg_true[..., ::-1], image).astype(np.uint8)
                people.update({"plain@true-a": (image, alpha_true),
                               "blur@true-a": (blur_fusion(image, alpha_true), alpha_true),
                               "true-F": (fg_bgr, matted.alpha)})
                if plated is not None:
                    people["true-F@plate"] = (fg_bgr, with_plate.alpha)
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
    parser.add_argument("--clips", nargs="*", default=None, help="clip folder names (default all in each folder)")
    parser.add_argument("--clips-dir", nargs="+", type=Path, default=None, metavar="DIR",
                        help="folders of clips in the composited clips' layout, each scored with its own means "
                             "(default: the shared data's composited/)")
    parser.add_argument("--plate", action="store_true",
                        help="also score an engine with the background plate on (`plate`), on the same model")
    parser.add_argument("--decompose", action="store_true",
                        help="also score with the true alpha and with the true foreground (matte vs colour error)")
    parser.add_argument("--json", type=Path, default=None, help="write the figures as JSON")
    args = parser.parse_args(argv)
    variants = VARIANTS + (("plate",) if args.plate else ())
    if args.decompose:
        variants += DECOMPOSITION + (("true-F@plate",) if args.plate else ())
    truth = load_truth(args.shared)
    data = args.shared / "data"
    folders = args.clips_dir or [data / "composited"]
    for folder in folders:
        if not folder.is_dir():
            sys.exit(f"eval_composite: no folder {folder}")
    settings = config.load(args.preset)
    matter = models.load(settings.model)
    engine = assembly.engine(settings, matter)
    # The same model object: its state lives in each engine, so both see the same matte.
    plated = (assembly.engine(dataclasses.replace(settings, composite=dataclasses.replace(settings.composite,
                                                                                          plate="auto")), matter)
              if args.plate else None)
    if not args.plate and settings.composite.plate != "off":
        engine = assembly.engine(dataclasses.replace(settings, composite=dataclasses.replace(settings.composite,
                                                                                             plate="off")), matter)
    header = f"{'clip':20} {'bg':5} " + " ".join(f"{v + ' band':>17} {v + ' frame':>18}" for v in variants)
    print(f"preset {args.preset}, model {matter.name} on {matter.device}; mean abs error in levels (0..255)")
    report = {"preset": args.preset, "folders": {}}
    for folder in folders:
        clips = sorted(p for p in folder.iterdir() if (p / "input.mp4").is_file())
        if args.clips:
            clips = [p for p in clips if p.name in args.clips]
        if not clips:
            continue
        print(f"\n{folder}")
        print(header)
        results = {}
        for clip in clips:
            results[clip.name] = res = score_clip(clip, data / "portraits", truth, engine, args.frames, variants,
                                                  plated)
            for name in BACKGROUNDS:
                print(f"{clip.name:20} {name:5} " + " ".join(
                    f"{res[name][v]['band']:17.2f} {res[name][v]['frame']:18.3f}" for v in variants), flush=True)
        summary = {}
        for name in BACKGROUNDS:
            summary[name] = {v: {k: float(np.mean([results[c][name][v][k] for c in results]))
                                 for k in ("band", "frame")} for v in variants}
            print(f"{'MEAN':20} {name:5} " + " ".join(
                f"{summary[name][v]['band']:17.2f} {summary[name][v]['frame']:18.3f}" for v in variants))
        for name in BACKGROUNDS:
            for v in variants[1:]:
                ratio = summary[name][v]["band"] / summary[name]["plain"]["band"]
                print(f"{name}: {v} edge-band error = {ratio:.1%} of plain; whole frame "
                      f"{summary[name][v]['frame']:.3f} vs plain {summary[name]['plain']['frame']:.3f}")
        ms = {k: float(np.mean([results[c]["ms_per_frame"][k] for c in results])) for k in ("auto", "blur", "plate")}
        print(f"ms/frame at 1280x720: foreground auto (engine) {ms['auto']:.1f}, blur fusion {ms['blur']:.1f}"
              + (f", plate {ms['plate']:.1f}" if args.plate else ""))
        report["folders"][str(folder)] = {"clips": results, "mean": summary, "ms": ms}
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    matter.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
