"""What a cluster job asks for (:class:`ClusterJob`) and what it did (:class:`ClusterResult`).

No Ray here: the driver and the scheduler both read these, and the command line builds a job.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..offline import VideoJob
from .plan import DEFAULT_PREROLL_SECONDS, DEFAULT_SEGMENT_SECONDS

LOCAL = "ray"  # --cluster ray: a Ray instance of this machine's own, started and stopped here


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
