"""BSHM (Boosting Semantic Human Matting), ModelScope ``damo/cv_unet_image-matting``.

A TensorFlow 1 frozen graph, run with TensorFlow 2 through ``tf.compat.v1`` as
ModelScope's own pipeline does. Contract:
- ``input_image:0``: ``float [H, W, 3]`` **RGB, 0..255**, any size;
- ``output_png:0``: ``uint8 [H, W, 4]`` RGBA; the matte is channel 3.
The graph is stateless: every frame is matted on its own.

TensorFlow and ModelScope are the ``bshm`` extra (``pip install "livematte[bshm]"``), not
part of the core install: :func:`missing_extra` says, without importing either, whether
they are there.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import os
import socket
import threading
import time
from pathlib import Path

import numpy as np

from ..errors import LivematteError, error_line
from .base import ModelSettings, PlainAlpha, scaled_size
from .quiet import notices_to_debug_log

log = logging.getLogger(__name__)

MODEL_ID = "damo/cv_unet_image-matting"
GRAPH_FILE = "tf_graph.pb"
INPUT_TENSOR = "input_image:0"
OUTPUT_TENSOR = "output_png:0"

INSTALL = 'pip install "livematte[bshm]"'
NO_TENSORFLOW = f"BSHM runs on TensorFlow: {INSTALL}"
NO_MODELSCOPE = f"BSHM's weights come from the ModelScope hub, through the modelscope package: {INSTALL}"


def _installed(module: str) -> bool:
    """Whether ``module`` can be imported, found without importing it (TensorFlow takes seconds)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # ValueError: in sys.modules without a __spec__
        return False


def missing_extra(*, hub: bool = False) -> str | None:
    """None when BSHM can run (and, with ``hub``, fetch its weights); else the one line saying
    what to install. Imports nothing."""
    if not _installed("tensorflow"):
        return NO_TENSORFLOW
    if hub and not _installed("modelscope"):
        return NO_MODELSCOPE
    return None


def require_extra(*, hub: bool = False) -> None:
    """:class:`LivematteError` with :func:`missing_extra`'s line when the ``bshm`` extra is missing."""
    reason = missing_extra(hub=hub)
    if reason is not None:
        raise LivematteError(reason)


def find_local_weights(model_dir: Path | None) -> Path | None:
    """The ``tf_graph.pb`` from ``model_dir`` (a snapshot folder or a .pb) or the ModelScope cache."""
    if model_dir is not None:
        path = Path(model_dir)
        return path / GRAPH_FILE if path.is_dir() else path
    if cached_graph() is None or not _installed("modelscope"):
        return None
    try:
        from modelscope.hub.snapshot_download import snapshot_download

        snapshot = snapshot_download(MODEL_ID, local_files_only=True)
    except Exception:  # modelscope raises its own CacheNotFound and friends
        return None
    graph = Path(snapshot) / GRAPH_FILE
    return graph if graph.is_file() else None


def cached_graph() -> Path | None:
    """A graph in some folder of ModelScope's cache named after the model, or None.

    Importing modelscope costs a quarter second at every start, so it is asked
    only when this cheap look (valid for every cache layout it has used) finds one;
    without modelscope, this look is all there is to say that weights are here.
    """
    cache = Path(os.environ.get("MODELSCOPE_CACHE") or Path.home() / ".cache" / "modelscope")
    for depth in range(1, 4):
        for folder in cache.glob("*/" * depth + "*cv_unet_image-matting*"):
            if folder.is_dir():
                for graph in folder.rglob(GRAPH_FILE):
                    return graph
    return None


def download(timeout: float) -> Path:
    """Fetch the snapshot from the ModelScope hub, giving up after ``timeout`` seconds; a hub that
    does not answer at all is a one-line error within :data:`PROBE_SECONDS`."""
    require_extra(hub=True)
    from modelscope.hub.snapshot_download import snapshot_download

    # Offline, the hub client retries for many seconds, logging each retry, before it fails: ask
    # first, once, whether the hub answers at all.
    unreachable = _unreachable(_hub_endpoints(), min(timeout, PROBE_SECONDS))
    if unreachable:
        raise LivematteError(_cannot_download(unreachable))
    result: dict = {}

    def worker():
        try:
            with _hub_log_quiet():
                result["path"] = snapshot_download(MODEL_ID)
        except Exception as e:  # reported below as one line
            result["error"] = e

    log.info("downloading %s from the ModelScope hub", MODEL_ID)
    # A daemon thread lets us stop waiting without leaving the process hanging at exit.
    thread = threading.Thread(target=worker, name="bshm-download", daemon=True)
    thread.start()
    thread.join(timeout)
    if "path" in result:
        return Path(result["path"]) / GRAPH_FILE
    reason = f"no answer in --download-timeout {timeout:g} s" if thread.is_alive() else error_line(result.get("error"))
    raise LivematteError(_cannot_download(reason[:160]))


PROBE_SECONDS = 5.0


def _cannot_download(reason: str) -> str:
    return (f"cannot download BSHM weights {MODEL_ID} ({reason}); download them elsewhere and pass "
            f"--model-dir DIR (the folder with {GRAPH_FILE}), or use --model rvm")


def _hub_endpoints() -> list[str]:
    """The hub's address as modelscope resolves it; without one set (MODELSCOPE_ENDPOINT,
    MODELSCOPE_DOMAIN), also the international site, which recent clients fall back to."""
    from modelscope.hub.api import HubApi

    endpoints = [HubApi().endpoint]
    if not (os.environ.get("MODELSCOPE_ENDPOINT") or os.environ.get("MODELSCOPE_DOMAIN")):
        endpoints.append("https://www.modelscope.ai")
    return list(dict.fromkeys(endpoints))


def _unreachable(endpoints: list[str], timeout: float) -> str | None:
    """None when some endpoint answers HTTP at all (any status, through the user's proxy settings)
    within ``timeout`` seconds; else why the first did not, in a few words."""
    import urllib.error
    import urllib.request
    from urllib.parse import urlsplit

    faults: dict[str, str] = {}  # endpoint -> why it did not answer; "" when it did
    answered = threading.Event()

    def silent(url: str) -> str:
        return f"no answer from {urlsplit(url).hostname or url} in {timeout:g} s"

    def ask(url: str) -> None:
        host = urlsplit(url).hostname or url
        try:
            urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout).close()
            faults[url] = ""
            answered.set()
        except urllib.error.HTTPError:
            faults[url] = ""  # it answered
            answered.set()
        except (OSError, ValueError) as e:  # URLError is an OSError; ValueError: a malformed endpoint
            reason = getattr(e, "reason", e)
            if isinstance(reason, socket.gaierror):
                faults[url] = f"cannot resolve {host}: no network?"
            elif isinstance(reason, TimeoutError):
                faults[url] = silent(url)
            else:
                faults[url] = f"cannot reach {host}: {getattr(reason, 'strerror', None) or reason}"

    # getaddrinfo takes no timeout: each endpoint is asked on a daemon thread, all at once, until
    # one answers, all have failed, or the time is up.
    threads = [threading.Thread(target=ask, args=(url,), daemon=True) for url in endpoints]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + timeout
    while not answered.is_set() and any(t.is_alive() for t in threads) and time.monotonic() < deadline:
        answered.wait(0.05)
    if answered.is_set():
        return None
    return faults.get(endpoints[0]) or silent(endpoints[0])


@contextlib.contextmanager
def _hub_log_quiet():
    """ModelScope's loggers at ERROR meanwhile (DEBUG under -v): their timestamped retry warnings
    are not the user's to act on; the outcome is livematte's one line."""
    if log.isEnabledFor(logging.DEBUG):
        yield
        return
    loggers = [logging.getLogger(name) for name in list(logging.root.manager.loggerDict)
               if name.split(".")[0] in ("modelscope", "modelscope_hub")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


class BSHMMatter(PlainAlpha):
    name = "bshm"
    description = f"BSHM portrait matting, TensorFlow ({MODEL_ID})"
    # guided = False (PlainAlpha): its alpha comes out whole, at the input's size
    # Not measured: the real weights are out of reach here. The model is a U-Net (ModelScope's
    # name for it), and U-Nets halve their input up to five times (output stride 32): 32 px
    # keeps the deepest features at least 1x1. Only frames under 32 px are padded at all.
    min_side = 32
    still_size = 0  # the image as it is, as for video
    antialias = False  # not measured: the real weights are out of reach here
    segmentation = False

    def __init__(self, settings: ModelSettings):
        require_extra()  # before any download: weights are no use without TensorFlow
        self.path = find_local_weights(settings.model_dir) or download(settings.download_timeout)
        self.size = settings.size
        if not self.path.is_file():
            raise LivematteError(f"BSHM graph not found: {self.path}")
        _check_snapshot_config(self.path.parent)
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        try:
            with _quiet_tensorflow_start():
                import tensorflow as tf
        except ImportError as e:  # installed, but broken (a missing library, a numpy it was not built for)
            raise LivematteError(f"cannot import TensorFlow ({error_line(e)}); BSHM runs on it: {INSTALL}") from e

        graph_def = tf.compat.v1.GraphDef()
        try:
            graph_def.ParseFromString(self.path.read_bytes())
        except Exception as e:  # protobuf's DecodeError
            raise LivematteError(f"{self.path} is not a TensorFlow frozen graph ({error_line(e)})") from e
        graph = tf.Graph()
        with graph.as_default():
            try:
                tf.compat.v1.import_graph_def(graph_def, name="")
            except Exception as e:  # ValueError for unknown ops or bad references
                raise LivematteError(f"cannot import the graph in {self.path}: {error_line(e)}") from e
        try:
            self.input = graph.get_tensor_by_name(INPUT_TENSOR)
            self.output = graph.get_tensor_by_name(OUTPUT_TENSOR)
        except KeyError as e:
            raise LivematteError(
                f"{self.path} is not a BSHM graph: it has no tensor {INPUT_TENSOR} or {OUTPUT_TENSOR}") from e
        dims = self.input.shape.as_list() if self.input.shape.rank is not None else None
        if dims is not None and (len(dims) != 3 or dims[:2] != [None, None] or dims[2] not in (None, 3)):
            raise LivematteError(f"{self.path} is not a BSHM graph: {INPUT_TENSOR} has shape {dims}, "
                                 "expected [H, W, 3] for any H and W")
        self.graph, self.threads = graph, settings.threads
        # One session for the life of the process: creating one costs far more than a frame.
        with _quiet_tensorflow_start():
            self.session = tf.compat.v1.Session(graph=graph, config=_session_config(settings.threads, gpu=True))
            self.device = "GPU" if tf.config.list_physical_devices("GPU") else "CPU"

    # --- the registry's questions, answered without loading anything ---

    @staticmethod
    def install() -> str | None:
        """The command that installs what BSHM runs on and fetches with, when that is missing."""
        return INSTALL if missing_extra(hub=True) is not None else None

    @staticmethod
    def local_weights() -> Path | None:
        """The graph in ModelScope's cache, or None."""
        if missing_extra(hub=True) is None:
            return find_local_weights(None)
        return cached_graph()  # without modelscope, the cheap look in its cache is all there is

    @staticmethod
    def fetch(timeout: float) -> Path:
        # Weights without TensorFlow to run them are of no use: say so before downloading.
        require_extra(hub=True)
        return find_local_weights(None) or download(timeout)

    @staticmethod
    def names_its_weights(model_dir: Path | None) -> str | None:
        """BSHM's snapshot folder or .pb says nothing by its form alone: ``auto`` looks inside."""
        return None

    @staticmethod
    def auto(settings: ModelSettings) -> tuple[bool, str]:
        """Whether ``auto`` takes BSHM (its weights are here and it can run) -> (taken, why)."""
        missing = missing_extra()
        if missing is not None:
            # Nothing of TensorFlow or ModelScope is imported on this path.
            if settings.model_dir is not None:
                given = find_local_weights(settings.model_dir)
                if given is not None and given.is_file():  # BSHM weights named on the command line
                    raise LivematteError(f"--model-dir {settings.model_dir} holds BSHM weights, but {missing}")
            if cached_graph() is not None:
                return False, f"BSHM weights are in ModelScope's cache, but {missing}"
            return False, f"BSHM is not installed: {INSTALL}"
        path = find_local_weights(settings.model_dir)
        if path is not None and path.is_file():
            return True, f"BSHM weights found at {path}"
        return False, "BSHM weights not found locally (`livematte models fetch bshm` downloads them)"

    # --- the loaded model ---

    def input_size(self, width: int, height: int, size: int | None = None) -> tuple[int, int]:
        return scaled_size(width, height, self.size if size is None else size)

    def prepare(self, image_bgr: np.ndarray) -> np.ndarray:
        """``uint8 [h, w, 3]`` BGR at the model's input size -> ``float32 [h, w, 3]`` RGB in 0..255."""
        return image_bgr[:, :, ::-1].astype(np.float32)

    def initial_state(self) -> None:
        return None

    def infer(self, prepared: np.ndarray, state: None) -> tuple[np.ndarray, None]:
        rgba = self._run(prepared)
        if rgba.ndim != 3 or rgba.shape[2] != 4:
            raise LivematteError(f"{self.path}: output_png has shape {rgba.shape}, expected [H, W, 4]")
        return rgba[:, :, 3].astype(np.float32) * np.float32(1 / 255), None

    def _run(self, prepared: np.ndarray) -> np.ndarray:
        """The graph on one frame. Out of GPU memory, the session moves to the CPU for good
        (a frame too big once stays too big) and the frame is tried again there."""
        import tensorflow as tf

        try:
            return self.session.run(self.output, {self.input: prepared})
        except tf.errors.ResourceExhaustedError as e:
            if self.device != "GPU":
                raise LivematteError(f"out of memory running {self.path} at {_size(prepared)}; "
                                     "try a smaller --model-size") from e
        except (tf.errors.OpError, ValueError) as e:  # a graph that breaks the contract only when run
            raise LivematteError(f"running {self.path} at {_size(prepared)} failed: {_op_error_line(e)}") from e
        log.warning("GPU out of memory running %s at %s; continuing on the CPU", self.path, _size(prepared))
        self.session.close()
        self.session = tf.compat.v1.Session(graph=self.graph, config=_session_config(self.threads, gpu=False))
        self.device = "CPU"
        return self._run(prepared)

    def close(self) -> None:
        """Release the TensorFlow session (a second call does nothing)."""
        self.session.close()


def _session_config(threads: int, *, gpu: bool):
    import tensorflow as tf

    config = tf.compat.v1.ConfigProto(allow_soft_placement=True)
    config.gpu_options.allow_growth = True  # share the GPU with the rest of the desktop
    if not gpu:
        config.device_count["GPU"] = 0
    if threads:
        config.intra_op_parallelism_threads = threads
        config.inter_op_parallelism_threads = 1
    return config


def _op_error_line(error: Exception) -> str:
    """TensorFlow's many-line error text -> the one line that says what went wrong."""
    noise = ("Graph execution error", "Detected at node", "Node:", "[[", "File ")
    lines = [line.strip() for line in str(getattr(error, "message", error)).splitlines()]
    lines = [line for line in lines if line and not line.startswith(noise)]
    return lines[-1][:300] if lines else type(error).__name__


def _size(prepared: np.ndarray) -> str:
    """``[h, w, 3]`` model input -> ``"WxH"``."""
    return f"{prepared.shape[1]}x{prepared.shape[0]}"


# What TensorFlow's C++ prints on stderr while starting, whatever TF_CPP_MIN_LOG_LEVEL says: the
# oneDNN notice ("... round-off errors ...") and, with the CUDA-enabled wheel on a machine without
# a GPU, "Could not find cuda drivers" and an E-level "failed call to cuInit". None is a problem
# for livematte, which logs the device it runs on; they go to the debug log instead.
_START_UP_NOISE = ("oneDNN custom operations are on", "All log messages before absl::InitializeLog() is called",
                   "Could not find cuda drivers", "failed call to cuInit", "TF-TRT Warning",
                   "Unable to register cu", "computation placer already registered")


def _quiet_tensorflow_start():
    """TensorFlow's start-up notices (:data:`_START_UP_NOISE`) to the debug log, the rest to stderr."""
    return notices_to_debug_log(_START_UP_NOISE, "tensorflow")


def _check_snapshot_config(folder: Path) -> None:
    """A snapshot's configuration.json, when present, must be readable JSON."""
    config = folder / "configuration.json"
    if config.is_file():
        try:
            json.loads(config.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as e:
            raise LivematteError(f"{config} is not valid JSON: {e}") from e
