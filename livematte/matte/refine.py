"""Bringing the model's low-resolution matte up to the frame's full resolution.

A backend that ends in a guided filter (RVM) hands over its coefficients
(:class:`GuidedMatte`) and finishes them itself against the frame's own
full-resolution guide (:func:`guide`, :func:`apply_coefficients`), so edges follow the real
frame (``RVMMatter.finish``; Selfie Segmentation fits such coefficients to its map with
:func:`guided_coefficients`). The modes below are for backends that return a plain
alpha (BSHM, MODNet).

``bilinear`` is a plain resize. ``guided`` is a fast guided filter (He et al.):
linear coefficients fitted at low resolution against the grey frame, upsampled
and applied to the full-resolution grey, so that edges follow the frame.
On the composited clips with RVM's whole model (when it still returned a plain
alpha), ``guided`` *raised* the error (README: Measurements behind the code):
RVM's own refiner already places edges well and the grey guide
pulls the matte towards background texture. It stays available for backends
with blockier output; the presets use ``bilinear``.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

MODES = ("bilinear", "guided")


@dataclass(frozen=True)
class RefineSettings:
    """mode: how a plain matte is brought to full resolution, one of :data:`MODES`."""

    mode: str = "bilinear"

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"refine mode got {self.mode!r}, expected one of {', '.join(MODES)}")

_MEAN_RGB = np.full((1, 3), 1 / (3 * 255), np.float32)
_GUIDE_ROWS = 128  # guide() works in bands of this many rows
# apply_to_frame's bands: each row's float copy of the picture, guide and alpha stay in the cache
# (at 720p, 32 rows took 22-25 % less time than the guide made whole, 128 rows 10 %).
_BAND_ROWS = 32


def guide(image_bgr: np.ndarray) -> np.ndarray:
    """``uint8 [H, W, 3]`` -> ``float32 [H, W]``: the mean of R, G and B in 0..1."""
    # In bands of rows: the same values, without a float copy of the whole picture (12 bytes a pixel).
    out = np.empty(image_bgr.shape[:2], np.float32)
    for top in range(0, image_bgr.shape[0], _GUIDE_ROWS):
        band = image_bgr[top:top + _GUIDE_ROWS]
        cv2.transform(band.astype(np.float32), _MEAN_RGB, dst=out[top:top + len(band)])
    return out


def upsample(alpha: np.ndarray, frame_bgr: np.ndarray, mode: str = "bilinear",
             radius: int = 2, eps: float = 1e-3) -> np.ndarray:
    """``float32 [h, w]`` matte -> ``float32 [H, W]`` in [0, 1] for a ``uint8 [H, W, 3]`` frame."""
    height, width = frame_bgr.shape[:2]
    if mode == "guided" and alpha.shape != (height, width):
        return _fast_guided(alpha, frame_bgr, radius, eps)
    if alpha.shape == (height, width):
        return alpha
    return cv2.resize(alpha, (width, height), interpolation=cv2.INTER_LINEAR)


def _fast_guided(alpha: np.ndarray, frame_bgr: np.ndarray, radius: int, eps: float) -> np.ndarray:
    height, width = frame_bgr.shape[:2]
    gray = cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2GRAY).astype(np.float32) * np.float32(1 / 255)
    small = cv2.resize(gray, (alpha.shape[1], alpha.shape[0]), interpolation=cv2.INTER_AREA)
    a, b = guided_coefficients(alpha, small, radius, eps)
    return apply_coefficients(a, b, gray)


def guided_coefficients(alpha: np.ndarray, guide_small: np.ndarray, radius: int,
                        eps: float) -> tuple[np.ndarray, np.ndarray]:
    """A guided filter's coefficients (He et al.), fitted at low resolution: ``float32 [h, w]``
    ``alpha`` and its grey ``guide_small`` (0..1, same size) -> ``(a, b)``, ``float32 [h, w]``,
    averaged over the window, so that ``a * guide + b`` is the filtered matte at any resolution
    of the guide (:func:`apply_coefficients`). ``radius``: the window's half side (px at h x w);
    ``eps``: the regulariser (larger: smoother, less edge-following)."""
    box = (2 * radius + 1, 2 * radius + 1)
    mean_i, mean_p = cv2.blur(guide_small, box), cv2.blur(alpha, box)
    cov = cv2.blur(guide_small * alpha, box) - mean_i * mean_p
    var = cv2.blur(guide_small * guide_small, box) - mean_i * mean_i
    a = cov / (var + eps)
    b = mean_p - a * mean_i
    return cv2.blur(a, box), cv2.blur(b, box)


def apply_coefficients(a: np.ndarray, b: np.ndarray, full_guide: np.ndarray) -> np.ndarray:
    """Guided-filter coefficients (``float32 [h, w]``) -> ``float32 [H, W]`` alpha in [0, 1]
    at the guide's size: ``resize(a) * guide + resize(b)``, in place on one array."""
    height, width = full_guide.shape
    alpha = cv2.resize(a, (width, height), interpolation=cv2.INTER_LINEAR)
    alpha *= full_guide
    alpha += cv2.resize(b, (width, height), interpolation=cv2.INTER_LINEAR)
    return np.clip(alpha, 0.0, 1.0, out=alpha)


def apply_to_frame(a: np.ndarray, b: np.ndarray, frame_bgr: np.ndarray,
                   full_guide: np.ndarray | None = None) -> np.ndarray:
    """Guided-filter coefficients (``float32 [h, w]``) applied to ``uint8 [H, W, 3]`` BGR's own guide
    -> ``float32 [H, W]`` alpha in [0, 1]: :func:`apply_coefficients` of ``full_guide`` where it is
    already made (offline, on the prepare thread beside the model), else of :func:`guide`, the same
    values, with the guide made band by band of rows beside its use instead of as a whole picture
    first. Every live frame is finished so, on its own picture (README: Measurements behind the code)."""
    if full_guide is not None:
        return apply_coefficients(a, b, full_guide)
    height, width = frame_bgr.shape[:2]
    alpha = cv2.resize(a, (width, height), interpolation=cv2.INTER_LINEAR)
    offset = cv2.resize(b, (width, height), interpolation=cv2.INTER_LINEAR)
    for top in range(0, height, _BAND_ROWS):
        rows = slice(top, top + _BAND_ROWS)
        band = alpha[rows]
        band *= cv2.transform(frame_bgr[rows].astype(np.float32), _MEAN_RGB)
        band += offset[rows]
        np.clip(band, 0.0, 1.0, out=band)
    return alpha
