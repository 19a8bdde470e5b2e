"""The ``video`` command on Ray: a library of videos matted segment by segment by model actors.

:func:`run_cluster_job` is the driver. It connects to Ray (:func:`connect`), has every video
planned, starts one :class:`SegmentWorker` actor per ``threads`` CPUs of the cluster (each loads
the model once and mattes segment after segment) and a
:class:`~livematte.cluster.scheduler.ProgressBoard`, and leaves the queue to
:class:`~livematte.cluster.scheduler.Scheduler`: which actor gets which segment, retries after a
fault, and each video joined (:mod:`.stitch`) once all its segments are back.

Ctrl-C (or SIGTERM) stops the actors and removes the segment folders; a joined output exists
only complete (:class:`~livematte.media.atomic.AtomicOutput`).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time

import ray
import ray.exceptions

from ..media import image_header
from .. import assembly, models
from ..errors import LivematteError, error_line
from ..offline import PlannedVideo, VideoJob, plan_outputs
from ..machine import available_cores
from .job import LOCAL, ClusterJob, ClusterResult
from .scheduler import BOARD_PREFIX, ProgressBoard, Scheduler
from .segment import SegmentOutput, SegmentTask, process_segment

log = logging.getLogger(__name__)


@ray.remote
class SegmentWorker:
    """One model, loaded once, that mattes segment after segment (see :func:`process_segment`).

    A model that cannot load is not raised from ``__init__`` (Ray would report it as a dead actor
    with a traceback): :meth:`ready` returns its one-line reason instead.
    """

    def __init__(self, config, model, max_pixels: int):
        _quiet_logging()
        self.error = None
        # The worker is a process of its own: it takes the driver's picture limit (--max-pixels).
        image_header.set_max_pixels(max_pixels)
        try:
            self.matter = models.load(model)
            self.compositor = assembly.compositor(config)
        except LivematteError as e:
            self.error = str(e)

    # A restarted actor answers once its model is loaded again: calls made while it restarts are
    # retried by Ray rather than failed (a few times: an actor that keeps dying is given up).
    @ray.method(max_task_retries=5)
    def ready(self) -> tuple[str | None, str]:
        """(None, or why the model cannot run here; this node's name)."""
        return self.error, os.uname().nodename

    def process(self, task: SegmentTask, board, key: tuple) -> SegmentOutput:
        pid = os.getpid()
        board.report.remote(key, 0, pid)
        output = process_segment(task, self.matter, self.compositor,
                                 report=lambda frames: board.report.remote(key, frames, pid))
        board.report.remote(key, output.frames, pid, done=True)
        return output


def _quiet_logging() -> None:
    """In a worker: livematte's warnings and errors only, reaching the driver's terminal through Ray
    (prefixed with the actor's name and pid); its per-segment info lines would flood it."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("livematte: %(message)s"))
    root = logging.getLogger("livematte")
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    root.propagate = False


def connect(address: str) -> bool:
    """Join (or start, for ``"ray"``) a Ray cluster; -> whether this call connected (and so must
    disconnect: :func:`ray.shutdown`). An already connected process (a test session) is used as is."""
    if ray.is_initialized():
        return False
    options = {"logging_level": logging.WARNING, "log_to_driver": True}
    try:
        if address == LOCAL:
            # Ray runs its workers at nice 15, behind anything else on a shared node; here they are
            # the user's own foreground job, at the priority one pass of `video` would have.
            # address "local": a new instance even where `ray start` left one to join by default.
            ray.init(address="local", num_cpus=available_cores(), include_dashboard=False,
                     _system_config={"worker_niceness": 0}, **options)
        else:
            ray.init(address=address, **options)
    except (ConnectionError, RuntimeError, ValueError) as e:
        where = "start a local Ray instance" if address == LOCAL else f"join the Ray cluster at {address}"
        raise LivematteError(f"cannot {where}: {error_line(e)}") from e
    return True


def run_cluster_job(job: ClusterJob) -> ClusterResult:
    """Process every video of ``job.video`` on the cluster; failed inputs are logged and listed in
    the result (a single input's failure is raised instead), as :func:`livematte.offline.run_video_job`."""
    video = job.video
    plan = plan_outputs(video)
    _check_transparency(video, plan)
    model, why = models.choose(video.config.model)
    threads = video.config.model.threads or 1
    result = ClusterResult()
    run = Scheduler(job, plan, result)
    run.plan_videos()  # before Ray starts: a bad single input costs milliseconds, not a cluster
    if run.videos:
        clock = time.perf_counter()
        connected = connect(job.address)
        try:
            result.seconds["connect"] = time.perf_counter() - clock
            _on_actors(run, dataclasses.replace(video.config.model, name=model, threads=threads), why)
        finally:
            if connected:
                ray.shutdown()
    if result.failed:
        if len(plan) == 1:
            raise LivematteError(result.reasons[0])
        log.error("%d of %d videos failed", len(result.failed), len(plan))
    return result


def _check_transparency(job: VideoJob, plan: list[PlannedVideo]) -> None:
    """What a worker would find at its first frame, said before the cluster starts."""
    opaque = sorted({item.kind for item in plan} & {"mp4", "mkv"})
    if assembly.is_transparent(job.config.output.background) and opaque:
        raise LivematteError(f"{'/'.join(opaque)} output cannot carry transparency: write .webm, .mov or PNGs, "
                             f"or {assembly.opaque_hint()}")


def _on_actors(run: Scheduler, model, why: str) -> None:
    """Start the actors (``model``: the settings each loads; ``why``: ``auto``'s reason, for the
    log), hand ``run``'s segments out to them, and stop them whatever happens."""
    config = run.job.video.config
    queue = run.queue()
    cpus = int(ray.cluster_resources().get("CPU", 1))
    count = max(1, min(len(queue), run.job.actors or cpus // model.threads))
    log.info("cluster: %d video(s), %d segment(s) of about %g s, on %d actor(s) of %d thread(s) "
             "(%d CPUs); model %s (%s)", len(run.videos), len(queue), run.job.segment_seconds, count,
             model.threads, cpus, model.name, why)
    started = time.perf_counter()
    # Named, so that a test (or a curious user) can find the segments under way and their actors.
    board = ProgressBoard.options(name=f"{BOARD_PREFIX}{os.getpid()}-{id(run):x}").remote()
    actors = [SegmentWorker.options(num_cpus=model.threads, max_restarts=-1, max_task_retries=0)
              .remote(config, model, image_header.max_pixels()) for _ in range(count)]
    try:
        try:
            ready = ray.get([actor.ready.remote() for actor in actors])
        except ray.exceptions.RayActorError as e:  # e.g. livematte not installed on a node
            raise LivematteError(f"a model actor could not start: {error_line(e, last=True)}") from e
        for error, node in ready:
            if error is not None:
                raise LivematteError(f"the model cannot run on {node}: {error}")
        run.result.seconds["actors"] = time.perf_counter() - started
        started = time.perf_counter()
        run.dispatch(queue, actors, board)
        run.result.seconds["run"] = time.perf_counter() - started
    finally:
        for actor in [*actors, board]:
            ray.kill(actor, no_restart=True)
        run.close()
