"""Outputs that appear under their final name only when complete.

An output is written under a hidden temporary name beside its target, in the same folder so
that the final :func:`os.replace` is atomic: ``.{stem}.partial-{pid}-{token}{suffix}`` for a file
(the same extension, so that anything keyed on it, such as a muxer's guess, still works),
``.{name}.partial-{pid}-{token}`` for a folder. The process id and a random token make the name
one run's own: two runs writing the same output at once each write their own temporary, and
the one that finishes last replaces the other's result in one step. The stem is shortened
where needed so that the temporary fits the filesystem's name limit wherever the target does.

When the output is finished it is renamed into place; when it fails or is interrupted (any
exception, ``KeyboardInterrupt`` included) the temporary is deleted. So a crash, Ctrl-C or a
full disk never leaves a truncated file under the name the user asked for. A process killed
outright (SIGKILL, a power cut) leaves its temporary behind: the next output to the same target
deletes those whose process no longer exists on this machine. (A run on another machine that
shares the folder is judged by a local process id; the worst that can befall it is that its
temporary goes and it fails with ``cannot write``, never a broken file under the final name.)

:class:`AtomicOutput` is the machinery, for writers that produce their output piece by piece
(the video writers subclass it); :func:`write_atomically` writes a whole file held in memory
(JSON, a PNG, downloaded weights). A failure to write raises :class:`LivematteError` reading
``cannot write PATH: reason``.

No PyAV or OpenCV here: this module is cheap to import.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
import shutil
from pathlib import Path

from ..errors import LivematteError
from . import PathLike

_FRAME_NAME = re.compile(r"^\d{6}\.png$")
# The end of a temporary's name, before any extension: role, process id, token.
_TAG = re.compile(r"\.(partial|old)-([1-9]\d*)-([0-9a-f]{8})$")


def _size(name: str) -> int:
    """A name's length in bytes, as the filesystem counts it."""
    return len(os.fsencode(name))


def _name_max(folder: Path) -> int:
    """The longest file name ``folder``'s filesystem takes, in bytes."""
    try:
        return os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError, AttributeError):  # no pathconf (Windows), or no answer
        return 255


def _alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this machine (another user's counts); True when unsure."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (OSError, OverflowError):  # PermissionError: it exists, as someone else's; or no pid at all
        return True
    return True


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


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
        elif target.is_dir():
            raise LivematteError(f"{target} is a folder, expected a file name")
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            self._name_max = _name_max(target.parent)
            self._partial = target.with_name(self._hidden("partial", os.getpid(), secrets.token_hex(4)))
            self._remove_stale()
            if folder:
                self._partial.mkdir()
        except OSError as e:
            raise LivematteError(f"cannot write {target}: {e.strerror or e}") from e

    def _hidden(self, role: str, pid: int, token: str) -> str:
        """This output's temporary name for ``role`` (partial, or old: a replaced folder moved aside),
        within the filesystem's name limit: the stem gives way, the extension stays."""
        stem, suffix = (self.path.name, "") if self._folder else (self.path.stem, self.path.suffix)
        tag = f".{role}-{pid}-{token}"
        if _size(f".{tag}{suffix}") >= self._name_max:  # no real extension is this long: drop it
            suffix = ""
        while stem and _size(f".{stem}{tag}{suffix}") > self._name_max:
            stem = stem[:-1]
        return f".{stem}{tag}{suffix}"

    def _remove_stale(self) -> None:
        """Delete the temporaries of this same target left by processes that no longer exist."""
        if os.name != "posix":  # os.kill(pid, 0) probes a process only on POSIX
            return
        suffix = "" if self._folder else self.path.suffix
        for entry in self.path.parent.iterdir():
            name = entry.name
            if not name.startswith("."):
                continue
            found = _TAG.search(name[:-len(suffix)] if suffix and name.endswith(suffix) else name)
            # The name this target would get for that role, pid and token: another output's is left alone.
            if found is None or name != self._hidden(found[1], int(found[2]), found[3]):
                continue
            if not _alive(int(found[2])):
                _remove(entry)

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
            if self._folder:
                self._install_folder()
            else:
                os.replace(self._partial, self.path)
        except OSError as e:
            raise LivematteError(f"cannot write {self.path}: {e.strerror or e}") from e

    def _install_folder(self) -> None:
        # A folder cannot replace a full one in one step: the old one is moved aside first. Another
        # run may install its own in between: that one is moved aside in turn (the last run wins).
        aside = self.path.with_name(self._hidden("old", os.getpid(), secrets.token_hex(4)))
        for attempt in range(10):
            _remove(aside)
            with contextlib.suppress(FileNotFoundError):
                os.replace(self.path, aside)
            try:
                os.replace(self._partial, self.path)
                break
            except OSError as e:
                if e.errno not in (errno.ENOTEMPTY, errno.EEXIST) or attempt == 9:
                    with contextlib.suppress(OSError):  # the old folder back under its name
                        os.replace(aside, self.path)
                    raise
        _remove(aside)

    def _remove_partial(self) -> None:
        _remove(self._partial)

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
