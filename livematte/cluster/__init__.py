"""``livematte video ... --cluster``: a library of videos matted on a Ray cluster, segment by
segment, with the output one machine gives.

    driver                                    workers (Ray actors, one model each, loaded once)
    plan.plan_video: frames -> segments  ──>  segment.process_segment: seek, pre-roll, matte,
    scheduler.Scheduler: one queue,      <──    encode the segment alone -> its files' bytes
      retries, one progress bar
    stitch.join: segments -> the output, remuxed (never re-encoded), the source's audio copied once

- :mod:`.job`: what a cluster job asks for and what it did (no Ray).
- :mod:`.plan`: where a video is cut, and each segment's pre-roll (no Ray, no decoding).
- :mod:`.segment`: one segment on a worker: the ``video`` command's own engine and writers.
- :mod:`.stitch`: segment files joined into the final output, written atomically.
- :mod:`.scheduler`: the queue of segments handed to the actors, progress and faults.
- :mod:`.driver`: Ray: connecting, the actors, :func:`~.driver.run_cluster_job`.

Ray is an extra (``pip install "livematte[ray]"``): only :mod:`.driver` and :mod:`.scheduler`
import it, and :func:`require_ray` says so in one line when it is missing.
"""

from __future__ import annotations

INSTALL = 'pip install "livematte[ray]"'
NO_RAY = f"--cluster runs on Ray: {INSTALL}"


def require_ray() -> None:
    """:class:`~livematte.errors.LivematteError` with one line naming the extra when Ray is missing."""
    from ..errors import LivematteError

    try:
        import ray  # noqa: F401
    except ImportError as e:
        raise LivematteError(NO_RAY) from e
