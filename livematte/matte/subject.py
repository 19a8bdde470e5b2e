"""Main person only: keep the connected region that holds the main person, fade out the others.

Works on an eighth-size copy of the matte (160x90 for 720p), where ``alpha > 0.5`` is split
into connected regions. On a stream's first frame the main region is the one with the best
score, its area weighted towards the centre (``area * (1 - 0.5 * |x - centre| / half width)``).
Afterwards it is followed, not re-chosen: every region that touches what was kept on the
previous frame is kept, and inside such a region each pixel goes to whichever was nearer on
the previous frame, the kept person or another one. So two people who touch do not merge into
one kept region, and one who walks off and comes back stays out. When nothing kept is left
(the person left the frame), the best-scoring region is taken up again.

The keep map (1 on the main region, dilated to take in its soft edge) moves towards each
frame's target by ``FADE`` of the way per frame, so regions fade in and out over about ten
frames instead of popping; the matte is multiplied by it, upsampled to the frame.
"""

from __future__ import annotations

import cv2
import numpy as np

FADE = 0.3  # share of the way to the new keep map per frame: 97 % after 10 frames
SCALE = 8  # the regions are found on a 1/SCALE copy of the matte
_SOLID, _TOUCHING = 0.5, 0.05


class MainSubject:
    """Per stream, in frame order; :meth:`reset` starts a new stream."""

    def __init__(self):
        self._keep: np.ndarray | None = None  # float32 [h, w] in [0, 1] at the small size
        self._main: np.ndarray | None = None  # bool [h, w]: the main person's solid matte
        self._others: np.ndarray | None = None  # bool [h, w]: solid matte of everyone else

    def reset(self) -> None:
        self._keep = self._main = self._others = None

    def apply(self, alpha: np.ndarray) -> np.ndarray:
        """``float32 [H, W]`` in [0, 1] -> the matte with everyone but the main person faded, a new array."""
        height, width = alpha.shape
        small_size = (max(1, width // SCALE), max(1, height // SCALE))
        small = cv2.resize(alpha, small_size, interpolation=cv2.INTER_AREA)
        solid = (small > _SOLID).astype(np.uint8)
        count, labels, stats, centroids = cv2.connectedComponentsWithStats(solid, connectivity=8)
        fresh = self._keep is None or self._keep.shape != small.shape
        target = np.zeros(small.shape, np.float32)
        main = np.zeros(small.shape, bool)
        if count > 1:
            main = None if fresh else self._followed(labels, count, solid)
            if main is None or not main.any():
                main = labels == _best(stats, centroids, small.shape[1])
            target[main] = 1.0
            # Take in the soft edge around the kept region (hair below 0.5), not the others' cores.
            target = cv2.dilate(target, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3)))
            target[(solid > 0) & ~main] = 0.0
        keep = target if fresh else self._keep + FADE * (target - self._keep)
        # The split is remembered on the solid cores, not on the dilated keep map: so the boundary
        # between two people who touch does not creep by the dilation every frame.
        self._keep, self._main, self._others = keep, main, (solid > 0) & ~main
        full = cv2.resize(keep, (width, height), interpolation=cv2.INTER_LINEAR)
        return np.multiply(alpha, full, out=full)

    def _followed(self, labels: np.ndarray, count: int, solid: np.ndarray) -> np.ndarray | None:
        """The pixels of this frame's regions that continue the kept person (bool), or None."""
        kept = self._main
        touching = [k for k in range(1, count) if self._keep[labels == k].mean() > _TOUCHING]
        if not touching or not kept.any():
            return None
        candidate = np.isin(labels, touching)
        if not self._others.any():
            return candidate
        # Nearest on the previous frame: the kept person, or someone else.
        to_kept = cv2.distanceTransform((~kept).astype(np.uint8), cv2.DIST_L2, 3)
        to_others = cv2.distanceTransform((~self._others).astype(np.uint8), cv2.DIST_L2, 3)
        return candidate & (to_kept <= to_others)


def _best(stats: np.ndarray, centroids: np.ndarray, width: int) -> int:
    """The label of the region with the best area-and-centre score (labels from 1)."""
    area = stats[1:, cv2.CC_STAT_AREA].astype(np.float64)
    off_centre = np.abs(centroids[1:, 0] - width / 2) / (width / 2)
    return 1 + int(np.argmax(area * (1 - 0.5 * off_centre)))
