"""How close each model's still-image matte comes to what the real BSHM model outputs.

    python scripts/bshm_reference_iou.py [--models rvm modnet selfie] [--reference DIR]

``DIR`` (default ``../shared/data/bshm_reference``) holds pictures and, for each, ``<name>_mask.png``:
the alpha an ONNX conversion of ModelScope's BSHM produced (its foreground is mostly 245-254, so
both mattes are cut at 0.5). Each model runs through ``livematte image`` (its still-image size,
as a user gets it) and is scored by IoU at 0.5 and MAD (x1e3) against the mask.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def scores(alpha: np.ndarray, mask: np.ndarray) -> tuple[float, float]:
    """``uint8`` matte and reference, same size -> (IoU of their parts above 0.5, MAD x1e3)."""
    ours, theirs = alpha >= 128, mask >= 128
    union = np.logical_or(ours, theirs).sum()
    iou = float(np.logical_and(ours, theirs).sum() / union) if union else 1.0
    return iou, float(np.abs(alpha.astype(np.float32) - mask.astype(np.float32)).mean() / 255 * 1e3)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["rvm", "modnet", "selfie"])
    parser.add_argument("--reference", type=Path, default=ROOT.parent / "shared" / "data" / "bshm_reference")
    args = parser.parse_args(argv)
    masks = sorted(args.reference.glob("*_mask.png"))
    if not masks:
        parser.error(f"no *_mask.png in {args.reference}")
    print("| model | " + " | ".join(f"{m.name[:-len('_mask.png')]} IoU / MAD" for m in masks) + " | mean IoU |")
    print("|---|" + "---|" * (len(masks) + 1))
    for model in args.models:
        cells, ious = [], []
        with tempfile.TemporaryDirectory(prefix="livematte-bshm-ref-") as tmp:
            pictures = [str(m.with_name(m.name[:-len("_mask.png")])) for m in masks]
            subprocess.run([sys.executable, "-m", "livematte", "image", "-i", *pictures, "-d", tmp, "--model", model],
                           check=True, capture_output=True, text=True)
            for mask_path, picture in zip(masks, pictures):
                mask = cv2.imread(str(mask_path), cv2.IMREAD_GRAYSCALE)
                alpha = cv2.imread(str(Path(tmp) / f"{Path(picture).stem}_alpha.png"), cv2.IMREAD_GRAYSCALE)
                iou, mad = scores(alpha, mask)
                ious.append(iou)
                cells.append(f"{iou:.3f} / {mad:.1f}")
        print(f"| {model} | " + " | ".join(cells) + f" | {np.mean(ious):.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
