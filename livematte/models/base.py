"""The interface every matting backend implements.

A backend is split into two steps so that the engine can double-buffer:
``prepare`` (resize, colour order, layout; cheap, runs on a helper thread for
frame N+1) and ``infer`` (the model itself, for frame N). Temporal state goes
in and comes out of ``infer`` explicitly; backends keep none of their own, so
the caller decides when to reset it (a new stream, a scene cut).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np


@dataclass(frozen=True)
class ModelSettings:
    """How to build a backend.

    name: ``auto``, ``bshm`` or ``rvm``.
    model_dir: a local copy of the weights (a ModelScope snapshot folder or a
        ``.pb`` for bshm, a ``.onnx`` for rvm); None means the cache.
    size: the model's input is resized so its longest side is ``size`` pixels
        (the matte is brought back to the frame's size); 0 is the backend's
        default: the frame as it is for bshm, 512 px for rvm (RVM's own
        choice for video).
    threads: CPU threads for the model; 0 lets the runtime choose.
    runtime: for rvm: ``openvino`` (CPU, bf16 where supported), ``onnxruntime``
        (CPU float32, or CUDA with onnxruntime-gpu), or ``auto``.
    download_timeout: seconds allowed for fetching missing weights.
    """

    name: str = "auto"
    model_dir: Path | None = None
    size: int = 0
    threads: int = 0
    runtime: str = "auto"
    download_timeout: float = 300.0

    def __post_init__(self):
        # Names are checked by models.load, which lists the choices; numbers here, because a
        # negative thread count reaches TensorFlow's C++ and aborts the process.
        for name, low, high in (("size", 0, 1 << 16), ("threads", 0, 1024)):
            value = getattr(self, name)
            if not (isinstance(value, int) and low <= value <= high):
                raise ValueError(f"{name} got {value!r}, expected a whole number {low}..{high}")
        if not 0 < self.download_timeout < float("inf"):
            raise ValueError(f"download_timeout got {self.download_timeout!r}, expected seconds > 0")


@dataclass(frozen=True, slots=True)
class GuidedMatte:
    """A matte whose last step is left to be done at the frame's full resolution.

    ``alpha = a * guide + b``, ``guide`` being the frame's mean of R, G and B in
    0..1 (:func:`livematte.refine.guide`) and ``a``, ``b`` (``float32 [h, w]`` at
    the model's input size) resized to the frame's size: the last step of a
    guided filter, as Robust Video Matting ends.
    """

    a: np.ndarray
    b: np.ndarray


class Matter(Protocol):
    name: str
    guided: bool  # infer returns a GuidedMatte rather than an alpha

    def input_size(self, width: int, height: int) -> tuple[int, int]:
        """(width, height) the model is fed for a frame of this size."""

    def prepare(self, image_bgr: np.ndarray) -> Any:
        """``uint8 [H, W, 3]`` BGR -> the backend's own input, at input_size."""

    def initial_state(self) -> Any:
        """Temporal state for the first frame of a stream (None if stateless)."""

    def infer(self, prepared: Any, state: Any) -> tuple[np.ndarray | GuidedMatte, Any]:
        """-> (alpha ``float32 [h, w]`` in [0, 1] at input size, or a GuidedMatte; next state)."""


def scaled_size(width: int, height: int, longest: int) -> tuple[int, int]:
    """Size with the longest side at most ``longest`` px, aspect kept, even sides.

    ``longest`` 0 (or a frame already that small) keeps the frame's own size.
    """
    if longest <= 0 or max(width, height) <= longest:
        return width, height
    scale = longest / max(width, height)
    # Even sides keep the model's stride-2 stages aligned with the frame.
    return max(2, round(width * scale / 2) * 2), max(2, round(height * scale / 2) * 2)


def resize_to(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize ``image`` to ``size`` (w, h); a no-op returns the same array."""
    if (image.shape[1], image.shape[0]) == size:
        return image
    # INTER_AREA would be cleaner for large reductions but costs 8x more at 720p
    # and measured no better matte.
    return cv2.resize(image, size, interpolation=cv2.INTER_LINEAR)

