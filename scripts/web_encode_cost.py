"""The candidate encodings of one 720p frame with alpha for the web page's stream, side by side in
one run: CPU ms per frame and bytes. The frame is s18's first, with a soft elliptical matte.

    python scripts/web_encode_cost.py

WebP keeps alpha in one picture but is slow to encode; JPEG colour plus a grey JPEG of the alpha
(what livematte sends) costs a few ms.
"""

from __future__ import annotations

import io
import os
import time
from pathlib import Path

import cv2
import numpy as np

CLIP = Path(os.environ.get("LIVEMATTE_TEST_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")) / "clips" / "s18.mp4"


def measure(name: str, encode, runs: int = 15) -> None:
    encode()
    start = time.process_time()
    for _ in range(runs):
        data = encode()
    print(f"{name:44s} {1e3 * (time.process_time() - start) / runs:6.1f} ms  {len(data) / 1024:5.0f} KB")


def main() -> None:
    capture = cv2.VideoCapture(str(CLIP))
    ok, frame = capture.read()
    if not ok:
        raise SystemExit(f"cannot read {CLIP}")
    h, w = frame.shape[:2]
    ys, xs = np.mgrid[0:h, 0:w]
    alpha = (np.clip(1.5 - np.hypot((xs - w / 2) / (w / 4), (ys - h / 2) / (h / 2.5)), 0, 1) * 255).astype(np.uint8)
    bgra = np.dstack([frame, alpha])
    measure("OpenCV WebP q80 (BGRA)", lambda: cv2.imencode(".webp", bgra, [cv2.IMWRITE_WEBP_QUALITY, 80])[1])
    try:
        from PIL import Image
    except ImportError:
        Image = None
    if Image is not None:
        rgba = Image.fromarray(cv2.cvtColor(bgra, cv2.COLOR_BGRA2RGBA))

        def pillow(quality: int, alpha_quality: int) -> bytes:
            out = io.BytesIO()
            rgba.save(out, "WEBP", quality=quality, method=0, alpha_quality=alpha_quality)
            return out.getvalue()

        measure("Pillow WebP method 0, q80, alpha q100", lambda: pillow(80, 100))
        measure("Pillow WebP method 0, q70, alpha q50", lambda: pillow(70, 50))
    colour = lambda: cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 85])[1]  # noqa: E731
    grey = lambda: cv2.imencode(".jpg", alpha, [cv2.IMWRITE_JPEG_QUALITY, 90])[1]  # noqa: E731
    measure("JPEG q85 colour", colour)
    measure("JPEG q90 alpha (grey)", grey)
    measure("JPEG colour + alpha (livematte's overlay)", lambda: np.concatenate([colour(), grey()]))
    measure("PNG alpha, fastest", lambda: cv2.imencode(".png", alpha, [cv2.IMWRITE_PNG_COMPRESSION, 1])[1])


if __name__ == "__main__":
    main()
