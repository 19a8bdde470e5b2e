"""``livematte demo``: the built-in clip (:mod:`livematte.sources.demo_clip`) through ``video``'s
own path, its room replaced; nothing of the user's needed."""

from __future__ import annotations

import argparse
import sys

from ..media.outpaths import check_outputs
from ..sources.demo_clip import prepare_inputs
from .options import DEMO_OUTPUT, load_config
from ..offline import VideoJob, run_video_job

def main(args: argparse.Namespace) -> int:
    """``livematte demo``."""
    # Files the user named are guarded like any output; the demo's own file is simply replaced.
    check_outputs([], [args.output, args.alpha_out], overwrite=args.overwrite)
    output = args.output or DEMO_OUTPUT
    clip, backdrop = prepare_inputs()
    if args.background is None:
        args.background = str(backdrop)
    config = load_config(args)
    job = VideoJob(config=config, input=str(clip), output=output, alpha_out=args.alpha_out,
                   quiet=args.quiet, max_frames=args.frames, overwrite=True)
    failed = run_video_job(job).failed
    if not failed:
        print(f"livematte: demo written to {output}", file=sys.stderr)
    return 1 if failed else 0
