"""Outputs that appear under their final name only when complete.

An output is written under a hidden temporary name beside its target, in the same folder so
that the final :func:`os.replace` is atomic: ``.{stem}.partial{suffix}`` for a file (the same
extension, so that anything keyed on it, such as a muxer's guess, still works), ``.{name}.partial``
for a folder. When the output is finished it is renamed into place; when it fails or is
interrupted (any exception, ``KeyboardInterrupt`` included) the temporary is deleted. So a
crash, Ctrl-C or a full disk never leaves a truncated file under the name the user asked for,
nor (short of the process being killed outright) a temporary beside it.

:class:`AtomicOutput` is the machinery, for writers that produce their output piece by piece
(the video writers subclass it); :func:`write_atomically` writes a whole file held in memory
(JSON, a PNG, downloaded weights). A failure to write raises :class:`LivematteError` reading
``cannot write PATH: reason``.

No PyAV or OpenCV here: this module is cheap to import.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from ..errors import LivematteError
from . import PathLike

_FRAME_NAME = re.compile(r"^\d{6}\.png$")


class AtomicOutput:
    """A file or folder written under a hidden temporary name beside ``path``.

    Subclasses write into ``self._partial`` and override :meth:`_finish` (flush and close
    it) and :meth:`_discard` (drop it unfinished). :meth:`close` finishes the output and
    renames it into place; :meth:`abort` (also run by ``__exit__`` when an exception
    propagates) deletes it. Both are idempotent.

    ``folder=True``: the output is a folder of numbered frames (``000000.png``...); an
    existing folder is replaced only if it holds nothing else.
    """

    def __init__(self, path: PathLike, *, folder: bool):
        self.path = Path(path)
        self._folder = folder
        self._state = "open"
        target = self.path
        if folder:
            if target.exists() and not target.is_dir():
                raise LivematteError(f"{target} exists and is not a folder; cannot write a PNG sequence there")
            if target.is_dir() and any(not _FRAME_NAME.match(p.name) for p in target.iterdir()):
                raise LivematteError(f"{target} already holds other files; choose an empty or new folder")
            self._partial = target.with_name(f".{target.name}.partial")
        else:
            if target.is_dir():
                raise LivematteError(f"{target} is a folder, expected a file name")
            # Same extension so that anything keyed on it (players, muxer guesses) still works.
            self._partial = target.with_name(f".{target.stem}.partial{target.suffix}")
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            self._remove_partial()
            if folder:
                self._partial.mkdir()
        except OSError as e:
            raise LivematteError(f"cannot write {target}: {e.strerror or e}") from e

    def _finish(self) -> None:
        """Flush and close what is being written into ``self._partial``."""

    def _discard(self) -> None:
        """Release what is being written without finishing it; must not raise."""

    def close(self) -> None:
        """Finish the output and move it to its final name."""
        if self._state != "open":
            return
        try:
            self._finish()
            self._state = "closed"
            self._install()
        except BaseException:
            self._state = "open"
            self.abort()
            raise

    def abort(self) -> None:
        """Stop and delete the unfinished output; nothing is left under the final or temporary name."""
        if self._state == "aborted":
            return
        was_open = self._state == "open"
        self._state = "aborted"
        if was_open:
            self._discard()
        self._remove_partial()

    def _install(self) -> None:
        try:
            if self._folder and self.path.is_dir():
                # A folder cannot be replaced in one step: move the old one aside first.
                aside = self.path.with_name(f".{self.path.name}.old")
                shutil.rmtree(aside, ignore_errors=True)
                os.replace(self.path, aside)
                os.replace(self._partial, self.path)
                shutil.rmtree(aside, ignore_errors=True)
            else:
                os.replace(self._partial, self.path)
        except OSError as e:
            raise LivematteError(f"cannot write {self.path}: {e.strerror or e}") from e

    def _remove_partial(self) -> None:
        if self._partial.is_dir():
            shutil.rmtree(self._partial, ignore_errors=True)
        elif self._partial.exists():
            self._partial.unlink(missing_ok=True)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def write_atomically(path: PathLike, data: bytes) -> None:
    """Write ``data`` as the whole file at ``path``, creating its folder if needed.

    The file appears under ``path`` complete, or not at all: an existing file there is
    replaced in one step, and on any failure the temporary is removed and the old file,
    if any, is left as it was. :class:`LivematteError` if it cannot be written.
    """
    with AtomicOutput(path, folder=False) as output:
        try:
            output._partial.write_bytes(data)
        except OSError as e:
            raise LivematteError(f"cannot write {output.path}: {e.strerror or e}") from e
