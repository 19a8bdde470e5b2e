"""Switching the background while running: a watched text file holds the background SPEC.

The spec is parsed on the watcher's own thread, because parsing may fetch a URL (up to
``net.TIMEOUT_S``) or open a video: the output thread keeps compositing over the current
background meanwhile and takes the new one at its next frame (see ``Compositor.set_background``).
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

from .backgrounds import parse_background

from .compositor import Compositor
from ..errors import LivematteError

log = logging.getLogger(__name__)

THREAD_NAME = "livematte-background-watcher"


class BackgroundWatcher:
    """Applies the SPEC held by the text file ``path`` to ``compositor``, then again whenever it changes.

    A context manager. Entering reads the file once and hands its background over before
    returning (the next ``composite`` shows it), then
    starts one daemon thread that checks the file's modification time and size every
    ``interval`` seconds and loads a changed spec. A missing or empty file or a bad spec is
    one warning and keeps the current background. Exiting stops and joins the thread; a
    load in progress is waited for (a URL: at most ``net.TIMEOUT_S``; a video: one decoding
    pass through it), then closed, not handed over.
    """

    def __init__(self, path: str | os.PathLike, compositor: Compositor, interval: float = 0.5):
        if not interval > 0:
            raise LivematteError(f"background watch interval must be positive, got {interval}")
        self.path, self.compositor, self.interval = Path(path), compositor, interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._seen: tuple[int, int] | None = None  # (mtime in ns, size) of the file as last read

    def __enter__(self) -> BackgroundWatcher:
        self._check(force=True)
        self._thread = threading.Thread(target=self._run, name=THREAD_NAME, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        self.close()
        return False

    def close(self) -> None:
        """Stop watching and join the thread (idempotent)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._check()

    def _check(self, force: bool = False) -> None:
        """Load the file's spec if it changed since it was last read (or ``force``)."""
        # Stat before reading: a write that lands in between shows up at the next check.
        seen = self._stamp()
        if seen == self._seen and not force:
            return
        self._seen = seen
        try:
            spec = self._read_spec()
            background = parse_background(spec)
        except LivematteError as e:
            log.warning("kept the current background: %s", e)
            return
        if self._stop.is_set():  # exiting: nobody will render it
            background.close()
            return
        self.compositor.set_background(background)
        log.info("background: %s", spec)

    def _stamp(self) -> tuple[int, int] | None:
        """(mtime in ns, size) of the file, None when it cannot be seen. Both, because two
        writes within one tick of the file system's clock share an mtime."""
        try:
            status = os.stat(self.path)
        except OSError:
            return None
        return status.st_mtime_ns, status.st_size

    def _read_spec(self) -> str:
        try:
            spec = self.path.read_text(encoding="utf-8").strip()
        except FileNotFoundError as e:
            raise LivematteError(f"{self.path}: no such file") from e
        except UnicodeDecodeError as e:
            raise LivematteError(f"{self.path} is not UTF-8 text") from e
        except OSError as e:
            raise LivematteError(f"cannot read {self.path}: {e.strerror or e}") from e
        if not spec:
            raise LivematteError(f"{self.path} is empty")
        return spec
