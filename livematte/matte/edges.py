"""Edge controls on a finished matte (the light wrap, which needs the new background, is the
compositor's: :func:`livematte.compose.compositor.light_wrap`).

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
