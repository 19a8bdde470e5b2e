"""The data that flows through livematte, with shapes, dtypes and ranges.

Conventions, used everywhere:
- images are ``uint8`` arrays of shape ``[H, W, 3]`` in OpenCV's **BGR** order;
- mattes (alpha) are ``float32`` arrays of shape ``[H, W]`` in ``[0, 1]``,
  1 where the person is;
- times are seconds (``float``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import cv2
import numpy as np


@dataclass(frozen=True, slots=True)
class Frame:
    """One picture from a source.

    index: position in the source, 0-based, counting every frame the source
        produced (dropped frames leave gaps downstream).
    image: ``uint8 [H, W, 3]`` BGR.
    pts: presentation time on the source's own timeline, seconds.
    captured_at: ``time.perf_counter()`` when the frame entered livematte;
        latency is measured from here.
    restart: the source restarted here (it changed size, or a camera came back):
        nothing from earlier frames (a model's recurrent state, the smoother's
        past) may carry over.
    """

    index: int
    image: np.ndarray
    pts: float
    captured_at: float
    restart: bool = False

    def age(self) -> float:
        """Seconds since the frame entered livematte."""
        return time.perf_counter() - self.captured_at


@dataclass(frozen=True, slots=True)
class Matted:
    """A frame with the matte computed from that same frame.

    Keeping the two in one object is what guarantees alignment: a compositor
    never sees an image with another frame's matte.
    alpha: ``float32 [H, W]`` in ``[0, 1]`` at the frame's full resolution.
    timings: stage name -> milliseconds spent on this frame.
    reused: the matte is a model result made from an earlier frame, moved to this frame (live,
    the model on its own thread), not a model call of its own; it is still this frame's matte,
    aligned with it. result_age: how many frames before this one that result's input was (0: its own).
    foreground: the person's estimated colours, ``uint8 [H, W, 3]`` BGR (straight, not
        premultiplied: what a composite blends and a transparent output carries), or None
        for the frame's own colours.
    """

    frame: Frame
    alpha: np.ndarray
    timings: dict[str, float] = field(default_factory=dict)
    foreground: np.ndarray | None = None
    reused: bool = False
    result_age: int = 0

    @property
    def colours(self) -> np.ndarray:
        """The colours to composite: ``foreground``, or the frame's own when there is none."""
        return self.frame.image if self.foreground is None else self.foreground


def alpha_to_u8(alpha: np.ndarray) -> np.ndarray:
    """``float32 [H, W]`` in [0, 1] -> ``uint8 [H, W]`` in [0, 255], rounded."""
    return np.clip(alpha * 255.0 + 0.5, 0, 255).astype(np.uint8)


def halved(picture: np.ndarray, times: int = 1) -> np.ndarray:
    """``picture`` (``[H, W]`` or ``[H, W, C]``) halved ``times`` times, at least 1 px a side: each
    pixel the mean of the 2 x 2 it covers. Three halvings reach an eighth in a third of the time of
    one eighth-size step: OpenCV averages 2 x 2 blocks on a fast path (README: Measurements behind
    the code)."""
    for _ in range(times):
        height, width = picture.shape[:2]
        picture = cv2.resize(picture, (max(1, width // 2), max(1, height // 2)), interpolation=cv2.INTER_AREA)
    return picture


def flat_index(points: np.ndarray, width: int) -> np.ndarray:
    """``int32 [N, 2]`` (x, y) -> ``intp [N]``, their indices in a picture ``width`` px wide read as
    one row of pixels: numpy's take and put with these are several times quicker than indexing
    by (y, x) pairs."""
    return points[:, 1].astype(np.intp) * width + points[:, 0]


def u8_to_alpha(alpha_u8: np.ndarray) -> np.ndarray:
    """``uint8 [H, W]`` -> ``float32 [H, W]`` in [0, 1]."""
    return alpha_u8.astype(np.float32) * np.float32(1.0 / 255.0)


@dataclass(frozen=True, slots=True)
class GuidedMatte:
    """A matte whose last step is left to be done at the frame's full resolution.

    ``alpha = a * guide + b``, ``guide`` being the frame's mean of R, G and B in
    0..1 (:func:`livematte.matte.refine.guide`) and ``a``, ``b`` (``float32 [h, w]`` at
    the model's input size) resized to the frame's size: the last step of a
    guided filter, as Robust Video Matting ends.

    ``colour_a``, ``colour_b`` (``float32 [3, h, w]``, BGR order, or None): the same filter's
    coefficients for the foreground's colours, one guide per channel: ``F = colour_a * frame / 255
    + colour_b`` (0..1) per channel (:func:`livematte.matte.foreground.from_coefficients`).
    """

    a: np.ndarray
    b: np.ndarray
    colour_a: np.ndarray | None = None
    colour_b: np.ndarray | None = None
