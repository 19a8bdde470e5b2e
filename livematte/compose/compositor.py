"""The blend that puts the person in front of a background (:mod:`livematte.compose.backgrounds`).

The person's colours are the estimated foreground (:mod:`livematte.matte.foreground`) when the
engine gives one, so no old background comes along at soft edges; a transparent output
carries those colours with straight (not premultiplied) alpha, the convention of PNG, WebM
and ProRes 4444.
"""

from __future__ import annotations

import threading

import cv2
import numpy as np

from ..frames import alpha_to_u8
from .backgrounds import Background, Transparent


class Compositor:
    """Blends frames over a background that other threads may replace while it runs.

    One thread, the output thread, calls :meth:`composite` and owns ``background``.
    :meth:`set_background` only leaves the new one pending; the next ``composite`` swaps it
    in and closes the old one, so no background is closed while it renders.
    """

    def __init__(self, background: Background, light_wrap: float = 0.0):
        self.background = background
        self.light_wrap = light_wrap  # 0..1: the new background's light on the edge (light_wrap)
        self._pending: Background | None = None  # handed over, not yet swapped in
        self._closed = False
        self._lock = threading.Lock()

    @property
    def transparent(self) -> bool:
        """Whether the next frame comes out with alpha (BGRA): its background is transparent."""
        with self._lock:
            upcoming = self.background if self._pending is None else self._pending
        return isinstance(upcoming, Transparent)

    def set_background(self, background: Background) -> None:
        """Hand over ``background`` from any thread; the next :meth:`composite` uses it.

        The compositor owns it from here on and closes it when it is replaced or closed.
        """
        with self._lock:
            if self._closed:
                unused = background
            else:
                unused, self._pending = self._pending, background
        if unused is not None:  # never rendered, so no other thread can be using it
            unused.close()

    def composite(self, image: np.ndarray, alpha: np.ndarray, pts: float = 0.0,
                  colours: np.ndarray | None = None) -> np.ndarray:
        """``uint8 [H, W, 3]`` BGR frame + ``float32 [H, W]`` alpha (0..1) at ``pts`` seconds
        -> the output picture. ``colours``: the person's estimated colours (``uint8 [H, W, 3]``
        BGR, straight), blended instead of the frame's own; the frame (a blur background's
        source) is still ``image``, and the background gets ``alpha`` too (a blur leaves the
        person out: :meth:`Background.render`).

        Returns ``uint8 [H, W, 3]`` BGR, or ``uint8 [H, W, 4]`` BGRA (straight alpha) when transparent.
        """
        with self._lock:
            incoming, self._pending = self._pending, None
        if incoming is not None:
            self.background.close()
            self.background = incoming
        behind = self.background.render(image, pts, alpha)
        person = image if colours is None else colours
        if behind is None:
            return np.dstack([person, alpha_to_u8(alpha)])
        picture = blend(person, behind, alpha)
        if self.light_wrap > 0:
            picture = light_wrap(picture, behind, alpha, self.light_wrap)
        return picture

    def close(self) -> None:
        """Close the current and any pending background, once the last ``composite`` returned.

        A background handed over afterwards is closed at once.
        """
        with self._lock:
            self._closed = True
            pending, self._pending = self._pending, None
        if pending is not None:
            pending.close()
        self.background.close()


def blend(foreground: np.ndarray, background: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """``a * fg + (1 - a) * bg`` on uint8 BGR images (``[H, W, 3]``, ``alpha`` ``float32 [H, W]`` in
    [0, 1]) -> a new ``uint8 [H, W, 3]``; OpenCV's blend, far cheaper than numpy float maths.

    Only the box around the pixels with ``a > 0`` is blended; the rest is the background as it is
    (the same values ``cv2.blendLinear`` gives there). A talking head's box is about half a frame,
    so this saves about a quarter of the blend (README: Measurements behind the code).
    """
    alpha = np.ascontiguousarray(alpha, dtype=np.float32)
    box = _support_box(alpha)
    if box is None:
        return background.copy()
    (y0, y1), (x0, x1) = box
    if (y1 - y0) * (x1 - x0) == alpha.size:
        return cv2.blendLinear(foreground, background, alpha, 1.0 - alpha)
    picture = background.copy()
    inside = alpha[y0:y1, x0:x1]
    picture[y0:y1, x0:x1] = cv2.blendLinear(foreground[y0:y1, x0:x1], background[y0:y1, x0:x1], inside, 1.0 - inside)
    return picture


def _support_box(alpha: np.ndarray) -> tuple[tuple[int, int], tuple[int, int]] | None:
    """The rows and columns, ``((y0, y1), (x0, x1))`` end-exclusive, that hold every pixel of
    ``alpha`` (``float32 [H, W]``, >= 0) above 0; None when there is none. Found on an area
    average at an eighth of the size (cheap; any pixel above 0 keeps its cell above 0), so the
    box can be up to a cell wider than the pixels' own."""
    height, width = alpha.shape
    small_w, small_h = max(1, width // 8), max(1, height // 8)
    small = cv2.resize(alpha, (small_w, small_h), interpolation=cv2.INTER_AREA)
    ys, xs = np.nonzero(small > 0)
    if not len(xs):
        return None
    # Cell i covers the pixels [i * W / w, (i + 1) * W / w): rounded outwards.
    return ((ys.min() * height // small_h, -(-(ys.max() + 1) * height // small_h)),
            (xs.min() * width // small_w, -(-(xs.max() + 1) * width // small_w)))


def light_wrap(composite: np.ndarray, background: np.ndarray, alpha: np.ndarray, strength: float,
               px: int = 16) -> np.ndarray:
    """Let the new background's light spill onto the person's edge, as a camera would show it.

    composite, background: ``uint8 [H, W, 3]``; alpha: the matte the composite used;
    strength: 0..1. The background blurred over ``px`` is mixed into the composite by
    ``strength * alpha * (blurred 1 - alpha)``: inside the person's edge, fading inwards
    over ``px``. Computed on a quarter-size copy and upsampled: a blur is smooth, so the small copy
    loses little and costs a fraction of the full-size work.
    """
    height, width = alpha.shape
    small = (max(1, width // 4), max(1, height // 4))
    sigma = max(0.5, px / 8.0)
    outside = cv2.GaussianBlur(1.0 - cv2.resize(alpha, small, interpolation=cv2.INTER_AREA), (0, 0), sigma)
    glow = cv2.GaussianBlur(cv2.resize(background, small, interpolation=cv2.INTER_AREA), (0, 0), sigma)
    weight = cv2.resize(np.clip(outside * 2.0 * strength, 0, 1), (width, height), interpolation=cv2.INTER_LINEAR)
    weight *= alpha
    glow = cv2.resize(glow, (width, height), interpolation=cv2.INTER_LINEAR)
    return cv2.blendLinear(glow, composite, weight, 1.0 - weight)
