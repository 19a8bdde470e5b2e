"""Edge controls on a finished matte, and a light-wrap for the composite.

Mattes are ``float32 [H, W]`` in [0, 1]; each function returns a new array and leaves its
input alone. Sizes are in pixels of the frame.
"""

from __future__ import annotations

import cv2
import numpy as np


def hard(alpha: np.ndarray, threshold: float) -> np.ndarray:
    """1 where ``alpha >= threshold``, else 0 (a segmentation look); ``threshold`` in (0, 1]."""
    return (alpha >= np.float32(threshold)).astype(np.float32)


def grow(alpha: np.ndarray, px: int) -> np.ndarray:
    """Move the edge outwards by ``px`` (a round dilation), or inwards for a negative ``px``."""
    if px == 0:
        return alpha.copy()
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * abs(px) + 1, 2 * abs(px) + 1))
    return (cv2.dilate if px > 0 else cv2.erode)(alpha, kernel)


def feather(alpha: np.ndarray, px: float) -> np.ndarray:
    """Soften the edge outwards over about ``px``: the matte blurred (Gaussian, sigma ``px / 2``)
    where that is larger than the matte, so the person's opaque inside is not eaten into."""
    if px <= 0:
        return alpha.copy()
    blurred = cv2.GaussianBlur(alpha, (0, 0), sigmaX=px / 2.0)
    return np.maximum(alpha, blurred, out=blurred)


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
