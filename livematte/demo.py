"""The built-in demo: a short clip of a real person, background replaced, with nothing from the user.

The person is Grace Hopper's official portrait, which matplotlib ships as
sample data. A slow pan and zoom over it makes a 4-second 720p clip, and
livematte's offline path replaces the background with a generated picture.
"""

from __future__ import annotations

import logging
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

from .errors import LivematteError
from .models.weights import cache_dir

log = logging.getLogger(__name__)

WIDTH, HEIGHT, FPS, SECONDS = 1280, 720, 30, 4


def sample_portrait() -> np.ndarray:
    """``uint8 [600, 512, 3]`` BGR: the portrait shipped with matplotlib."""
    try:
        from matplotlib import cbook
    except ImportError as e:
        raise LivematteError("the demo's sample portrait comes with matplotlib: pip install matplotlib") from e
    image = cv2.imread(str(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)))
    if image is None:
        raise LivematteError("matplotlib's sample portrait grace_hopper.jpg could not be read")
    return image


def demo_background(width: int = WIDTH, height: int = HEIGHT) -> np.ndarray:
    """A calm generated backdrop: a diagonal gradient with soft light discs. ``uint8 [H, W, 3]`` BGR."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    t = (x / width + y / height) / 2
    picture = np.dstack([120 + 100 * t, 60 + 80 * (1 - t), 40 + 60 * t])
    for cx, cy, radius in ((0.2, 0.3, 0.12), (0.8, 0.25, 0.18), (0.65, 0.8, 0.1)):
        disc = np.exp(-(((x - cx * width) ** 2 + (y - cy * height) ** 2) / (radius * width) ** 2))
        picture += 70 * disc[..., None]
    return np.clip(picture, 0, 255).astype(np.uint8)


def make_clip(path: Path) -> Path:
    """Pan and zoom over the portrait into a 720p H.264 clip (the person moves, as on a call)."""
    from .videoio import VideoWriter

    portrait = sample_portrait()
    # Portrait (512x600) onto a wider canvas, standing on its bottom edge as a
    # person on a call does; the sides are the portrait's own blurred edges so the
    # model sees one continuous scene.
    scale = HEIGHT * 1.25 / portrait.shape[0]
    person = cv2.resize(portrait, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)
    canvas = cv2.resize(cv2.GaussianBlur(portrait, (0, 0), 8), (round(WIDTH * 1.6), person.shape[0]))
    left = (canvas.shape[1] - person.shape[1]) // 2
    canvas[:, left:left + person.shape[1]] = person
    with VideoWriter(path, width=WIDTH, height=HEIGHT, rate=Fraction(FPS), crf=16) as writer:
        for index in range(FPS * SECONDS):
            phase = index / (FPS * SECONDS)
            zoom = 1.0 + 0.12 * np.sin(np.pi * phase)
            w, h = WIDTH * 1.2 / zoom, HEIGHT * 1.2 / zoom
            cx = canvas.shape[1] / 2 + 100 * np.sin(2 * np.pi * phase)
            cy = canvas.shape[0] - h / 2  # the window's bottom stays on the canvas's bottom
            matrix = np.float32([[w / WIDTH, 0, cx - w / 2], [0, h / HEIGHT, cy - h / 2]])
            frame = cv2.warpAffine(canvas, matrix, (WIDTH, HEIGHT), flags=cv2.WARP_INVERSE_MAP | cv2.INTER_LINEAR)
            writer.write(frame, index / FPS)
    return path


def prepare_inputs() -> tuple[Path, Path]:
    """(clip, background) in the cache, made once."""
    folder = cache_dir() / "demo"
    folder.mkdir(parents=True, exist_ok=True)
    clip, background = folder / "grace_hopper_pan.mp4", folder / "backdrop.png"
    if not clip.is_file():
        log.info("making the demo clip %s", clip)
        make_clip(clip)
    if not background.is_file():
        cv2.imwrite(str(background), demo_background())
    return clip, background
