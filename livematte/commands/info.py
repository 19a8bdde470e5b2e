"""The commands that tell what there is: ``presets``, ``models`` (and ``models fetch``), ``cameras``."""

from __future__ import annotations

import argparse
import sys

from ..errors import LivematteError


def presets(args: argparse.Namespace) -> int:
    """``livematte presets``."""
    from .. import config

    for name, description in config.presets().items():
        print(f"{name:10}  {description}")
    return 0


def backends(args: argparse.Namespace) -> int:
    """``livematte models [fetch NAME]``."""
    from .. import models
    from ..models.base import ModelSettings

    if args.action == "fetch":
        if not args.name:
            raise LivematteError(f"`livematte models fetch` needs a NAME: {' or '.join(models.BACKENDS)}")
        print(models.fetch(args.name, args.download_timeout or ModelSettings.download_timeout))
        return 0
    width = max(map(len, models.BACKENDS))
    for status in models.status():
        state = "needs an extra" if status.install else "ready" if status.ready else "not downloaded"
        print(f"{status.name:{width}}  {state:14}  {status.description}")
        if status.install:
            print(f"{'':{width}}  install: {status.install}")
        print(f"{'':{width}}  weights: {status.weights or '-'}")
        if status.weights is None and not status.install:
            print(f"{'':{width}}  fetch:   livematte models fetch {status.name}")
    return 0


def cameras(args: argparse.Namespace) -> int:
    """``livematte cameras``."""
    from ..sources.cameras import describe, list_cameras

    cameras = list_cameras()
    if not cameras:
        print("livematte: no camera found on this machine", file=sys.stderr)
        return 1
    print("\n".join(describe(cameras)))
    return 0
