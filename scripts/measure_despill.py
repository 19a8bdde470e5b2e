"""Despill on a real green screen: d0.mp4 composited on grey, without and with ``--despill``.

Runs the command users run, twice, on every frame of ../shared/data/clips/d0.mp4 (PNG frames:
the pipeline's own pixels, without an encoder's chroma subsampling smearing the edge):

    livematte video d0.mp4 --background color:#808080 -o plain/ --format png --alpha-out alpha.mkv
    livematte video d0.mp4 --background color:#808080 -o despilled/ --format png --despill [COLOUR]

and prints, over all frames, with the first run's matte ``a``:

- the green excess ``max(0, G - max(R, B))`` (levels) over the soft band ``0.05 < a < 0.95``,
  without and with, and their ratio;
- the same just inside the edge (``a > 0.95`` within 15 px of ``a < 0.5``): the screen's bounced light;
- skin away from the edge: ``a > 0.98``, more than 15 px from every ``a < 0.5`` pixel, skin-coloured
  by the rule ``R > G > B and R > 80`` (skin and lips; grey, the dark jacket and dark hair fail it):
  the mean and 99th percentile of |despilled - plain| (levels, over the three channels);
- the line the despill logged.

    python scripts/measure_despill.py [--despill auto|COLOUR] [--shared ../shared] [--keep DIR]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import av
import cv2
import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
EDGE_PX = 15  # "away from the edge" and "just inside it"


def run(clip: Path, out: Path, flags: list[str]) -> list[str]:
    """``livematte video`` with ``flags`` into the PNG folder ``out`` -> its log lines."""
    command = [sys.executable, "-m", "livematte", "video", str(clip), "--background", "color:#808080",
               "-o", str(out), "--format", "png", "-y", *flags]
    done = subprocess.run(command, check=False, capture_output=True, text=True, cwd=REPO_ROOT)
    if done.returncode:
        sys.exit(f"measure_despill: {' '.join(command)} failed:\n{done.stderr}")
    return done.stderr.splitlines()


def pictures(folder: Path) -> list[np.ndarray]:
    return [cv2.imread(str(path), cv2.IMREAD_COLOR).astype(np.int16) for path in sorted(folder.glob("*.png"))]


def excess(picture: np.ndarray) -> np.ndarray:
    """``int16 [H, W]``: how far green stands above red and blue, 0 where it does not."""
    return np.maximum(0, picture[..., 1] - np.maximum(picture[..., 0], picture[..., 2]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--despill", default="auto", help="the --despill value to measure (default auto)")
    parser.add_argument("--shared", type=Path, default=REPO_ROOT.parent / "shared")
    parser.add_argument("--keep", type=Path, default=None, help="write the outputs here (default: a temporary folder)")
    args = parser.parse_args(argv)
    clip = args.shared / "data" / "clips" / "d0.mp4"
    if not clip.is_file():
        sys.exit(f"measure_despill: no {clip}; give --shared DIR")
    with tempfile.TemporaryDirectory() as scratch:
        work = args.keep or Path(scratch)
        run(clip, work / "plain", ["--alpha-out", str(work / "alpha.mkv")])
        said = [line for line in run(clip, work / "despilled", ["--despill", args.despill]) if "despill:" in line]
        plain, despilled = pictures(work / "plain"), pictures(work / "despilled")
        with av.open(str(work / "alpha.mkv")) as container:
            mattes = [f.to_ndarray(format="gray").astype(np.float32) / 255 for f in container.decode(video=0)]
    if not len(plain) == len(despilled) == len(mattes) > 0:
        sys.exit(f"measure_despill: {len(plain)}, {len(despilled)} pictures and {len(mattes)} mattes")

    soft_before, soft_after, rim_before, rim_after, skin_change = [], [], [], [], []
    for before, after, a in zip(plain, despilled, mattes):
        soft = (a > 0.05) & (a < 0.95)
        depth = cv2.distanceTransform((a >= 0.5).astype(np.uint8), cv2.DIST_L2, 5)  # px to the nearest a < 0.5
        rim = (a > 0.95) & (depth <= EDGE_PX)
        b, g, r = before[..., 0], before[..., 1], before[..., 2]
        skin = (a > 0.98) & (depth > EDGE_PX) & (r > g) & (g > b) & (r > 80)
        soft_before.append(excess(before)[soft])
        soft_after.append(excess(after)[soft])
        rim_before.append(excess(before)[rim])
        rim_after.append(excess(after)[rim])
        skin_change.append(np.abs(after - before)[skin].ravel())
    soft_before, soft_after, rim_before, rim_after, skin_change = (
        np.concatenate(x) for x in (soft_before, soft_after, rim_before, rim_after, skin_change))

    print(f"d0.mp4, {len(mattes)} frames on #808080, --despill {args.despill}")
    print(f"despill said: {' | '.join(said) or '(nothing)'}")
    print(f"green excess, soft band 0.05 < a < 0.95 ({soft_before.size} px): "
          f"{soft_before.mean():.2f} -> {soft_after.mean():.2f} levels ({soft_after.mean() / soft_before.mean():.1%} of it)")
    print(f"green excess, inside the edge (a > 0.95, <= {EDGE_PX} px in, {rim_before.size} px): "
          f"{rim_before.mean():.2f} -> {rim_after.mean():.2f} levels")
    print(f"skin away from the edge (a > 0.98, > {EDGE_PX} px in, R > G > B, R > 80; {skin_change.size // 3} px): "
          f"mean |change| {skin_change.mean():.3f} levels, 99th percentile {np.percentile(skin_change, 99):.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
