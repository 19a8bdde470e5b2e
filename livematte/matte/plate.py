"""The background plate: the room behind the person, learnt while they move.

A video call's camera does not move, or moves little (a drift, a slow pan), so every pixel the
person leaves uncovered shows the background as it is. :class:`BackgroundPlate` keeps that
picture (``B^``) with a per-pixel confidence, and uses it where the matte is soft, where a frame
is ``I = a F + (1 - a) B``:

- **the matte** (:meth:`BackgroundPlate.refine`): with ``B`` known, the foreground's share of a
  pixel is the ``a`` of ``I = B + a (F - B)``, ``F`` a colour drawn from the person's colours
  nearby (their local mean ``F~`` and spread in the solid matte; Bayesian matting with the
  background known, :func:`_share`). Where ``F~`` stands well apart from ``B`` (a dark strand
  over a bright wall), and the pixel's colour lies near its explanation (within :data:`OFF_LINE`
  levels: a colour the two do not explain is no measure of the share), that share replaces the
  model's alpha; elsewhere the model's stands. A pixel that matches the plate within
  the camera's noise so gets ``a`` near 0 (the old background showing through), and a strand the
  model missed beside a soft edge gets its share.
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
disagrees (something moved there) starts again from the frame.

A camera that pans or drifts (a webcam nudged, a laptop's screen settling, a slow pan) moves the
whole background between frames. :meth:`BackgroundPlate.see` registers each frame to the plate
first (a translation, found by Lucas-Kanade steps at a quarter of the size against the plate's
known background, from the last offset and velocity) and the plate is read, and learnt into, at
that offset; it moves by whole pixels as the offset grows, and what comes into view is learnt like
any new pixel. The plate is forgotten and learnt again where a frame cannot be registered (a jump
of more than :data:`MAX_JUMP_PX` from where the motion so far puts it, a shake, a zoom), where
what registration leaves unexplained says the background moves by itself (:data:`RIGID`), or
where most of the known background disagrees at once (another scene). A plate made not to follow
(``follow=False``, live: see :func:`livematte.assembly.live_engine`) is forgotten as soon as the
camera moves at all, and costs little while it does.

State across frames, in frame order; the plate owns copies of what it keeps (callers may reuse or
change the arrays they pass). ``reset`` for a new stream or a scene cut.
"""

from __future__ import annotations

from typing import NamedTuple

import cv2
import numpy as np

from ..frames import halved
from .foreground import sample

PLATE_MODES = ("auto", "off")
_LOW, _HIGH = 0.5 / 255, 254.5 / 255  # as foreground.soft_points: what 8 bits tell from 0 and 1
_EPS = np.float32(1e-4)
MAX_JUMP_PX = 16.0  # full-size px a frame may land from where the motion so far puts it
STEPS = 4  # Lucas-Kanade steps a frame, at most
CONVERGED = 0.1  # quarter-size px: the last step's length under which the registration holds
MOVED_PX = 0.3  # full-size px from where it began: a move, for a plate that does not follow
STILL = 0.05  # plate px: a smaller offset is read and learnt as none (a still camera's noise)
# Px: the registered frame's mean difference from the plate over its mean gradient (quarter size,
# smoothed, over the background: the move its texture would have to make to explain what is left)
# above which the background moves by itself (leaves, water, a video played behind) and the
# plate is forgotten. Measured on the composited clips and the fixed-camera ones: 0.02-0.28 on
# still and panned pictures with camera noise and a change of light (the highest on the smooth
# ones), 0.30 at p50, 1.7 at p90 and up to 3.6 for a video of a tree.
RIGID = 2.0
OFF_LINE = 12.0  # levels off the pixel's explanation at which the plate's share is trusted half
# The person's colour at a soft pixel (``_share``): drawn from the colours of the person nearby,
# their spread widened by PERSON_SPREAD levels in each channel, against a camera's noise of
# NOISE_LEVELS. Over the fixed-camera clips with clean colours (README: The background plate),
# the plate's edge-band error was 80.8 / 81.7 % of plain (green / white) with the nearby mean
# alone; with this (scratch runs), after 2, 3, 5 and 8 turns, 78.2 / 78.7, 78.0 / 78.4,
# 77.8 / 78.1 and 77.7 / 78.1, solved to the end (the least cost over a on a grid) 79.7 / 80.5:
# the turns from the mean keep some of its pull. 4 or 8 levels of noise alike (78.0 / 78.4,
# 78.1 / 78.5 at 3 turns).
PERSON_SPREAD = 4.0
NOISE_LEVELS = 4.0
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
    every ``every``-th frame (the plate changes slowly; the cost falls by as much). follow: follow a
    camera that pans or drifts; False forgets the plate once the camera has moved :data:`MOVED_PX`
    from where the plate began (a still camera's plate, for where its cost is affordable only
    while the camera stands still)."""

    def __init__(self, scale: int = 2, rate: float = 0.1, confirm: int = 2, margin: int = 8,
                 moved: float = 0.5, grow: int = 3, separation: float = 30.0, every: int = 2,
                 follow: bool = True):
        self.scale, self.rate, self.confirm, self.margin, self.every = scale, rate, confirm, margin, every
        self.moved, self.grow, self.separation, self.follow = moved, grow, separation, follow
        self.resets = 0  # camera moves seen, for stats and tests
        self.residual = 0.0  # the last registration's, px (:data:`RIGID`), for tests
        self.reset()

    def reset(self) -> None:
        self._mean: np.ndarray | None = None  # float32 [h, w, 3] BGR levels
        self._count: np.ndarray | None = None  # uint8 [h, w]: agreeing frames running, up to ``confirm``
        self._noise: np.ndarray | None = None  # float32 [h, w]: the recent |frame - plate| where it agreed
        self._frame_size: tuple[int, int] | None = None  # (W, H) of the frames learnt from
        # The light now against the plate's, per channel: the plate is kept at one light and seen
        # at this one, so the pixels the person hides follow a change of light too.
        self._gain = np.ones(3, np.float32)
        self._seen: np.ndarray | None = None  # uint8 [h, w]: 255 where the plate holds background seen
        self._lookup: np.ndarray | None = None  # float32 [h, w, 4]: the plate (B, G, R) and 1 where known
        # What frames are registered against: the plate's grey and where it holds background, a
        # quarter of the frame's size (float32, 1 or 0).
        self._reference: tuple[np.ndarray, np.ndarray] | None = None
        # This frame's position in the plate, plate px (x, y): frame pixel q (at the plate's scale)
        # shows plate pixel q + offset; the offset's change over the last frame seen.
        self._offset = np.zeros(2, np.float32)
        self._velocity = np.zeros(2, np.float32)
        self._looked: _Looked | None = None  # what ``see`` found of the last frame, until ``update``
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
        restart it there; a frame that cannot be registered to it (:meth:`see`, run here where
        the caller did not), or most of it disagreeing at once, resets the plate. Frames under
        :data:`MIN_SIDE` px a side are not learnt from."""
        looked, self._looked = self._looked, None
        height, width = frame_bgr.shape[:2]
        if min(height, width) < MIN_SIDE:
            return
        if self._frame_size != (width, height):
            self.reset()
            self._frame_size = (width, height)
        elif looked is None or looked.frame is not frame_bgr:
            self.see(frame_bgr, alpha)
            looked, self._looked = self._looked, None
        if looked is not None and looked.moving:
            return  # while the camera moves, a plate that does not follow learns nothing: it costs little
        self._frames += 1
        if self._frames % self.every != 1 % self.every:
            return  # a plate learns slowly: every ``every``-th frame is enough, at that share of the cost
        size = (max(1, width // self.scale), max(1, height // self.scale))
        if self.scale == 2 and looked is not None and looked.half is not None:  # ``see`` halved them already
            small, reduced_alpha = looked.half.astype(np.float32), looked.half_alpha
        else:
            small = cv2.resize(frame_bgr, size, interpolation=cv2.INTER_AREA).astype(np.float32)
            reduced_alpha = cv2.resize(alpha, size, interpolation=cv2.INTER_AREA)
        if self._mean is not None and np.abs(self._offset).max() >= STILL:
            # Into the plate's pixels: plate pixel p shows frame pixel p - offset. What lies outside
            # the frame there counts as person, so it is neither learnt nor checked.
            shift = np.float32([[1, 0, -self._offset[0]], [0, 1, -self._offset[1]]])
            flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
            small = cv2.warpAffine(small, shift, size, flags=flags, borderMode=cv2.BORDER_REPLICATE)
            reduced_alpha = cv2.warpAffine(reduced_alpha, shift, size, flags=flags, borderValue=1.0)
        person = cv2.compare(reduced_alpha, _LOW, cv2.CMP_GT)
        reach = 2 * max(1, round(self.margin / self.scale)) + 1
        background = cv2.bitwise_not(cv2.dilate(person, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (reach, reach))))
        if self._mean is None:  # the first frame, or the first after a reset: the plate starts from it
            self._mean = small
            self._count = np.zeros(small.shape[:2], np.uint8)
            self._noise = np.full(small.shape[:2], 2.0, np.float32)
            self._seen = background
            self._refresh()
            return
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
        cv2.bitwise_or(self._seen, background, dst=self._seen)
        self._refresh()

    def see(self, frame_bgr: np.ndarray, alpha: np.ndarray) -> None:
        """Register a frame (``uint8 [H, W, 3]``, its matte ``float32 [H, W]``) to the plate, before
        it is refined, decontaminated or learnt from: where the camera moved, find where this
        frame's background lies in the plate (one translation). Lucas-Kanade steps at a quarter of
        the size, over the background the frame shows and the plate holds, from where the last
        offset and velocity put it. A frame that cannot be registered (the steps do not settle,
        or land more than :data:`MAX_JUMP_PX` from there) forgets the plate; one whose background
        has too little texture to tell keeps the last offset. What it found (the frame's half-size
        copies, whether the camera moves) waits for :meth:`update` of the same frame."""
        self._looked = _Looked(frame_bgr, None, None, False)
        if self._reference is None or self._frame_size != (frame_bgr.shape[1], frame_bgr.shape[0]):
            return
        reference, holds = self._reference
        half, half_alpha = halved(frame_bgr), halved(alpha)
        self._looked = _Looked(frame_bgr, half, half_alpha, False)
        grey = _smooth(cv2.cvtColor(halved(half), cv2.COLOR_BGR2GRAY).astype(np.float32))
        if grey.shape != reference.shape:
            return
        person = cv2.compare(halved(half_alpha), _LOW, cv2.CMP_GT)
        # The smoothing spreads the person's colours 2 px around them: those pixels are left out too.
        shows = np.float32(1 / 255) * cv2.bitwise_not(cv2.dilate(person, np.ones((7, 7), np.uint8))).astype(np.float32)
        to_quarter = self.scale / 4  # plate px -> quarter-size px
        guess = (self._offset + self._velocity) * to_quarter
        offset, step = guess.copy(), np.inf
        size = grey.shape[::-1]
        for _ in range(STEPS if self.follow else 1):  # not following, one step tells still from moving
            shift = np.float32([[1, 0, offset[0]], [0, 1, offset[1]]])  # warped(q) = reference(q + offset)
            warped = cv2.warpAffine(reference, shift, size, flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                                    borderMode=cv2.BORDER_REPLICATE)
            weight = shows * cv2.warpAffine(holds, shift, size, flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP)
            found = _translation(grey, warped, weight)
            if found is None:  # too little background, or too little texture, to tell
                return
            offset += found[0]
            step, self.residual = float(np.hypot(*found[0])), found[1]
            if step < 0.01:
                break
        offset /= to_quarter
        jump = float(np.hypot(*(offset - self._offset - self._velocity))) * self.scale
        moved = not self.follow and float(np.hypot(*offset)) * self.scale > MOVED_PX
        if step > CONVERGED or jump > MAX_JUMP_PX or self.residual > RIGID or moved:
            self._looked = self._looked._replace(moving=moved)
            self._forget()  # a shake, a zoom, a jump or a background that moves by itself: no guide
            return
        self._velocity = (offset - self._offset).astype(np.float32)
        self._offset = offset.astype(np.float32)
        whole = np.round(self._offset).astype(int)
        if whole.any():  # the plate moves by whole pixels; the offset keeps the fraction
            self._offset -= whole
            self._mean = _moved(self._mean, whole, 0.0)
            self._count = _moved(self._count, whole, 0)
            self._noise = _moved(self._noise, whole, 2.0)
            self._seen = _moved(self._seen, whole, 0)
            self._refresh()

    def _refresh(self) -> None:
        """After the plate learnt or moved: what :meth:`_at` reads and what :meth:`see` registers against."""
        known = cv2.compare(self._count, self.confirm, cv2.CMP_GE)
        self._lookup = (np.dstack([self._mean, known.astype(np.float32) * np.float32(1 / 255)])
                        if cv2.countNonZero(known) else None)
        width, height = self._frame_size
        quarter = (max(1, max(1, width // 2) // 2), max(1, max(1, height // 2) // 2))  # halved(frame, 2)'s
        grey = _smooth(cv2.cvtColor(cv2.resize(self._mean, quarter, interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2GRAY))
        holds = cv2.resize(self._seen, quarter, interpolation=cv2.INTER_AREA)  # 255 where all of it was seen
        holds = cv2.erode(cv2.compare(holds, 254, cv2.CMP_GE), np.ones((5, 5), np.uint8))  # as ``see``'s smoothing
        self._reference = grey, holds.astype(np.float32) * np.float32(1 / 255)

    def _forget(self) -> None:
        """Forget the plate (the camera moved): the next still frame starts the next one."""
        if self._count is not None and np.any(self._count):
            self.resets += 1
        self._mean = self._count = self._noise = self._lookup = self._seen = self._reference = None
        self._gain = np.ones(3, np.float32)
        self._offset = np.zeros(2, np.float32)
        self._velocity = np.zeros(2, np.float32)

    def _at(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The plate and its confidence at full-size ``points`` (``int32 [N, 2]`` x, y) ->
        (``float32 [N, 3]`` BGR, ``float32 [N]`` 0..1)."""
        values = sample(self._lookup, points, self._frame_size, origin=(-self._offset[0], -self._offset[1]))
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
        if len(points):
            plate, known = self._at(points)
            seen = known > 0  # elsewhere the plate's weight is 0: no need to solve there
            points, plate, known = points[seen], plate[seen], known[seen]
        if not len(points):
            return alpha
        xs, ys = points[:, 0], points[:, 1]
        difference = frame_bgr[ys, xs].astype(np.float32) - plate  # I - B
        mean, covariance = _person_colours(frame_bgr, alpha, points)
        mean = mean - plate.T
        share, person = _share(np.ascontiguousarray(difference.T), mean, covariance)
        spread = mean[0] * mean[0] + mean[1] * mean[1] + mean[2] * mean[2]
        # How far the pixel lies from its explanation, ``B + share (F - B)``: a colour the plate and
        # the person nearby do not explain (a background that changed, a strand of a colour the
        # person shows nowhere near) is no measure of the share.
        off_line = difference - share[:, None] * person.T
        miss = np.einsum("ij,ij->i", off_line, off_line)
        fit = np.float32(OFF_LINE ** 2) / (np.float32(OFF_LINE ** 2) + miss)
        trust = known * fit * spread / (spread + np.float32(self.separation ** 2))
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


class _Looked(NamedTuple):
    """What :meth:`BackgroundPlate.see` found of a frame, for :meth:`BackgroundPlate.update` of the
    same one: the frame (kept for its identity only, until that update), its half-size copy and its
    matte's (None where ``see`` made none), and whether the camera moves while the plate does not
    follow."""

    frame: np.ndarray
    half: np.ndarray | None
    half_alpha: np.ndarray | None
    moving: bool


def _smooth(grey: np.ndarray) -> np.ndarray:
    """A quarter-size grey picture smoothed for Lucas-Kanade: fine texture's gradients hold over
    less than the half pixel a frame may move, and overshoot (the steps then swing about the move)."""
    return cv2.GaussianBlur(grey, (5, 5), 1.0)


def _translation(grey: np.ndarray, warped: np.ndarray,
                 weight: np.ndarray) -> tuple[np.ndarray, float] | None:
    """One Lucas-Kanade step: (the move ``d``, x, y px, for which ``grey(q) ~ warped(q + d)`` over
    ``weight`` (float32, 0..1), the light's change between them left out; what the move leaves
    unexplained over the texture, px: :data:`RIGID`'s measure), or None where the weighted pixels
    are too few or too plain to tell."""
    if float(weight.sum()) < 0.01 * weight.size:
        return None
    gx = cv2.Sobel(warped, cv2.CV_32F, 1, 0, ksize=3, scale=0.125)
    gy = cv2.Sobel(warped, cv2.CV_32F, 0, 1, ksize=3, scale=0.125)
    gain = float(np.vdot(weight, grey)) / max(float(np.vdot(weight, warped)), 1e-6)
    change = grey - np.float32(gain) * warped
    wx, wy = gx * weight, gy * weight
    xx, xy, yy = float(np.vdot(wx, gx)), float(np.vdot(wx, gy)), float(np.vdot(wy, gy))
    bx, by = float(np.vdot(wx, change)), float(np.vdot(wy, change))
    det = xx * yy - xy * xy
    if det <= 0 or det <= 1e-6 * (xx + yy) ** 2:
        return None
    texture = float(np.vdot(weight, np.abs(gx) + np.abs(gy)))
    residual = float(np.vdot(weight, np.abs(change))) / max(texture, 1e-6)
    return np.array([(yy * bx - xy * by) / det, (xx * by - xy * bx) / det], np.float32) / np.float32(gain), residual


def _moved(array: np.ndarray, whole: np.ndarray, fill: float) -> np.ndarray:
    """``array`` moved by ``whole`` px (x, y): ``out[p] = array[p + whole]``, ``fill`` where that lies outside."""
    out = np.full_like(array, fill)
    dx, dy = int(whole[0]), int(whole[1])
    height, width = array.shape[:2]
    if abs(dx) < width and abs(dy) < height:
        out[max(0, -dy):height - max(0, dy), max(0, -dx):width - max(0, dx)] = \
            array[max(0, dy):height - max(0, -dy), max(0, dx):width - max(0, -dx)]
    return out


def _person_colours(frame_bgr: np.ndarray, alpha: np.ndarray,
                    points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The person's colours near each of ``points``, as a mean (``float32 [3, N]``, B, G, R rows)
    and a covariance (``float32 [6, N]``, rows BB, GG, RR, BG, BR, GR, levels squared) over the
    surely-person pixels (``a`` above 0.5, weighted up to 1) in a ~16 px box, or in a ~124 px one
    where the near box holds too little of them; both on a quarter-size copy of the points'
    surroundings. Rows, not columns: :func:`_share`'s arithmetic then runs on contiguous arrays."""
    height, width = alpha.shape
    # The points' bounding box and the wide box's reach, on the quarter-size grid.
    left, top, w, h = cv2.boundingRect(points)
    x0, y0, x1, y1 = left // 4 - 17, top // 4 - 17, (left + w - 1) // 4 + 18, (top + h - 1) // 4 + 18
    x0, y0, x1, y1 = max(0, x0), max(0, y0), min(width // 4, x1), min(height // 4, y1)
    if x1 <= x0 or y1 <= y0:  # a frame under 4 px a side: its own colours
        own = frame_bgr[points[:, 1], points[:, 0]].astype(np.float32).T
        return np.ascontiguousarray(own), np.zeros((6, len(points)), np.float32)
    crop = (slice(4 * y0, 4 * y1), slice(4 * x0, 4 * x1))
    reduced = (x1 - x0, y1 - y0)
    image = cv2.resize(frame_bgr[crop], reduced, interpolation=cv2.INTER_AREA).astype(np.float32)
    weight = np.clip((cv2.resize(alpha[crop], reduced, interpolation=cv2.INTER_AREA) - np.float32(0.5))
                     * np.float32(2), 0, 1)
    weighted = image * weight[..., None]
    moments = np.dstack([weight, weighted] + [weighted[..., i] * image[..., j] for i, j in _PAIRS])
    near, far = cv2.blur(moments, (4, 4)), cv2.blur(moments, (31, 31))
    mix = np.clip(near[..., :1] / np.float32(0.2), 0, 1)
    mixed = far + mix * (near - far)  # the moments of the two boxes, mixed
    mixed[..., 1:] /= mixed[..., :1] + _EPS
    mean = mixed[..., 1:4]
    mixed[..., 4:] -= np.dstack([mean[..., i] * mean[..., j] for i, j in _PAIRS])
    colours = sample(mixed[..., 1:], points, (width, height), scale=(0.25, 0.25), origin=(x0, y0))
    colours = np.ascontiguousarray(colours.T)
    return colours[:3], colours[3:]


_PAIRS = ((0, 0), (1, 1), (2, 2), (0, 1), (0, 2), (1, 2))  # a covariance's rows, as _person_colours packs them


def _share(image: np.ndarray, mean: np.ndarray, covariance: np.ndarray,
           iterations: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """The person's share of each pixel and the person's colour there, the plate known: a pixel
    is ``B + a (F - B)`` (``image``: ``I - B``, ``float32 [3, N]``) and ``F`` is drawn from the
    person's colours nearby (``mean - B`` ``[3, N]`` and ``covariance`` ``[6, N]``, as
    :func:`_person_colours` gives them), so ``a`` and ``F`` are those that explain the pixel best
    (camera noise :data:`NOISE_LEVELS`) at the least distance from those colours, the covariance
    widened by :data:`PERSON_SPREAD` (as Bayesian matting, with the background known). Solved by
    ``iterations`` turns from ``F`` at the mean (which stop short of the least cost on purpose:
    see :data:`PERSON_SPREAD`): ``a = (I - B).(F - B) / |F - B|^2``, then, for that ``a``,
    ``F - B = (mean - B) + a (n^2 + a^2 S)^-1 S ((I - B) - a (mean - B))``, the symmetric 3x3
    system solved by cofactors, row by row for all N at once.
    -> (``a`` ``float32 [N]`` 0..1, ``F - B`` ``float32 [3, N]``)."""
    sxx, syy, szz, sxy, sxz, syz = covariance
    sxx, syy, szz = (s + np.float32(PERSON_SPREAD ** 2) for s in (sxx, syy, szz))
    noise = np.float32(NOISE_LEVELS ** 2)
    person = mean
    for turn in range(iterations + 1):
        share = np.clip(np.einsum("in,in->n", image, person) / (np.einsum("in,in->n", person, person) + 1), 0, 1)
        if turn == iterations:
            break
        r0, r1, r2 = image - share * mean  # what the mean leaves unexplained
        v0, v1, v2 = sxx * r0 + sxy * r1 + sxz * r2, sxy * r0 + syy * r1 + syz * r2, sxz * r0 + syz * r1 + szz * r2
        squared = share * share
        xx, yy, zz = squared * sxx + noise, squared * syy + noise, squared * szz + noise
        xy, xz, yz = squared * sxy, squared * sxz, squared * syz
        c0, c1, c2 = yy * zz - yz * yz, xx * zz - xz * xz, xx * yy - xy * xy
        c3, c4, c5 = xz * yz - xy * zz, xy * yz - yy * xz, xy * xz - xx * yz
        scale = share / (xx * c0 + xy * c3 + xz * c4)
        person = mean + scale * np.stack([c0 * v0 + c3 * v1 + c4 * v2, c3 * v0 + c1 * v1 + c5 * v2,
                                          c4 * v0 + c5 * v1 + c2 * v2])
    return share, person
