"""The built-in synthetic benchmark clip: a figure moving over a textured, panning background.

``livematte bench`` uses it when no ``--source`` is given: 1280x720, 30 fps, 300
frames of a drawn head-and-shoulders figure swaying and waving over a background
that pans, generated deterministically once into ``<cache>/bench_clip.mp4``
(:func:`livematte.models.weights.cache_dir`). It exercises every stage at a
realistic size; the model's cost and the matte's look depend on content, so real
footage of people gives the representative figures. (The demo's clip, a person on
a call, is made by :mod:`livematte.sources.demo_clip`.)
"""

from __future__ import annotations

import logging
from fractions import Fraction
from pathlib import Path

import numpy as np

from ..errors import LivematteError

log = logging.getLogger(__name__)

CLIP_NAME = "bench_clip.mp4"
CLIP_WIDTH, CLIP_HEIGHT, CLIP_FPS, CLIP_FRAMES = 1280, 720, 30, 300
CLIP_SEED = 20240611


def builtin_clip() -> Path:
    """The synthetic benchmark clip in the user's cache, generated on first use."""
    from ..models.weights import cache_dir

    path = cache_dir() / CLIP_NAME
    if path.is_file():
        try:
            from ..media.reading import probe

            info = probe(path)
            if (info.width, info.height) == (CLIP_WIDTH, CLIP_HEIGHT) and (info.frame_count or 0) >= CLIP_FRAMES:
                return path
        except LivematteError:
            pass
        log.info("regenerating %s (unreadable or not the expected clip)", path)
    log.info("generating the built-in benchmark clip %s (once)", path)
    write_clip(path)
    return path


def write_clip(path: Path, frames: int | None = None, width: int = CLIP_WIDTH, height: int = CLIP_HEIGHT,
               fps: int = CLIP_FPS) -> None:
    """Draw the synthetic clip (``CLIP_FRAMES`` frames by default) and encode it as H.264 crf 18.

    The same seed gives the same pictures; drawing and encoding take a while, hence the cache.
    """
    from ..media.writing import VideoWriter

    frames = CLIP_FRAMES if frames is None else frames
    scene = _Scene(width, height, np.random.default_rng(CLIP_SEED))
    with VideoWriter(path, width=width, height=height, rate=Fraction(fps), crf=18, preset="veryfast") as writer:
        for index in range(frames):
            writer.write(scene.frame(index / fps, index), index / fps)


class _Scene:
    """A head-and-shoulders figure swaying and waving over a textured background that pans."""

    def __init__(self, width: int, height: int, rng: np.random.Generator):
        import cv2

        self.width, self.height = width, height
        self.pan = width // 8
        # Background: soft colour clouds, then shapes with hard edges (furniture, shelves).
        big_w, big_h = width + 2 * self.pan, height
        clouds = rng.integers(70, 190, (big_h // 120 + 2, big_w // 120 + 2, 3), dtype=np.uint8)
        back = cv2.resize(clouds, (big_w, big_h), interpolation=cv2.INTER_CUBIC)
        for _ in range(60):
            colour = tuple(int(c) for c in rng.integers(0, 256, 3))
            x, y = int(rng.integers(0, big_w)), int(rng.integers(0, big_h))
            w, h = int(rng.integers(20, 220)), int(rng.integers(20, 160))
            if rng.random() < 0.5:
                cv2.rectangle(back, (x, y), (x + w, y + h), colour, -1, cv2.LINE_AA)
            else:
                cv2.ellipse(back, (x, y), (w // 2, h // 2), float(rng.integers(0, 180)), 0, 360, colour, -1,
                            cv2.LINE_AA)
        fine = rng.integers(0, 24, (big_h, big_w, 1), dtype=np.uint8)
        self.background = cv2.add(cv2.GaussianBlur(back, (0, 0), 1.5), np.repeat(fine, 3, axis=2))
        # Clothing with a woven pattern; grain like a webcam's, a few fixed patterns cycled.
        yy, xx = np.mgrid[0:height, 0:width]
        weave = (((xx // 6) + (yy // 6)) % 2 * 18).astype(np.uint8)
        self.shirt = np.dstack([weave + 60, weave + 70, weave + 150]).astype(np.uint8)
        self.grain = [rng.integers(0, 6, (height, width, 3), dtype=np.uint8) for _ in range(4)]

    def frame(self, t: float, index: int) -> np.ndarray:
        import cv2

        w, h = self.width, self.height
        offset = int(self.pan * (1 + np.sin(2 * np.pi * t / 9.0)))
        image = np.ascontiguousarray(self.background[:, offset:offset + w])
        # Body: centre sways, with a faster swing in the last third (motion blur-free fast motion).
        speed = 1.0 if t < 6.5 else 2.5
        cx = int(w / 2 + 0.18 * w * np.sin(2 * np.pi * t * speed / 4.0))
        cy = int(h * 0.42 + 0.02 * h * np.sin(2 * np.pi * t / 1.7))
        head = (int(0.085 * w), int(0.16 * h))
        mask = np.zeros((h, w), np.uint8)
        shoulders = np.array([[cx - 0.2 * w, h], [cx - 0.19 * w, cy + 0.33 * h], [cx - 0.1 * w, cy + 0.22 * h],
                              [cx + 0.1 * w, cy + 0.22 * h], [cx + 0.19 * w, cy + 0.33 * h], [cx + 0.2 * w, h]],
                             np.int32)
        cv2.fillPoly(mask, [shoulders], 255, cv2.LINE_AA)
        # A waving arm between seconds 3 and 6.5: a thin moving structure.
        if 3.0 <= t < 6.5:
            angle = np.pi * (0.35 + 0.15 * np.sin(2 * np.pi * t * 1.5))
            elbow = (int(cx + 0.19 * w), int(cy + 0.2 * h))
            hand = (int(elbow[0] + 0.2 * h * np.cos(angle)), int(elbow[1] - 0.3 * h * np.sin(angle)))
            cv2.line(mask, (int(cx + 0.17 * w), int(cy + 0.34 * h)), elbow, 255, int(0.06 * h), cv2.LINE_AA)
            cv2.line(mask, elbow, hand, 255, int(0.05 * h), cv2.LINE_AA)
        a = mask.astype(np.float32)[:, :, None] * np.float32(1 / 255)
        image = (image * (1 - a) + self.shirt * a).astype(np.uint8)
        cv2.rectangle(image, (cx - int(0.03 * w), cy + head[1] - 10), (cx + int(0.03 * w), cy + int(0.24 * h)),
                      (120, 150, 200), -1, cv2.LINE_AA)
        tilt = 8.0 * np.sin(2 * np.pi * t / 3.0)
        cv2.ellipse(image, (cx, cy), head, tilt, 0, 360, (125, 160, 215), -1, cv2.LINE_AA)
        cv2.ellipse(image, (cx, cy - head[1] // 3), (head[0] + 6, int(head[1] * 0.75)), tilt, 180, 360,
                    (30, 35, 45), -1, cv2.LINE_AA)
        for side in (-1, 1):
            eye = (int(cx + side * 0.3 * head[0]), int(cy + 0.05 * head[1]))
            cv2.circle(image, eye, 6, (40, 30, 30), -1, cv2.LINE_AA)
        cv2.ellipse(image, (cx, int(cy + 0.5 * head[1])), (int(0.3 * head[0]), 8), 0, 0, 180, (60, 60, 150), 3,
                    cv2.LINE_AA)
        return cv2.add(image, self.grain[index % len(self.grain)])
