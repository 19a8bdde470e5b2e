"""A cluster job's segments handed to model actors: the queue, progress, retries, and the joins.

:class:`Scheduler` plans every video (:mod:`.plan`), hands each idle actor the next segment,
writes each returned segment into a hidden folder beside the output, and joins a video's
segments (:mod:`.stitch`) as soon as it has them all. One progress bar counts the frames written
across the cluster, from a :class:`ProgressBoard` the actors report to.

Faults: a segment whose actor dies (killed, out of memory, node lost) is handed out again, up to
``retries`` times; Ray restarts the actor, which loads its model again. A segment that fails
on a :class:`LivematteError` (something wrong with the input itself: retrying cannot help)
fails its video at once; any other error is retried like a death. A video that fails is
reported with its one-line reason, its other segments are dropped, and the others go on.
The actors themselves are the driver's (:mod:`.driver`): it starts them, and stops them after.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from collections import deque
from pathlib import Path

import ray
import ray.exceptions

from ..offline import PlannedVideo
from ..errors import LivematteError, error_line
from ..media.formats import output_kind
from .job import ClusterJob, ClusterResult
from .plan import VideoPlan, plan_video
from .segment import SegmentOutput, SegmentTask
from .stitch import join_alpha, join_video

log = logging.getLogger(__name__)

POLL_S = 0.25  # how often the progress bar is brought up to date while segments run
BOARD_PREFIX = "livematte-progress-"


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


class Scheduler:
    """One cluster job's driver state: the queue, the segments back, the outputs.

    The actors it hands segments to answer ``process(task, board, key)`` with a
    :class:`~.segment.SegmentOutput` and ``ready()`` with (None or why their model cannot run, node).
    """

    def __init__(self, job: ClusterJob, plan: list[PlannedVideo], result: ClusterResult):
        self.job, self.plan, self.result = job, plan, result
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

    def queue(self) -> deque:
        """Every segment to hand out, ``(video, segment)``, in order."""
        return deque((number, segment) for number, video in self.videos.items() for segment in video.segments)

    def close(self) -> None:
        """Remove the segment folders still here (those of videos not joined)."""
        for folder in self.folders.values():
            shutil.rmtree(folder, ignore_errors=True)

    def dispatch(self, queue: deque, actors: list, board) -> None:
        """Hand out every segment of ``queue`` to ``actors``, joining each video once it is complete."""
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
                                       alpha_kind(self.plan[number]), self.job.video.config)
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
        """Whether a restarted actor answered ``ready()`` with its model loaded."""
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
                join_alpha([(a, at) for (_, a), at in ordered], item.alpha_out, alpha_kind(item))
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


def alpha_kind(item: PlannedVideo) -> str | None:
    """The kind of ``item``'s matte output, None without one."""
    return None if item.alpha_out is None else output_kind(item.alpha_out)
