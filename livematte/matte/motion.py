"""Motion-compensated reuse: the last model result moved with the picture to a frame without a model call.

Between two model calls the governor (:mod:`livematte.runtime.governor`) lets frames reuse the
last result. A frame-old matte is right where the person is still and a ghost where they
move fast (a swing moves ~85 px a frame at 720p), so the result is moved first: dense
optical flow (OpenCV's DIS, ultrafast preset) from the frame to the keyframe, both grey at
one size (:data:`FLOW_SIDE`, whatever the network's), then the keyframe's planes are remapped
along it, resampled to their size (:func:`flow_at`). The backend's
own full-resolution finish then puts the edges on this frame's picture.
"""

from __future__ import annotations

import cv2
import numpy as np


class MotionEstimator:
    """Flow from each frame back to the last keyframe; owned by one thread (the prepare thread).

    Two measurements, and the one that explains the frame better is kept (:func:`mismatch`):
    straight from the frame to the keyframe, and frame to frame composed back to the keyframe.
    DIS (ultrafast) follows a few px a frame closely but can fall short of a displacement of
    several frames; composed steps drift where the straight measurement holds. The figures on the
    ground-truth clips: README, Measurements behind the code.
    """

    def __init__(self):
        self._dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST)
        self._key: np.ndarray | None = None  # the keyframe's grey
        self._previous: np.ndarray | None = None  # the last frame's grey
        self._previous_to_key: np.ndarray | None = None  # its flow to the keyframe; None: it is the keyframe

    @property
    def key(self) -> np.ndarray | None:
        """The keyframe's grey, ``uint8 [h, w]``; None before the first."""
        return self._key

    def keyframe(self, grey: np.ndarray | None) -> None:
        """``grey`` (``uint8 [h, w]``) is the new keyframe; None forgets the last."""
        self._key = self._previous = grey
        self._previous_to_key = None

    def to_keyframe(self, grey: np.ndarray) -> tuple[np.ndarray, float]:
        """The next frame, ``uint8 [h, w]`` at the keyframe's size -> (``float32 [h, w, 2]``: for each
        of its pixels, the (dx, dy) in px to where it was in the keyframe; the share of its pixels
        that flow leaves unexplained, :func:`mismatch`)."""
        frame, key = grey.astype(np.float32), self._key.astype(np.float32)
        changed = np.count_nonzero(cv2.absdiff(key, frame) > MISMATCH_LEVELS)  # the same for both flows
        flows = [self._dis.calc(grey, self._key, None)]
        if self._previous_to_key is not None:
            flows.append(compose(self._dis.calc(grey, self._previous, None), self._previous_to_key))
        scored = [(mismatch(flow, frame, key, changed), flow) for flow in flows]
        wrong, flow = min(scored, key=lambda pair: pair[0])  # the straight one on a tie
        self._previous, self._previous_to_key = grey, flow
        return flow, wrong


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
    for (``float32 [h, w, 2]``, from :meth:`MotionEstimator.flow`); edges repeat outward."""
    k, height, width = planes.shape
    if flow.shape[:2] != (height, width):
        raise ValueError(f"flow is {flow.shape[1]}x{flow.shape[0]}, the planes {width}x{height}")
    grid_x, grid_y = _grid(height, width)
    map_x = grid_x + flow[..., 0]
    map_y = grid_y + flow[..., 1]
    # remap moves every channel of an interleaved image at once: the planes go through as one image.
    stacked = np.ascontiguousarray(planes.transpose(1, 2, 0))
    moved = cv2.remap(stacked, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return np.ascontiguousarray(moved.reshape(height, width, k).transpose(2, 0, 1))


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

# A flow explains a frame when the keyframe moved along it matches the frame: at most this share
# of pixels differs by more than MISMATCH_LEVELS grey levels. A frame it does not explain (a jump,
# a swing the flow loses) gets a model call of its own. The share is what paid on the nine
# ground-truth clips: a much better matte than no check, where a strict share sends most frames to
# the model and buys nothing (README: Measurements behind the code).
MISMATCH_LEVELS = 24
MISMATCH_SHARE = 0.15
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
