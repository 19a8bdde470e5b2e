"""Temporal alpha smoothing: less flicker where the matte is still, no trail where it moves.

Per pixel, the new matte is mixed with the smoothed past by a weight that falls
with how much the matte changed there:

    w = strength * exp(-(|a_t - s_{t-1}| / sigma)^2)
    s_t = w * s_{t-1} + (1 - w) * a_t

Small frame-to-frame wobble (edge shimmer, noise) is averaged away; a change
much larger than ``sigma`` (the person moved) passes straight through, so a
fast edge leaves no trail. Measured on the composited clips, gating by image
motion instead did nothing useful: their backgrounds pan, so every pixel
"moves". A scene cut (the small grey frame changes wholesale) resets the past.

Planes that describe the matte (a guided filter's coefficients) can ride along:
they are mixed with the same per-pixel weights, so the matte they produce is
smoothed the same way while still being applied to the current frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


MAX_STRENGTH = 0.95  # past this, a still pixel would hardly follow the matte at all


@dataclass(frozen=True)
class SmoothingSettings:
    """strength: 0 (off) .. 0.95, how much of the past a still pixel keeps.
    sigma: matte change (0..1) at which smoothing has faded to 37 %.
    cut_threshold: mean absolute grey change (0..1) between frames that counts as a scene cut.
    """

    enabled: bool = True
    strength: float = 0.6
    sigma: float = 0.15
    cut_threshold: float = 0.25

    def __post_init__(self):
        if not 0.0 <= self.strength <= MAX_STRENGTH:
            raise ValueError(f"smoothing strength got {self.strength}, expected 0..{MAX_STRENGTH} (0 = off)")
        if not self.sigma > 0:
            raise ValueError(f"smoothing sigma got {self.sigma}, expected > 0")


class TemporalSmoother:
    """Owns its own copy of the past: callers may reuse or mutate the arrays they pass in."""

    def __init__(self, settings: SmoothingSettings):
        self.settings = settings
        self._past: np.ndarray | None = None
        self._past_gray: np.ndarray | None = None
        self.cuts = 0

    def reset(self) -> None:
        self._past = None
        self._past_gray = None

    def is_cut(self, gray: np.ndarray) -> bool:
        """Whether ``gray`` (``float32 [h, w]`` 0..1) starts a new scene; remembers it either way."""
        previous, self._past_gray = self._past_gray, gray.copy()
        if previous is None or previous.shape != gray.shape:
            return False
        cut = float(np.abs(gray - previous).mean()) > self.settings.cut_threshold
        self.cuts += cut
        return cut

    def apply(self, matte: np.ndarray) -> np.ndarray:
        """``float32 [h, w]`` alpha in [0, 1], or ``[k, h, w]`` planes whose first is the alpha
        -> the smoothed matte, a new array; every plane is mixed with the alpha's weights."""
        settings = self.settings
        if not settings.enabled or settings.strength == 0:
            return matte.copy()
        past = self._past
        if past is None or past.shape != matte.shape:
            self._past = matte.copy()
            return matte.copy()
        change = np.abs(matte[0] - past[0]) if matte.ndim == 3 else np.abs(matte - past)
        change *= np.float32(1.0 / settings.sigma)
        np.square(change, out=change)
        weight = np.exp(-change, out=change)
        weight *= np.float32(settings.strength)
        # s = a + w * (past - a): one temporary fewer than the textbook form.
        smoothed = past - matte
        smoothed *= weight
        smoothed += matte
        self._past = smoothed
        return smoothed.copy()
