"""Where a run's parts are put together: a config (and a source) in; the compositor, the models,
the engine and the sink out.

    config --compositor()--> Compositor (the background SPEC parsed, the light wrap)
    config --load_models()--> the model (one thread live), its fallback and its copy for waiting keyframes
    config + model --engine(), live_engine(), video_engine(), still_engine()--> Engine
    config + source --sink()--> an open sink (``livematte.sinks``)

Every command builds its run here (``live``, ``video``, ``image``, ``demo``, ``bench``, the
cluster's segment worker, the web page's engine rebuild) and so does every script: a
benchmark or an evaluation runs exactly what the command runs. The caller owns what it gets
(closes the models, the compositor and the sink).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from fractions import Fraction
from pathlib import Path
from typing import NamedTuple

from . import models, sinks
from .compose.backgrounds import Background, parse_background, syntax_of
from .compose.compositor import Compositor
from .config import X264_PRESETS, Config
from .errors import LivematteError
from .matte.smoothing import SmoothingSettings
from .media.formats import WEBM_CRF_MAX, alpha_kind, output_kind, vp9_speed
from .models.base import Matter, ModelSettings
from .machine import available_cores
from .models.runtimes import OnnxBackend
from .runtime.engine import Engine, WaitingModel
from .runtime.governor import Governor

log = logging.getLogger(__name__)


def compositor(config: Config, background: Background | None = None) -> Compositor:
    """The run's compositor: ``[output] background`` (or ``background``, one built elsewhere: an
    evaluation's) with ``[composite] light_wrap``."""
    return Compositor(background or parse_background(config.output.background), config.composite.light_wrap)


def background_compositor(spec: str) -> Compositor:
    """A compositor for a background SPEC alone (stills: no light wrap)."""
    return Compositor(parse_background(spec))


def is_transparent(spec: str) -> bool:
    """Whether the background SPEC makes transparent pictures; a SPEC that cannot be used (a
    missing file, a bad colour) is its LivematteError, as the run would meet it."""
    checked = background_compositor(spec)
    try:
        return checked.transparent
    finally:
        checked.close()


def opaque_hint() -> str:
    """The advice for an output that cannot carry transparency."""
    return f"use --background {syntax_of('key')}"


def check_alpha_support(compositor: Compositor, sink) -> None:
    """LivematteError when ``compositor`` makes transparent pictures that ``sink`` cannot carry."""
    if compositor.transparent and not sink.accepts_alpha:
        raise LivematteError(f"{sink.name} output cannot carry transparency: write .webm, .mov or PNGs, "
                             f"or {opaque_hint()}")


# A governed live run's model threads: one. The model runs on a thread of its own beside the frames;
# a second runtime thread waits on the first whenever the frames take its core (a 288 px RVM call
# took 82 ms on two threads in a live run on two cores, against 26 ms at the warm-up).
LIVE_MODEL_THREADS = 1

# ... except for a keyframe that waits for its call: the frame thread waits with it and the frames
# before it are mostly finished, so the call has the cores to itself. A copy of the model on two
# threads calls those where the CPU budget holds two cores (RVM at 384 px in a live run: 29
# against 39 ms a call, median, for 59 against 42 ms of CPU). Within one core's budget the
# cheaper calls win: with the copy, the default budget on two cores stepped down for CPU on
# eight clips of nine. The governor prices the copy's calls apart.
WAITING_MODEL_THREADS = 2


class Models(NamedTuple):
    """A run's models: the configured one; the governor's fallback, or None; the copy that calls
    keyframes that wait (:class:`~livematte.runtime.engine.WaitingModel`), or None."""

    matter: Matter
    fallback: Matter | None
    waiting: WaitingModel | None


def live_model_settings(config: Config) -> ModelSettings:
    """The model's settings for a governed live run: one thread (:data:`LIVE_MODEL_THREADS`)."""
    if config.model.threads != LIVE_MODEL_THREADS:
        log.debug("model threads %d -> %d: live, the model runs on a thread of its own beside the frames",
                  config.model.threads, LIVE_MODEL_THREADS)
    return dataclasses.replace(config.model, threads=LIVE_MODEL_THREADS)


def load_models(config: Config, stack: contextlib.ExitStack, *, governed: bool,
                matter: Matter | None = None) -> Models:
    """The models for ``config``, closed by ``stack``.

    governed: a live run under the governor: the model on one thread, with the configured
    fallback (``[live] fallback``) and, where the CPU budget holds two cores, a copy on two
    threads for the keyframes that wait (ONNX backends: RVM, MODNet). ``matter``: a model
    already loaded (the caller's).
    """
    settings = live_model_settings(config) if governed else config.model
    if matter is None:
        matter = models.load(settings)
        stack.callback(matter.close)
    _warn_unused_refine(config, matter)
    fallback = models.load_fallback(config.live.fallback, settings, matter) if governed else None
    if fallback is not None:
        stack.callback(fallback.close)
    waiting = None
    cores = available_cores()
    threads = min(WAITING_MODEL_THREADS, cores)
    budget = config.live.cpu_budget(cores)
    if governed and threads > 1 and (not budget or budget >= 100 * threads) and isinstance(matter, OnnxBackend):
        waiting = WaitingModel(models.load_copy(matter, dataclasses.replace(settings, threads=threads)), threads)
        stack.callback(waiting.matter.close)
    return Models(matter, fallback, waiting)


def _warn_unused_refine(config: Config, matter: Matter) -> None:
    if config.refine.mode != "bilinear" and matter.guided:
        log.warning("--refine %s is for models that return a plain matte (bshm, modnet); %s finishes its matte "
                    "with its own guided filter, so it is ignored", config.refine.mode, matter.name)


def engine(config: Config, matter: Matter, *, governor: Governor | None = None,
           fallback: Matter | None = None, waiting: WaitingModel | None = None) -> Engine:
    """An engine for ``config`` on ``matter`` (not warmed up): smoothing, refinement and the
    composite settings as configured; ``governor``, its ``fallback`` and the ``waiting`` keyframes'
    model for a governed run."""
    return Engine(matter, config.smoothing, config.refine.mode, config.composite, governor, fallback, waiting)


def video_engine(config: Config, matter: Matter, width: int, height: int) -> Engine:
    """The engine of an offline run (every frame through the model), warmed up at ``width`` x ``height``."""
    built = engine(config, matter)
    built.warm_up(width, height)
    return built


def still_engine(matter: Matter) -> Engine:
    """An engine for still pictures: each on its own, nothing smoothed across them."""
    return Engine(matter, SmoothingSettings(enabled=False))


def live_engine(config: Config, loaded: Models, source, compositor: Compositor, *, governed: bool) -> Engine:
    """The engine of a live run (``livematte live``, ``bench --realtime``) of ``source`` (``width``,
    ``height``, ``fps``) on ``loaded`` (:func:`load_models`'), warmed up; ``governed``: with the
    live governor (its last rung the fallback; the waiting copy for keyframes that wait),
    calibrated on this machine with ``compositor``'s cost."""
    from .runtime.governor import for_live

    matter, fallback, waiting = loaded
    governor = for_live(config.live, matter, source, fallback, wide_waits=waiting is not None) if governed else None
    if governor is not None and governor.max_cpu:
        # The budget is held on the CPU of the run's own threads (capture, frames, finish, output,
        # model). OpenCV's worker threads are none of them: on s18, two cores, 9 % of a core went
        # uncounted there. With a budget, OpenCV works on the thread that calls it.
        import cv2

        cv2.setNumThreads(1)
    built = engine(config, matter, governor=governor, fallback=fallback if governed else None, waiting=waiting)
    if built.finisher.plate is not None:
        # Live, the plate is kept for a camera that stands still. Followed, it engaged on s18 (a
        # camera that drifts 0.5-1 px a frame) at 22-28 ms a 720p frame: on one core 58-77 of 282
        # frames dropped, on two a latency p95 of 174-248 ms and the model stepped down to Selfie
        # (README: The background plate).
        built.finisher.plate.follow = False
    # The source's decoding shares the cores with the matte: the start is priced with it.
    capture_ms = source.capture_cost_ms() if governed else 0.0
    seconds = built.warm_up(source.width, source.height, composite=compositor.composite, capture_ms=capture_ms)
    log.debug("model warm-up %.2f s", seconds)
    if governor is not None:
        log.info("adaptive: starting at %s (%s)", governor.level, governor.timeline[0].reason)
    return built


def sink(kind: sinks.SinkKind, config: Config, width: int, height: int, rate: Fraction, *,
         output: Path | None = None, audio=None, file_kind: str | None = None, device: str | None = None,
         backend: str | None = None, live: bool = False, vfr: bool = False) -> sinks.Sink:
    """``kind`` opened for pictures of ``width`` x ``height`` at ``rate``, with the config's encoder
    settings (a file), the source's ``audio`` feed (a file) and a virtual camera's ``device``.

    live: a live run's (a camera, a file played as one): a sink that encodes sends on a thread
    of its own (``sinks.threaded``), dropping frames rather than holding the run up, and a
    recording takes each fresh frame at its source time, written at ``rate`` (``VideoWriter``'s
    ``constant_rate``) unless ``vfr``, which keeps each frame's own time.
    """
    encoding = config.output.writer_options()
    if live and kind.writes_file:
        encoding["constant_rate"] = not vfr
    request = sinks.SinkRequest(width, height, rate, output=output, device=device, backend=backend, audio=audio,
                                kind=file_kind, encoding=encoding)
    opened = sinks.open_sink(kind, request)
    if not (live and kind.encodes):
        return opened
    from .sinks.threaded import ThreadedSink

    if kind.writes_file:
        what, advice = _recording_advice(output_kind(output) if file_kind is None else file_kind, config)
        return ThreadedSink(opened, name=f"file {output}", label=f"recording {output}", what=what, advice=advice,
                            source_timed=True)
    # A virtual camera: two frames of slack at most, each one a frame of latency.
    return ThreadedSink(opened, name=kind.name, label=kind.label, what="conversion and device writes",
                        advice="a lower --fps, or a smaller camera picture (--width/--height), asks less of it",
                        depth=2)


def _recording_advice(file_kind: str, config: Config) -> tuple[str, str]:
    """(the encoder of a ``file_kind`` recording in words, what makes it faster), in the flags and
    config keys ``live`` takes."""
    settings = config.output
    faster = X264_PRESETS[:X264_PRESETS.index(settings.encoder_preset)][::-1][:2]
    preset = (f"a faster encoder_preset ({' or '.join(faster)}) under [output] in a --config file"
              if faster else "a smaller camera picture (--width/--height)")
    if file_kind == "webm":
        if settings.webm_crf is None:
            return "VP9 lossless", "webm_crf = 30 under [output] in a --config file encodes faster, or record .mp4"
        # Presets map onto libvpx's speeds, several onto its fastest: name only those that are faster.
        speed = vp9_speed(settings.encoder_preset)
        faster = [name for name in X264_PRESETS if vp9_speed(name) > speed][-2:][::-1]
        advice = (f"a faster encoder_preset ({' or '.join(faster)})" if faster else
                  f"a higher webm_crf ({min(WEBM_CRF_MAX, settings.webm_crf + 10)})") + " under [output] in a --config file"
        return f"VP9 crf {settings.webm_crf}", f"{advice} encodes faster, or record .mp4"
    if file_kind == "mov":
        return (f"ProRes {settings.prores}",
                ".webm (with webm_crf = 30 under [output] in a --config file) or .mp4 (no transparency) encode faster")
    if file_kind == "png":
        return "PNG", ".mp4 or .webm encode faster"
    return f"H.264 {settings.encoder_preset}", f"{preset} encodes faster"


def check_alpha_path(path: Path | None) -> None:
    """LivematteError unless ``path`` (``--alpha-out``) names a format mattes are written in."""
    if path is not None:
        alpha_kind(path)


def alpha_writer(stack: contextlib.ExitStack, path: Path | None, width: int, height: int, rate: Fraction, *,
                 live: bool = False):
    """The ``--alpha-out`` writer, entered on ``stack`` (finished on success, removed on error); None
    without one. ``live``: it writes on a thread of its own (``sinks.threaded``), dropping mattes
    rather than holding the run up."""
    if path is None:
        return None
    from .media.writing import AlphaWriter

    writer = AlphaWriter(path, width=width, height=height, rate=rate)
    if not live:
        return stack.enter_context(writer)
    from .sinks.threaded import ThreadedWriter

    what = {"mkv": "FFV1", "nut": "raw", "png": "PNG"}[writer.kind]
    return stack.enter_context(ThreadedWriter(
        writer, name=f"alpha-out {path}", label=f"matte file {path}", what=what,
        advice="leave --alpha-out out, or a smaller camera picture (--width/--height) costs less"))
