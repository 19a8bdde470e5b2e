"""``livematte bench``: end-to-end figures for the real pipeline, one preset beside another.

    livematte bench [--source PATH] [--preset NAME ...] [--frames N] [--encode] [--realtime]
                    [--json PATH] [--plot PATH] [--model NAME] [--model-dir PATH] ...

For each preset (default: ``live`` and ``offline``), in one process and on the
same source, the real :class:`~livematte.pipeline.Pipeline` runs with the
preset's model, smoothing, refinement and background through the real
:class:`~livematte.engine.Engine` and :class:`~livematte.pipeline.Outputs`,
into the null sink, or with ``--encode`` into the file sink (H.264 MP4 in a
temporary folder, deleted afterwards, with the preset's crf and x264 preset).
Model loading and the engine's warm-up (three blank frames, as ``livematte
live`` does) happen before the clock starts; ``load_s`` reports them.

Modes:

- default (throughput): frames go through as fast as the pipeline takes them,
  bounded queues, nothing dropped, like ``livematte video``. Latency then
  includes the time a frame waits in the queues behind earlier ones.
- ``--realtime``: the source is played at its own frame rate, newest frame
  wins, like a camera in ``livematte live``: latency and dropped frames are the
  live figures; fps cannot exceed the source's.

Source: ``--source`` takes any video file; the first ``--frames`` frames are
used (fewer if the clip is shorter, never looped). Without it a built-in
synthetic clip is used: 1280x720, 30 fps, 300 frames of a drawn figure moving
over a textured, panning background, generated deterministically once into
``<cache>/bench_clip.mp4`` (:func:`livematte.models.weights.cache_dir`). It
exercises every stage at a realistic size, but the model's cost and the
matte's look depend on content: real footage of people gives the
representative figures.

Figures per preset: per-stage milliseconds per frame (the stages of
:class:`~livematte.stats.Stats` plus ``decode``, timed in the capture thread
around the decoder, colour conversion included), end-to-end fps, latency
(capture to output) percentiles, the process's CPU use over the run and its
resident memory. Stages run on parallel threads, so their sum is more than the
time between two output frames; ``wait_*`` stages are time spent waiting, not
working. CPU and memory are the whole process's (every thread, the runtime's
own pools included); RSS is the peak sampled every 50 ms during the run, and
includes whatever earlier runs in the same process did not give back.

``--json PATH`` writes::

    {
      "machine": {"cpu": str,            # CPU model name
                  "cores": int,          # logical CPUs
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
         "model": str,                   # backend name: "rvm" or "bshm"
         "device": str,                  # e.g. "CPU (OpenVINO bf16)"
         "sink": str,                    # "null" or "file"
         "frames": int,                  # frames composited (each with its own matte)
         "frames_in": int,               # frames the source delivered
         "fps": float,                   # composited frames per second, first to last output
         "latency_ms": {"p50": float, "p95": float, "p99": float},  # capture -> output
         "stages_ms": {name: float},     # mean ms per frame: decode, wait_capture, prepare,
                                         # wait_model, model, smoothing, refine, composite, sink
         "cpu_percent": float,           # process CPU over the run; 100 = one core busy
         "cpu_ms_per_frame": float,      # process CPU time (user + system) / frames
         "rss_mb": float,                # peak resident memory during the run, MiB
         "dropped": int,                 # frames dropped (realtime only; 0 in throughput mode)
         "load_s": float,                # model load + warm-up, before the clock starts
         "elapsed_s": float}             # the timed run, first frame in to sink closed
      ]
    }

``--plot PATH`` writes a PNG (needs matplotlib, the ``plot`` extra: ``pip install "livematte[plot]"``):
each frame's latency in output order for every preset, and a stacked bar of
the working stages' ms per frame.
"""

from __future__ import annotations

import gc
import io
import json
import logging
import os
import platform
import tempfile
import threading
import time
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

from . import __version__
from .capture import FileSource
from .errors import LivematteError
from .media.atomic import write_atomically

log = logging.getLogger(__name__)

DEFAULT_PRESETS = ("live", "offline")
STAGES = ("decode", "wait_capture", "prepare", "wait_model", "model", "smoothing", "refine", "composite", "sink")
WORK_STAGES = tuple(s for s in STAGES if not s.startswith("wait_"))

CLIP_NAME = "bench_clip.mp4"
CLIP_WIDTH, CLIP_HEIGHT, CLIP_FPS, CLIP_FRAMES = 1280, 720, 30, 300
CLIP_SEED = 20240611


# ---------------------------------------------------------------------------------------------
# The built-in clip


def builtin_clip() -> Path:
    """The synthetic benchmark clip in the user's cache, generated on first use."""
    from .models.weights import cache_dir

    path = cache_dir() / CLIP_NAME
    if path.is_file():
        try:
            from .media.reading import probe

            info = probe(path)
            if (info.width, info.height) == (CLIP_WIDTH, CLIP_HEIGHT) and (info.frame_count or 0) >= CLIP_FRAMES:
                return path
        except LivematteError:
            pass
        log.info("regenerating %s (unreadable or not the expected clip)", path)
    log.info("generating the built-in benchmark clip %s (once)", path)
    write_clip(path)
    return path


def write_clip(path: Path, frames: int | None = None, width: int = CLIP_WIDTH, height: int = CLIP_HEIGHT,
               fps: int = CLIP_FPS) -> None:
    """Draw the synthetic clip (``CLIP_FRAMES`` frames by default) and encode it as H.264 crf 18.

    The same seed gives the same pictures; about 6 s for the full clip on 2 cores.
    """
    from .media.writing import VideoWriter

    frames = CLIP_FRAMES if frames is None else frames
    scene = _Scene(width, height, np.random.default_rng(CLIP_SEED))
    with VideoWriter(path, width=width, height=height, rate=Fraction(fps), crf=18, preset="veryfast") as writer:
        for index in range(frames):
            writer.write(scene.frame(index / fps, index), index / fps)


class _Scene:
    """A head-and-shoulders figure swaying and waving over a textured background that pans."""

    def __init__(self, width: int, height: int, rng: np.random.Generator):
        import cv2

        self.width, self.height = width, height
        self.pan = width // 8
        # Background: soft colour clouds, then shapes with hard edges (furniture, shelves).
        big_w, big_h = width + 2 * self.pan, height
        clouds = rng.integers(70, 190, (big_h // 120 + 2, big_w // 120 + 2, 3), dtype=np.uint8)
        back = cv2.resize(clouds, (big_w, big_h), interpolation=cv2.INTER_CUBIC)
        for _ in range(60):
            colour = tuple(int(c) for c in rng.integers(0, 256, 3))
            x, y = int(rng.integers(0, big_w)), int(rng.integers(0, big_h))
            w, h = int(rng.integers(20, 220)), int(rng.integers(20, 160))
            if rng.random() < 0.5:
                cv2.rectangle(back, (x, y), (x + w, y + h), colour, -1, cv2.LINE_AA)
            else:
                cv2.ellipse(back, (x, y), (w // 2, h // 2), float(rng.integers(0, 180)), 0, 360, colour, -1,
                            cv2.LINE_AA)
        fine = rng.integers(0, 24, (big_h, big_w, 1), dtype=np.uint8)
        self.background = cv2.add(cv2.GaussianBlur(back, (0, 0), 1.5), np.repeat(fine, 3, axis=2))
        # Clothing with a woven pattern; grain like a webcam's, a few fixed patterns cycled.
        yy, xx = np.mgrid[0:height, 0:width]
        weave = (((xx // 6) + (yy // 6)) % 2 * 18).astype(np.uint8)
        self.shirt = np.dstack([weave + 60, weave + 70, weave + 150]).astype(np.uint8)
        self.grain = [rng.integers(0, 6, (height, width, 3), dtype=np.uint8) for _ in range(4)]

    def frame(self, t: float, index: int) -> np.ndarray:
        import cv2

        w, h = self.width, self.height
        offset = int(self.pan * (1 + np.sin(2 * np.pi * t / 9.0)))
        image = np.ascontiguousarray(self.background[:, offset:offset + w])
        # Body: centre sways, with a faster swing in the last third (motion blur-free fast motion).
        speed = 1.0 if t < 6.5 else 2.5
        cx = int(w / 2 + 0.18 * w * np.sin(2 * np.pi * t * speed / 4.0))
        cy = int(h * 0.42 + 0.02 * h * np.sin(2 * np.pi * t / 1.7))
        head = (int(0.085 * w), int(0.16 * h))
        mask = np.zeros((h, w), np.uint8)
        shoulders = np.array([[cx - 0.2 * w, h], [cx - 0.19 * w, cy + 0.33 * h], [cx - 0.1 * w, cy + 0.22 * h],
                              [cx + 0.1 * w, cy + 0.22 * h], [cx + 0.19 * w, cy + 0.33 * h], [cx + 0.2 * w, h]],
                             np.int32)
        cv2.fillPoly(mask, [shoulders], 255, cv2.LINE_AA)
        # A waving arm between seconds 3 and 6.5: a thin moving structure.
        if 3.0 <= t < 6.5:
            angle = np.pi * (0.35 + 0.15 * np.sin(2 * np.pi * t * 1.5))
            elbow = (int(cx + 0.19 * w), int(cy + 0.2 * h))
            hand = (int(elbow[0] + 0.2 * h * np.cos(angle)), int(elbow[1] - 0.3 * h * np.sin(angle)))
            cv2.line(mask, (int(cx + 0.17 * w), int(cy + 0.34 * h)), elbow, 255, int(0.06 * h), cv2.LINE_AA)
            cv2.line(mask, elbow, hand, 255, int(0.05 * h), cv2.LINE_AA)
        a = mask.astype(np.float32)[:, :, None] * np.float32(1 / 255)
        image = (image * (1 - a) + self.shirt * a).astype(np.uint8)
        cv2.rectangle(image, (cx - int(0.03 * w), cy + head[1] - 10), (cx + int(0.03 * w), cy + int(0.24 * h)),
                      (120, 150, 200), -1, cv2.LINE_AA)
        tilt = 8.0 * np.sin(2 * np.pi * t / 3.0)
        cv2.ellipse(image, (cx, cy), head, tilt, 0, 360, (125, 160, 215), -1, cv2.LINE_AA)
        cv2.ellipse(image, (cx, cy - head[1] // 3), (head[0] + 6, int(head[1] * 0.75)), tilt, 180, 360,
                    (30, 35, 45), -1, cv2.LINE_AA)
        for side in (-1, 1):
            eye = (int(cx + side * 0.3 * head[0]), int(cy + 0.05 * head[1]))
            cv2.circle(image, eye, 6, (40, 30, 30), -1, cv2.LINE_AA)
        cv2.ellipse(image, (cx, int(cy + 0.5 * head[1])), (int(0.3 * head[0]), 8), 0, 0, 180, (60, 60, 150), 3,
                    cv2.LINE_AA)
        return cv2.add(image, self.grain[index % len(self.grain)])


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
    latency_ms: dict[str, float]
    stages_ms: dict[str, float]
    cpu_percent: float
    cpu_ms_per_frame: float
    rss_mb: float
    dropped: int
    load_s: float
    elapsed_s: float
    latencies: list[float] = field(default_factory=list, repr=False)

    def to_json(self) -> dict:
        return {
            "preset": self.preset, "model": self.model, "device": self.device, "sink": self.sink,
            "frames": self.frames, "frames_in": self.frames_in, "fps": self.fps, "latency_ms": self.latency_ms,
            "stages_ms": self.stages_ms, "cpu_percent": self.cpu_percent,
            "cpu_ms_per_frame": self.cpu_ms_per_frame, "rss_mb": self.rss_mb, "dropped": self.dropped,
            "load_s": self.load_s, "elapsed_s": self.elapsed_s,
        }


def _percentiles(values: list[float]) -> dict[str, float]:
    data = np.array(values) if values else np.zeros(1)
    return {f"p{q}": round(float(np.percentile(data, q)), 1) for q in (50, 95, 99)}


def run_preset(config, source_path: str, *, frames: int, realtime: bool, encode: bool, workdir: Path) -> RunResult:
    """One timed run of the real pipeline for ``config`` (a loaded preset) on ``source_path``."""
    import psutil

    from . import models
    from .compositor import Compositor, parse_background
    from .engine import Engine
    from .pipeline import Outputs, Pipeline, Progress, run_live, run_offline
    from .sinks import NullSink
    from .stats import Stats

    loading = time.perf_counter()
    compositor = Compositor(parse_background(config.output.background))
    matter = models.load(config.model)
    stats = Stats(window=max(2000, frames + 16))
    # Decode time is measured on the capture thread, as the ``decode`` stage.
    source = FileSource(source_path, realtime=realtime, on_decode=lambda ms: stats.stage("decode", ms))
    engine = Engine(matter, config.smoothing, config.refine)
    engine.warm_up(source.width, source.height)
    load_s = time.perf_counter() - loading

    if encode:
        from .sinks.file import FileSink

        sink = FileSink(workdir / f"{config.preset}.mp4", source.width, source.height, source.info.rate,
                        audio=None if realtime else source.audio, crf=config.output.crf,
                        preset=config.output.preset)
    else:
        sink = NullSink()
    total = min(frames, source.info.frame_count or frames)
    process = psutil.Process()
    try:
        with _MemorySampler(process) as memory:
            process.cpu_percent(None)  # starts psutil's interval
            cpu_before = process.cpu_times()
            started = time.perf_counter()
            stats.started = started
            with sink:
                pipeline = Pipeline(source, engine, stats, live=realtime, max_frames=frames,
                                    max_lag=2.0 / source.fps)
                with pipeline:
                    outputs = Outputs(compositor, sink)
                    if realtime:
                        run_live(pipeline, outputs, out_fps=source.fps, paced=True, stats_every=1e9)
                    else:
                        run_offline(pipeline, outputs, Progress(total, f"bench {config.preset}"))
            elapsed = time.perf_counter() - started
            cpu_after = process.cpu_times()
            cpu_percent = process.cpu_percent(None)
    finally:
        close = getattr(matter, "close", None)
        if close is not None:
            close()
    snap = stats.snapshot()
    done = max(snap["composited"], 1)
    cpu_s = (cpu_after.user - cpu_before.user) + (cpu_after.system - cpu_before.system)
    stages = {name: snap["stages_ms"][name] for name in STAGES if name in snap["stages_ms"]}
    stages.update({k: v for k, v in snap["stages_ms"].items() if k not in stages})
    return RunResult(
        preset=config.preset, model=matter.name, device=matter.device, sink="file" if encode else "null",
        frames=snap["composited"], frames_in=snap["frames_in"], fps=snap["fps"],
        latency_ms=_percentiles(stats.latencies()), stages_ms=stages,
        cpu_percent=round(cpu_percent, 1), cpu_ms_per_frame=round(cpu_s * 1e3 / done, 2),
        rss_mb=round(memory.peak / 2**20, 1), dropped=snap["dropped"], load_s=round(load_s, 2),
        elapsed_s=round(elapsed, 2), latencies=stats.latencies(),
    )


def machine() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count() or 1, "python": platform.python_version(), "livematte": __version__}


# ---------------------------------------------------------------------------------------------
# The command


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


def run_bench(job: BenchJob) -> dict:
    """Run every preset, print the table, write ``--json``/``--plot``; -> the JSON document."""
    from . import config as configs

    if job.frames < 1:
        raise LivematteError(f"--frames got {job.frames}, expected 1 or more")
    if not job.presets:
        raise LivematteError("no preset to run")
    # Everything the user can get wrong is checked before any model loads.
    loaded = [configs.load(name, None, {"model": job.model_overrides}) for name in job.presets]
    if any(config.model.name == "bshm" for config in loaded):
        from .models import bshm

        bshm.require_extra()
    if job.plot_path is not None:
        _require_matplotlib()
    if job.source is not None:
        from .media.reading import probe

        info = probe(job.source)
        source_path, builtin = str(job.source), False
    else:
        source_path, builtin = str(builtin_clip()), True
        from .media.reading import probe

        info = probe(source_path)
    document = {
        "machine": machine(),
        "source": {"path": source_path, "builtin": builtin, "width": info.width, "height": info.height,
                   "fps": round(info.fps, 3), "frames": info.frame_count},
        "settings": {"frames": job.frames, "realtime": job.realtime, "encode": job.encode},
        "runs": [],
    }
    results = []
    with tempfile.TemporaryDirectory(prefix="livematte-bench-") as tmp:
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
        write_plot(job.plot_path, results, document)
    return document


def format_table(document: dict) -> str:
    """The runs side by side, one column per preset."""
    source, settings, runs = document["source"], document["settings"], document["runs"]
    what = "built-in synthetic clip" if source["builtin"] else source["path"]
    mode = "realtime (played at the source's rate)" if settings["realtime"] else "throughput (as fast as possible)"
    sink = "H.264 file sink" if settings["encode"] else "null sink"
    m = document["machine"]
    lines = [f"livematte bench: {what}, {source['width']}x{source['height']} at {source['fps']:g} fps; "
             f"{mode}; {sink}",
             f"machine: {m['cpu']}, {m['cores']} logical CPUs, Python {m['python']}, livematte {m['livematte']}"]
    for run in runs:
        lines.append(f"  {run['preset']}: {run['model']} on {run['device']}, load + warm-up {run['load_s']:.1f} s")
    width = max(10, *(len(r["preset"]) + 2 for r in runs))
    rows: list[tuple[str, list[str]]] = [("", [r["preset"] for r in runs])]
    rows.append(("frames", [str(r["frames"]) for r in runs]))
    rows.append(("fps", [f"{r['fps']:.1f}" for r in runs]))
    for q in ("p50", "p95", "p99"):
        rows.append((f"latency {q} ms", [f"{r['latency_ms'][q]:.0f}" for r in runs]))
    rows.append(("dropped", [str(r["dropped"]) for r in runs]))
    names = [s for s in STAGES if any(s in r["stages_ms"] for r in runs)]
    names += sorted({s for r in runs for s in r["stages_ms"]} - set(names))
    for name in names:
        label = f"  {name} ms" + ("" if not name.startswith("wait_") else " (waiting)")
        rows.append((label, [f"{r['stages_ms'][name]:.1f}" if name in r["stages_ms"] else "-" for r in runs]))
    rows.append(("cpu %", [f"{r['cpu_percent']:.0f}" for r in runs]))
    rows.append(("cpu ms/frame", [f"{r['cpu_ms_per_frame']:.1f}" for r in runs]))
    rows.append(("rss peak MiB", [f"{r['rss_mb']:.0f}" for r in runs]))
    label_width = max(len(label) for label, _ in rows) + 2
    for label, cells in rows:
        lines.append(label.ljust(label_width) + "".join(c.rjust(width) for c in cells))
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# The plot


def _require_matplotlib():
    try:
        import matplotlib  # noqa: F401
    except ImportError as e:
        raise LivematteError('--plot needs matplotlib: pip install "livematte[plot]"') from e


def write_plot(path: Path, results: list[RunResult], document: dict) -> None:
    """Per-frame latency for every preset, and a stacked bar of the working stages (PNG)."""
    _require_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(12, 4.8), dpi=100)
    FigureCanvasAgg(figure)
    latency, stages = figure.subplots(1, 2, gridspec_kw={"width_ratios": [2, 1]})
    for result in results:
        latency.plot(range(len(result.latencies)), result.latencies, linewidth=1,
                     label=f"{result.preset} (p50 {result.latency_ms['p50']:.0f} ms)")
    latency.set_xlabel("output frame")
    latency.set_ylabel("latency, capture to output (ms)")
    latency.set_title("Per-frame latency")
    latency.set_ylim(bottom=0)
    latency.grid(alpha=0.3)
    latency.legend()

    names = [r.preset for r in results]
    bottom = np.zeros(len(results))
    for name in WORK_STAGES:
        values = np.array([r.stages_ms.get(name, 0.0) for r in results])
        if not values.any():
            continue
        stages.bar(names, values, bottom=bottom, label=name)
        bottom += values
    for x, result in enumerate(results):
        stages.annotate(f"{result.fps:.1f} fps", (x, bottom[x]), ha="center", va="bottom", fontsize=9)
    stages.set_ylabel("ms per frame (stages overlap on threads)")
    stages.set_title("Work per frame by stage")
    stages.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    source = document["source"]
    what = "built-in clip" if source["builtin"] else Path(source["path"]).name
    mode = "realtime" if document["settings"]["realtime"] else "throughput"
    figure.suptitle(f"livematte bench: {what} {source['width']}x{source['height']}, {mode}, "
                    f"{document['machine']['cores']} CPUs")
    figure.tight_layout()
    image = io.BytesIO()
    figure.savefig(image, format="png")
    write_atomically(path, image.getvalue())
