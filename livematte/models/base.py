"""The interface every matting backend implements.

A backend is split into two steps so that the engine can double-buffer:
``prepare`` (colour order and layout of a picture the engine has already
resized and padded; cheap, runs on a helper thread for frame N+1) and ``infer``
(the model itself, for frame N). Temporal state goes in and comes out of
``infer`` explicitly; backends keep none of their own, so the caller decides
when to reset it (a new stream, a new size, a scene cut).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol

import cv2
import numpy as np

from ..frames import GuidedMatte
from ..matte.refine import upsample


# The range of an explicit model size (longest side, px). At 32 px RVM's encoder (output stride
# 16) is already down to 2 px of features across: smaller, no matte is left to find. 4096 is
# DCI 4K's width: a larger network input buys nothing on real video and only exhausts memory.
MIN_SIZE, MAX_SIZE = 32, 4096


@dataclass(frozen=True)
class ModelSettings:
    """How to build a backend.

    name: ``auto`` or a backend's name (``bshm``, ``rvm``, ``modnet``, ``selfie``).
    model_dir: a local copy of the weights (a ModelScope snapshot folder or a ``.pb`` for bshm,
        a ``.onnx`` for rvm and modnet, a ``.tflite`` or a folder of them for selfie); None
        means the cache.
    size: the model's input is resized so its longest side is ``size`` pixels
        (the matte is brought back to the frame's size); 0 is the backend's
        default: the frame as it is for bshm, 512 px for rvm (RVM's own
        choice for video) and modnet; otherwise ``MIN_SIZE..MAX_SIZE``. selfie's
        network has fixed input sizes and takes no ``size``.
    sizes: backend name -> its own ``size``, for models that need another than ``size`` (MODNet
        loses its edges below 512 px where RVM holds them): see :meth:`size_for`. A later layer of
        settings (a config file, ``--model-size``) that sets ``size`` alone clears it
        (:data:`RESETS`), so the size asked for last is the size every model gets.
    threads: CPU threads for the model; 0 lets the runtime choose.
    runtime: ``auto`` or, for rvm and modnet, ``openvino`` (CPU, bf16 where supported) or
        ``onnxruntime`` (CPU float32, or CUDA with onnxruntime-gpu); for selfie ``litert`` or
        ``opencv``. ``auto`` is each backend's best choice here.
    download_timeout: seconds allowed for fetching missing weights.
    """

    RESETS: ClassVar[dict[str, str]] = {"size": "sizes"}

    name: str = "auto"
    model_dir: Path | None = None
    size: int = 0
    sizes: dict[str, int] = field(default_factory=dict)
    threads: int = 0
    runtime: str = "auto"
    download_timeout: float = 300.0

    def __post_init__(self):
        # Names are checked by models.load, which lists the choices; numbers here, because a
        # negative thread count reaches TensorFlow's C++ and aborts the process.
        for what, size in (("size", self.size), *((f"sizes.{k}", v) for k, v in self.sizes.items())):
            if not (isinstance(size, int) and (size == 0 or MIN_SIZE <= size <= MAX_SIZE)):
                raise ValueError(f"{what} got {size!r}, expected 0 (the backend's default) or {MIN_SIZE}..{MAX_SIZE}")
        if not (isinstance(self.threads, int) and 0 <= self.threads <= 1024):
            raise ValueError(f"threads got {self.threads!r}, expected a whole number 0..1024")
        if not 0 < self.download_timeout < float("inf"):
            raise ValueError(f"download_timeout got {self.download_timeout!r}, expected seconds > 0")

    def size_for(self, backend: str) -> int:
        """The input size (longest side, px; 0 = the backend's default) for the backend named."""
        return self.sizes.get(backend, self.size)


class Matter(Protocol):
    name: str
    description: str  # one line: what it is, for ``livematte models``
    device: str  # where it runs, for the log
    guided: bool  # infer returns a GuidedMatte rather than an alpha: finish wants the full-size guide
    # The smallest height and width (px) the network takes. The engine pads a smaller
    # input up to it (edge pixels repeated) and crops the output back, so a backend
    # sees no side below it and any frame from 1x1 up can be matted.
    min_side: int
    # Whether the engine's downscale to input_size averages areas (cv2.INTER_AREA) rather than
    # sampling bilinearly: the networks trained on clean downscales lose edges on an aliased one.
    antialias: bool
    # Whether its soft edge is a segmentation's ramp rather than a matte of real mixed pixels:
    # ``--foreground auto`` then keeps the frame's own colours (there is no mix to undo).
    segmentation: bool

    def input_size(self, width: int, height: int, size: int | None = None) -> tuple[int, int]:
        """(width, height) the model is fed for a frame of this size, before padding to min_side.
        ``size``: the longest side asked for this frame (the live governor's level), None for the
        backend's own; a backend whose network takes one fixed size ignores it."""

    def prepare(self, image_bgr: np.ndarray) -> Any:
        """``uint8 [h, w, 3]`` BGR, already resized (and padded) by the engine -> the backend's
        own input at that same size: layout and colour order only, no resizing."""

    def initial_state(self) -> Any:
        """Temporal state for the first frame of a stream (None if stateless)."""

    def infer(self, prepared: Any, state: Any) -> tuple[np.ndarray | GuidedMatte, Any]:
        """-> (alpha ``float32 [h, w]`` in [0, 1] at the prepared (padded) size, or a GuidedMatte
        at that size; next state). The state's shape may depend on the input's size."""

    def finish(self, matte: np.ndarray | GuidedMatte, frame_bgr: np.ndarray, full_guide: np.ndarray | None,
               refine: str = "bilinear") -> np.ndarray:
        """``infer``'s matte (cropped to the frame, smoothed) -> ``float32 [H, W]`` alpha in [0, 1]
        at the frame's size. ``full_guide``: :func:`livematte.matte.refine.guide` of the frame when
        ``guided`` and already made (offline, on the prepare thread beside the model), else None (a
        guided backend then makes it band by band: :func:`livematte.matte.refine.apply_to_frame`).
        ``refine``: a :data:`livematte.matte.refine.MODES` mode, for a plain alpha."""

    def close(self) -> None:
        """Release what the model holds (sessions, compiled models); safe to call twice."""


class PlainAlpha:
    """What a backend whose ``infer`` returns a plain alpha shares: it is brought up to the
    frame's size by :func:`livematte.matte.refine.upsample`."""

    guided = False

    def finish(self, matte: np.ndarray, frame_bgr: np.ndarray, full_guide: np.ndarray | None,
               refine: str = "bilinear") -> np.ndarray:
        return upsample(matte, frame_bgr, refine)


def scaled_size(width: int, height: int, longest: int) -> tuple[int, int]:
    """Size with the longest side at most ``longest`` px, aspect kept, even sides.

    ``longest`` 0 (or a frame already that small) keeps the frame's own size.
    """
    if longest <= 0 or max(width, height) <= longest:
        return width, height
    scale = longest / max(width, height)
    # Even sides keep the model's stride-2 stages aligned with the frame.
    return max(2, round(width * scale / 2) * 2), max(2, round(height * scale / 2) * 2)


def resize_to(image: np.ndarray, size: tuple[int, int], antialias: bool = False) -> np.ndarray:
    """Resize ``image`` to ``size`` (w, h); a no-op returns the same array. ``antialias``: an area
    average (INTER_AREA) instead of bilinear sampling, for a reduction."""
    if (image.shape[1], image.shape[0]) == size:
        return image
    # INTER_AREA is cleaner for large reductions but costs several times more: backends ask for
    # it where it measured a better matte (Matter.antialias; README: Measurements behind the code).
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA if antialias else cv2.INTER_LINEAR)

