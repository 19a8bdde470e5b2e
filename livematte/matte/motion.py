"""Motion-compensated reuse: a model result moved with the picture to the frames after its input.

Live, the model runs on its own thread (:mod:`livematte.runtime.pipeline`) and every frame is
finished from the newest result that has landed, a few frames old. A frame-old matte is right
where the person is still and a ghost where they move fast (a swing moves ~85 px a frame at
720p), so the result is moved first: dense optical flow (OpenCV's DIS, :data:`FLOW_PRESET`) from
the frame to the result's frame, both grey at one size (:data:`FLOW_SIDE`, whatever the
network's), then the result's planes are remapped along it, resampled to their size
(:func:`flow_at`). The backend's own full-resolution finish then puts the edges on this frame's
picture.
"""

from __future__ import annotations

from collections import deque

import cv2
import numpy as np


class Tracker:
    """Flow from each frame back to the frame of the newest model result; owned by the frame thread.

    The model runs on its own thread (live), so a result lands some frames after its input: each
    frame is finished from the newest result, moved from that result's frame to it. Two
    measurements, and the one that explains the frame better is kept (:func:`mismatch`): straight
    from the frame to the result's, and frame to frame composed back to it (the steps between the
    frames this thread saw are kept for the last :data:`HISTORY` of them, so a result that lands
    late is followed along them). DIS follows a few px a frame closely but can fall
    short of a displacement of several frames; composed steps drift where the straight measurement
    holds. The figures on the ground-truth clips: README, Measurements behind the code.
    """

    def __init__(self):
        self._dis = cv2.DISOpticalFlow_create(FLOW_PRESET)
        # The last frames seen, oldest first: (index, grey, flow from it to the frame before it or None).
        self._seen: deque[tuple[int, np.ndarray, np.ndarray | None]] = deque(maxlen=HISTORY)
        self._key_index: int | None = None  # the result's frame the last flow went to
        self._previous_to_key: np.ndarray | None = None  # the last frame's flow to it; None: straight only

    def reset(self) -> None:
        """Forget every frame seen (a restart: the next frames are another picture)."""
        self._seen.clear()
        self._key_index = self._previous_to_key = None

    def see(self, index: int, grey: np.ndarray) -> None:
        """Frame ``index`` (``uint8 [h, w]`` grey) seen: its step from the frame seen before it is
        kept. Called alone for a frame with no result to move yet (a stream's first frames, while
        its first call runs), so that the first result is followed to the frames after it along
        every frame between; :meth:`to_result` calls it for the others."""
        previous = self._seen[-1] if self._seen and self._seen[-1][1].shape == grey.shape else None
        self._seen.append((index, grey, self._dis.calc(grey, previous[1], None) if previous is not None else None))

    def to_result(self, index: int, grey: np.ndarray, key_index: int, key: np.ndarray) -> tuple[np.ndarray | None, float]:
        """Frame ``index`` (``uint8 [h, w]`` grey, at :data:`FLOW_SIDE`) and the result's frame ``key_index``
        (its grey ``key``, the same size) -> (``float32 [h, w, 2]``: for each of the frame's pixels the
        (dx, dy) in px to where it was in the result's frame, None when it is that frame; the share of
        its pixels the flow leaves unexplained, :func:`mismatch`). Call once per frame, in order
        (a frame :meth:`see` saw last may come again)."""
        if not self._seen or self._seen[-1][0] != index:
            self.see(index, grey)
        step = self._seen[-1][2]
        previous_index = self._seen[-2][0] if step is not None else None  # the frame the step goes to
        if key_index == index:
            self._key_index, self._previous_to_key = index, None
            return None, 0.0
        if key_index != self._key_index:  # a new result: the steps from the last frame back to its frame
            self._key_index, self._previous_to_key = key_index, self._chain_back(key_index)
        frame, key_f = grey.astype(np.float32), key.astype(np.float32)
        changed = np.count_nonzero(cv2.absdiff(key_f, frame) > MISMATCH_LEVELS)  # the same for both flows
        if step is not None and previous_index == key_index:
            composed = step  # the result's frame is the last one: the step is the straight measurement
        elif step is not None and self._previous_to_key is not None:
            composed = compose(step, self._previous_to_key)
        else:
            composed = None
        scored = [] if composed is None else [(mismatch(composed, frame, key_f, changed), composed)]
        # The straight measurement only when the composed one leaves more than a little unexplained:
        # a second DIS a frame is most of the motion's cost.
        if not scored or (scored[0][0] > GOOD_ENOUGH_SHARE and composed is not step):
            straight = self._dis.calc(grey, key, None)
            scored.insert(0, (mismatch(straight, frame, key_f, changed), straight))
        wrong, flow = min(scored, key=lambda pair: pair[0])  # the straight one on a tie
        self._previous_to_key = flow
        return flow, wrong

    def _chain_back(self, key_index: int) -> np.ndarray | None:
        """The flow from the frame before the newest seen back to frame ``key_index``, composed from
        the steps between; None when that frame is the key, or the key is no longer remembered."""
        frames = list(self._seen)[:-1]
        if not frames or frames[-1][0] == key_index:
            return None
        chain = None
        for (index, _, step), (earlier, _, _) in zip(reversed(frames), reversed(frames[:-1])):
            if step is None:
                return None
            chain = step if chain is None else compose(chain, step)
            if earlier == key_index:
                return chain
        return None


def compose(first: np.ndarray, then: np.ndarray) -> np.ndarray:
    """Flows ``float32 [h, w, 2]`` from A to B (``first``) and from B to C (``then``) -> from A to C:
    each pixel's move to B, plus ``then`` read where it lands."""
    grid_x, grid_y = _grid(*first.shape[:2])
    onward = cv2.remap(then, grid_x + first[..., 0], grid_y + first[..., 1], cv2.INTER_LINEAR,
                       borderMode=cv2.BORDER_REPLICATE)
    return first + onward


def flow_at(flow: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A flow ``float32 [H, W, 2]`` (px at its own size) -> the same motion at ``size`` (h, w):
    resampled, and its vectors scaled to that size's px. The same array when the size is its own."""
    height, width = size
    if flow.shape[:2] == (height, width):
        return flow
    scaled = cv2.resize(flow, (width, height), interpolation=cv2.INTER_LINEAR)
    scaled *= np.array([width / flow.shape[1], height / flow.shape[0]], np.float32)
    return scaled


def grey_of(image_bgr: np.ndarray) -> np.ndarray:
    """``uint8 [h, w, 3]`` BGR -> ``uint8 [h, w]`` luma, what the flow is computed on."""
    return cv2.cvtColor(image_bgr, cv2.COLOR_BGR2GRAY)


def warp(planes: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """``float32 [k, h, w]`` keyframe planes -> the same moved to the frame ``flow`` was computed
    for (``float32 [h, w, 2]``, from :meth:`Tracker.to_result`); edges repeat outward."""
    k, height, width = planes.shape
    if flow.shape[:2] != (height, width):
        raise ValueError(f"flow is {flow.shape[1]}x{flow.shape[0]}, the planes {width}x{height}")
    grid_x, grid_y = _grid(height, width)
    map_x = grid_x + flow[..., 0]
    map_y = grid_y + flow[..., 1]
    # Plane by plane: at 384x216, 1.4 ms for nine planes against 2.2 through one interleaved
    # image (and its two transposes), one core.
    moved = np.empty((k, height, width), planes.dtype)
    for plane, out in zip(planes, moved):
        cv2.remap(plane, map_x, map_y, cv2.INTER_LINEAR, dst=out, borderMode=cv2.BORDER_REPLICATE)
    return moved


_grids: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}


def _grid(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates (x, y), ``float32 [h, w]`` each, built once per size."""
    grid = _grids.get((height, width))
    if grid is None:
        grid = tuple(np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32)))
        _grids[(height, width)] = grid
    return grid


# The motion is measured at this longest side whatever the network's size (384x216 for 720p), and
# resampled to the network's (flow_at). DIS at the network's own size lost the smaller networks
# most of their reuse: the coarser picture trips the rules below far more often (README: "What
# each level costs in quality").
FLOW_SIDE = 384

# DIS's preset. FAST (16 gradient-descent and 5 variational-refinement iterations) over ULTRAFAST
# (12 and none): 1.2 against 0.65 ms a flow at 384x216 on one core, for mattes closer to the truth
# where they are moved: 384 px every second frame, waiting, dtSSD 3.54 against 3.59, 288 px every
# third 4.67 against 4.75; MEDIUM (a finer scale) 6.2 ms, too dear for every frame (README:
# Measurements behind the code).
FLOW_PRESET = cv2.DISOPTICAL_FLOW_PRESET_FAST

# Frames whose steps the tracker keeps: a result lands at most this many frames after its input
# and is still followed frame by frame (older ones get the straight measurement alone).
HISTORY = 16

# A flow explains a frame when the keyframe moved along it matches the frame: at most this share
# of pixels differs by more than MISMATCH_LEVELS grey levels. A frame it does not explain (a jump,
# a swing the flow loses) gets a model call of its own. The share is what paid on the nine
# ground-truth clips: a much better matte than no check, where a strict share sends most frames to
# the model and buys nothing (README: Measurements behind the code).
MISMATCH_LEVELS = 24
MISMATCH_SHARE = 0.15
# A composed flow that leaves at most this share unexplained is kept without measuring the straight one.
GOOD_ENOUGH_SHARE = 0.05
# ... and the move must put right at least half of the pixels that changed since the keyframe (at
# least CHANGE_FLOOR of the frame: noise): a small subject that jumps changes few pixels in all,
# and a flow that cannot follow it leaves most of them wrong.
UNEXPLAINED_SHARE = 0.5
CHANGE_FLOOR = 0.01


def mismatch(flow: np.ndarray, frame: np.ndarray, key: np.ndarray, changed: int) -> float:
    """How much of ``frame`` the keyframe ``key`` moved along ``flow`` leaves unexplained (grey,
    ``float32 [h, w]`` both; ``changed``: how many pixels differ between them by more than
    ``MISMATCH_LEVELS``): the share of its pixels missed by more than ``MISMATCH_LEVELS``, or,
    when larger, that share scaled to ``MISMATCH_SHARE`` by UNEXPLAINED_SHARE of the changed
    pixels. The flow explains the frame up to ``MISMATCH_SHARE``."""
    moved = warp(key[None], flow)[0]
    wrong = np.count_nonzero(cv2.absdiff(moved, frame) > MISMATCH_LEVELS)
    changed = max(changed, CHANGE_FLOOR * frame.size)
    return max(wrong / frame.size, MISMATCH_SHARE * wrong / (UNEXPLAINED_SHARE * changed))
