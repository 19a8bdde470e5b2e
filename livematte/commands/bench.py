"""``livematte bench``: end-to-end figures for the real pipeline, one preset beside another.

    livematte bench [--source PATH] [--preset NAME ...] [--frames N] [--encode] [--realtime]
                    [--cores N] [--adapt on|off] [--max-cpu PERCENT]
                    [--json PATH] [--plot PATH] [--model NAME] [--model-dir PATH] ...

For each preset (default: ``live`` and ``offline``), in one process and on the
same source, the run every command makes (:func:`livematte.runtime.run.run`: the real
:class:`~livematte.runtime.pipeline.Pipeline`, :class:`~livematte.runtime.engine.Engine` and
:class:`~livematte.runtime.output.Outputs`) plays it with the preset's model,
smoothing, refinement and background into the null sink, or with ``--encode``
into the file sink (H.264 MP4 in a temporary folder, deleted afterwards, with
the preset's crf and x264 preset).
Model loading and the engine's warm-up (three blank frames, as ``livematte
live`` does) happen before the clock starts; ``load_s`` reports them.

Modes:

- default (throughput): frames go through as fast as the pipeline takes them,
  bounded queues, nothing dropped, like ``livematte video``. It has no latency
  to report: the decoder runs ahead, and a frame's time from decode to output is
  mostly its wait in the full queues behind earlier frames, as long as their
  depth makes it. Latency and the ``wait_*`` stages are left out.
- ``--realtime``: the source is played at its own frame rate, newest frame
  wins, like a camera in ``livematte live``: latency and dropped frames are the
  live figures; fps cannot exceed the source's. The live governor runs as in
  ``livematte live`` (``--adapt``, ``--max-cpu``).

``--cores N`` runs on N of the machine's cores (as ``taskset -c 0`` does for one):
a slower machine on demand, to check what the governor holds there.

Source: ``--source`` takes any video file; the first ``--frames`` frames are
used (fewer if the clip is shorter, never looped). Without it the built-in
synthetic clip is used (:mod:`livematte.sources.synthetic`): 1280x720, 30 fps, 300
frames of a drawn figure moving over a textured, panning background, generated
deterministically once into ``<cache>/bench_clip.mp4``. It exercises every
stage at a realistic size, but the model's cost and the matte's look depend on
content: real footage of people gives the representative figures.

Figures per preset: per-stage milliseconds per frame (the stages of
:class:`~livematte.runtime.stats.Stats` plus ``decode``, timed in the capture thread
around the decoder, colour conversion included), end-to-end fps, with
``--realtime`` latency (capture to output) percentiles, the process's CPU use
over the run and its resident memory. Stages run on parallel threads, so their
sum is more than the time between two output frames; ``wait_*`` stages are time
spent waiting, not working. CPU and memory are the whole process's (every thread, the runtime's
own pools included); RSS is the peak sampled every 50 ms during the run, and
includes whatever earlier runs in the same process did not give back.

``--json PATH`` writes::

    {
      "machine": {"cpu": str,            # CPU model name
                  "cores": int,          # logical CPUs this process may use (--cores, taskset)
                  "python": str,         # e.g. "3.11.2"
                  "livematte": str},     # livematte's version
      "source": {"path": str,            # the video read
                 "builtin": bool,        # true for the built-in synthetic clip
                 "width": int, "height": int,
                 "fps": float,           # the source's frame rate
                 "frames": int | null},  # frames the file declares (null: not stated)
      "settings": {"frames": int,        # --frames asked for
                   "realtime": bool,     # --realtime
                   "encode": bool},      # --encode
      "runs": [                          # one per preset, in the order given
        {"preset": str,
         "model": str,                   # backend name: "rvm", "modnet", "selfie" or "bshm"
         "device": str,                  # e.g. "CPU (OpenVINO bf16)"
         "sink": str,                    # "null" or "file"
         "frames": int,                  # frames composited (each with its own matte)
         "frames_in": int,               # frames the source delivered
         "fps": float,                   # composited frames per second, first to last output
         "latency_ms": {"p50": float, "p95": float, "p99": float} | null,  # capture -> output;
                                         # null in throughput mode (no latency to report)
         "stages_ms": {name: float},     # mean ms per frame: decode, wait_capture, prepare,
                                         # wait_model, model, smoothing, refine, composite, sink
                                         # (wait_*: --realtime only, time waiting, not working)
         "cpu_percent": float,           # process CPU over the run; 100 = one core busy
         "cpu_ms_per_frame": float,      # process CPU time (user + system) / frames
         "rss_mb": float,                # peak resident memory during the run, MiB
         "dropped": int,                 # frames dropped (realtime only; 0 in throughput mode)
         "load_s": float,                # model load + warm-up, before the clock starts
         "elapsed_s": float,             # the timed run, first frame in to sink closed
         "reused": int,                  # frames whose matte was the last model result moved to them
         "model_calls_per_s": float,     # model calls per second
         "result_age": {"p50", "p95"},   # frames from a result's input to the frame it mattes
         "governor": dict | null,        # --realtime: level now, last window, timeline (see Stats)
         "outputs": dict | null}         # --encode --realtime: the recording on its own thread, as
                                         # in live: {name: {fps, written, dropped, repeated, taken}}
      ]
    }

``--plot PATH`` writes a PNG (:mod:`livematte.commands.bench_plot`; needs matplotlib, the ``plot``
extra: ``pip install "livematte[plot]"``): each frame's latency in output order for every
preset, and a stacked bar of the working stages' ms per frame.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import logging
import os
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..sources.capture import FileSource
from ..errors import LivematteError
from ..machine import available_cores
from ..media.atomic import write_atomically
from .bench_plot import require_matplotlib, write_plot
from .bench_report import STAGES, WORK_STAGES, format_table, machine
from ..sources.synthetic import builtin_clip

log = logging.getLogger(__name__)

DEFAULT_PRESETS = ("live", "offline")



# ---------------------------------------------------------------------------------------------
# Measuring


class _MemorySampler:
    """Peak RSS of this process, sampled on a thread every ``interval`` s while running."""

    def __init__(self, process, interval: float = 0.05):
        self.process, self.interval = process, interval
        self.peak = process.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="livematte-bench-rss", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, self.process.memory_info().rss)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.process.memory_info().rss)
        return False


@dataclass
class RunResult:
    """One preset's figures (``to_json`` is the schema's ``runs`` entry) and its per-frame latencies."""

    preset: str
    model: str
    device: str
    sink: str
    frames: int
    frames_in: int
    fps: float
    latency_ms: dict[str, float] | None  # None in throughput mode: no latency to report
    stages_ms: dict[str, float]
    cpu_percent: float
    cpu_ms_per_frame: float
    rss_mb: float
    dropped: int
    load_s: float
    elapsed_s: float
    reused: int = 0
    model_calls_per_s: float = 0.0
    result_age: dict | None = None
    governor: dict | None = None
    outputs: dict | None = None
    latencies: list[float] = field(default_factory=list, repr=False)

    def to_json(self) -> dict:
        return {
            "preset": self.preset, "model": self.model, "device": self.device, "sink": self.sink,
            "frames": self.frames, "frames_in": self.frames_in, "fps": self.fps, "latency_ms": self.latency_ms,
            "stages_ms": self.stages_ms, "cpu_percent": self.cpu_percent,
            "cpu_ms_per_frame": self.cpu_ms_per_frame, "rss_mb": self.rss_mb, "dropped": self.dropped,
            "load_s": self.load_s, "elapsed_s": self.elapsed_s, "reused": self.reused,
            "model_calls_per_s": self.model_calls_per_s, "result_age": self.result_age, "governor": self.governor,
            "outputs": self.outputs,
        }


def _percentiles(values: list[float]) -> dict[str, float]:
    data = np.array(values) if values else np.zeros(1)
    return {f"p{q}": round(float(np.percentile(data, q)), 1) for q in (50, 95, 99)}


def run_preset(config, source_path: str, *, frames: int, realtime: bool, encode: bool, workdir: Path) -> RunResult:
    """One timed run of the real pipeline for ``config`` (a loaded preset) on ``source_path``."""
    import psutil

    from .. import assembly, sinks
    from ..runtime.output import progress_bar
    from ..runtime.run import run
    from ..runtime.stats import Stats

    with contextlib.ExitStack() as stack:
        loading = time.perf_counter()
        compositor = assembly.compositor(config)
        stack.callback(compositor.close)
        # Played as a camera, the run is governed as ``livematte live`` governs it.
        governed = realtime and config.live.adapt
        loaded = assembly.load_models(config, stack, governed=governed)
        matter = loaded.matter
        stats = Stats(window=max(2000, frames + 16))
        # Decode time is measured on the capture thread, as the ``decode`` stage.
        source = FileSource(source_path, realtime=realtime, on_decode=lambda ms: stats.stage("decode", ms))
        stack.callback(source.close)
        engine = assembly.live_engine(config, loaded, source, compositor, governed=governed)
        stats.governor = engine.governor
        load_s = time.perf_counter() - loading
        kind = sinks.FILE if encode else sinks.NULL
        # Played as a camera, the recording is on its own thread at the source's rate, as in ``livematte live``.
        sink = assembly.sink(kind, config, source.width, source.height, source.info.rate,
                             output=workdir / f"{config.preset}.mp4", audio=None if realtime else source.audio,
                             live=realtime)
        if hasattr(sink, "figures"):
            stats.add_output(sink.thread.name, sink.figures)
        total = min(frames, source.info.frame_count or frames)
        process = psutil.Process()
        with _MemorySampler(process) as memory:
            process.cpu_percent(None)  # starts psutil's interval
            cpu_before = process.cpu_times()
            started = time.perf_counter()
            stats.started = started
            with sink:
                # As ``livematte live`` plays a camera (``--realtime``), or as ``livematte video`` runs.
                run(source, engine, compositor, sink, live=realtime, paced=realtime, max_frames=frames, stats=stats,
                    progress=None if realtime else progress_bar(total, f"bench {config.preset}"))
            elapsed = time.perf_counter() - started
            cpu_after = process.cpu_times()
            cpu_percent = process.cpu_percent(None)
    snap = stats.snapshot()
    done = max(snap["composited"], 1)
    cpu_s = (cpu_after.user - cpu_before.user) + (cpu_after.system - cpu_before.system)
    stages = {name: snap["stages_ms"][name] for name in STAGES if name in snap["stages_ms"]}
    stages.update({k: v for k, v in snap["stages_ms"].items() if k not in stages})
    latencies = stats.latencies()
    if not realtime:
        # Flat out, a frame's time from decode to output is its wait in the full queues behind
        # earlier frames (wait_*): the queues' depth, not the pipeline's latency.
        stages = {k: v for k, v in stages.items() if not k.startswith("wait_")}
        latencies = []
    return RunResult(
        preset=config.preset, model=matter.name, device=matter.device, sink=kind.name,
        frames=snap["composited"], frames_in=snap["frames_in"], fps=snap["fps"],
        latency_ms=_percentiles(latencies) if realtime else None, stages_ms=stages,
        cpu_percent=round(cpu_percent, 1), cpu_ms_per_frame=round(cpu_s * 1e3 / done, 2),
        rss_mb=round(memory.peak / 2**20, 1), dropped=snap["dropped"], load_s=round(load_s, 2),
        elapsed_s=round(elapsed, 2), reused=snap["reused"], model_calls_per_s=snap["model_calls_per_s"],
        result_age=snap["result_age"],
        governor=snap.get("governor"), outputs=snap.get("outputs"), latencies=latencies,
    )


@contextlib.contextmanager
def use_cores(count: int):
    """Run this process (and the threads it starts) on the first ``count`` of its cores while
    inside, as ``taskset`` would: a machine with fewer cores, for checking what the governor
    holds there. 0 leaves them as they are."""
    allowed = sorted(os.sched_getaffinity(0))
    if count:
        os.sched_setaffinity(0, allowed[:count])
    try:
        yield
    finally:
        os.sched_setaffinity(0, allowed)


@dataclass(frozen=True)
class BenchJob:
    presets: tuple[str, ...] = DEFAULT_PRESETS
    source: str | None = None
    frames: int = 300
    encode: bool = False
    realtime: bool = False
    json_path: Path | None = None
    plot_path: Path | None = None
    model_overrides: dict = field(default_factory=dict)
    live_overrides: dict = field(default_factory=dict)
    cores: int = 0  # run on the first N of the cores this process may use (a slower machine); 0 = all


def run_bench(job: BenchJob) -> dict:
    """Run every preset, print the table, write ``--json``/``--plot``; -> the JSON document."""
    from .. import config as configs

    if job.frames < 1:
        raise LivematteError(f"--frames got {job.frames}, expected 1 or more")
    if not job.presets:
        raise LivematteError("no preset to run")
    # Everything the user can get wrong is checked before any model loads.
    loaded = [configs.load(name, None, {"model": job.model_overrides, "live": job.live_overrides})
              for name in job.presets]
    if job.cores > available_cores():
        raise LivematteError(f"--cores got {job.cores}, expected 1..{available_cores()} (the cores this process may use)")

    if any(config.model.name == "bshm" for config in loaded):
        from ..models import bshm

        bshm.require_extra()
    if job.plot_path is not None:
        require_matplotlib()
    if job.source is not None:
        from ..media.reading import probe

        info = probe(job.source)
        source_path, builtin = str(job.source), False
    else:
        source_path, builtin = str(builtin_clip()), True
        from ..media.reading import probe

        info = probe(source_path)
    document = {
        "machine": {**machine(), "cores": job.cores or available_cores()},
        "source": {"path": source_path, "builtin": builtin, "width": info.width, "height": info.height,
                   "fps": round(info.fps, 3), "frames": info.frame_count},
        "settings": {"frames": job.frames, "realtime": job.realtime, "encode": job.encode},
        "runs": [],
    }
    results = []
    with use_cores(job.cores), tempfile.TemporaryDirectory(prefix="livematte-bench-") as tmp:
        for config in loaded:
            log.info("bench: preset %s", config.preset)
            result = run_preset(config, source_path, frames=job.frames, realtime=job.realtime, encode=job.encode,
                                workdir=Path(tmp))
            results.append(result)
            document["runs"].append(result.to_json())
            gc.collect()
    print(format_table(document))
    if job.json_path is not None:
        write_atomically(job.json_path, (json.dumps(document, indent=2) + "\n").encode("utf-8"))
    if job.plot_path is not None:
        write_plot(job.plot_path, results, document, WORK_STAGES)
    return document


def main(args: argparse.Namespace) -> int:
    """``livematte bench``."""
    from ..media.outpaths import check_outputs
    from .options import model_overrides

    check_outputs([args.source] if args.source else [], [args.json, args.plot], overwrite=args.overwrite)

    run_bench(BenchJob(presets=tuple(args.preset or DEFAULT_PRESETS), source=args.source, frames=args.frames,
                   encode=args.encode, realtime=args.realtime, json_path=args.json, plot_path=args.plot,
                   model_overrides=model_overrides(args), cores=args.cores,
                   live_overrides={"adapt": None if args.adapt is None else args.adapt == "on",
                                   "max_cpu": args.max_cpu}))
    return 0
