"""livematte's offline path against a plain serial RVM loop, side by side on one 720p clip.

    python scripts/compare_peer.py [--clip DIR_OR_MP4] [--frames N] [--background IMAGE] [--repeat N]
                                   [--json PATH]

The acceptance figure for offline processing: livematte's default offline path
at least 1.5x the frame rate of a plain serial loop, at equal or better MAD.

Both runs, one after the other in this process, on the same clip, the same
number of frames and the same background image:

- **baseline**: the way Robust Video Matting's users run it, in one thread,
  one step after another: PyAV decode of the input -> RVM MobileNetV3 fp32 ONNX
  on onnxruntime (CPU, its default threads), fed the full frame (float32 RGB
  0..1, NCHW) with ``downsample_ratio`` 0.25 and the recurrent state carried
  from frame to frame -> numpy float composite ``fgr * pha + bg * (1 - pha)``
  (RVM's own composite, with its predicted foreground) -> PyAV libx264
  (veryfast, crf 18 like livematte's offline preset, yuv420p) into a temporary
  MP4. Its mattes are kept in memory (uint8) for scoring. The weights are the
  same file livematte uses (``livematte.models.fetch("rvm")``, sha256-checked).
- **livematte**: exactly what ``livematte video INPUT -o OUT.mp4 --alpha-out
  ALPHA.mkv --background IMAGE --quiet [--frames N]`` does, called in-process
  (so interpreter start-up is not counted for either side): the command line's
  own parsing (``livematte.commands.video.video_job``) and ``livematte.offline.run_video_job``,
  whose result holds the run's ``Stats``, the source of its per-frame figures.
  It also encodes its matte (FFV1, for scoring), work the baseline does not do.

Two frame rates for each, measured the same way on both sides:

- ``whole_fps``: frames / seconds from before the model loads to the output
  file closed (model load, decoder and encoder set-up and flush included);
- ``steady_fps``: (frames - 1) / seconds between the first and the last frame
  written to the encoder: the rate once everything is running.

The two sides run ``--repeat`` times (default 3), alternating, and the best
run of each side (highest steady fps) is compared: on a shared machine the
least disturbed run is the closest to the truth. Each run also reports the CPU
time this process spent per frame and how busy the rest of the machine was
(``others_cpu_percent``: CPU used by other programs, or stolen by the
hypervisor, as a share of all CPUs); above 10% the report warns that the frame
rates are not representative.

Quality: MAD and dtSSD (``scripts/metrics.py``, the RVM evaluation's
definitions: MAD x1e3, dtSSD x1e2) of each side's mattes against the clip's
ground truth ``alpha.mkv``, overall and per motion segment when ``meta.json``
names them (the mattes are the same on every repeat; the first run's are
scored). A clip given as a bare video file is scored only if an ``alpha.mkv``
lies beside it.

``--json PATH`` writes::

    {"clip": str, "frames": int, "background": str, "repeat": int,
     "machine": {"cpu": str, "cores": int},
     "baseline": {"whole_fps": float, "steady_fps": float, "seconds": float, "frames": int,
                  "cpu_ms_per_frame": float, "others_cpu_percent": float,   # of the best run
                  "quality": {"overall": {"mad", "mse", "grad", "dtssd", "iou"},
                              "segments": {name: {...}}} | null,          # null without truth
                  "runs": [{the same figures, without quality}, ...]},    # every run, in order
     "livematte": {the same keys, and "stages_ms": {stage: mean ms per frame}},
     "ratio": {"whole": float, "steady": float},     # livematte / baseline, best runs
     "target_met": bool | null}    # steady ratio >= 1.5 and MAD <= baseline's; null without truth

Figures depend on the machine and on what else runs on it: run it on an idle one.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

from livematte.commands.bench_report import machine
from livematte.errors import LivematteError

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
DEFAULT_CLIP = SHARED_DATA / "composited" / "clip00_p_07141906"
DEFAULT_BACKGROUND = SHARED_DATA / "backgrounds" / "coffee.png"
RATIO = 0.25
TARGET = 1.5


# ---------------------------------------------------------------------------------------------
# The baseline: a plain serial loop


def run_baseline(input_path: Path, weights: Path, background_path: Path, output: Path,
                 max_frames: int | None) -> dict:
    """Decode, model, composite, encode, one frame at a time; -> timings and the mattes."""
    import onnxruntime as ort

    start = time.perf_counter()
    session = ort.InferenceSession(str(weights), providers=["CPUExecutionProvider"])
    picture = cv2.imread(str(background_path), cv2.IMREAD_COLOR)
    if picture is None:
        raise LivematteError(f"{background_path} is not an image OpenCV can read")
    background = cv2.cvtColor(picture, cv2.COLOR_BGR2RGB)

    source = av.open(str(input_path))
    stream = source.streams.video[0]
    rate = stream.average_rate or Fraction(30)
    width, height = stream.codec_context.width, stream.codec_context.height
    bg = cv2.resize(background, (width, height)).astype(np.float32).transpose(2, 0, 1)[None] / 255
    sink = av.open(str(output), "w")
    encoder = sink.add_stream("libx264", rate=rate, options={"preset": "veryfast", "crf": "18"})
    encoder.width, encoder.height, encoder.pix_fmt = width, height, "yuv420p"

    state = [np.zeros((1, 1, 1, 1), np.float32)] * 4
    ratio = np.array([RATIO], np.float32)
    mattes, written = [], []
    for index, frame in enumerate(source.decode(stream)):
        if max_frames is not None and index >= max_frames:
            break
        rgb = frame.to_ndarray(format="rgb24")
        src = rgb.transpose(2, 0, 1)[None].astype(np.float32) / 255
        fgr, pha, *state = session.run(None, {"src": src, "r1i": state[0], "r2i": state[1], "r3i": state[2],
                                              "r4i": state[3], "downsample_ratio": ratio})
        composite = fgr * pha + bg * (1 - pha)
        picture = np.clip(composite[0] * 255, 0, 255).astype(np.uint8).transpose(1, 2, 0)
        out = av.VideoFrame.from_ndarray(np.ascontiguousarray(picture), format="rgb24")
        out.pts, out.time_base = index, 1 / Fraction(rate)
        sink.mux(encoder.encode(out))
        written.append(time.perf_counter())
        mattes.append(np.clip(pha[0, 0] * 255 + 0.5, 0, 255).astype(np.uint8))
    sink.mux(encoder.encode())
    sink.close()
    source.close()
    seconds = time.perf_counter() - start
    del session
    return {"seconds": seconds, "frames": len(written), "written": written, "mattes": mattes}


# ---------------------------------------------------------------------------------------------
# livematte, as users run it


def run_livematte(input_path: Path, background_path: Path, output: Path, alpha_out: Path,
                  max_frames: int | None) -> dict:
    """``livematte video`` in-process; -> timings and the mattes it wrote."""
    from livematte import cli
    from livematte.commands.video import video_job
    from livematte.offline import run_video_job
    from livematte.media.readback import read_alpha

    # -y: every repeat writes the same files.
    argv = ["video", str(input_path), "-o", str(output), "--alpha-out", str(alpha_out),
            "--background", str(background_path), "--quiet", "-y"]
    if max_frames is not None:
        argv += ["--frames", str(max_frames)]
    start = time.perf_counter()
    args = cli.build_parser().parse_args(argv)
    cli.configure_logging(args.verbose)
    result = run_video_job(video_job(args))  # a failure raises LivematteError
    seconds = time.perf_counter() - start
    snapshot = result.done[str(input_path)].snapshot()
    return {"seconds": seconds, "frames": snapshot["composited"], "steady_fps": snapshot["fps"],
            "stages_ms": snapshot["stages_ms"], "mattes": read_alpha(alpha_out)}


# ---------------------------------------------------------------------------------------------
# Scoring and reporting


def segments_from_meta(folder: Path) -> dict[str, tuple[int, int]] | None:
    """meta.json's half-open ``[start, end)`` segments -> inclusive ``(first, last)``."""
    meta = folder / "meta.json"
    if not meta.is_file():
        return None
    raw = json.loads(meta.read_text(encoding="utf-8")).get("segments") or {}
    return {str(name): (int(start), int(end) - 1) for name, (start, end) in raw.items()} or None


def score(mattes: list[np.ndarray], truth: list[np.ndarray] | None, segments) -> dict | None:
    from metrics import SequenceScorer

    if truth is None:
        return None
    if len(mattes) > len(truth):
        raise LivematteError(f"{len(mattes)} mattes for {len(truth)} ground-truth frames")
    scorer = SequenceScorer(segments)
    for pred, true in zip(mattes, truth):
        scorer.add(pred, true)
    result = scorer.result()
    rounded = {key: (None if v is None else round(v, 3)) for key, v in result["overall"].items()}
    per_segment = {name: {key: (None if v is None else round(v, 3)) for key, v in values.items()}
                   for name, values in result["segments"].items()}
    return {"overall": rounded, "segments": per_segment}


def resolve_clip(clip: str | None) -> tuple[Path, Path | None, dict | None]:
    """-> (input video, ground-truth alpha.mkv or None, segments or None)."""
    if clip is None:
        if not DEFAULT_CLIP.is_dir():
            raise LivematteError(f"the default clip {DEFAULT_CLIP} is not here (../shared/data is absent); "
                                 "pass --clip DIR (input.mp4 + alpha.mkv) or --clip VIDEO")
        path = DEFAULT_CLIP
    else:
        path = Path(clip)
    if path.is_dir():
        video = path / "input.mp4"
        if not video.is_file():
            raise LivematteError(f"{path} has no input.mp4")
        folder = path
    elif path.is_file():
        video, folder = path, path.parent
    else:
        raise LivematteError(f"--clip {path}: no such file or folder")
    truth = folder / "alpha.mkv"
    return video, (truth if truth.is_file() else None), segments_from_meta(folder)


def generated_background(folder: Path) -> Path:
    """A plain, deterministic backdrop when ../shared's backgrounds are absent."""
    y, x = np.mgrid[0:720, 0:1280].astype(np.float32)
    image = np.dstack([120 + 80 * np.sin(x / 90), 140 + 60 * np.cos(y / 70), 160 + 50 * np.sin((x + y) / 150)])
    path = folder / "background.png"
    cv2.imwrite(str(path), image.astype(np.uint8))
    return path


class CpuMeter:
    """CPU seconds this process used, and what everything else on the machine used, over a block."""

    def __enter__(self):
        import psutil

        self._process = psutil.Process()
        self._machine0, self._own0 = psutil.cpu_times(), self._process.cpu_times()
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        import psutil

        wall = time.perf_counter() - self._t0
        machine1, own1 = psutil.cpu_times(), self._process.cpu_times()
        self.own_s = (own1.user - self._own0.user) + (own1.system - self._own0.system)

        def busy(t):  # steal counts as busy: the hypervisor gave the core to someone else
            return sum(t) - t.idle - getattr(t, "iowait", 0.0)

        others = max(0.0, busy(machine1) - busy(self._machine0) - self.own_s)
        self.others_percent = 100.0 * others / max(wall * (os.cpu_count() or 1), 1e-9)
        return False


def compare(args: argparse.Namespace) -> dict:
    from livematte import models
    from livematte.media.readback import read_alpha

    video, truth_path, segments = resolve_clip(args.clip)
    weights = models.fetch("rvm")
    truth = read_alpha(truth_path) if truth_path is not None else None
    runs: dict[str, list[dict]] = {"baseline": [], "livematte": []}
    mattes: dict[str, list[np.ndarray]] = {}
    stages_ms = None
    with tempfile.TemporaryDirectory(prefix="compare-peer-") as tmp:
        tmp = Path(tmp)
        if args.background is not None:
            background = Path(args.background)
            if not background.is_file():
                raise LivematteError(f"--background {background}: no such file")
        else:
            background = DEFAULT_BACKGROUND if DEFAULT_BACKGROUND.is_file() else generated_background(tmp)
        print(f"clip {video} ({'with' if truth is not None else 'no'} ground truth), background {background}",
              file=sys.stderr)
        # Alternating, so that a burst of load from other programs does not land on one side only.
        for attempt in range(args.repeat):
            for name in ("baseline", "livematte"):
                print(f"[{attempt + 1}/{args.repeat}] {name} ...", file=sys.stderr)
                gc.collect()
                with CpuMeter() as cpu:
                    if name == "baseline":
                        run = run_baseline(video, weights, background, tmp / "baseline.mp4", args.frames)
                        written = run["written"]
                        run["steady_fps"] = ((len(written) - 1) / (written[-1] - written[0])
                                             if len(written) > 1 else 0.0)
                    else:
                        run = run_livematte(video, background, tmp / "out.mp4", tmp / "alpha.mkv", args.frames)
                        stages_ms = stages_ms or run["stages_ms"]
                mattes.setdefault(name, run["mattes"])  # the same every time: scored once
                runs[name].append({"whole_fps": round(run["frames"] / run["seconds"], 2),
                                   "steady_fps": round(run["steady_fps"], 2), "seconds": round(run["seconds"], 2),
                                   "frames": run["frames"],
                                   "cpu_ms_per_frame": round(cpu.own_s * 1e3 / max(run["frames"], 1), 1),
                                   "others_cpu_percent": round(cpu.others_percent, 1)})
    if runs["baseline"][0]["frames"] != runs["livematte"][0]["frames"]:
        raise LivematteError(f"the baseline wrote {runs['baseline'][0]['frames']} frames, "
                             f"livematte {runs['livematte'][0]['frames']}")
    results = {}
    for name in ("baseline", "livematte"):
        best = max(runs[name], key=lambda r: r["steady_fps"])
        results[name] = {**best, "quality": score(mattes[name], truth, segments), "runs": runs[name]}
    results["livematte"]["stages_ms"] = stages_ms
    ratio = {kind: round(results["livematte"][f"{kind}_fps"] / max(results["baseline"][f"{kind}_fps"], 1e-9), 2)
             for kind in ("whole", "steady")}
    met = None
    if truth is not None:
        met = (ratio["steady"] >= TARGET and results["livematte"]["quality"]["overall"]["mad"]
               <= results["baseline"]["quality"]["overall"]["mad"])
    return {"clip": str(video), "frames": results["baseline"]["frames"], "background": str(background),
            "repeat": args.repeat, "machine": machine(), "baseline": results["baseline"],
            "livematte": results["livematte"], "ratio": ratio, "target_met": met}


def print_report(doc: dict) -> None:
    b, m = doc["baseline"], doc["livematte"]
    print(f"{doc['clip']}: {doc['frames']} frames; {doc['machine']['cpu']}, {doc['machine']['cores']} CPUs; "
          f"best of {doc['repeat']} alternating run(s) per side")
    print(f"{'':36}{'baseline':>12}{'livematte':>12}{'ratio':>8}")
    print(f"{'fps, whole run (model load incl.)':36}{b['whole_fps']:12.1f}{m['whole_fps']:12.1f}"
          f"{doc['ratio']['whole']:8.2f}")
    print(f"{'fps, steady (first to last frame)':36}{b['steady_fps']:12.1f}{m['steady_fps']:12.1f}"
          f"{doc['ratio']['steady']:8.2f}")
    print(f"{'seconds, whole run':36}{b['seconds']:12.2f}{m['seconds']:12.2f}")
    print(f"{'CPU ms per frame (this process)':36}{b['cpu_ms_per_frame']:12.1f}{m['cpu_ms_per_frame']:12.1f}")
    label = "other programs' CPU use, %"
    print(f"{label:36}{b['others_cpu_percent']:12.0f}{m['others_cpu_percent']:12.0f}")
    if b["quality"] is None:
        print("no ground truth (alpha.mkv) beside the clip: quality not scored")
        return
    for metric in ("mad", "dtssd"):
        print(f"{metric.upper() + ' overall':36}{b['quality']['overall'][metric]:12.2f}"
              f"{m['quality']['overall'][metric]:12.2f}")
        for name in b["quality"]["segments"]:
            bv, mv = b["quality"]["segments"][name][metric], m["quality"]["segments"][name][metric]
            if bv is not None and mv is not None:
                print(f"{'  ' + metric.upper() + ' ' + name:36}{bv:12.2f}{mv:12.2f}")
    verdict = "yes" if doc["target_met"] else "no"
    print(f"livematte >= {TARGET}x the baseline's steady fps at equal or better MAD: {verdict}")
    busy = max(b["others_cpu_percent"], m["others_cpu_percent"])
    if busy > 10:
        print(f"warning: other programs used up to {busy:.0f}% of the CPUs during the best runs; "
              "the frame rates are not representative")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clip", default=None,
                        help="a clip folder (input.mp4, alpha.mkv, meta.json) or a video file "
                             f"(default {DEFAULT_CLIP})")
    parser.add_argument("--frames", type=int, default=None, metavar="N", help="only the first N frames")
    parser.add_argument("--background", default=None, metavar="IMAGE",
                        help="background image for both (default ../shared/data/backgrounds/coffee.png, "
                             "else a generated one)")
    parser.add_argument("--repeat", type=int, default=3, metavar="N",
                        help="alternating runs per side; the best (highest steady fps) of each is compared "
                             "(default 3)")
    parser.add_argument("--json", type=Path, default=None, metavar="PATH", help="write the figures as JSON")
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error(f"--repeat got {args.repeat}, expected 1 or more")
    if args.frames is not None and args.frames < 2:
        parser.error(f"--frames got {args.frames}, expected 2 or more")
    try:
        doc = compare(args)
    except LivematteError as e:
        print(f"compare_peer: error: {e}", file=sys.stderr)
        return 1
    print_report(doc)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
