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

from .compositor import Compositor
from .engine import Engine
from .output import Outputs, output_loop
from .pipeline import Pipeline
from .stats import Stats


def run(source, engine: Engine, compositor: Compositor, sink, *, live: bool, paced: bool = False,
        out_fps: float | None = None, max_frames: int | None = None, alpha_writer=None,
        stop: threading.Event | None = None, stats: Stats | None = None, stats_every: float | None = None,
        progress=None, audio_ends_with_video: bool = False) -> Stats:
    """Play ``source`` through ``engine`` into ``sink`` until it ends, ``max_frames`` are done,
    the sink quits or ``stop`` is set; -> the run's figures (``stats``, or new ones).

    live: newest-wins buffers that drop stale frames (a camera, ``--realtime``), else bounded
        queues with back-pressure (nothing dropped).
    paced: a frame goes out at least every 1.5 periods of ``out_fps`` (default: the source's
        rate), the last one again if none is ready, stamped with the output clock.
    stats_every: seconds between lines of running figures in the log (None: none).
    progress: a :func:`~livematte.output.progress_bar`, or None.
    audio_ends_with_video: a recording's audio ends at its last frame however the run ended
        (``live``); without it, only when ``max_frames`` cut the run short (``video``).

    A stage's error is raised here, after every thread has stopped.
    """
    stats = stats if stats is not None else Stats()
    out_fps = out_fps or source.fps
    outputs = Outputs(compositor, sink, alpha_writer)
    with Pipeline(source, engine, stats, live=live, max_frames=max_frames, max_lag=2.0 / source.fps,
                  stop=stop) as pipeline:
        output_loop(pipeline, outputs, paced=paced, out_fps=out_fps, stats_every=stats_every, progress=progress)
        if audio_ends_with_video or (max_frames is not None and stats.composited >= max_frames):
            outputs.end_audio(out_fps)
    return stats
