"""What this machine gives the process: its cores. A leaf, so models and the run read it alike."""

from __future__ import annotations

import os


def available_cores() -> int:
    """The cores this process may run on (``taskset`` and cgroups' cpusets included)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
