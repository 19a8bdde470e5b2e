"""The figures of ``livematte bench`` as people read them: the machine they were measured on, and
the table printed after the runs (:mod:`livematte.commands.bench` makes the figures)."""

from __future__ import annotations

import platform
from pathlib import Path

from .. import __version__
from ..machine import available_cores

# The stages of a frame, in the order it meets them (``wait_*``: waiting, not working).
STAGES = ("decode", "wait_capture", "prepare", "wait_model", "motion", "model", "smoothing", "refine", "composite",
          "sink")
WORK_STAGES = tuple(s for s in STAGES if not s.startswith("wait_"))


def machine() -> dict:
    """The CPU's name, the cores this process may use, Python's and livematte's versions."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": available_cores(), "python": platform.python_version(), "livematte": __version__}


def _level(governor: dict | None) -> str:
    if not governor:
        return "fixed"
    level = governor["level"]
    return f"{level.get('model', '') + ' ' if level.get('model') else ''}{level['size']}px/{level['stride']}{'w' if level.get('waits') else ''}"


def format_table(document: dict) -> str:
    """The runs side by side, one column per preset."""
    source, settings, runs = document["source"], document["settings"], document["runs"]
    what = "built-in synthetic clip" if source["builtin"] else source["path"]
    mode = ("realtime (played at the source's rate)" if settings["realtime"] else
            "throughput (as fast as possible; no latency: frames queue behind each other, --realtime measures it)")
    sink = "H.264 file sink" if settings["encode"] else "null sink"
    m = document["machine"]
    lines = [f"livematte bench: {what}, {source['width']}x{source['height']} at {source['fps']:g} fps; "
             f"{mode}; {sink}",
             f"machine: {m['cpu']}, {m['cores']} logical CPUs, Python {m['python']}, livematte {m['livematte']}"]
    for run in runs:
        lines.append(f"  {run['preset']}: {run['model']} on {run['device']}, load + warm-up {run['load_s']:.1f} s")
    width = max(10, *(len(r["preset"]) + 2 for r in runs))
    rows: list[tuple[str, list[str]]] = [("", [r["preset"] for r in runs])]
    rows.append(("frames", [str(r["frames"]) for r in runs]))
    rows.append(("fps", [f"{r['fps']:.1f}" for r in runs]))
    for q in ("p50", "p95", "p99") if settings["realtime"] else ():
        rows.append((f"latency {q} ms", [f"{r['latency_ms'][q]:.0f}" for r in runs]))
    rows.append(("dropped", [str(r["dropped"]) for r in runs]))
    if any(r.get("governor") for r in runs):
        rows.append(("level at the end", [_level(r["governor"]) for r in runs]))
        rows.append(("level changes", [str(len(r["governor"]["timeline"]) - 1) if r.get("governor") else "-"
                                       for r in runs]))
        rows.append(("model calls/s", [f"{r['model_calls_per_s']:.1f}" for r in runs]))
        rows.append(("reused frames", [str(r["reused"]) for r in runs]))
        rows.append(("result age p50/p95", [f"{r['result_age']['p50']:.0f}/{r['result_age']['p95']:.0f}"
                                            if r.get("result_age") else "-" for r in runs]))
    names = [s for s in STAGES if any(s in r["stages_ms"] for r in runs)]
    names += sorted({s for r in runs for s in r["stages_ms"]} - set(names))
    for name in names:
        label = f"  {name} ms" + ("" if not name.startswith("wait_") else " (waiting)")
        rows.append((label, [f"{r['stages_ms'][name]:.1f}" if name in r["stages_ms"] else "-" for r in runs]))
    rows.append(("cpu %", [f"{r['cpu_percent']:.0f}" for r in runs]))
    rows.append(("cpu ms/frame", [f"{r['cpu_ms_per_frame']:.1f}" for r in runs]))
    rows.append(("rss peak MiB", [f"{r['rss_mb']:.0f}" for r in runs]))
    label_width = max(len(label) for label, _ in rows) + 2
    for label, cells in rows:
        lines.append(label.ljust(label_width) + "".join(c.rjust(width) for c in cells))
    return "\n".join(lines)
