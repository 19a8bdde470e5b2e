"""``livematte video --cluster ray`` beside one pass of the ``video`` command, on the same inputs, in one run.

    python scripts/cluster_compare.py [--clips DIR] [--composited DIR] [--segment-seconds S S2]
                                      [--json PATH]

1. Equivalence, on ``../shared/data/clips`` (segments of ``S`` seconds, default 2): for each video,
   frame counts, every pts and the audio's decoded duration of the two outputs, and the per-frame
   MAD (x1e3) between their ``--alpha-out`` mattes in the first frames after each segment boundary
   and elsewhere.
2. Quality, on ``../shared/data/composited`` (segments of ``S2`` seconds, default 1): MAD and dtSSD
   against the ground truth of each, scored as ``scripts/eval_quality.py`` scores them.
3. With ``--preroll P ...``, instead: the pre-roll's worth, without Ray. Each composited clip is cut
   into ``S2``-second segments matted apart (one process, 1 thread) with each pre-roll length, and
   scored against the truth and against one pass (per-frame MAD x1e3 just after the boundaries).
4. Speed: each folder as one job, one process with 2 model threads against a local Ray of 2 actors
   of 1 thread; and, from the cluster's own figures, a fit of each segment's time on the worker
   (``a + b * frames matted + c * frames decoded only``: the per-segment overhead, the cost of a
   pre-roll frame), the share of the pre-roll, and the driver's joining time per frame.

The two runs of each folder go one after the other, cluster last, on the same machine.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import av
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))
sys.path.insert(0, str(REPO / "tests"))

from eval_quality import find_clips, score_files  # noqa: E402
from livematte import config as config_module  # noqa: E402
from livematte.cli import configure_logging  # noqa: E402
from livematte.cluster.driver import run_cluster_job  # noqa: E402
from livematte.cluster.job import ClusterJob  # noqa: E402
from livematte.cluster.plan import plan_video  # noqa: E402
from livematte.offline import VideoJob, run_video_job  # noqa: E402
from livematte.media.readback import read_alpha  # noqa: E402
from livematte.media.reading import VideoReader  # noqa: E402

DATA = Path(os.environ.get("LIVEMATTE_TEST_DATA") or REPO.parent / "shared" / "data")  # as the tests find it
NEAR = 5  # frames after a boundary counted as "near" it


def frame_times(path: Path) -> list[float]:
    with VideoReader(path) as reader:
        return [pts for _, pts in reader.frames()]


def audio_seconds(path: Path) -> float | None:
    with av.open(str(path)) as container:
        if not container.streams.audio:
            return None
        stream = container.streams.audio[0]
        return sum(f.samples for f in container.decode(stream)) / stream.codec_context.sample_rate


def both(folder: Path, work: Path, seconds: float) -> dict:
    """One pass (2 threads) and the cluster (2 actors of 1 thread) on every video of ``folder``."""
    figures = {}
    for name, threads, cluster in (("one", 2, False), ("cluster", 1, True)):
        config = config_module.load("offline", None, {"model": {"name": "rvm", "threads": threads}})
        job = VideoJob(config=config, input=str(folder), output=work / name, alpha_out=work / f"{name}_alpha",
                       quiet=True)
        started = time.perf_counter()
        if cluster:
            result = run_cluster_job(ClusterJob(video=job, segment_seconds=seconds))
        else:
            result = run_video_job(job)
        figures[name] = {"wall_s": time.perf_counter() - started, "result": result}
    return figures


def equivalence(folder: Path, work: Path, seconds: float) -> dict:
    runs = both(folder, work, seconds)
    rows = []
    for video in sorted(p for p in folder.iterdir() if p.suffix == ".mp4"):
        one, cluster = work / "one" / video.name, work / "cluster" / video.name
        times_one, times_cluster = frame_times(one), frame_times(cluster)
        mattes_one = read_alpha(work / "one_alpha" / f"{video.stem}_alpha.mkv")
        mattes_cluster = read_alpha(work / "cluster_alpha" / f"{video.stem}_alpha.mkv")
        mad = np.array([np.abs(a.astype(np.float32) - b).mean() / 255 * 1e3
                        for a, b in zip(mattes_one, mattes_cluster)])
        starts = [s.first for s in plan_video(str(video), seconds).segments[1:]]
        near = sorted({i for s in starts for i in range(s, min(s + NEAR, len(mad)))})
        elsewhere = [i for i in range(len(mad)) if i not in near]
        rows.append({
            "video": video.name, "frames": (len(times_one), len(times_cluster)),
            "pts_identical": times_one == times_cluster,
            "audio_s": (audio_seconds(one), audio_seconds(cluster)),
            "boundaries": starts,
            "mad_at_boundary": [round(float(mad[s]), 3) for s in starts],
            "mad_near_mean": float(mad[near].mean()) if near else None,
            "mad_near_max": float(mad[near].max()) if near else None,
            "mad_elsewhere_mean": float(mad[elsewhere].mean()),
            "mad_first_segment_max": float(mad[:starts[0]].max()) if starts else float(mad.max()),
        })
    return {"rows": rows, "runs": runs}


def quality(composited: Path, work: Path, seconds: float) -> dict:
    inputs = work / "inputs"
    inputs.mkdir()
    clips = find_clips(composited)
    for clip in clips:
        (inputs / f"{clip.name}.mp4").symlink_to(clip.input)
    runs = both(inputs, work, seconds)
    scores = {}
    for name in ("one", "cluster"):
        scores[name] = [score_files(work / f"{name}_alpha" / f"{clip.name}_alpha.mkv", clip.truth, clip.segments,
                                    clip.fps)["overall"] for clip in clips]
    means = {name: {k: float(np.mean([s[k] for s in rows])) for k in ("mad", "dtssd")}
             for name, rows in scores.items()}
    return {"clips": [c.name for c in clips], "scores": scores, "means": means, "runs": runs}


def speed(runs: dict) -> dict:
    """Throughput of the two runs and a fit of the cluster's segment times."""
    cluster = runs["cluster"]["result"]
    frames = sum(d["frames"] for d in cluster.done.values())
    segments = cluster.segments
    matted = np.array([s["matted"] for s in segments], float)
    decoded = np.array([s["decoded_only"] for s in segments], float)
    seconds = np.array([s["open"] + s["run"] + s["collect"] for s in segments])
    fit, *_ = np.linalg.lstsq(np.stack([np.ones_like(matted), matted, decoded], 1), seconds, rcond=None)
    run_s = cluster.seconds.get("run", 0.0)
    return {
        "frames": frames,
        "one_wall_s": runs["one"]["wall_s"], "one_fps": frames / runs["one"]["wall_s"],
        "cluster_wall_s": runs["cluster"]["wall_s"], "cluster_fps": frames / runs["cluster"]["wall_s"],
        "cluster_run_s": run_s, "cluster_run_fps": frames / run_s if run_s else None,
        "cluster_steps_s": dict(cluster.seconds),
        "segments": len(segments),
        "segment_fixed_s": float(fit[0]), "ms_per_matted_frame": float(fit[1] * 1e3),
        "ms_per_decoded_only_frame": float(fit[2] * 1e3),
        "preroll_share": float(sum(s["preroll"] for s in segments) / max(1, sum(s["frames"] for s in segments))),
        "stitch_ms_per_frame": 1e3 * sum(d["stitch_s"] for d in cluster.done.values()) / max(1, frames),
        "worker_seconds": float(seconds.sum()),
    }


def preroll_study(composited: Path, work: Path, seconds: float, prerolls: list[float], names: list[str]) -> dict:
    """Segments matted apart with each pre-roll (no Ray): quality and distance from one pass."""
    from livematte import assembly, models
    from livematte.cluster.segment import SegmentTask, process_segment
    from livematte.cluster.stitch import join_alpha

    config = config_module.load("offline", None, {"model": {"name": "rvm", "threads": 1}})
    matter = models.load(config.model)
    compositor = assembly.compositor(config)
    clips = find_clips(composited, names or None)
    out = {}
    for clip in clips:
        one = work / f"{clip.name}_one.mkv"
        job = VideoJob(config=config, input=str(clip.input), output=work / f"{clip.name}_one.mp4", alpha_out=one,
                       quiet=True)
        run_video_job(job)
        reference = read_alpha(one)
        for preroll in prerolls:
            plan = plan_video(str(clip.input), seconds, preroll)
            parts = []
            for segment in plan.segments:
                task = SegmentTask(str(clip.input), segment, "mp4", "mkv", config)
                done = process_segment(task, matter, compositor)
                parts.append((done.save(work / f"{clip.name}_{preroll}_{segment.index}"), segment.at))
            alpha = work / f"{clip.name}_{preroll}_alpha.mkv"
            join_alpha([(a, at) for (_, a), at in parts], alpha, "mkv")
            mattes = read_alpha(alpha)
            mad = np.array([np.abs(a.astype(np.float32) - b).mean() / 255 * 1e3 for a, b in zip(reference, mattes)])
            starts = [s.first for s in plan.segments[1:]]
            score = score_files(alpha, clip.truth, clip.segments, clip.fps)["overall"]
            out.setdefault(str(preroll), []).append({
                "clip": clip.name, "mad": score["mad"], "dtssd": score["dtssd"],
                "vs_one_after_boundary": [round(float(mad[s:s + NEAR].mean()), 3) for s in starts],
                "vs_one_frame_k": [round(float(np.mean([mad[s + k] for s in starts if s + k < len(mad)])), 3)
                                   for k in range(10)]})
        truth = score_files(one, clip.truth, clip.segments, clip.fps)["overall"]
        out.setdefault("one", []).append({"clip": clip.name, "mad": truth["mad"], "dtssd": truth["dtssd"]})
    compositor.close()
    matter.close()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=Path, default=DATA / "clips")
    parser.add_argument("--composited", type=Path, default=DATA / "composited")
    parser.add_argument("--segment-seconds", type=float, nargs=2, default=(2.0, 1.0), metavar=("S", "S2"))
    parser.add_argument("--skip", choices=("equivalence", "quality"), action="append", default=[])
    parser.add_argument("--preroll", type=float, nargs="+", default=None, metavar="P",
                        help="the pre-roll study instead (seconds each, e.g. 0 0.5 1 2)")
    parser.add_argument("--clip", nargs="+", default=[], help="composited clips for the pre-roll study")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    configure_logging(False)
    report = {}
    with tempfile.TemporaryDirectory(prefix="livematte-cluster-") as tmp:
        if args.preroll:
            report["preroll"] = preroll_study(args.composited, Path(tmp), args.segment_seconds[1], args.preroll,
                                              args.clip)
            args.skip = ["equivalence", "quality"]
        if "equivalence" not in args.skip:
            work = Path(tmp) / "clips"
            work.mkdir()
            found = equivalence(args.clips, work, args.segment_seconds[0])
            report["equivalence"] = found["rows"]
            report["speed_clips"] = speed(found["runs"])
        if "quality" not in args.skip:
            work = Path(tmp) / "composited"
            work.mkdir()
            found = quality(args.composited, work, args.segment_seconds[1])
            report["quality"] = {k: found[k] for k in ("clips", "scores", "means")}
            report["speed_composited"] = speed(found["runs"])
    print(json.dumps(report, indent=1, default=str))
    if args.json:
        args.json.write_text(json.dumps(report, indent=1, default=str) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
