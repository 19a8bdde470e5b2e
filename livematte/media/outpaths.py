"""Output names that never overwrite an input, nor each other, nor (without -y) anything.

Checked before any work starts (and before a model loads), so a mistyped
``-o`` costs nothing: ``livematte video a.mp4 -o a.mp4`` would otherwise
replace the user's only copy with its own result, and a second run with
yesterday's command would replace yesterday's result.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from . import net
from ..errors import LivematteError

_NAMED = 5  # existing outputs named in the error; a batch may have hundreds


def _identities(path: Path) -> set:
    """What makes two names the same file: the resolved path (symlinks and ``..`` followed),
    and for an existing file its device and inode (hard links, bind mounts)."""
    found: set = {path.resolve()}
    try:
        stat = path.stat()
        found.add((stat.st_dev, stat.st_ino))
    except OSError:  # does not exist (yet): nothing to overwrite
        pass
    return found


def check_outputs(inputs: Iterable[str | Path], outputs: Iterable[Path | None], *, overwrite: bool = False) -> None:
    """LivematteError if an output is an input (same path, same inode, or a symlink to it),
    two outputs are the same file, or (unless ``overwrite``: -y) an output exists already, naming
    every one that does. ``None`` outputs (not asked for) and URL inputs are skipped."""
    taken: dict = {}
    for source in inputs:
        if not net.is_url(str(source)):
            taken.update(dict.fromkeys(_identities(Path(source)), ("input", Path(source))))
    existing = []
    for output in (Path(o) for o in outputs if o is not None):
        identities = _identities(output)
        clash = next((taken[i] for i in identities if i in taken), None)
        if clash is not None:
            kind, other = clash
            if kind == "input":
                raise LivematteError(f"{output} is the input {other}: livematte never overwrites its input; "
                                     "choose another output name")
            raise LivematteError(f"two outputs would both be written to {output}; give them different names")
        taken.update(dict.fromkeys(identities, ("output", output)))
        if _exists(output):
            existing.append(output)
    if existing and not overwrite:
        raise LivematteError(_exist_message(existing))


def _exists(output: Path) -> bool:
    """Whether writing ``output`` would replace something: a file (a dangling link too), or a folder
    that holds anything (an empty folder, made for a PNG sequence, holds nothing to lose)."""
    try:
        return any(output.iterdir()) if output.is_dir() else os.path.lexists(output)
    except OSError:  # a folder that cannot be listed: it may hold anything
        return True


def _exist_message(existing: list[Path]) -> str:
    if len(existing) == 1:
        return f"{existing[0]} exists; add -y (--overwrite) to replace it"
    shown = ", ".join(map(str, existing[:_NAMED]))
    more = f" and {len(existing) - _NAMED} more" if len(existing) > _NAMED else ""
    return f"{len(existing)} outputs exist: {shown}{more}; add -y (--overwrite) to replace them"


def _suffix(source: str) -> str:
    """``a.MKV`` or ``http://h/a.mkv?x=1`` -> ``mkv``."""
    name = source.split("?")[0].rstrip("/") if net.is_url(source) else source
    return Path(name).suffix.lower().lstrip(".")


def unique_stems(sources: Sequence[str], stem_of: Callable[[str], str]) -> list[str]:
    """One output stem per input, all different.

    Inputs that share a stem get their extension added (``a.mkv``, ``a.mp4`` ->
    ``a_mkv``, ``a_mp4``); any that still clash (the same name in two places) are
    numbered (``a_1``, ``a_2``), in input order.
    """
    stems = [stem_of(s) for s in sources]
    shared = Counter(stems)
    stems = [f"{stem}_{_suffix(s)}" if shared[stem] > 1 and _suffix(s) else stem
             for s, stem in zip(sources, stems)]
    shared = Counter(stems)
    seen: Counter = Counter()
    unique = []
    for stem in stems:
        if shared[stem] > 1:
            seen[stem] += 1
            stem = f"{stem}_{seen[stem]}"
        unique.append(stem)
    return unique
