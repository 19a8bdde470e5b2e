"""Robust Video Matting (MobileNetV3, ONNX) on onnxruntime.

Tensor contract (upstream RVM export):
- ``src``: ``float32 [B, 3, H, W]`` RGB in [0, 1];
- ``r1i``..``r4i``: recurrent state, zeros ``[1, 1, 1, 1]`` for a new stream;
- ``downsample_ratio``: ``float32 [1]``;
- outputs ``fgr [B, 3, H, W]``, ``pha [B, 1, H, W]``, ``r1o``..``r4o``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from ..errors import LivematteError
from .base import ModelSettings, resize_to, scaled_size
from . import weights

log = logging.getLogger(__name__)

_STATE_NAMES = ("r1i", "r2i", "r3i", "r4i")
_INITIAL_STATE = tuple(np.zeros((1, 1, 1, 1), np.float32) for _ in _STATE_NAMES)


def auto_downsample_ratio(width: int, height: int, coarse: int = 512) -> float:
    """The coarse pass sees at most ``coarse`` px on its longest side (RVM's own rule at 512)."""
    return min(coarse / max(width, height), 1.0)


class RVMMatter:
    name = "rvm"

    def __init__(self, settings: ModelSettings):
        import onnxruntime as ort

        self.path = resolve_weights(settings)
        self.size = settings.size
        self.downsample_ratio = settings.downsample_ratio
        self.coarse = settings.coarse
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if settings.threads:
            options.intra_op_num_threads = settings.threads
        # Spinning worker threads would steal the cores that decode, refinement and
        # compositing need between two model calls.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider")
                     if p in ort.get_available_providers()]
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=providers)
        except Exception as e:  # onnxruntime raises its own untyped errors
            raise LivematteError(f"cannot load {self.path} as an ONNX model: {_first_line(e)}") from e
        names = {i.name for i in self.session.get_inputs()}
        missing = {"src", "downsample_ratio", *_STATE_NAMES} - names
        if missing:
            raise LivematteError(
                f"{self.path} is not a Robust Video Matting model (no input {', '.join(sorted(missing))})")
        self.device = "GPU" if self.session.get_providers()[0] == "CUDAExecutionProvider" else "CPU"

    def input_size(self, width: int, height: int) -> tuple[int, int]:
        return scaled_size(width, height, self.size)

    def prepare(self, image_bgr: np.ndarray) -> np.ndarray:
        """-> ``float32 [1, 3, h, w]`` RGB in [0, 1]."""
        small = resize_to(image_bgr, self.input_size(image_bgr.shape[1], image_bgr.shape[0]))
        # One pass: BGR->RGB by reversed channel index, HWC->CHW, scale.
        chw = small.transpose(2, 0, 1)[::-1]
        return np.multiply(chw, np.float32(1 / 255), dtype=np.float32)[None]

    def initial_state(self) -> tuple[np.ndarray, ...]:
        return _INITIAL_STATE

    def infer(self, prepared: np.ndarray, state) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
        h, w = prepared.shape[2:]
        ratio = self.downsample_ratio or auto_downsample_ratio(w, h, self.coarse)
        feeds = {"src": prepared, "downsample_ratio": np.array([ratio], np.float32)}
        feeds.update(zip(_STATE_NAMES, state))
        _fgr, pha, *next_state = self.session.run(None, feeds)
        return pha[0, 0], tuple(next_state)


def resolve_weights(settings: ModelSettings) -> Path:
    """The ``.onnx`` to load: ``--model-dir`` as given, else the verified cache (fetched if absent)."""
    if settings.model_dir is not None:
        path = Path(settings.model_dir)
        if path.is_dir():
            found = sorted(path.glob("*.onnx"))
            if not found:
                raise LivematteError(f"no .onnx file in {path}")
            path = found[0]
        if not path.is_file():
            raise LivematteError(f"RVM weights not found: {path}")
        return path
    path = weights.rvm_cached_path()
    if not path.is_file():
        path = weights.fetch_rvm(settings.download_timeout)
    weights.verify(path, weights.RVM_SHA256)
    return path


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[-1][:300] if text else type(error).__name__
