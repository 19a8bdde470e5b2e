"""Alpha-matte quality metrics, as the Robust Video Matting evaluation defines them.

Every function takes a predicted and a ground-truth matte, each either
``float32 [H, W]`` in ``[0, 1]`` (any float dtype is converted to float32) or
``uint8 [H, W]`` in ``[0, 255]`` (divided by 255). The scale factors make the
figures comparable with published tables:

- ``mad``   = mean |p - g| x 1e3
- ``mse``   = mean (p - g)^2 x 1e3
- ``grad``  = sum over pixels of (|grad p| - |grad g|)^2 x 1e-3, gradients from
  Gaussian-derivative filters of sigma 1.4 (see :func:`gaussian_derivative_kernels`)
- ``dtssd`` = sqrt(sum(((p_t - p_t-1) - (g_t - g_t-1))^2) / pixels) x 1e2,
  for one pair of consecutive frames
- ``iou``   = |{p > t} & {g > t}| / |{p > t} | {g > t}|, threshold t = 0.5

:class:`SequenceScorer` accumulates them over a video one frame at a time,
overall and per named segment, holding only the previous frame's error.

Example::

    scorer = SequenceScorer(segments={"still": (36, 53)})
    for pred, truth in zip(predicted_mattes, true_mattes):
        scorer.add(pred, truth)
    scorer.result()["segments"]["still"]["dtssd"]
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import cv2
import numpy as np

METRICS = ("mad", "mse", "grad", "dtssd", "iou")

# Float mattes a little outside [0, 1] are rounding noise; far outside is a
# caller passing 0..255 floats, which would inflate every figure 255-fold.
_RANGE_TOLERANCE = 1e-3


def as_alpha(alpha: np.ndarray, name: str = "alpha") -> np.ndarray:
    """A matte as ``float32 [H, W]`` in [0, 1].

    alpha: ``uint8 [H, W]`` (0..255, divided by 255) or a float ``[H, W]`` in [0, 1].
    Raises TypeError for other dtypes, ValueError for other shapes or for float
    values outside [0, 1].
    """
    if not isinstance(alpha, np.ndarray):
        raise TypeError(f"{name}: got {type(alpha).__name__}, expected a numpy array")
    if alpha.ndim != 2:
        raise ValueError(f"{name}: got shape {alpha.shape}, expected [H, W]")
    if alpha.dtype == np.uint8:
        return alpha.astype(np.float32) * np.float32(1.0 / 255.0)
    if not np.issubdtype(alpha.dtype, np.floating):
        raise TypeError(f"{name}: got dtype {alpha.dtype}, expected uint8 or float32")
    alpha = alpha.astype(np.float32, copy=False)
    if alpha.size:
        low, high = float(alpha.min()), float(alpha.max())
        # Written so that NaN fails the test too.
        if not (low >= -_RANGE_TOLERANCE and high <= 1.0 + _RANGE_TOLERANCE):
            raise ValueError(f"{name}: got values in [{low}, {high}], expected [0, 1]")
    return alpha


def _pair(pred: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    p, g = as_alpha(pred, "pred"), as_alpha(truth, "truth")
    if p.shape != g.shape:
        raise ValueError(f"got pred shape {p.shape}, expected the truth's shape {g.shape}")
    if p.size == 0:
        raise ValueError("got empty mattes, expected at least one pixel")
    return p, g


def _mad(diff: np.ndarray) -> float:
    return float(np.abs(diff).mean(dtype=np.float64)) * 1e3


def _mse(diff: np.ndarray) -> float:
    return float(np.square(diff).mean(dtype=np.float64)) * 1e3


def _dtssd(diff_prev: np.ndarray, diff: np.ndarray) -> float:
    # (p_t - p_t-1) - (g_t - g_t-1) == (p_t - g_t) - (p_t-1 - g_t-1): the change
    # of the error, so only the previous frame's error needs keeping.
    return math.sqrt(float(np.square(diff - diff_prev).mean(dtype=np.float64))) * 1e2


def _iou(p: np.ndarray, g: np.ndarray, threshold: float) -> float:
    fp, fg = p > threshold, g > threshold
    union = np.count_nonzero(fp | fg)
    # Nobody in either matte is a perfect agreement, not an undefined score.
    if union == 0:
        return 1.0
    return float(np.count_nonzero(fp & fg) / union)


def gaussian_derivative_kernels(sigma: float = 1.4, epsilon: float = 1e-2) -> tuple[np.ndarray, np.ndarray]:
    """The separable Gaussian-derivative filter behind :func:`grad`: ``(smooth, derivative)``.

    Both are ``float32 [2*h + 1]`` taps at offsets ``x = -h..h`` with
    ``h = ceil(sigma * sqrt(-2 ln(sqrt(2 pi) * sigma * epsilon)))``: the
    Gaussian is cut where its density falls below ``epsilon`` (h = 4, 9 taps,
    for sigma 1.4).

    - ``smooth[x] ~ exp(-x^2 / (2 sigma^2))``
    - ``derivative[x] ~ -x / sigma^2 * exp(-x^2 / (2 sigma^2))``

    each scaled to unit L2 norm, so that the 2-D x-derivative kernel
    ``K[y, x] = smooth[y] * derivative[x]`` has unit L2 (Frobenius) norm: the
    normalisation the matting evaluations use, which keeps Grad figures
    comparable with theirs. The y-derivative kernel is its transpose.
    """
    if not 0.0 < sigma < 1.0 / (math.sqrt(2.0 * math.pi) * epsilon):
        raise ValueError(f"got sigma={sigma}, expected 0 < sigma < {1.0 / (math.sqrt(2.0 * math.pi) * epsilon):.1f}")
    half = math.ceil(sigma * math.sqrt(-2.0 * math.log(math.sqrt(2.0 * math.pi) * sigma * epsilon)))
    x = np.arange(-half, half + 1, dtype=np.float64)
    smooth = np.exp(-(x * x) / (2.0 * sigma * sigma))
    derivative = -x / (sigma * sigma) * smooth
    return (
        (smooth / np.linalg.norm(smooth)).astype(np.float32),
        (derivative / np.linalg.norm(derivative)).astype(np.float32),
    )


def gradient_magnitude(alpha: np.ndarray, kernels: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """``float32 [H, W]`` matte -> ``float32 [H, W]`` |grad| with the given (smooth, derivative) taps.

    Borders are mirrored without repeating the edge pixel (OpenCV's
    BORDER_REFLECT_101), so a flat matte has zero gradient everywhere.
    """
    smooth, derivative = kernels
    gx = cv2.sepFilter2D(alpha, cv2.CV_32F, derivative, smooth, borderType=cv2.BORDER_REFLECT_101)
    gy = cv2.sepFilter2D(alpha, cv2.CV_32F, smooth, derivative, borderType=cv2.BORDER_REFLECT_101)
    return cv2.magnitude(gx, gy)


def _grad(p: np.ndarray, g: np.ndarray, kernels: tuple[np.ndarray, np.ndarray]) -> float:
    delta = gradient_magnitude(p, kernels) - gradient_magnitude(g, kernels)
    return float(np.square(delta).sum(dtype=np.float64)) * 1e-3


def mad(pred: np.ndarray, truth: np.ndarray) -> float:
    """Mean absolute difference x 1e3 (0 = perfect, 1000 = every pixel fully wrong)."""
    p, g = _pair(pred, truth)
    return _mad(p - g)


def mse(pred: np.ndarray, truth: np.ndarray) -> float:
    """Mean squared difference x 1e3."""
    p, g = _pair(pred, truth)
    return _mse(p - g)


def grad(pred: np.ndarray, truth: np.ndarray, sigma: float = 1.4) -> float:
    """Gradient error: sum over pixels of (|grad p| - |grad g|)^2 x 1e-3.

    A sum, not a mean: it grows with the picture's size. Gradients come from the
    filters of :func:`gaussian_derivative_kernels` (9x9 for sigma 1.4).
    """
    p, g = _pair(pred, truth)
    return _grad(p, g, gaussian_derivative_kernels(sigma))


def dtssd(pred_prev: np.ndarray, pred: np.ndarray, truth_prev: np.ndarray, truth: np.ndarray) -> float:
    """Temporal coherence error of one frame pair (t-1, t), x 1e2.

    sqrt(sum(((p_t - p_t-1) - (g_t - g_t-1))^2) / pixels) x 1e2: a matte whose
    error stays the same from frame to frame scores 0; flicker scores high.
    """
    p0, g0 = _pair(pred_prev, truth_prev)
    p1, g1 = _pair(pred, truth)
    if p0.shape != p1.shape:
        raise ValueError(f"got frame shapes {p0.shape} then {p1.shape}, expected the same")
    return _dtssd(p0 - g0, p1 - g1)


def iou(pred: np.ndarray, truth: np.ndarray, threshold: float = 0.5) -> float:
    """Intersection over union of the foregrounds ``alpha > threshold``, in [0, 1].

    1.0 when neither matte has any foreground.
    """
    p, g = _pair(pred, truth)
    return _iou(p, g, threshold)


class _Totals:
    """Running sums for one stretch of frames (the whole clip or one segment)."""

    def __init__(self) -> None:
        self.sums = dict.fromkeys(METRICS, 0.0)
        self.frames = 0
        self.pairs = 0

    def add_frame(self, scores: Mapping[str, float]) -> None:
        for key in ("mad", "mse", "grad", "iou"):
            self.sums[key] += scores[key]
        self.frames += 1

    def add_pair(self, value: float) -> None:
        self.sums["dtssd"] += value
        self.pairs += 1

    def means(self) -> dict[str, float | None]:
        """Per-frame metrics averaged over frames, dtSSD over pairs; None where there are none."""
        out: dict[str, float | None] = {}
        for key in METRICS:
            count = self.pairs if key == "dtssd" else self.frames
            out[key] = self.sums[key] / count if count else None
        return out


def _check_segments(segments: Mapping[str, tuple[int, int]] | None) -> dict[str, tuple[int, int]]:
    checked: dict[str, tuple[int, int]] = {}
    for name, bounds in (segments or {}).items():
        try:
            first, last = (int(b) for b in bounds)
        except (TypeError, ValueError):
            raise ValueError(f"segment {name!r}: got {bounds!r}, expected (first, last) frame indices") from None
        if not 0 <= first <= last:
            raise ValueError(f"segment {name!r}: got ({first}, {last}), expected 0 <= first <= last")
        checked[str(name)] = (first, last)
    return checked


class SequenceScorer:
    """Scores a video's mattes frame by frame, overall and per segment.

    segments: name -> ``(first, last)`` frame indices, both inclusive, counted
        from 0 in the order frames are added. A frame pair (t-1, t) counts toward
        a segment's dtSSD when both frames lie in it.
    grad_sigma, iou_threshold: as for :func:`grad` and :func:`iou`.

    Only the previous frame's error ``p - g`` (``float32 [H, W]``) is kept, so
    memory does not grow with the clip's length.
    """

    def __init__(
        self,
        segments: Mapping[str, tuple[int, int]] | None = None,
        *,
        grad_sigma: float = 1.4,
        iou_threshold: float = 0.5,
    ) -> None:
        self._segments = _check_segments(segments)
        self._kernels = gaussian_derivative_kernels(grad_sigma)
        self._iou_threshold = iou_threshold
        self._overall = _Totals()
        self._per_segment = {name: _Totals() for name in self._segments}
        self._prev_diff: np.ndarray | None = None
        self._index = 0

    @property
    def frames(self) -> int:
        """How many frames have been added."""
        return self._index

    def add(self, pred: np.ndarray, truth: np.ndarray) -> dict[str, float]:
        """Score the next frame; -> its own scores (dtssd is None for the first frame).

        pred, truth: ``float32 [H, W]`` in [0, 1] or ``uint8 [H, W]``, the same
        shape as every earlier frame.
        """
        p, g = _pair(pred, truth)
        if self._prev_diff is not None and self._prev_diff.shape != p.shape:
            raise ValueError(f"got frame shape {p.shape}, expected {self._prev_diff.shape} like the frames before")
        diff = p - g
        scores = {
            "mad": _mad(diff),
            "mse": _mse(diff),
            "grad": _grad(p, g, self._kernels),
            "iou": _iou(p, g, self._iou_threshold),
            "dtssd": None if self._prev_diff is None else _dtssd(self._prev_diff, diff),
        }
        t = self._index
        self._overall.add_frame(scores)
        if scores["dtssd"] is not None:
            self._overall.add_pair(scores["dtssd"])
        for name, (first, last) in self._segments.items():
            if first <= t <= last:
                self._per_segment[name].add_frame(scores)
                if scores["dtssd"] is not None and first <= t - 1:
                    self._per_segment[name].add_pair(scores["dtssd"])
        self._prev_diff = diff
        self._index += 1
        return scores

    def result(self) -> dict:
        """The averages so far.

        -> ``{"overall": {metric: mean}, "segments": {name: {metric: mean}},
        "frames": int, "pairs": int}`` with metrics ``mad mse grad dtssd iou``;
        a mean is None when its stretch has no frame (no pair, for dtssd).
        A segment reaching past the last frame added is scored on the frames it got.
        """
        return {
            "overall": self._overall.means(),
            "segments": {name: totals.means() for name, totals in self._per_segment.items()},
            "frames": self._overall.frames,
            "pairs": self._overall.pairs,
        }


def score_sequence(
    preds: Iterable[np.ndarray],
    truths: Iterable[np.ndarray],
    segments: Mapping[str, tuple[int, int]] | None = None,
) -> dict:
    """Score two equally long sequences of mattes; -> :meth:`SequenceScorer.result`.

    preds, truths: iterables (generators welcome: frames are consumed one at a
    time) of ``[H, W]`` mattes. Raises ValueError if their lengths differ.
    """
    scorer = SequenceScorer(segments)
    pred_iter, truth_iter = iter(preds), iter(truths)
    end = object()
    while True:
        pred, truth = next(pred_iter, end), next(truth_iter, end)
        if pred is end and truth is end:
            return scorer.result()
        if pred is end or truth is end:
            longer = "truths" if pred is end else "predictions"
            raise ValueError(f"got more {longer} after {scorer.frames} frames, expected one prediction per truth")
        scorer.add(pred, truth)
