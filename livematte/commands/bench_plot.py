"""``livematte bench --plot``: the runs' per-frame latency and their work per frame by stage, as a PNG."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from ..errors import LivematteError
from ..media.atomic import write_atomically


def require_matplotlib() -> None:
    """Raises a one-line error naming the package when matplotlib is missing (checked before any run)."""
    try:
        import matplotlib  # noqa: F401
    except ImportError as e:
        raise LivematteError('--plot needs matplotlib: pip install "livematte[plot]"') from e


def write_plot(path: Path, results: list, document: dict, work_stages: tuple[str, ...]) -> None:
    """Per-frame latency for every preset (``--realtime``; a throughput run has none), and a
    stacked bar of ``work_stages`` (PNG).

    ``results``: :class:`livematte.commands.bench.RunResult` (preset, fps, latency_ms, stages_ms,
    latencies); ``document``: the bench's JSON document, for the title.
    """
    require_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(12, 4.8), dpi=100)
    FigureCanvasAgg(figure)
    latency, stages = figure.subplots(1, 2, gridspec_kw={"width_ratios": [2, 1]})
    realtime = document["settings"]["realtime"]
    for result in results if realtime else ():
        latency.plot(range(len(result.latencies)), result.latencies, linewidth=1,
                     label=f"{result.preset} (p50 {result.latency_ms['p50']:.0f} ms)")
    if not realtime:
        latency.text(0.5, 0.5, "throughput run: no latency\n(frames queue behind each other;\n--realtime measures it)",
                     ha="center", va="center", transform=latency.transAxes)
    latency.set_xlabel("output frame")
    latency.set_ylabel("latency, capture to output (ms)")
    latency.set_title("Per-frame latency")
    latency.set_ylim(bottom=0)
    latency.grid(alpha=0.3)
    if realtime:
        latency.legend()

    names = [r.preset for r in results]
    bottom = np.zeros(len(results))
    for name in work_stages:
        values = np.array([r.stages_ms.get(name, 0.0) for r in results])
        if not values.any():
            continue
        stages.bar(names, values, bottom=bottom, label=name)
        bottom += values
    for x, result in enumerate(results):
        stages.annotate(f"{result.fps:.1f} fps", (x, bottom[x]), ha="center", va="bottom", fontsize=9)
    stages.set_ylabel("ms per frame (stages overlap on threads)")
    stages.set_title("Work per frame by stage")
    stages.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    source = document["source"]
    what = "built-in clip" if source["builtin"] else Path(source["path"]).name
    mode = "realtime" if document["settings"]["realtime"] else "throughput"
    figure.suptitle(f"livematte bench: {what} {source['width']}x{source['height']}, {mode}, "
                    f"{document['machine']['cores']} CPUs")
    figure.tight_layout()
    image = io.BytesIO()
    figure.savefig(image, format="png")
    write_atomically(path, image.getvalue())
