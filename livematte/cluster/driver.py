"""The ``video`` command on Ray: a library of videos matted segment by segment by model actors.

:func:`run_cluster_job` is the driver. It plans every video (:mod:`.plan`), starts one
:class:`SegmentWorker` actor per ``threads`` CPUs of the cluster (each loads the model once and
mattes segment after segment), hands each idle actor the next segment, writes each returned
segment into a hidden folder beside the output, and joins a video's segments (:mod:`.stitch`) as
soon as it has them all. One progress bar counts the frames written across the cluster, from a
:class:`ProgressBoard` the actors report to.

Faults: a segment whose actor dies (killed, out of memory, node lost) is handed out again, up to
``retries`` times; Ray restarts the actor, which loads its model again. A segment that fails
on a :class:`LivematteError` (something wrong with the input itself: retrying cannot help)
fails its video at once; any other error is retried like a death. A video that fails is
reported with its one-line reason, its other segments are dropped, and the others go on.
Ctrl-C (or SIGTERM) stops the actors and removes the segment folders; a joined output exists
only complete (:class:`~livematte.media.atomic.AtomicOutput`).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import tempfile
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import ray
import ray.exceptions

from ..media import image_header
from .. import models
from ..compose.compositor import Compositor, parse_background
from ..errors import LivematteError, error_line
from ..commands.jobs import PlannedVideo, VideoJob, plan_outputs
from ..runtime.workers import available_cores
from .plan import DEFAULT_PREROLL_SECONDS, DEFAULT_SEGMENT_SECONDS, VideoPlan, plan_video
from .segment import SegmentOutput, SegmentTask, process_segment
from .stitch import join_alpha, join_video

log = logging.getLogger(__name__)

LOCAL = "ray"  # --cluster ray: a Ray instance of this machine's own, started and stopped here
POLL_S = 0.25  # how often the progress bar is brought up to date while segments run
BOARD_PREFIX = "livematte-progress-"


@dataclass(frozen=True)
class ClusterJob:
    """A ``video`` job for a Ray cluster.

    address: ``"ray"`` (start a local instance sized to this machine), ``"auto"`` (the cluster
    ``RAY_ADDRESS`` names, or one started on this machine with ``ray start``),
    ``"ray://HOST:PORT"`` (Ray Client) or ``HOST:PORT`` (the head's address, from a node).
    segment_seconds, preroll_seconds: see :mod:`.plan`. retries: how many times a segment is
    handed out again after its worker died or failed (not after a :class:`LivematteError`).
    actors: how many model actors (default: the cluster's CPUs // the model's threads).
    """

    video: VideoJob
    address: str = LOCAL
    segment_seconds: float = DEFAULT_SEGMENT_SECONDS
    preroll_seconds: float = DEFAULT_PREROLL_SECONDS
    retries: int = 2
    actors: int | None = None


@dataclass
class ClusterResult:
    """What a cluster job did. done: input -> its figures (``frames``, ``segments``, ``stitch_s``);
    failed: the inputs that failed, in order, and reasons: why, one line each; retries: segments
    handed out again; seconds:
    the driver's wall time by step (``connect``, ``plan``, ``actors``, ``run``, ``stitch``)."""

    done: dict[str, dict] = field(default_factory=dict)
    failed: tuple[str, ...] = ()
    reasons: list[str] = field(default_factory=list)
    retries: int = 0
    seconds: dict[str, float] = field(default_factory=dict)
    segments: list[dict] = field(default_factory=list)  # each segment's worker figures, for measurements


@ray.remote(num_cpus=0)
class ProgressBoard:
    """Frames written so far by each running segment, as its actor reports them."""

    def __init__(self):
        self._written: dict[tuple, int] = {}
        self._running: dict[tuple, int] = {}  # segment -> the pid of the actor on it

    def report(self, key: tuple, frames: int, pid: int, done: bool = False) -> None:
        self._written[key] = frames
        if done:
            self._running.pop(key, None)
        else:
            self._running[key] = pid

    def forget(self, key: tuple) -> None:
        """A segment is redone from its start, or dropped with its video."""
        self._written.pop(key, None)
        self._running.pop(key, None)

    def total(self) -> int:
        return sum(self._written.values())

    def running(self) -> dict[tuple, tuple[int, int]]:
        """Segment ``(video, index)`` -> (pid of its actor, frames written so far), for those under way."""
        return {key: (pid, self._written.get(key, 0)) for key, pid in self._running.items()}


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
            self.compositor = Compositor(parse_background(config.output.background), config.composite.light_wrap)
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
    the result (a single input's failure is raised instead), as :func:`livematte.commands.jobs.run_video_job`."""
    video = job.video
    plan = plan_outputs(video)
    _check_transparency(video, plan)
    model, why = models.choose(video.config.model)
    threads = video.config.model.threads or 1
    result = ClusterResult()
    run = _Run(job, plan, dataclasses.replace(video.config.model, name=model, threads=threads), why, result)
    run.plan_videos()  # before Ray starts: a bad single input costs milliseconds, not a cluster
    if run.videos:
        clock = time.perf_counter()
        connected = connect(job.address)
        try:
            result.seconds["connect"] = time.perf_counter() - clock
            run.go()
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
    background = parse_background(job.config.output.background)
    try:
        transparent = Compositor(background).transparent
    finally:
        background.close()
    opaque = sorted({item.kind for item in plan} & {"mp4", "mkv"})
    if transparent and opaque:
        raise LivematteError(f"{'/'.join(opaque)} output cannot carry transparency: write .webm, .mov or PNGs, "
                             "or use --background key[:#RRGGBB]")


class _Run:
    """One cluster job's driver state: the queue, the actors, the segments back, the outputs."""

    def __init__(self, job: ClusterJob, plan: list[PlannedVideo], model, why: str, result: ClusterResult):
        self.job, self.plan, self.model, self.why, self.result = job, plan, model, why, result
        self.videos: dict[int, VideoPlan] = {}
        self.parts: dict[int, dict[int, tuple[Path, Path | None]]] = {}  # video -> segment -> files
        self.folders: dict[int, Path] = {}
        self.failed: dict[int, str] = {}

    def plan_videos(self) -> None:
        """Every video's segments; a video that cannot be read fails here, with its reason."""
        started = time.perf_counter()
        for number, item in enumerate(self.plan):
            try:
                self.videos[number] = plan_video(item.input, self.job.segment_seconds, self.job.preroll_seconds,
                                                 self.job.video.max_frames)
            except LivematteError as e:
                self._fail(number, str(e))
        self.result.seconds["plan"] = time.perf_counter() - started

    def go(self) -> None:
        """Start the actors, hand out every segment, join every video."""
        config = self.job.video.config
        queue = deque((number, segment) for number, video in self.videos.items() for segment in video.segments)
        cpus = int(ray.cluster_resources().get("CPU", 1))
        count = max(1, min(len(queue), self.job.actors or cpus // self.model.threads))
        log.info("cluster: %d video(s), %d segment(s) of about %g s, on %d actor(s) of %d thread(s) "
                 "(%d CPUs); model %s (%s)", len(self.videos), len(queue), self.job.segment_seconds, count,
                 self.model.threads, cpus, self.model.name, self.why)
        started = time.perf_counter()
        # Named, so that a test (or a curious user) can find the segments under way and their actors.
        board = ProgressBoard.options(name=f"{BOARD_PREFIX}{os.getpid()}-{id(self):x}").remote()
        actors = [SegmentWorker.options(num_cpus=self.model.threads, max_restarts=-1, max_task_retries=0)
                  .remote(config, self.model, image_header.max_pixels()) for _ in range(count)]
        try:
            try:
                ready = ray.get([actor.ready.remote() for actor in actors])
            except ray.exceptions.RayActorError as e:  # e.g. livematte not installed on a node
                raise LivematteError(f"a model actor could not start: {error_line(e, last=True)}") from e
            for error, node in ready:
                if error is not None:
                    raise LivematteError(f"the model cannot run on {node}: {error}")
            self.result.seconds["actors"] = time.perf_counter() - started
            started = time.perf_counter()
            self._dispatch(queue, actors, board)
            self.result.seconds["run"] = time.perf_counter() - started
        finally:
            for actor in [*actors, board]:
                ray.kill(actor, no_restart=True)
            for folder in self.folders.values():
                shutil.rmtree(folder, ignore_errors=True)

    def _dispatch(self, queue: deque, actors: list, board) -> None:
        from ..runtime.output import progress_bar

        total = sum(video.frames or 0 for video in self.videos.values()) or None
        bar = progress_bar(total, f"{len(self.videos)} video(s)", self.job.video.quiet)
        idle, running = list(actors), {}  # ref -> (actor, video, segment); segment None: a readiness probe
        attempts: dict[tuple, int] = {}
        try:
            while queue or running:
                while idle and queue:
                    number, segment = queue.popleft()
                    if number in self.failed:
                        continue
                    actor = idle.pop()
                    task = SegmentTask(self.videos[number].input, segment, self.plan[number].kind,
                                       _alpha_kind(self.plan[number]), self.job.video.config)
                    running[actor.process.remote(task, board, (number, segment.index))] = (actor, number, segment)
                if not running:
                    if queue:
                        raise LivematteError("every model actor died, and none came back")
                    break
                done, _ = ray.wait(list(running), num_returns=1, timeout=POLL_S)
                for ref in done:
                    actor, number, segment = running.pop(ref)
                    if segment is None:  # a restarted actor: back to work once its model is loaded
                        if self._probe(ref):
                            idle.append(actor)
                        continue
                    outcome = self._collect(ref, number, segment, attempts)
                    if outcome == "died":
                        # Ray restarts it (the model loads again); calls fail fast until then.
                        running[actor.ready.remote()] = (actor, None, None)
                    else:
                        idle.append(actor)
                    if outcome in ("died", "retry") and number not in self.failed:
                        board.forget.remote((number, segment.index))
                        queue.appendleft((number, segment))
                bar.n = ray.get(board.total.remote())
                bar.refresh()
        finally:
            bar.close()

    @staticmethod
    def _probe(ref) -> bool:
        """Whether a restarted actor answered :meth:`SegmentWorker.ready` with its model loaded."""
        try:
            error, node = ray.get(ref)
        except ray.exceptions.RayError as e:
            log.warning("a model actor did not come back: %s", error_line(e, last=True))
            return False
        if error is not None:
            log.warning("a model actor came back on %s without its model: %s", node, error)
        return error is None

    def _collect(self, ref, number: int, segment, attempts: dict) -> str:
        """Take one finished task: -> ``"done"``, ``"failed"`` (its video, for good), ``"retry"``
        (hand the segment out again) or ``"died"`` (the same, and its actor is restarting)."""
        key = (number, segment.index)
        died = False
        try:
            output: SegmentOutput = ray.get(ref)
        except ray.exceptions.RayTaskError as e:
            cause = getattr(e, "cause", None)
            if isinstance(cause, LivematteError):
                self._fail(number, str(cause))
                return "failed"
            reason = error_line(cause or e)
        except (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError, ray.exceptions.ObjectLostError,
                ray.exceptions.OutOfMemoryError, ray.exceptions.NodeDiedError) as e:
            reason, died = f"its worker died ({type(e).__name__})", True
        else:
            if number not in self.failed:
                self._keep(number, segment, output)
            return "done"
        attempts[key] = attempts.get(key, 0) + 1
        if number in self.failed:
            return "died" if died else "failed"
        if attempts[key] > self.job.retries:
            self._fail(number, f"segment {segment.index} failed {attempts[key]} times, the last: {reason}")
            return "died" if died else "failed"
        self.result.retries += 1
        log.warning("%s: segment %d again (%s)", self.videos[number].input, segment.index, reason)
        return "died" if died else "retry"

    def _keep(self, number: int, segment, output: SegmentOutput) -> None:
        item = self.plan[number]
        folder = self.folders.get(number)
        if folder is None:
            item.output.parent.mkdir(parents=True, exist_ok=True)
            # The output's name cut to 64 bytes: the folder's own name must stay within the
            # filesystem's 255 however long the output's is.
            stem = item.output.name.encode()[:64].decode(errors="ignore")
            folder = self.folders[number] = Path(tempfile.mkdtemp(prefix=f".{stem}.segments-",
                                                                  dir=item.output.parent))
        video, alpha = output.save(folder / f"{segment.index:06d}")
        self.parts.setdefault(number, {})[segment.index] = (video, alpha)
        self.result.segments.append({"video": number, "segment": segment.index, "frames": output.frames,
                                     "matted": output.matted, "preroll": segment.preroll_frames,
                                     "decoded_only": segment.decoded_only, **output.seconds})
        if len(self.parts[number]) == len(self.videos[number].segments):
            self._stitch(number)

    def _stitch(self, number: int) -> None:
        item, video = self.plan[number], self.videos[number]
        parts = self.parts.pop(number)
        started = time.perf_counter()
        try:
            ordered = [(parts[s.index], s.at) for s in video.segments]
            end = None
            if video.segments[-1].end is not None:
                # Cut short by --frames: the audio ends one frame after the last frame, as in one pass.
                end = video.last + 1.0 / video.info.fps
            frames = join_video([(v, at) for (v, _), at in ordered], item.output, item.kind,
                                audio=video.input, audio_end=end)
            if item.alpha_out is not None:
                join_alpha([(a, at) for (_, a), at in ordered], item.alpha_out, _alpha_kind(item))
        except LivematteError as e:
            self._fail(number, str(e))
            return
        finally:
            shutil.rmtree(self.folders.pop(number), ignore_errors=True)
        stitch_s = time.perf_counter() - started
        self.result.done[video.input] = {"frames": frames, "segments": len(video.segments), "stitch_s": stitch_s}
        self.result.seconds["stitch"] = self.result.seconds.get("stitch", 0.0) + stitch_s
        log.info("%s -> %s: %d frames in %d segment(s), joined in %.2f s", video.input, item.output, frames,
                 len(video.segments), stitch_s)

    def _fail(self, number: int, reason: str) -> None:
        if number in self.failed:
            return
        self.failed[number] = reason
        self.parts.pop(number, None)
        folder = self.folders.pop(number, None)
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)
        item = self.plan[number].input
        self.result.failed = (*self.result.failed, item)
        self.result.reasons.append(reason)
        log.error("failed: %s: %s", item, reason)


def _alpha_kind(item: PlannedVideo) -> str | None:
    from ..media.writing import output_kind

    return None if item.alpha_out is None else output_kind(item.alpha_out)

