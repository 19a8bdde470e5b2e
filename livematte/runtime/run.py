"""One run: source -> engine -> pipeline -> outputs, the same for every command.

    source --frames--> Pipeline (capture, prepare, infer threads; engine) --Matted--> output_loop
    (caller's thread: Outputs -> compositor, sink, alpha writer) -> Stats

``live``, ``video``, ``demo``, ``bench`` and the soak and peer-comparison scripts
all call :func:`run`: what the benchmark measures is the code users run. The
caller opens (and afterwards closes) the source, the sink and the matte writer,
and builds the engine; the run owns the threads and joins them before it returns.
"""

from __future__ import annotations

import threading
from typing import Callable, Iterator, Protocol

import numpy as np

from ..compose.compositor import Compositor
from ..frames import Matted
from .engine import Engine
from .output import Outputs, hold, output_loop
from .pipeline import Pipeline
from .stats import Stats


class Control(Protocol):
    """What drives a live run from outside (the web page, :mod:`livematte.web`).

    ``publish`` is called on the output thread with every fresh picture sent and its Matted; it
    only hands references over. ``wants_change`` is asked between frames: True ends the
    pipeline (its threads joined), and the run asks ``next_engine(engine, hold)`` for the
    engine of the next one; meanwhile ``hold(until)`` sends the last frame again at the output
    rate until ``until()`` is true (or the run is stopped).
    """

    def publish(self, picture: np.ndarray, matted: Matted) -> None: ...

    def wants_change(self) -> bool: ...

    def next_engine(self, engine: Engine, hold: Callable[[Callable[[], bool]], None]) -> Engine: ...


class _Resumable:
    """``source``, whose ``frames()`` goes on where the last pipeline left it (one pass, not a
    new one each time)."""

    def __init__(self, source):
        self._source = source
        self._frames: Iterator | None = None

    def __getattr__(self, name):
        return getattr(self._source, name)

    def frames(self) -> Iterator:
        if self._frames is None:
            self._frames = self._source.frames()
        while True:
            # Not ``yield from``: closing this generator (a pipeline ending) must not close the source's.
            try:
                item = next(self._frames)
            except StopIteration:
                return
            yield item


def run(source, engine: Engine, compositor: Compositor, sink, *, live: bool, paced: bool = False,
        out_fps: float | None = None, max_frames: int | None = None, alpha_writer=None,
        stop: threading.Event | None = None, stats: Stats | None = None, stats_every: float | None = None,
        progress=None, audio_ends_with_video: bool = False, control: Control | None = None) -> Stats:
    """Play ``source`` through ``engine`` into ``sink`` until it ends, ``max_frames`` are done,
    the sink quits or ``stop`` is set; -> the run's figures (``stats``, or new ones).

    live: newest-wins buffers that drop stale frames (a camera, ``--realtime``), else bounded
        queues with back-pressure (nothing dropped).
    paced: a frame goes out at least every 1.5 periods of ``out_fps`` (default: the source's
        rate), the last one again if none is ready, stamped with the output clock.
    stats_every: seconds between lines of running figures in the log (None: none).
    progress: a :func:`~livematte.runtime.output.progress_bar`, or None.
    audio_ends_with_video: a recording's audio ends at its last frame however the run ended
        (``live``); without it, only when ``max_frames`` cut the run short (``video``).
    control: changes the run between frames (see :class:`Control`); the source, sink,
        compositor and output clock carry on across its pipelines.

    A stage's error is raised here, after every thread has stopped.
    """
    stats = stats if stats is not None else Stats()
    out_fps = out_fps or source.fps
    stop = stop if stop is not None else threading.Event()
    outputs = Outputs(compositor, sink, alpha_writer, tap=control.publish if control is not None else None)
    interrupt = None
    if control is not None:
        source = _Resumable(source)
        interrupt = lambda: stop.is_set() or control.wants_change()  # noqa: E731
    while True:
        # Each pipeline has its own stop event under a control, which ends pipelines to change them;
        # the run's ``stop`` is set before the last one joins (a camera waiting out an outage looks at it).
        ending = threading.Event() if control is not None else stop
        left = None if max_frames is None else max(0, max_frames - stats.frames_in)
        with Pipeline(source, engine, stats, live=live, max_frames=left, max_lag=2.0 / source.fps,
                      stop=ending) as pipeline:
            output_loop(pipeline, outputs, paced=paced, out_fps=out_fps, stats_every=stats_every,
                        progress=progress, interrupt=interrupt)
            again = control is not None and not stop.is_set() and not sink.wants_quit and control.wants_change()
            if not again:
                stop.set()
        if not again:
            break
        engine = control.next_engine(engine, lambda until: hold(outputs, stats, out_fps,
                                                                lambda: until() or stop.is_set()))
        if stop.is_set() or sink.wants_quit:
            break
    if audio_ends_with_video or (max_frames is not None and stats.composited >= max_frames):
        outputs.end_audio(out_fps)
    return stats
