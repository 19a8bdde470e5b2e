"""``livematte video``: its flags into an offline job (:mod:`livematte.offline`), run here or, with
``--cluster``, segment by segment on Ray (:mod:`livematte.cluster`)."""

from __future__ import annotations

import argparse
import dataclasses
import logging

from ..errors import LivematteError
from ..offline import VideoJob, plan_outputs, run_video_job
from .options import load_config

log = logging.getLogger(__name__)


def main(args: argparse.Namespace) -> int:
    """``livematte video``."""
    if args.cluster is None:
        if args.segment_seconds is not None:
            raise LivematteError("--segment-seconds cuts videos for --cluster; add --cluster ray (or auto, "
                                 "ray://HOST:PORT)")
        return 1 if run_video_job(video_job(args)).failed else 0
    from ..cluster import require_ray

    require_ray()
    from ..cluster.driver import run_cluster_job
    from ..cluster.job import ClusterJob
    from ..cluster.plan import DEFAULT_SEGMENT_SECONDS

    job = ClusterJob(video=video_job(args), address=args.cluster,
                     segment_seconds=args.segment_seconds or DEFAULT_SEGMENT_SECONDS)
    return 1 if run_cluster_job(job).failed else 0


def video_job(args: argparse.Namespace):
    """The ``video`` command's arguments -> its checked ``VideoJob`` (warning about flags it ignores)."""
    from ..config import merge

    config = load_config(args, encoder_preset=args.encoder_preset, prores=args.prores)
    job = VideoJob(config=config, input=args.input, output=args.output, format=args.format,
                   alpha_out=args.alpha_out, quiet=args.quiet, max_frames=args.frames, overwrite=args.overwrite)
    kinds = {item.kind for item in plan_outputs(job)}
    if args.crf is not None:
        # One flag, each codec's own key: the H.264 scale is 0..51, VP9's 0..63.
        quality = {"crf": args.crf if kinds & {"mp4", "mkv"} else None,
                   "webm_crf": args.crf if "webm" in kinds else None}
        job = dataclasses.replace(job, config=dataclasses.replace(
            config, output=merge(config.output, quality, "--crf")))
        if kinds - {"mp4", "mkv", "webm"}:
            log.warning("--crf is for H.264 (.mp4, .mkv) and VP9 (.webm); ignored for %s (use --prores for .mov)",
                        ", ".join(sorted(kinds - {"mp4", "mkv", "webm"})))
    if args.prores is not None and kinds != {"mov"}:
        log.warning("--prores is for .mov; ignored for %s", ", ".join(sorted(kinds - {"mov"})))
    if args.encoder_preset is not None and kinds & {"mov", "png"}:
        log.warning("--encoder-preset is for H.264 and VP9; ignored for %s", ", ".join(sorted(kinds & {"mov", "png"})))
    return job
