"""The web page's hold on a running live session: its state, its changes, the newest picture.

    live run, output thread --publish(picture, matted)--> LiveControl.latest() (newest wins)
    web server's threads --update(changes)--> background: Compositor.set_background, the path
        --watch-background takes (swapped in at the next frame); paused, preset, model_size:
        wanted, until the run stops its pipeline between two frames and asks next_engine

The state is the four keys of ``GET /api/state``: ``background`` (a SPEC, as ``--background``
takes), ``paused``, ``preset`` and ``model_size`` (the network's longest side, px; 0 = the
model's default). A preset brings its ``[model]`` size and its ``[smoothing]``; the rest of
the run's settings (model, composite, governor) stay as the command line gave them.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from .. import config as config_module
from ..media import image_header
from ..compose import backgrounds
from ..compose.backgrounds import parse_background
from ..compose.compositor import Compositor
from ..config import Config
from ..frames import Matted
from ..runtime.engine import Engine
from ..errors import LivematteError
from ..media.images import IMAGE_SUFFIXES
from ..models.base import MAX_SIZE, MIN_SIZE

log = logging.getLogger(__name__)

STATE_KEYS = ("background", "paused", "preset", "model_size")
MAX_UPLOAD_BYTES = 20 * 1024 * 1024

class RequestError(LivematteError):
    """A request the page got wrong: ``status`` is the HTTP status to answer with, the message its one line."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Tuning:
    """What the engine runs with, as the page sees it."""

    paused: bool
    preset: str
    model_size: int


class LiveControl:
    """Thread-safe. ``build_engine(config)`` makes (and warms up) an engine for new settings;
    ``uploads``: a private folder for uploaded pictures (the caller removes it)."""

    def __init__(self, config: Config, compositor: Compositor, model_name: str,
                 build_engine: Callable[[Config], Engine], uploads: Path):
        self._config = config
        self._compositor = compositor
        self._model_name = model_name
        self._build = build_engine
        self._uploads = uploads
        self._lock = threading.Lock()
        self._background = config.output.background
        self._images: list[str] = [] if backgrounds.kind_of(self._background) else [self._background]
        self._wanted = self._running = Tuning(False, config.preset, config.model.size_for(model_name))
        self._frame = threading.Condition()
        self._latest: tuple[int, np.ndarray, Matted] | None = None  # (number, picture, matted)

    # --- the page's side (the web server's threads) ---

    def state(self) -> dict:
        with self._lock:
            wanted = self._wanted
            return {"background": self._background, "paused": wanted.paused, "preset": wanted.preset,
                    "model_size": wanted.model_size}

    def options(self) -> dict:
        """What the page offers: the presets, the pictures this run used, the model sizes."""
        with self._lock:
            images = list(self._images)
        return {"presets": list(config_module.presets()), "images": images, "model_size": [0, MIN_SIZE, MAX_SIZE]}

    def update(self, changes: object) -> dict:
        """Apply a subset of the state's keys, all checked before any is applied; -> the new state.

        RequestError (400) for unknown keys or bad values. A background is loaded here, on the
        caller's thread (a picture or a video takes a while), and handed to the compositor.
        """
        if not isinstance(changes, dict):
            raise RequestError(f"expected a JSON object with some of {', '.join(STATE_KEYS)}")
        unknown = [key for key in changes if key not in STATE_KEYS]
        if unknown:
            raise RequestError(f"unknown key {unknown[0]!r}, expected some of {', '.join(STATE_KEYS)}")
        with self._lock:
            wanted = self._wanted
        if "paused" in changes:
            if not isinstance(changes["paused"], bool):
                raise RequestError(f"paused got {changes['paused']!r}, expected true or false")
            wanted = dataclasses.replace(wanted, paused=changes["paused"])
        if "preset" in changes:
            preset = changes["preset"]
            if preset not in config_module.presets():
                raise RequestError(f"preset got {preset!r}, expected one of {', '.join(config_module.presets())}")
            size = config_module.load(preset).model.size_for(self._model_name)
            wanted = dataclasses.replace(wanted, preset=preset, model_size=size)
        if "model_size" in changes:
            size = changes["model_size"]
            if not (type(size) is int and (size == 0 or MIN_SIZE <= size <= MAX_SIZE)):
                raise RequestError(f"model_size got {size!r}, expected 0 (the model's default) or {MIN_SIZE}..{MAX_SIZE}")
            wanted = dataclasses.replace(wanted, model_size=size)
        background = None
        if "background" in changes:
            background = self._load_background(changes["background"])
        with self._lock:
            self._wanted = wanted
            if background is not None:
                self._background = background.spec
        if background is not None:
            self._compositor.set_background(background)
            log.info("background: %s (web page)", background.spec)
        return self.state()

    def upload(self, data: bytes, name: str) -> dict:
        """A picture's bytes, named ``name`` -> the background; RequestError (413, 415) for one too
        large (in bytes, or in pixels: the run's ``--max-pixels``, read from its header), of a kind
        that is not a picture, or that does not decode."""
        if len(data) > MAX_UPLOAD_BYTES:
            raise RequestError(f"the picture is {len(data):,} bytes, over the {MAX_UPLOAD_BYTES:,} allowed", 413)
        suffix = Path(name).suffix.lower()
        if suffix not in IMAGE_SUFFIXES:
            raise RequestError(f"{name!r} is not a picture, expected one of {', '.join(sorted(IMAGE_SUFFIXES))}", 415)
        try:  # before it is written or decoded
            image_header.check_data(data, repr(name))
        except image_header.TooManyPixels as e:
            raise RequestError(str(e), 413) from e
        except LivematteError as e:
            raise RequestError(str(e), 415) from e
        with self._lock:
            path = self._uploads / f"upload-{len(self._images) + 1}{suffix}"
            path.write_bytes(data)
            self._images.append(str(path))
        try:
            return self.update({"background": str(path)})
        except RequestError as e:
            with self._lock:
                self._images.remove(str(path))
            path.unlink(missing_ok=True)
            raise RequestError(str(e).replace(str(path), repr(name)), 415) from e

    def _load_background(self, spec: object):
        if not isinstance(spec, str) or not spec.strip():
            raise RequestError(f"background got {spec!r}, expected a SPEC such as color:#1e88e5, blur:25, transparent")
        spec = spec.strip()
        with self._lock:
            known = spec in self._images
        # The page may name any kind of background, but a picture only if this run already used it
        # (the --background it started with, or an upload): it cannot make the server read other files.
        if not known and backgrounds.kind_of(spec) is None:
            raise RequestError(f"background {spec!r} is not one of {backgrounds.describe()}, "
                               "nor a picture this run used; upload it")
        try:
            return parse_background(spec)
        except LivematteError as e:
            raise RequestError(str(e)) from e

    def latest(self) -> tuple[int, np.ndarray, Matted] | None:
        """The newest (number, picture, matted) published, or None before the first."""
        with self._frame:
            return self._latest

    def wait_newer(self, number: int, timeout: float) -> tuple[int, np.ndarray, Matted] | None:
        """The newest frame once it is newer than ``number``; None after ``timeout`` seconds."""
        with self._frame:
            self._frame.wait_for(lambda: self._latest is not None and self._latest[0] > number, timeout)
            latest = self._latest
        return latest if latest is not None and latest[0] > number else None

    # --- the run's side (its output thread) ---

    def publish(self, picture: np.ndarray, matted: Matted) -> None:
        """The picture just sent and its matted frame (neither is changed afterwards: references only)."""
        with self._frame:
            number = self._latest[0] + 1 if self._latest is not None else 1
            self._latest = (number, picture, matted)
            self._frame.notify_all()

    def wants_change(self) -> bool:
        with self._lock:
            return self._wanted != self._running

    def next_engine(self, engine: Engine, hold: Callable[[Callable[[], bool]], None]) -> Engine:
        """Between two pipelines: wait out a pause (holding the last frame), then build the engine
        for a new preset or model size on a helper thread while the output holds. -> the engine for
        the next pipeline (the same one when only the pause changed)."""
        with self._lock:
            wanted = self._wanted
        if wanted.paused:
            log.info("paused (web page)")
            with self._lock:
                self._running = dataclasses.replace(self._running, paused=True)
            hold(lambda: not self.state()["paused"])
            with self._lock:
                wanted = self._wanted
            if wanted.paused:  # the run was stopped while paused
                return engine
            log.info("resumed (web page)")
        running = self._running
        if (wanted.preset, wanted.model_size) != (running.preset, running.model_size):
            engine = self._rebuilt(wanted, hold)
        with self._lock:
            self._running = wanted
        return engine

    def _rebuilt(self, wanted: Tuning, hold) -> Engine:
        preset = config_module.load(wanted.preset)
        model = dataclasses.replace(self._config.model, size=wanted.model_size, sizes={})
        settings = dataclasses.replace(self._config, preset=wanted.preset, model=model, smoothing=preset.smoothing)
        built: dict = {}

        def build():
            try:
                built["engine"] = self._build(settings)
            except BaseException as e:  # raised on the run's thread below
                built["error"] = e

        worker = threading.Thread(target=build, name="livematte-web-rebuild", daemon=True)
        worker.start()
        hold(lambda: not worker.is_alive())
        worker.join()
        if "error" in built:
            raise built["error"]
        log.info("preset %s, model size %s (web page)", wanted.preset, wanted.model_size or "default")
        return built["engine"]
