"""Spill suppression: the colour a green (or blue) screen throws onto the person's edge.

A screen colours the person's edge two ways: in the soft band the frame's colour is part screen
(hair in motion), and just inside the edge the screen's light bounces off the person (a green
rim on hair and cheeks). Real screens under real light are dull (``#263D29``, ``#459767``): a
screen is told by its strongest channel's *ratio* to the other two (:func:`key_of`), not by a
level difference.

:func:`suppress` limits the screen's channel to the larger of the other two
(``G' = G - w * max(0, G - max(R, B))`` for green) at soft pixels and at opaque ones within
:data:`REACH` of the edge. The weight ``w`` is 1 in the soft band and up to half the reach
inside, fading to 0 at the reach (bounced light fades inward); it is scaled by how close the
pixel's hue is to the screen's, so only colours the screen could have made are changed. Skin
(red above green) has no excess and is never changed; a green shirt away from the edge is
outside the reach.

The screen's colour is given (``#RRGGBB``) or detected (:class:`KeyDetector`): the median colour
of what the matte calls background, over the first frames, then followed slowly.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import cv2
import numpy as np

log = logging.getLogger(__name__)

MIN_KEY_RATIO = 1.15  # a given colour is a key when its strongest channel is this many times both others
AUTO_KEY_RATIO = 1.25  # a detected backdrop must stand out more: a user's colour is meant, a room's tint is not
_KEEP = 0.05  # a detected key is kept until its ratio falls this far below AUTO_KEY_RATIO (no flapping)
_FLOOR = 16.0  # levels: a channel below this is dark noise; ratios are taken against at least this
_SETTLE = 10  # frames before "no screen" is said (a found screen is said at once; warm-ups say nothing)
MIN_BACKDROP = 0.05  # share of the frame the matte must call background before the screen is measured
_BACKGROUND = 0.02  # matte below this counts as backdrop for detection
_FOLLOW = 0.02  # after the first 1 / _FOLLOW measures (a running mean), each frame's share in the key colour
REACH = 0.03  # of the frame's short side: how far inside the edge bounced light is removed
# Degrees from the screen's hue: full weight within (a screen mixed with a warm person turns up
# to about 60 degrees), none beyond (a chartreuse shirt against a cyan-green screen)
_HUE_FULL, _HUE_NONE = 60.0, 90.0
_LOW, _HIGH = 0.5 / 255, 254.5 / 255  # the matte's 8-bit levels 1..254: soft; above: opaque
_NAMES = ("blue", "green", "red")


@dataclass(frozen=True)
class Key:
    """A screen's colour: ``colour`` (B, G, R) levels, its dominant ``channel`` (0 B, 1 G, 2 R) and
    ``ratio``, that channel over the larger of the other two (each at least :data:`_FLOOR`)."""

    colour: tuple[float, float, float]
    channel: int
    ratio: float

    @property
    def name(self) -> str:
        return _NAMES[self.channel]

    def __str__(self) -> str:
        return f"{_hex(self.colour)} ({self.name}, {self.ratio:.2f}x)"


def _hex(bgr) -> str:
    b, g, r = (round(float(c)) for c in bgr)
    return f"#{r:02X}{g:02X}{b:02X}"


def dominance(bgr) -> tuple[int, float]:
    """(B, G, R) levels -> (the strongest channel, its ratio to the larger other one)."""
    levels = [float(c) for c in bgr]
    channel = int(np.argmax(levels))
    second = max(c for i, c in enumerate(levels) if i != channel)
    return channel, max(levels[channel], _FLOOR) / max(second, _FLOOR)


def key_of(bgr, min_ratio: float = MIN_KEY_RATIO) -> Key | None:
    """(B, G, R) levels -> the :class:`Key` they make, or None when no channel is ``min_ratio``
    times both others."""
    channel, ratio = dominance(bgr)
    return Key(tuple(float(c) for c in bgr), channel, ratio) if ratio >= min_ratio else None


def suppress(colours: np.ndarray, alpha: np.ndarray, key: Key) -> None:
    """In place: remove ``key``'s spill from ``colours`` (``uint8 [H, W, 3]`` BGR, contiguous, the
    colours to composite) where ``alpha`` (``float32 [H, W]`` in [0, 1]) is soft, and inside the
    opaque part within :data:`REACH` of its edge, fading inward."""
    if not colours.flags.c_contiguous:
        raise ValueError("despill needs contiguous colours: it writes through a flat view")
    height, width = alpha.shape
    reach = max(2.0, REACH * min(height, width))
    # Where to look, at half size (a fading weight needs no more): matte above 0 (in an area mean,
    # one soft pixel among four clear ones) and not deeper inside than the reach
    half = ((width + 1) // 2, (height + 1) // 2)  # pixel (x, y) is at (x // 2, y // 2) there
    small = cv2.resize(alpha, half, interpolation=cv2.INTER_AREA)
    depth = cv2.distanceTransform(cv2.inRange(small, _HIGH, 2.0), cv2.DIST_L2, 3)  # half-size px, 0 if not opaque
    band = cv2.bitwise_and(cv2.inRange(small, _LOW / 4, 2.0), cv2.inRange(depth, -1.0, reach / 2))
    # Only pixels whose key channel stands above both others can hold spill
    others = [cv2.extractChannel(colours, c) for c in range(3) if c != key.channel]
    spilled = cv2.compare(cv2.extractChannel(colours, key.channel), cv2.max(*others), cv2.CMP_GT)
    points = cv2.findNonZero(cv2.bitwise_and(
        spilled, cv2.resize(band, (width, height), interpolation=cv2.INTER_NEAREST)))
    if points is None:
        return
    points = points.reshape(-1, 2)
    xs, ys = points[:, 0], points[:, 1]
    flat = colours.reshape(-1, 3)
    index = ys * width + xs
    pixels = flat[index].astype(np.float32)
    excess = pixels[:, key.channel] - np.maximum(*(pixels[:, c] for c in range(3) if c != key.channel))
    near = np.clip((reach - 2 * depth[ys >> 1, xs >> 1]) / (reach / 2), 0, 1)
    weight = near * _likeness(pixels, key) * (alpha.reshape(-1)[index] >= _LOW)
    flat[index, key.channel] = (pixels[:, key.channel] - weight * excess + 0.5).astype(np.uint8)


def _likeness(pixels: np.ndarray, key: Key) -> np.ndarray:
    """How close each pixel's hue (``float32 [N, 3]`` BGR) is to the key's: 1 within
    :data:`_HUE_FULL` degrees, 0 beyond :data:`_HUE_NONE`. Hue as an angle in the opponent plane."""
    b, g, r = pixels[:, 0], pixels[:, 1], pixels[:, 2]
    u, v = r - (g + b) / 2, (g - b) * np.float32(np.sqrt(3) / 2)
    kb, kg, kr = key.colour
    ku, kv = kr - (kg + kb) / 2, (kg - kb) * np.sqrt(3) / 2
    cos = (u * np.float32(ku) + v * np.float32(kv)) / (np.sqrt(u * u + v * v) * np.float32(np.hypot(ku, kv)) + 1e-6)
    full, none = np.cos(np.radians(_HUE_FULL)), np.cos(np.radians(_HUE_NONE))
    return np.clip((cos - np.float32(none)) * np.float32(1 / (full - none)), 0, 1)


class KeyDetector:
    """Measures the backdrop's colour over a stream and says once what it found (a screen at once;
    no screen after :data:`_SETTLE` frames, so an engine's warm-up on a still says nothing);
    ``reset`` for a new stream (or a cut: the screen is measured again, and only a different
    verdict is said)."""

    def __init__(self):
        self._said: str | None = None  # the last verdict logged: a key's channel name, or why none
        self.reset()

    def reset(self) -> None:
        self.colour: np.ndarray | None = None  # float64 [3] BGR, the followed median
        self.key: Key | None = None
        self._measures = 0
        self._frames = 0

    def update(self, frame_bgr: np.ndarray, alpha: np.ndarray) -> Key | None:
        """Measure this frame's backdrop (``uint8 [H, W, 3]`` BGR; its matte, ``float32 [H, W]``)
        -> the screen's key, or None (no screen found yet, or the backdrop is not one)."""
        height, width = alpha.shape
        small = (max(1, width // 8), max(1, height // 8))
        backdrop = cv2.resize(alpha, small, interpolation=cv2.INTER_AREA) < _BACKGROUND
        share = float(backdrop.mean())
        self._frames += 1
        if share >= MIN_BACKDROP:
            # The median of 8x8 block means: the screen's colour, whatever else shows (a stand, a bar)
            median = np.median(cv2.resize(frame_bgr, small, interpolation=cv2.INTER_AREA)[backdrop], axis=0)
            self._measures += 1
            rate = max(1 / self._measures, _FOLLOW)
            self.colour = median if self.colour is None else self.colour + rate * (median - self.colour)
        if self.colour is None:
            self._say("few", f"no screen found yet: too few background pixels ({share:.0%} of the frame, "
                             f"need {MIN_BACKDROP:.0%})")
            return None
        self.key = key_of(self.colour, AUTO_KEY_RATIO - (_KEEP if self.key is not None else 0))
        if self.key is not None:
            self._say(self.key.name, f"screen {self.key}")
        else:
            channel, ratio = dominance(self.colour)
            self._say("none", f"no screen: the background {_hex(self.colour)} has no dominant channel "
                              f"({_NAMES[channel]} {ratio:.2f}x, need {AUTO_KEY_RATIO}x)")
        return self.key

    def _say(self, verdict: str, line: str) -> None:
        if verdict != self._said and (verdict in _NAMES or self._frames >= _SETTLE):
            self._said = verdict
            log.info("despill: %s", line)
