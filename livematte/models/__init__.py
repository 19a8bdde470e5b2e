"""Matting backends behind one interface, chosen by name.

:data:`BACKENDS` is the registry, name -> backend class, in the order ``livematte models``
lists them and ``auto`` prefers them. Each class says what it is for (``description``),
where its weights are (``local_weights``), what it lacks to run here (``install``), how to
fetch its weights (``fetch``), whether ``auto`` takes it (``auto``) and the network size it
wants for a still image, where no frame budget applies (``still_size``, px; 0 is its default
size); building it loads it,
and its ``close()`` lets go of what it loaded. ``--model``'s choices, ``livematte models`` and
``auto`` all come from the registry.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path

from ..errors import LivematteError
from ..machine import available_cores
from .base import Matter, ModelSettings
from .bshm import BSHMMatter
from .modnet import MODNetMatter
from .rvm import RVMMatter
from .selfie import SelfieMatter

log = logging.getLogger(__name__)

# auto takes BSHM where it can run, else RVM, which takes anything: MODNet and Selfie
# Segmentation, after it, run only when asked for by name (or a --model-dir .tflite for selfie).
BACKENDS: dict[str, type] = {cls.name: cls for cls in (BSHMMatter, RVMMatter, MODNetMatter, SelfieMatter)}
NAMES = ("auto", *BACKENDS)


@dataclass(frozen=True)
class ModelStatus:
    name: str
    description: str
    weights: Path | None
    ready: bool
    install: str | None = None  # the command that installs what it runs on, when that is missing


def backend(name: str) -> type:
    """The registered class for ``name`` (not ``auto``), or a clear error."""
    try:
        return BACKENDS[name]
    except KeyError:
        raise LivematteError(f"unknown model {name!r}, expected one of {', '.join(BACKENDS)}") from None


def status() -> list[ModelStatus]:
    """What ``livematte models`` lists: each backend, its weights and whether it can run offline."""
    listed = []
    for name, backend in BACKENDS.items():
        path, install = backend.local_weights(), backend.install()
        listed.append(ModelStatus(name, backend.description, path, path is not None and install is None, install))
    return listed


def fetch(name: str, timeout: float = 300.0) -> Path:
    """The backend's weights, downloaded (and checked) unless already here."""
    return backend(name).fetch(timeout)


def choose(settings: ModelSettings) -> tuple[str, str]:
    """Resolve ``auto``: -> (backend name, the reason, for the log).

    A ``--model-dir`` whose form names one backend's weights picks it; otherwise the first
    backend, in the registry's order, whose ``auto`` takes these settings, with the reason the
    one before it declined (RVM takes whatever is left).
    """
    if settings.name != "auto":
        return settings.name, "asked for"
    for name, backend in BACKENDS.items():
        why = backend.names_its_weights(settings.model_dir)
        if why is not None:
            return name, why
    declined = None
    for name, backend in BACKENDS.items():
        taken, why = backend.auto(settings)
        if taken:
            return name, why or declined or "the last choice"
        declined = declined or why
    raise LivematteError("no model can run here")  # unreachable: RVM takes anything


def load_fallback(name: str, settings: ModelSettings, configured: Matter) -> Matter | None:
    """The live governor's last rung, ``name`` (a faster model than ``configured``), on the same
    threads; None when there is none, or it cannot load (a warning says why).

    Its weights are fetched when missing, with at most 20 s allowed: a live start must not
    wait minutes on a network that is not there.
    """
    if not name or name == configured.name:
        return None
    threads = min(settings.threads, available_cores()) if settings.threads else 0
    try:
        return BACKENDS[name](dataclasses.replace(settings, name=name, model_dir=None, runtime="auto", threads=threads,
                                                  download_timeout=min(settings.download_timeout, 20.0)))
    except LivematteError as e:
        log.warning("live: no %s rung below %s (%s)", name, configured.name, e)
        return None


def load_copy(matter: Matter, settings: ModelSettings) -> Matter:
    """Another instance of ``matter``'s backend, built from ``settings`` (e.g. on more threads),
    without :func:`load`'s log line."""
    return BACKENDS[matter.name](dataclasses.replace(settings, name=matter.name))


def load(settings: ModelSettings) -> Matter:
    """Build the backend ``settings.name`` names, logging which one (and under -v why ``auto`` chose it)."""
    if settings.name not in NAMES:
        raise LivematteError(f"unknown model {settings.name!r}, expected one of {', '.join(NAMES)}")
    unknown = [name for name in settings.sizes if name not in BACKENDS]
    if unknown:
        raise LivematteError(f"[model] sizes names {', '.join(map(repr, unknown))}, "
                             f"expected models among {', '.join(BACKENDS)}")
    name, why = choose(settings)
    cores = available_cores()
    if settings.threads > cores:
        # More runtime threads than cores queue behind each other and slow every call (README: measurements).
        log.info("model threads %d -> %d: this process may use %d core(s)", settings.threads, cores, cores)
        settings = dataclasses.replace(settings, threads=cores)
    matter = BACKENDS[name](settings)
    # One line for the model that runs. Why ``auto`` chose it (often another backend's missing
    # extra or weights, a hint `livematte models` gives) is for -v.
    log.info("model: %s on %s", name, matter.device)
    if settings.name == "auto":
        log.debug("model: auto chose %s: %s", name, why)
    return matter
