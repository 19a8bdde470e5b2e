"""Foreground colour estimation: the person's own colours where the matte is soft.

A frame is ``I = a * F + (1 - a) * B``. Where ``a`` is between 0 and 1 (hair, motion blur, the
edge itself) the frame's colour is part background, and blending the raw frame over a new
background brings the old one along: a dark or coloured halo. Compositing the estimated ``F``
instead removes it, and a transparent output carries ``F`` with straight alpha.

- Robust Video Matting computes ``F`` itself in its guided filter: its coefficients for the
  foreground's colours, applied to the frame at full resolution (:func:`from_coefficients`).
- Backends that return a plain alpha get :func:`blur_fusion`: the estimator of Forte and
  Pitié, "Approximate Fast Foreground Colour Estimation" (ICIP 2021). Local means of the
  foreground and the background, weighted by ``a`` and ``1 - a`` over a box, give first
  guesses ``F~`` and ``B~``; the frame's residual against ``a F~ + (1 - a) B~`` is then given
  back to ``F`` in proportion to ``a``. A wide box first, then a narrow one seeded with the wide
  pass's ``F`` and ``B``, as the paper does.

Only the soft pixels are estimated (:func:`soft_points`: ``a`` strictly between 0 and 1 in 8-bit
levels); elsewhere ``F`` is the frame itself, exact where ``a = 1`` and unused where ``a = 0``.
The box means are smooth, so they are computed on reduced copies and sampled bilinearly at
those pixels: this keeps the estimators a small part of a frame's time, where whole-frame float
maths would take a large share of it (README: Measurements behind the code).

Every estimator returns ``uint8 [H, W, 3]`` BGR at the frame's size, a new array.
"""

from __future__ import annotations

import cv2
import numpy as np

from ..frames import flat_index

WIDE_BOX, NARROW_BOX = 90, 6  # the paper's box sizes, px at its ~1 Mpixel images; scaled to 1280 px here
_EPS = np.float32(1e-4)
_LOW, _HIGH = 0.5 / 255, 254.5 / 255  # 8-bit levels 1..254: what an output can tell from 0 and 1
_ROW = 1024  # remap's maps are laid out in rows of this many points


def soft_points(*alphas: np.ndarray) -> np.ndarray:
    """Pixels where any of ``alphas`` (``float32 [H, W]`` in [0, 1], one size) is soft
    -> ``int32 [N, 2]`` (x, y), N >= 0."""
    mask = None
    for alpha in alphas:
        soft = cv2.inRange(alpha, _LOW, _HIGH)
        mask = soft if mask is None else cv2.bitwise_or(mask, soft)
    points = cv2.findNonZero(mask)
    return np.zeros((0, 2), np.int32) if points is None else points.reshape(-1, 2)


def sample(image: np.ndarray, points: np.ndarray, full_size: tuple[int, int],
           scale: tuple[float, float] | None = None, origin: tuple[int, int] = (0, 0)) -> np.ndarray:
    """``image`` (``float32 [h, w]`` or ``[h, w, C]``), a reduced copy of a ``full_size`` (W, H)
    picture, read at full-resolution ``points`` (``int32 [N, 2]`` x, y) exactly as
    ``cv2.resize(image, full_size, INTER_LINEAR)`` would give them -> ``float32 [N, C]``.
    For a crop of the reduced copy: ``scale`` (the reduced copy's size over ``full_size``, x and y)
    and ``origin`` (the crop's top-left in the reduced copy, x and y)."""
    count = len(points)
    channels = 1 if image.ndim == 2 else image.shape[2]
    if count == 0:
        return np.zeros((0, channels), np.float32)
    rows = -(-count // _ROW)
    maps = np.zeros((rows * _ROW, 2), np.float32)
    if scale is None:
        scale = (image.shape[1] / full_size[0], image.shape[0] / full_size[1])
    shift = np.float32(0.5) + np.array(origin, np.float32)
    maps[:count] = (points + np.float32(0.5)) * np.array(scale, np.float32) - shift
    maps = maps.reshape(rows, _ROW, 2)
    values = cv2.remap(image, maps, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return values.reshape(rows * _ROW, channels)[:count]


def from_coefficients(a: np.ndarray, b: np.ndarray, frame_bgr: np.ndarray, points: np.ndarray) -> np.ndarray:
    """A guided filter's colour coefficients -> the foreground, ``uint8 [H, W, 3]`` BGR.

    ``a``, ``b``: ``float32 [h, w, 3]`` BGR at the model's size, such that
    ``F = resize(a) * frame / 255 + resize(b)`` (``F`` in 0..1) per channel; evaluated at
    ``points`` (:func:`soft_points`), the frame's own colour elsewhere.
    """
    height, width = frame_bgr.shape[:2]
    out = frame_bgr.copy()  # C-contiguous, as take and put want
    if len(points):
        at = flat_index(points, width)
        pixels = np.take(out.reshape(-1, 3), at, axis=0).astype(np.float32)
        colour = sample(a, points, (width, height)) * pixels + sample(b, points, (width, height)) * np.float32(255)
        out.reshape(-1, 3)[at] = _levels(colour)
    return out


def blur_fusion(frame_bgr: np.ndarray, alpha: np.ndarray, points: np.ndarray | None = None) -> np.ndarray:
    """Forte and Pitié's blur-fusion estimate of the foreground colours.

    frame_bgr: ``uint8 [H, W, 3]``; alpha: ``float32 [H, W]`` in [0, 1]; points: where to
    estimate (default :func:`soft_points` of ``alpha``) -> ``uint8 [H, W, 3]`` BGR.
    The wide box's means come from a quarter-size copy, the narrow box's from a half-size one
    (over the soft points' bounding box);
    the fusion itself uses the full-resolution frame and alpha at each point.
    """
    height, width = frame_bgr.shape[:2]
    points = soft_points(alpha) if points is None else points
    out = frame_bgr.copy()  # C-contiguous, as take and put want
    if not len(points):
        return out
    scale = max(height, width) / 1280.0
    # Wide pass on a quarter-size copy.
    quarter = (max(1, width // 4), max(1, height // 4))
    image_q = cv2.resize(frame_bgr, quarter, interpolation=cv2.INTER_AREA).astype(np.float32)
    alpha_q = cv2.resize(alpha, quarter, interpolation=cv2.INTER_AREA)
    fg_q, bg_q = _weighted_means(image_q, image_q, alpha_q, max(3, round(WIDE_BOX * scale / 4)))
    # Narrow pass on a half-size copy, seeded with the wide pass's F and B, over the soft
    # points' bounding box and the margin its box needs.
    half = (max(1, width // 2), max(1, height // 2))
    box = max(2, round(NARROW_BOX * scale / 2))
    (x0, y0), (x1, y1) = points.min(axis=0) // 2 - 2 * box, points.max(axis=0) // 2 + 2 * box + 2
    x0, y0, x1, y1 = max(0, x0), max(0, y0), min(half[0], x1), min(half[1], y1)
    image_h = cv2.resize(frame_bgr, half, interpolation=cv2.INTER_AREA)[y0:y1, x0:x1].astype(np.float32)
    alpha_h = cv2.resize(alpha, half, interpolation=cv2.INTER_AREA)[y0:y1, x0:x1]
    fg_h = cv2.resize(fg_q, half, interpolation=cv2.INTER_LINEAR)[y0:y1, x0:x1]
    bg_h = cv2.resize(bg_q, half, interpolation=cv2.INTER_LINEAR)[y0:y1, x0:x1]
    fg_h, bg_h = _weighted_means(_fuse(image_h, fg_h, bg_h, alpha_h), bg_h, alpha_h, box)
    # The fusion at full resolution, at the soft points only.
    size, reduced = (width, height), dict(scale=(half[0] / width, half[1] / height), origin=(x0, y0))
    at = flat_index(points, width)
    pixels = np.take(out.reshape(-1, 3), at, axis=0).astype(np.float32)
    soft_alpha = np.take(np.ascontiguousarray(alpha).reshape(-1), at)[:, None]
    fused = _fuse(pixels, sample(fg_h, points, size, **reduced), sample(bg_h, points, size, **reduced), soft_alpha)
    out.reshape(-1, 3)[at] = _levels(fused)
    return out


def _weighted_means(fg: np.ndarray, bg: np.ndarray, alpha: np.ndarray, box: int) -> tuple[np.ndarray, np.ndarray]:
    """Box means of ``fg`` weighted by ``alpha`` and of ``bg`` weighted by ``1 - alpha``."""
    size = (box, box)
    weight = cv2.blur(alpha, size)[..., None]
    a3 = alpha[..., None]
    fg_mean = cv2.blur(fg * a3, size) / (weight + _EPS)
    bg_mean = cv2.blur(bg * (1 - a3), size) / (1 - weight + _EPS)
    return fg_mean, bg_mean


def _fuse(image: np.ndarray, fg_mean: np.ndarray, bg_mean: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """``F = F~ + a (I - a F~ - (1 - a) B~)``, clamped to 0..255 (float32 levels). ``alpha``
    broadcasts against the colour arrays' last axis ([..., 1] or [...] with a new axis added)."""
    a = alpha if alpha.ndim == image.ndim else alpha[..., None]
    estimate = fg_mean + a * (image - a * fg_mean - (1 - a) * bg_mean)
    return np.clip(estimate, 0, 255, out=estimate)


def _levels(colour: np.ndarray) -> np.ndarray:
    """``float32`` levels -> ``uint8``, rounded and clamped to 0..255."""
    return np.clip(colour + np.float32(0.5), 0, 255).astype(np.uint8)
