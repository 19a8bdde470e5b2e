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
order): :mod:`livematte.foreground` applies them at full resolution where the matte is soft.
Measured on the nine composited clips with the network at 384x216: MAD 3.6
against 4.2 for the whole model fed 704x396 at ratio 0.5, and 9% less model time.
"""

from __future__ import annotations

import io
import logging
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from ..errors import LivematteError, error_line
from .base import GuidedMatte, ModelSettings, scaled_size
from . import weights

if TYPE_CHECKING:
    import onnx

log = logging.getLogger(__name__)

_STATE_NAMES = ("r1i", "r2i", "r3i", "r4i")
_STATE_OUTPUTS = ("r1o", "r2o", "r3o", "r4o")
_INITIAL_STATE = tuple(np.zeros((1, 1, 1, 1), np.float32) for _ in _STATE_NAMES)
_RATIO_ONE = np.ones(1, np.float32)

DEFAULT_SIZE = 512  # RVM's own choice for video: the network sees at most 512 px
RUNTIMES = ("auto", "openvino", "onnxruntime")


class RVMMatter:
    name = "rvm"
    description = f"Robust Video Matting MobileNetV3, ONNX ({weights.RVM_PACKAGE})"
    guided = True  # finish applies the coefficients to the frame's full-resolution guide
    # Measured on the real model: OpenVINO refuses a side below 5 px (the three chained 2x2
    # ceil-mode AveragePools that shrink the input for the decoder leave ceil(side / 4) px for
    # the last one, whose kernel needs 2); onnxruntime takes 1x1. Any side from 5 works on both,
    # odd ones included: no multiple is needed (the decoder crops its upsampled maps).
    min_side = 5
    still_size = 768  # a still image has no frame budget: at 768 px RVM matches BSHM's masks best

    def __init__(self, settings: ModelSettings):
        self.path = resolve_weights(settings)
        self.size = settings.size or DEFAULT_SIZE
        runtime = settings.runtime
        if runtime not in RUNTIMES:
            raise LivematteError(f"unknown runtime {runtime!r}, expected one of {', '.join(RUNTIMES)}")
        if runtime == "auto":
            runtime = "onnxruntime" if _has_cuda_onnxruntime() or not _has_openvino() else "openvino"
        self._runner = (_OpenVinoRunner if runtime == "openvino" else _OnnxRunner)(self.path, settings.threads)

    # --- the registry's questions, answered without loading anything ---

    @staticmethod
    def install() -> str | None:
        return None  # onnxruntime and OpenVINO are the core install

    @staticmethod
    def local_weights() -> Path | None:
        """The cached ``.onnx``, or None."""
        path = weights.rvm_cached_path()
        return path if path.is_file() else None

    @staticmethod
    def fetch(timeout: float) -> Path:
        path = weights.rvm_cached_path()
        if path.is_file():
            weights.verify(path, weights.RVM_SHA256)
            return path
        return weights.fetch_rvm(timeout)

    @staticmethod
    def names_its_weights(model_dir: Path | None) -> str | None:
        """An ``.onnx`` given as ``--model-dir`` is RVM's: -> the reason ``auto`` takes RVM, else None."""
        if model_dir is not None and Path(model_dir).suffix == ".onnx":
            return f"--model-dir {model_dir} is an ONNX file"
        return None

    @staticmethod
    def auto(settings: ModelSettings) -> tuple[bool, None]:
        """``auto``'s last choice: RVM runs on the core install and fetches its own weights."""
        return True, None

    # --- the loaded model ---

    @property
    def device(self) -> str:
        return self._runner.device  # may change: onnxruntime falls back from CUDA to the CPU

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
        a, b, next_state = self._runner.run(feeds)
        return coefficients_matte(a, b), next_state

    def finish(self, matte: GuidedMatte, frame_bgr: np.ndarray, full_guide: np.ndarray,
               refine: str = "bilinear") -> np.ndarray:
        """RVM's last step, cut from its graph: the coefficients applied to the frame's own guide.
        ``refine`` is not used: the guided filter places the edges itself."""
        return apply_coefficients(matte.a, matte.b, full_guide)

    def close(self) -> None:
        """Release the runtime's session or compiled model; safe to call twice."""
        self._runner.close()


def coefficients_matte(a: np.ndarray, b: np.ndarray) -> GuidedMatte:
    """The refiner's ``A``, ``b`` (``float32 [4, h, w]``: R, G, B, alpha) -> a GuidedMatte with the
    colour coefficients in BGR order and RVM's residual (``fgr = residual + src``) folded into ``A``."""
    return GuidedMatte(a[3], b[3], a[2::-1] + np.float32(1), np.ascontiguousarray(b[2::-1]))


def apply_coefficients(a: np.ndarray, b: np.ndarray, full_guide: np.ndarray) -> np.ndarray:
    """Guided-filter coefficients (``float32 [h, w]``) -> ``float32 [H, W]`` alpha in [0, 1]
    at the guide's size: ``resize(a) * guide + resize(b)``, about 1 ms at 720p."""
    height, width = full_guide.shape
    alpha = cv2.resize(a, (width, height), interpolation=cv2.INTER_LINEAR)
    alpha *= full_guide
    alpha += cv2.resize(b, (width, height), interpolation=cv2.INTER_LINEAR)
    return np.clip(alpha, 0.0, 1.0, out=alpha)


def _has_openvino() -> bool:
    import importlib.util

    return importlib.util.find_spec("openvino") is not None


def _has_cuda_onnxruntime() -> bool:
    import onnxruntime as ort

    return "CUDAExecutionProvider" in ort.get_available_providers()


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


def _run_failed(path: Path, feeds: dict, error: Exception) -> LivematteError:
    """A failed model run as one line naming the model file and the input size."""
    height, width = feeds["src"].shape[2:]
    return LivematteError(f"running {path} at {width}x{height} failed: {error_line(error, last=True)}")


class _OnnxRunner:
    """onnxruntime: CUDA when onnxruntime-gpu finds a GPU, else CPU in float32."""

    def __init__(self, path: Path, threads: int):
        import onnxruntime as ort

        self.model_bytes = _coefficient_model(path)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            options.intra_op_num_threads = threads
        # Spinning worker threads would steal the cores that decode, refinement and
        # compositing need between two model calls.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider")
                     if p in ort.get_available_providers()]
        self.path, self.options = path, options
        self.session = self._load(providers)

    def _load(self, providers: list[str]):
        import onnxruntime as ort

        try:
            session = ort.InferenceSession(self.model_bytes, self.options, providers=providers)
        except Exception as e:  # onnxruntime raises its own untyped errors
            raise LivematteError(f"cannot load {self.path} as an ONNX model: {error_line(e, last=True)}") from e
        self.on_gpu = session.get_providers()[0] == "CUDAExecutionProvider"
        self.device = "GPU (onnxruntime CUDA)" if self.on_gpu else "CPU (onnxruntime float32)"
        return session

    def run(self, feeds: dict) -> tuple[np.ndarray, np.ndarray, tuple[np.ndarray, ...]]:
        """-> the refiner's ``A`` and ``b`` (``float32 [4, h, w]``: R, G, B, alpha) and the next state."""
        try:
            a, b, *state = self.session.run(None, feeds)
        except Exception as e:  # onnxruntime's untyped errors; on CUDA mostly out of memory
            if not self.on_gpu:
                raise _run_failed(self.path, feeds, e) from e
            log.warning("CUDA run of %s failed (%s); continuing on the CPU", self.path, error_line(e, last=True))
            self.session = self._load(["CPUExecutionProvider"])
            return self.run(feeds)
        return a[0], b[0], tuple(state)

    def close(self) -> None:
        """onnxruntime has no close: dropping the session frees it (and its GPU memory)."""
        self.session = None


class _OpenVinoRunner:
    """OpenVINO on the CPU, in bfloat16 where the CPU has it.

    Measured on a 2-core AVX512-BF16 machine (whole model, 768x432 at ratio 0.5):
    26 ms against onnxruntime's 37 ms, with the same matte quality on the
    composited clips (MAD 3.48 vs 3.46, dtSSD 3.15 vs 3.14).
    """

    def __init__(self, path: Path, threads: int):
        import openvino as ov
        from openvino.frontend import FrontEndManager

        core = ov.Core()
        capabilities = core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")
        precision = "bf16" if "BF16" in capabilities else "f32"
        config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": precision}
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        model_bytes = _coefficient_model(path)
        try:
            # The ONNX frontend itself: read_model would try every frontend in turn, and
            # TensorFlow's prints its parse errors straight to stderr.
            frontend = FrontEndManager().load_by_framework("onnx")
            model = frontend.convert(frontend.load(io.BytesIO(model_bytes)))
            self.compiled = core.compile_model(model, "CPU", config)
        except Exception as e:  # OpenVINO's RuntimeError with long multi-line texts
            raise LivematteError(f"cannot compile {path} for the CPU: {error_line(e, last=True)}") from e
        self.request = self.compiled.create_infer_request()
        self.path = path
        self.device = f"CPU (OpenVINO {precision})"

    def run(self, feeds: dict) -> tuple[np.ndarray, np.ndarray, tuple[np.ndarray, ...]]:
        """-> the refiner's ``A`` and ``b`` (``float32 [4, h, w]``: R, G, B, alpha) and the next state."""
        try:
            results = self.request.infer(feeds)
            # Copies: the request reuses its output buffers on the next call.
            a, b = (np.array(results[i][0]) for i in (0, 1))
            state = tuple(np.array(results[i]) for i in range(2, 2 + len(_STATE_OUTPUTS)))
        except Exception as e:  # OpenVINO's RuntimeError (a shape it cannot take) with a many-line text
            raise _run_failed(self.path, feeds, e) from e
        return a, b, state

    def close(self) -> None:
        """Drop the request and the compiled model, which OpenVINO frees with its last reference."""
        self.request = self.compiled = None


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
