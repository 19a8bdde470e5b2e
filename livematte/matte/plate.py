"""A fixed camera's background plate: the room behind the person, learnt while they move.

A video call's camera does not move, so every pixel the person leaves uncovered shows the
background as it is. :class:`BackgroundPlate` keeps that picture (``B^``) with a per-pixel
confidence, and uses it where the matte is soft, where a frame is ``I = a F + (1 - a) B``:

- **the matte** (:meth:`BackgroundPlate.refine`): with ``B`` known, the foreground's share of a
  pixel is the length of ``I - B`` along ``F~ - B``, ``F~`` being the person's colour nearby
  (a local mean of the solid matte). Where ``F~`` stands well apart from ``B`` (a dark strand
  over a bright wall), that share replaces the model's alpha; where they are alike, the model's
  stands. A pixel that matches the plate within the camera's noise so gets ``a`` near 0 (the old
  background showing through), and a strand the model missed beside a soft edge gets its share.
- **the colours** (:meth:`BackgroundPlate.decontaminate`): ``F = (I - (1 - a) B^) / a``, so a
  composite over a new background ``B'`` is ``I + (1 - a)(B' - B^)``: the old background swapped
  for the new one exactly, whatever ``a``'s error.

Where the plate does not know a pixel yet, the model's alpha and the estimated colours stand.

Learning (:meth:`BackgroundPlate.update`), every ``every``-th frame, on a reduced copy (every
``scale``-th pixel's area): pixels the matte calls background (``a`` about 0, with a margin around
the person) are averaged in at ``rate``, which follows slow changes of light, and a per-channel
gain measured on the known background carries a change of light to the pixels the person hides.
A pixel counts as known once it has agreed with the plate ``confirm`` times running, within its
own recent noise (capped, so that a slow pan or swaying leaves never pass for noise); one that
disagrees (something moved there) starts again from the frame. The plate is forgotten and learnt
again when the camera moves: the background's shift between frames (one Lucas-Kanade step over
the background at 1/8 size) passes :data:`MOVED_PX`, or most of the known background disagrees at
once (another scene). A panning or shaking camera therefore keeps the plate out of the way.

State across frames, in frame order; the plate owns copies of what it keeps (callers may reuse or
change the arrays they pass). ``reset`` for a new stream or a scene cut.
"""

from __future__ import annotations

import cv2
import numpy as np

from ..frames import halved
from .foreground import sample

PLATE_MODES = ("auto", "off")
_LOW, _HIGH = 0.5 / 255, 254.5 / 255  # as foreground.soft_points: what 8 bits tell from 0 and 1
_EPS = np.float32(1e-4)
MOVED_PX = 0.3  # the background's move between frames (full-size px) that means the camera moves
MIN_SIDE = 32  # px: a smaller frame has no plate (its quarter-size motion check would have no pixels)
MAX_NOISE = 4.0  # levels: the most a pixel's own noise widens its agreement threshold


class BackgroundPlate:
    """scale: the plate's reduction (2: 640x360 for 720p). rate: the running average's weight of
    a new frame, once a pixel is known. confirm: agreeing frames before a pixel is used.
    margin: px (at full size) around the matte that are not learnt from (faint hair the model
    calls 0). moved: the share of known background that, disagreeing at once, means the camera
    moved. grow: px around the soft edge where the matte is refined (strands the model missed).
    separation: levels (Euclidean, 0..441) of ``|F~ - B|`` at which the plate's alpha and the
    model's count alike; the plate's weight is ``d^2 / (d^2 + separation^2)``. every: learn from
    every ``every``-th frame (the plate changes slowly; the cost falls by as much)."""

    def __init__(self, scale: int = 2, rate: float = 0.1, confirm: int = 2, margin: int = 8,
                 moved: float = 0.5, grow: int = 3, separation: float = 30.0, every: int = 2):
        self.scale, self.rate, self.confirm, self.margin, self.every = scale, rate, confirm, margin, every
        self.moved, self.grow, self.separation = moved, grow, separation
        self.resets = 0  # camera moves seen, for stats and tests
        self.reset()

    def reset(self) -> None:
        self._mean: np.ndarray | None = None  # float32 [h, w, 3] BGR levels
        self._count: np.ndarray | None = None  # uint8 [h, w]: agreeing frames running, up to ``confirm``
        self._noise: np.ndarray | None = None  # float32 [h, w]: the recent |frame - plate| where it agreed
        self._frame_size: tuple[int, int] | None = None  # (W, H) of the frames learnt from
        # The light now against the plate's, per channel: the plate is kept at one light and seen
        # at this one, so the pixels the person hides follow a change of light too.
        self._gain = np.ones(3, np.float32)
        self._grey: np.ndarray | None = None  # the last learnt frame's grey at an eighth of its size
        self._grey_mask: np.ndarray | None = None  # its background
        self._lookup: np.ndarray | None = None  # float32 [h, w, 4]: the plate (B, G, R) and 1 where known
        self._frames = 0  # frames offered to ``update``

    @property
    def known_share(self) -> float:
        """The share of the frame the plate knows, 0..1."""
        return 0.0 if self._count is None else float(np.count_nonzero(self._count >= self.confirm)) / self._count.size

    def plate(self) -> np.ndarray | None:
        """The plate, ``float32 [h, w, 3]`` BGR levels at its reduced size (a copy); None before any frame."""
        return None if self._mean is None else self._mean.copy()

    def update(self, frame_bgr: np.ndarray, alpha: np.ndarray) -> None:
        """Learn from a frame (``uint8 [H, W, 3]``) and its matte (``float32 [H, W]`` in [0, 1],
        the model's): its background pixels agree with the plate and refine it, or disagree and
        restart it there; the background shifting, or most of it disagreeing at once, resets the
        plate. Frames under :data:`MIN_SIDE` px a side are not learnt from."""
        height, width = frame_bgr.shape[:2]
        if min(height, width) < MIN_SIDE:
            return
        if self._frame_size == (width, height) and self._frames % self.every:
            self._frames += 1  # a plate learns slowly: every ``every``-th frame is enough, at that share of the cost
            return
        self._frames += 1
        if self._frame_size != (width, height):
            self.reset()
            self._frame_size, self._frames = (width, height), 1
        # The camera's move is checked first, on an eighth-size copy: while it moves (a handheld
        # or drifting camera: every frame) nothing else is computed, so the plate costs little
        # where it cannot help.
        half = halved(frame_bgr)
        if self._shift(halved(half, 2), halved(alpha, 3)) > MOVED_PX:
            self._forget()  # the camera moves: nothing learnt holds
            return
        size = (max(1, width // self.scale), max(1, height // self.scale))
        small = (half if half.shape[1::-1] == size
                 else cv2.resize(frame_bgr, size, interpolation=cv2.INTER_AREA)).astype(np.float32)
        if self._mean is None:  # the first frame, or the first still one after a move: the plate starts from it
            self._mean = small
            self._count = np.zeros(small.shape[:2], np.uint8)
            self._noise = np.full(small.shape[:2], 2.0, np.float32)
            return
        person = cv2.compare(cv2.resize(alpha, size, interpolation=cv2.INTER_AREA), _LOW, cv2.CMP_GT)
        reach = 2 * max(1, round(self.margin / self.scale)) + 1
        background = cv2.bitwise_not(cv2.dilate(person, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (reach, reach))))
        checked = cv2.bitwise_and(background, cv2.compare(self._count, self.confirm, cv2.CMP_GE))
        checked_count = cv2.countNonZero(checked)
        enough = checked_count > 0.05 * checked.size
        if enough:  # the light now against the plate's, per channel (least squares over the known background)
            seen = np.array(cv2.mean(cv2.multiply(small, self._mean), mask=checked)[:3])
            kept = np.array(cv2.mean(cv2.multiply(self._mean, self._mean), mask=checked)[:3])
            self._gain = (seen / np.maximum(kept, 1.0)).astype(np.float32)
            small *= 1 / self._gain
        blue, green, red = cv2.split(cv2.absdiff(small, self._mean))
        difference = cv2.max(cv2.max(blue, green), red)  # numpy's max over a last axis of 3 is ~20x slower
        # Within the pixel's own recent noise, capped: a slow pan or swaying leaves must not pass for noise.
        agrees = cv2.compare(difference, np.minimum(self._noise, np.float32(MAX_NOISE)) * np.float32(3)
                             + np.float32(6), cv2.CMP_LE)
        if enough and checked_count - cv2.countNonZero(cv2.bitwise_and(checked, agrees)) > self.moved * checked_count:
            self._forget()  # another scene, or the camera jumped: the next frame starts the plate
            return
        learn = cv2.bitwise_and(background, agrees)
        # Known pixels follow the light at ``rate``; new ones settle on the mean of their first frames.
        settling = cv2.bitwise_and(learn, cv2.compare(self._count, self.confirm, cv2.CMP_LT))
        cv2.accumulateWeighted(small, self._mean, self.rate, mask=cv2.bitwise_xor(learn, settling))
        cv2.accumulateWeighted(small, self._mean, 0.5, mask=settling)
        cv2.accumulateWeighted(difference, self._noise, self.rate, mask=learn)
        cv2.add(self._count, 1, dst=self._count, mask=learn)
        np.minimum(self._count, self.confirm, out=self._count)
        restart = cv2.bitwise_and(background, cv2.bitwise_not(agrees)) > 0
        np.copyto(self._mean, small, where=restart[..., None])
        self._count[restart] = 1
        known = cv2.compare(self._count, self.confirm, cv2.CMP_GE)
        self._lookup = (np.dstack([self._mean, known.astype(np.float32) * np.float32(1 / 255)])
                        if cv2.countNonZero(known) else None)

    def _forget(self) -> None:
        """Forget the plate (the camera moved): the next still frame starts the next one."""
        if self._count is not None and np.any(self._count):
            self.resets += 1
        self._mean = self._count = self._noise = self._lookup = None
        self._gain = np.ones(3, np.float32)

    def _shift(self, eighth_bgr: np.ndarray, eighth_alpha: np.ndarray) -> float:
        """How far the background moved since the last frame learnt from, full-size px, from that
        frame and its matte at an eighth of their size: one Lucas-Kanade step of the whole
        background (the person and a margin left out). 0 where the background has too little
        texture to tell (then a still plate is right anyway)."""
        grey = cv2.cvtColor(eighth_bgr, cv2.COLOR_BGR2GRAY).astype(np.float32)
        person = cv2.compare(eighth_alpha, _LOW, cv2.CMP_GT)
        mask = cv2.bitwise_not(cv2.dilate(person, np.ones((3, 3), np.uint8)))
        previous, previous_mask = self._grey, self._grey_mask
        self._grey, self._grey_mask = grey, mask
        if previous is None or previous.shape != grey.shape:
            return 0.0
        weight = np.float32(1 / 255) * cv2.min(mask, previous_mask).astype(np.float32)
        gx = cv2.Sobel(previous, cv2.CV_32F, 1, 0, ksize=3, scale=0.125)
        gy = cv2.Sobel(previous, cv2.CV_32F, 0, 1, ksize=3, scale=0.125)
        # A change of light is not a move: the previous frame brought to this one's brightness first.
        gain = float(np.vdot(weight, grey)) / max(float(np.vdot(weight, previous)), 1e-6)
        change = grey - np.float32(gain) * previous
        wx, wy = gx * weight, gy * weight
        xx, xy, yy = float(np.vdot(wx, gx)), float(np.vdot(wx, gy)), float(np.vdot(wy, gy))
        bx, by = float(np.vdot(wx, change)), float(np.vdot(wy, change))
        det = xx * yy - xy * xy
        if weight.sum() < 0.01 * weight.size or det <= 1e-6 * (xx + yy) ** 2 or det <= 0:
            return 0.0
        dx, dy = -(yy * bx - xy * by) / det, -(xx * by - xy * bx) / det
        return float(np.hypot(dx, dy)) * 8

    def _at(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The plate and its confidence at full-size ``points`` (``int32 [N, 2]`` x, y) ->
        (``float32 [N, 3]`` BGR, ``float32 [N]`` 0..1)."""
        values = sample(self._lookup, points, self._frame_size)
        return values[:, :3] * self._gain, values[:, 3]

    def points(self, alpha: np.ndarray) -> np.ndarray:
        """Where the plate may change the matte: the soft edge and ``grow`` px around it, without
        the solid inside -> ``int32 [N, 2]`` (x, y)."""
        soft = cv2.inRange(alpha, _LOW, _HIGH)
        if self.grow:
            reach = 2 * self.grow + 1
            soft = cv2.dilate(soft, cv2.getStructuringElement(cv2.MORPH_RECT, (reach, reach)))
            soft[alpha >= _HIGH] = 0
        found = cv2.findNonZero(soft)
        return np.zeros((0, 2), np.int32) if found is None else found.reshape(-1, 2)

    def usable(self, frame_bgr: np.ndarray) -> bool:
        """Whether the plate knows anything of a frame this size."""
        return self._lookup is not None and self._frame_size == (frame_bgr.shape[1], frame_bgr.shape[0])

    def refine(self, frame_bgr: np.ndarray, alpha: np.ndarray) -> np.ndarray:
        """The matte (``float32 [H, W]``) with the plate's alpha where it is known and the person's
        colour stands apart from it -> a new array, or ``alpha`` itself where the plate knows nothing."""
        if not self.usable(frame_bgr):
            return alpha
        points = self.points(alpha)
        if not len(points):
            return alpha
        plate, known = self._at(points)
        xs, ys = points[:, 0], points[:, 1]
        image = frame_bgr[ys, xs].astype(np.float32)
        person = _solid_colour(frame_bgr, alpha, points)
        apart = person - plate
        spread = np.einsum("ij,ij->i", apart, apart)
        share = np.clip(np.einsum("ij,ij->i", image - plate, apart) / (spread + 1.0), 0.0, 1.0)
        trust = known * spread / (spread + np.float32(self.separation ** 2))
        out = alpha.copy()
        before = alpha[ys, xs]
        out[ys, xs] = before + trust * (share - before)
        return out

    def decontaminate(self, frame_bgr: np.ndarray, alpha: np.ndarray, colours: np.ndarray,
                      points: np.ndarray) -> None:
        """``colours`` (``uint8 [H, W, 3]``, changed in place) at ``points`` where the plate is known:
        ``F = (I - (1 - a) B^) / a``, mixed with the colours there by the plate's confidence."""
        if not len(points) or not self.usable(frame_bgr):
            return
        plate, known = self._at(points)
        xs, ys = points[:, 0], points[:, 1]
        a = alpha[ys, xs][:, None]
        image = frame_bgr[ys, xs].astype(np.float32)
        clean = np.clip((image - (1 - a) * plate) / np.maximum(a, np.float32(0.02)), 0, 255)
        k = known[:, None]
        mixed = k * clean + (1 - k) * colours[ys, xs].astype(np.float32)
        colours[ys, xs] = np.clip(mixed + np.float32(0.5), 0, 255).astype(np.uint8)


def _solid_colour(frame_bgr: np.ndarray, alpha: np.ndarray, points: np.ndarray) -> np.ndarray:
    """The person's colour near each of ``points`` -> ``float32 [N, 3]``: the mean of the frame over
    the surely-person pixels (``a`` above 0.5, weighted up to 1) in a ~16 px box, or in a ~124 px
    one where the near box holds too little of them; both on a quarter-size copy of the points'
    surroundings."""
    height, width = alpha.shape
    # The points' bounding box and the wide box's reach, on the quarter-size grid.
    left, top, w, h = cv2.boundingRect(points)
    x0, y0, x1, y1 = left // 4 - 17, top // 4 - 17, (left + w - 1) // 4 + 18, (top + h - 1) // 4 + 18
    x0, y0, x1, y1 = max(0, x0), max(0, y0), min(width // 4, x1), min(height // 4, y1)
    if x1 <= x0 or y1 <= y0:  # a frame under 4 px a side: its own colours
        return frame_bgr[points[:, 1], points[:, 0]].astype(np.float32)
    crop = (slice(4 * y0, 4 * y1), slice(4 * x0, 4 * x1))
    reduced = (x1 - x0, y1 - y0)
    image = cv2.resize(frame_bgr[crop], reduced, interpolation=cv2.INTER_AREA).astype(np.float32)
    weight = np.clip((cv2.resize(alpha[crop], reduced, interpolation=cv2.INTER_AREA) - np.float32(0.5))
                     * np.float32(2), 0, 1)
    weighted = cv2.merge([*cv2.split(image * weight[..., None]), weight])
    sums = sample(cv2.merge([cv2.blur(weighted, (4, 4)), cv2.blur(weighted, (31, 31))]), points,
                  (width, height), scale=(0.25, 0.25), origin=(x0, y0))
    near = sums[:, :3] / (sums[:, 3:4] + _EPS)
    far = sums[:, 4:7] / (sums[:, 7:8] + _EPS)
    mix = np.clip(sums[:, 3:4] / np.float32(0.2), 0, 1)
    return mix * near + (1 - mix) * far
