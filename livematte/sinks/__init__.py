"""Where composited frames go. Every sink is a context manager with an idempotent ``close()``.

``send(image, pts)`` takes ``uint8 [H, W, 3]`` BGR, or ``[H, W, 4]`` BGRA when
the sink ``accepts_alpha``. ``wants_quit`` lets an interactive sink (the
preview window) end the run.

The sinks ``live --sink NAME`` offers are listed once, in :data:`SINKS`: the command line's
choices and checks and the live job read them there, and :func:`open_sink` opens each one
(its module imported only then: a virtual camera, a window or an encoder each cost their
import). A new sink is one entry there and its module.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Callable

from ..errors import LivematteError
from .base import NullSink, Sink


@dataclass(frozen=True)
class SinkRequest:
    """What a sink may be opened with: the picture's ``width`` x ``height`` px at ``rate`` frames
    a second; ``output``: the file (``-o``); ``device``/``backend``: the virtual camera's;
    ``audio``: the source's audio feed for a file; ``kind`` and ``encoding``: the file's format
    and encoder settings (``OutputSettings.writer_options()``)."""

    width: int
    height: int
    rate: Fraction
    output: Path | None = None
    device: str | None = None
    backend: str | None = None
    audio: object = None
    kind: str | None = None
    encoding: dict = field(default_factory=dict)


def _null(request: SinkRequest) -> Sink:
    return NullSink()


def _virtual_camera(request: SinkRequest) -> Sink:
    from .vcam import VirtualCameraSink

    return VirtualCameraSink(request.width, request.height, float(request.rate), device=request.device,
                             backend=request.backend)


def _preview(request: SinkRequest) -> Sink:
    from .preview import PreviewSink

    return PreviewSink()


def _file(request: SinkRequest) -> Sink:
    from .file import FileSink

    return FileSink(request.output, request.width, request.height, request.rate, audio=request.audio,
                    kind=request.kind, **request.encoding)


def _check_display() -> None:
    from .preview import check_display

    others = [kind.name for kind in SINKS if not kind.window and not kind.page_only]
    check_display(f"{', '.join(others[:-1])} or {others[-1]}")


@dataclass(frozen=True)
class SinkKind:
    """A sink ``live --sink NAME`` offers.

    label: what it is, in words (messages). open: a :class:`SinkRequest` -> the open sink. writes_file: it
    writes ``-o FILE`` (and ``-o`` alone picks it). paced: shown at a rate (``--fps`` sets it).
    page_only: the web page is the run's only output. alpha: it can carry transparency (a file
    can, or not, by its format). window: an on-screen window (a display is checked before
    anything starts; its ``b`` key cycles backgrounds). check: what is checked before anything
    starts (None: nothing). encodes: its ``send`` converts or encodes each picture, so in a live
    run it sends on a thread of its own (:mod:`.threaded`).
    """

    name: str
    label: str
    open: Callable[[SinkRequest], Sink]
    writes_file: bool = False
    paced: bool = False
    page_only: bool = False
    alpha: bool = True
    window: bool = False
    check: Callable[[], None] | None = None
    encodes: bool = False


SINKS = (
    SinkKind("vcam", "virtual camera", _virtual_camera, paced=True, alpha=False, encodes=True),  # the default
    SinkKind("preview", "preview", _preview, paced=True, window=True, check=_check_display),
    SinkKind("file", "file", _file, writes_file=True, encodes=True),
    SinkKind("null", "null", _null),  # nothing: benchmarks, --alpha-out alone
    SinkKind("web", "web page", _null, page_only=True),  # the web page (--web) is the only output
)
NAMES = tuple(kind.name for kind in SINKS)
_BY_NAME = {kind.name: kind for kind in SINKS}
FILE = next(kind for kind in SINKS if kind.writes_file)
NULL = _BY_NAME["null"]


def sink_kind(name: str) -> SinkKind:
    """The sink called ``name``, or a LivematteError naming those there are."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise LivematteError(f"unknown sink {name!r}, expected {', '.join(NAMES[:-1])} or {NAMES[-1]}") from None


def default_sink(output: Path | None) -> SinkKind:
    """``live``'s sink when ``--sink`` is not given: the file with ``-o``, else the first listed."""
    return FILE if output is not None else SINKS[0]


def open_sink(kind: SinkKind, request: SinkRequest) -> Sink:
    """``kind`` opened for ``request``, named as listed."""
    sink = kind.open(request)
    sink.name = kind.name
    return sink
