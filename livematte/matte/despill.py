"""Spill suppression: the key colour a green (or blue) screen throws onto the person's edge.

Where the matte is soft, even the estimated foreground keeps some of a strongly coloured
backdrop (hair in motion over a green screen). The key colour's strongest channel is the
spill: at each soft pixel it is limited to the mean of the other two channels
(``G <= (R + B) / 2`` for green), the classic "average" despill. Only the soft pixels are
touched, so a green shirt inside the person keeps its colour.

The key colour is given (``#RRGGBB``) or detected (:class:`KeyDetector`): the mean colour of
what the matte calls background, followed over time, counts as a key when one channel stands
out from both others by :data:`MIN_KEY_MARGIN` levels or more.
"""

from __future__ import annotations

import cv2
import numpy as np

MIN_KEY_MARGIN = 40  # levels: how far the key's channel must stand above the others
_BACKGROUND = 0.02  # matte below this counts as backdrop for detection
_FOLLOW = 0.1  # share of each frame's measure in the followed key colour


def key_channel(bgr: tuple[float, float, float]) -> int | None:
    """The channel (0 B, 1 G, 2 R) that makes ``bgr`` a key colour, or None when none stands out."""
    order = np.argsort(bgr)
    top, second = float(bgr[order[2]]), float(bgr[order[1]])
    return int(order[2]) if top - second >= MIN_KEY_MARGIN else None


def suppress(colours: np.ndarray, points: np.ndarray, channel: int) -> None:
    """In place: at ``points`` (``int32 [N, 2]`` x, y) of ``colours`` (``uint8 [H, W, 3]`` BGR),
    limit ``channel`` to the mean of the other two."""
    if not len(points):
        return
    xs, ys = points[:, 0], points[:, 1]
    pixels = colours[ys, xs].astype(np.int16)
    others = [c for c in range(3) if c != channel]
    limit = (pixels[:, others[0]] + pixels[:, others[1]]) // 2
    pixels[:, channel] = np.minimum(pixels[:, channel], limit)
    colours[ys, xs] = pixels.astype(np.uint8)


class KeyDetector:
    """Follows the backdrop's mean colour over a stream; ``reset`` for a new one."""

    def __init__(self):
        self.colour: np.ndarray | None = None  # float64 [3] BGR

    def reset(self) -> None:
        self.colour = None

    def update(self, frame_bgr: np.ndarray, alpha: np.ndarray) -> int | None:
        """Measure this frame's backdrop -> the key channel to suppress, or None (no key backdrop)."""
        height, width = alpha.shape
        small = (max(1, width // 8), max(1, height // 8))
        backdrop = (cv2.resize(alpha, small, interpolation=cv2.INTER_AREA) < _BACKGROUND).astype(np.uint8)
        if backdrop.any():
            mean = np.array(cv2.mean(cv2.resize(frame_bgr, small, interpolation=cv2.INTER_AREA), backdrop)[:3])
            self.colour = mean if self.colour is None else self.colour + _FOLLOW * (mean - self.colour)
        return None if self.colour is None else key_channel(tuple(self.colour))
