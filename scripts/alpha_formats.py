"""Sizes and alpha accuracy of livematte's transparent video formats, lossless and lossy.

Mattes a clip once with ``livematte video --background transparent`` into a lossless PNG folder
(the reference), then writes those same BGRA frames through :class:`VideoWriter` in each format
and quality, reads them back (:func:`read_rgba`) and reports per format: the file's size and
bit rate, the encoding speed, the alpha's mean and largest absolute error in levels (0..255) over
all pixels and over the soft edge (reference alpha 1..254), and the colour error where the
reference alpha is above 0.

    python scripts/alpha_formats.py [--source ../shared/data/clips/s18.mp4] [--frames 180]
        [--webm-crf 15 25 35 45] [--json out.json]

The default source is ../shared/data/clips/s18.mp4 (skipped with a message when absent).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import numpy as np

from livematte.cli import main as livematte
from livematte.media.readback import read_rgba
from livematte.media.formats import PRORES_PROFILES
from livematte.media.writing import VideoWriter

REPO_ROOT = Path(__file__).resolve().parents[1]


def formats(webm_crfs: list[int]) -> list[tuple[str, str, dict]]:
    """(label, suffix, VideoWriter options) for each format measured; lossless ones first."""
    out = [("webm lossless", ".webm", {})]
    out += [(f"webm crf {crf}", ".webm", {"webm_crf": crf}) for crf in webm_crfs]
    out += [(f"mov prores {name}", ".mov", {"prores": name}) for name in PRORES_PROFILES]
    return out


def measure(frames: list[np.ndarray], rate: Fraction, path: Path, options: dict) -> dict:
    """Write ``frames`` (BGRA) to ``path`` with ``options``, read them back, and score them."""
    height, width = frames[0].shape[:2]
    start = time.perf_counter()
    with VideoWriter(path, width=width, height=height, rate=rate, **options) as writer:
        for i, frame in enumerate(frames):
            writer.write(frame, float(i / rate))
    seconds = time.perf_counter() - start
    back = read_rgba(path)
    if len(back) != len(frames):
        raise SystemExit(f"{path}: {len(back)} frames read back, {len(frames)} written")
    abs_sum = soft_sum = colour_sum = 0.0
    soft_px = colour_px = 0
    worst = 0
    for ref, got in zip(frames, back):
        error = np.abs(got[:, :, 3].astype(np.int16) - ref[:, :, 3])
        soft = (ref[:, :, 3] > 0) & (ref[:, :, 3] < 255)
        seen = ref[:, :, 3] > 0
        abs_sum += float(error.sum())
        soft_sum += float(error[soft].sum())
        soft_px += int(soft.sum())
        worst = max(worst, int(error.max()))
        colour = np.abs(got[:, :, :3].astype(np.int16) - ref[:, :, :3]).mean(axis=2)
        colour_sum += float(colour[seen].sum())
        colour_px += int(seen.sum())
    size = path.stat().st_size
    return {"bytes": size, "mbit_s": size * 8 / (len(frames) / float(rate)) / 1e6,
            "encode_fps": len(frames) / seconds, "alpha_mad": abs_sum / (len(frames) * width * height),
            "alpha_mad_soft": soft_sum / max(soft_px, 1), "alpha_max": worst,
            "colour_mae": colour_sum / max(colour_px, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=REPO_ROOT.parent / "shared" / "data" / "clips" / "s18.mp4")
    parser.add_argument("--frames", type=int, default=180, help="frames to matte and encode (default 180)")
    parser.add_argument("--webm-crf", type=int, nargs="*", default=[15, 25, 35, 45], metavar="CRF",
                        help="VP9 crf values to measure besides lossless (default 15 25 35 45)")
    parser.add_argument("--json", type=Path, default=None, help="write the figures as JSON")
    args = parser.parse_args(argv)
    if not args.source.is_file():
        print(f"alpha_formats: no {args.source}; give --source", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="livematte-alpha-") as tmp:
        reference = Path(tmp) / "reference"
        if livematte(["video", str(args.source), "-o", f"{reference}/", "--background", "transparent",
                      "--frames", str(args.frames), "--quiet"]) != 0:
            return 1
        frames = read_rgba(reference)
        rate = Fraction(30)
        height, width = frames[0].shape[:2]
        print(f"{args.source.name}: {len(frames)} frames {width}x{height}, straight BGRA; errors in levels 0..255")
        print(f"{'format':18} {'MB':>7} {'Mbit/s':>7} {'enc fps':>7} {'alpha MAD':>9} {'soft MAD':>8} "
              f"{'max':>4} {'colour MAE':>10}")
        results = {}
        for label, suffix, options in formats(args.webm_crf):
            r = results[label] = measure(frames, rate, Path(tmp) / f"out{suffix}", options)
            print(f"{label:18} {r['bytes'] / 1e6:7.1f} {r['mbit_s']:7.1f} {r['encode_fps']:7.1f} "
                  f"{r['alpha_mad']:9.3f} {r['alpha_mad_soft']:8.2f} {r['alpha_max']:4d} {r['colour_mae']:10.2f}",
                  flush=True)
    if args.json:
        args.json.write_text(json.dumps({"source": str(args.source), "frames": len(frames), "formats": results},
                                        indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
