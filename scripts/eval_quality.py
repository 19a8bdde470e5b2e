"""Score livematte's mattes against exact ground truth on the composited test clips.

    python scripts/eval_quality.py [--clips DIR] [--mode video|live] [--preset NAME ...]
                                   [--model NAME ...] [--clip NAME ...] [--json PATH] [--extra ARG ...]

For every clip folder (``input.mp4``, ``alpha.mkv`` = FFV1 gray ground truth,
optional ``meta.json``), every preset and every model (``--model modnet rvm`` compares
them in one run), livematte's own command line runs in a
subprocess and writes its matte as an FFV1 gray ``.mkv`` into a temporary
folder; that file is scored against ``alpha.mkv`` with `scripts/metrics.py`
(MAD, MSE, Grad, dtSSD, IoU; the Robust Video Matting evaluation's definitions),
overall and per motion segment.

Alignment: each predicted frame goes to ground-truth frame ``round(time * fps)``,
``time`` being the predicted frame's timestamp and ``fps`` the truth's rate. A
truth frame with no prediction (live mode drops frames when it falls behind) is
scored against the last prediction before it, what a viewer saw then, or
against the first prediction if there is none yet (a live run's start-up, which
an empty matte would charge ~3 MAD a frame on a 90-frame clip); such frames are
counted as ``held_frames``.

Output: a table on stdout, one row per clip and preset (``preset / model`` with ``--model``),
then the mean over clips per preset and model. ``--json PATH`` writes::

    {
      "mode": "video" | "live",
      "clips_dir": str,                  # absolute path
      "results": [                       # one per clip and preset that ran
        {
          "clip": str,                   # clip folder name
          "preset": str,                 # "default" when no --preset was given
          "model": str | null,           # --model, null when not given
          "overall": {"mad": float, "mse": float, "grad": float,
                      "dtssd": float, "iou": float},
          "segments": {name: {same keys as overall}},
          "held_frames": int,            # truth frames scored against an older (or empty) matte
          "frames": int,                 # truth frames scored
          "stats": {...} | null          # live mode's --stats-json file, as written; null in video mode
        }
      ],
      "mean": {label: {"mad": float, "mse": float, "grad": float,
                       "dtssd": float, "iou": float}}    # unweighted mean over clips; label is
                                                         # the preset, "preset / model" with --model
    }

MAD and MSE are x1e3, Grad x1e-3 (a sum over pixels), dtSSD x1e2, IoU in [0, 1];
a metric with nothing to average (e.g. dtSSD of a one-frame segment) is null.
Runs that fail are reported on stderr, left out of the results, and make the
exit status 1.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from metrics import METRICS, SequenceScorer

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CLIPS = REPO_ROOT.parent / "shared" / "data" / "composited"
DEFAULT_PRESET = "default"
# Enough of a failed run's stderr to show its error without flooding the table.
STDERR_TAIL_LINES = 20

# So that tests can stand in for livematte without a model.
run_command = subprocess.run


@dataclass(frozen=True)
class Clip:
    """One clip folder. segments: name -> (first, last) frame indices, inclusive."""

    name: str
    folder: Path
    segments: dict[str, tuple[int, int]]
    fps: float | None

    @property
    def input(self) -> Path:
        return self.folder / "input.mp4"

    @property
    def truth(self) -> Path:
        return self.folder / "alpha.mkv"


def segments_from_meta(meta: Mapping) -> dict[str, tuple[int, int]]:
    """meta.json's ``segments`` -> name -> ``(first, last)`` inclusive.

    meta.json writes them half-open, ``[start, end)``: neighbours share a bound
    (``"sway": [0, 36], "still": [36, 54]``) and the data README numbers the same
    segments 0-35 and 36-53. Without segments there is one, ``"all"``.
    """
    raw = meta.get("segments")
    if not raw:
        return {"all": (0, sys.maxsize)}
    return {str(name): (int(start), int(end) - 1) for name, (start, end) in raw.items()}


def load_clip(folder: Path) -> Clip:
    meta_path = folder / "meta.json"
    meta = json.loads(meta_path.read_text(encoding="utf-8")) if meta_path.is_file() else {}
    return Clip(name=folder.name, folder=folder, segments=segments_from_meta(meta), fps=meta.get("fps"))


def find_clips(clips_dir: Path, names: Sequence[str] | None = None) -> list[Clip]:
    """Clip folders under ``clips_dir``, sorted; ``names`` keeps those named exactly or by prefix."""
    folders = sorted(p for p in clips_dir.iterdir() if (p / "input.mp4").is_file() and (p / "alpha.mkv").is_file())
    if names:
        unknown = [n for n in names if not any(f.name == n or f.name.startswith(n) for f in folders)]
        if unknown:
            raise ValueError(f"got clip name(s) {unknown}, expected one of {[f.name for f in folders]}")
        folders = [f for f in folders if any(f.name == n or f.name.startswith(n) for n in names)]
    return [load_clip(f) for f in folders]


def matte_file(mode: str, workdir: Path) -> Path:
    """Where a run of ``mode`` writes its mattes. Live, the matte file is written on a thread of its
    own that drops mattes it cannot keep up with (each then scored against the matte before it,
    "held"); raw mattes (``.nut``, about 1 ms a frame against FFV1's 4-12) keep every one even on
    one busy core, so each frame is scored on its own matte."""
    return workdir / ("alpha.nut" if mode == "live" else "alpha.mkv")


def livematte_command(
    mode: str,
    clip_input: Path,
    workdir: Path,
    preset: str | None,
    model: str | None = None,
    extra: Sequence[str] = (),
) -> list[str]:
    """The livematte command line that writes ``workdir/alpha.mkv`` for one clip (an argv list, no shell)."""
    alpha_out = str(matte_file(mode, workdir))
    if mode == "video":
        cmd = [sys.executable, "-m", "livematte", "video", str(clip_input), "-o", str(workdir / "out.mp4"),
               "--alpha-out", alpha_out, "--quiet"]
    elif mode == "live":
        cmd = [sys.executable, "-m", "livematte", "live", "--source", str(clip_input), "--realtime",
               "--sink", "null", "--alpha-out", alpha_out, "--stats-json", str(workdir / "stats.json")]
    else:
        raise ValueError(f"got mode {mode!r}, expected 'video' or 'live'")
    if preset is not None:
        cmd += ["--preset", preset]
    if model is not None:
        cmd += ["--model", model]
    return cmd + list(extra)


def read_timed_alpha(path: Path) -> Iterator[tuple[float | None, np.ndarray]]:
    """Frames of a matte video as ``(time in seconds or None, uint8 [H, W])``, in decode order."""
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            yield frame.time, frame.to_ndarray(format="gray")


def truth_rate(path: Path) -> float | None:
    with av.open(str(path)) as container:
        rate = container.streams.video[0].average_rate
    return float(rate) if rate else None


class HeldPredictions:
    """Predicted mattes looked up by truth frame index, holding the last one over gaps.

    frames: ``(time, uint8 [H, W])`` in presentation order; a frame's index is
    ``round(time * fps)`` (the previous index + 1 when it has no timestamp).
    Predictions landing on the same index: the later wins.
    """

    def __init__(self, frames: Iterator[tuple[float | None, np.ndarray]], fps: float) -> None:
        self._frames = frames
        self._fps = fps
        self._last_index = -1
        self._pending = self._next()
        self._current: np.ndarray | None = None
        self.held = 0

    def _next(self) -> tuple[int, np.ndarray] | None:
        item = next(self._frames, None)
        if item is None:
            return None
        time, alpha = item
        index = self._last_index + 1 if time is None else round(time * self._fps)
        self._last_index = index
        return index, alpha

    def at(self, index: int, shape: tuple[int, int]) -> np.ndarray:
        """The matte shown at truth frame ``index``: ``uint8 [H, W]``; before the first prediction
        (a live run's start), the first one, counted as held (zeros would add about 3 MAD a frame
        on a 90-frame clip, start-up more than the matte); zeros when there is none at all."""
        fresh = False
        while self._pending is not None and self._pending[0] <= index:
            fresh = self._pending[0] == index
            self._current = self._pending[1]
            self._pending = self._next()
        if not fresh:
            self.held += 1
        if self._current is None:
            return self._pending[1] if self._pending is not None else np.zeros(shape, np.uint8)
        return self._current


def score_files(
    pred_mkv: Path | str,
    truth_mkv: Path | str,
    segments: Mapping[str, tuple[int, int]] | None = None,
    fps: float | None = None,
) -> dict:
    """Score a predicted matte video against the truth, aligned by timestamp.

    segments: name -> ``(first, last)`` truth frame indices, inclusive.
    fps: the truth's frame rate (default: read from ``truth_mkv``).
    -> ``metrics.SequenceScorer.result`` plus ``"held_frames"``.
    Holds only the current frames in memory.
    """
    fps = fps or truth_rate(Path(truth_mkv))
    if not fps:
        raise ValueError(f"{truth_mkv}: no frame rate; pass fps")
    predictions = HeldPredictions(read_timed_alpha(Path(pred_mkv)), fps)
    scorer = SequenceScorer(segments)
    for index, (_, truth) in enumerate(read_timed_alpha(Path(truth_mkv))):
        scorer.add(predictions.at(index, truth.shape), truth)
    result = scorer.result()
    result["held_frames"] = predictions.held
    return result


def run_livematte(cmd: list[str]) -> None:
    """Run one livematte command; raises RuntimeError with the tail of its stderr if it fails."""
    done = run_command(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        tail = "\n".join(done.stderr.strip().splitlines()[-STDERR_TAIL_LINES:])
        raise RuntimeError(f"livematte exited with {done.returncode}: {' '.join(cmd[2:])}\n{tail}")


def evaluate(clip: Clip, preset: str | None, mode: str, model: str | None, extra: Sequence[str]) -> dict:
    """Run livematte on one clip with one preset and score it; -> one ``results`` entry of the JSON."""
    with tempfile.TemporaryDirectory(prefix="livematte-eval-") as tmp:
        workdir = Path(tmp)
        run_livematte(livematte_command(mode, clip.input, workdir, preset, model, extra))
        pred = matte_file(mode, workdir)
        if not pred.is_file():
            raise RuntimeError(f"livematte wrote no {pred.name}")
        scores = score_files(pred, clip.truth, clip.segments, clip.fps)
        stats_path = workdir / "stats.json"
        stats = json.loads(stats_path.read_text(encoding="utf-8")) if mode == "live" and stats_path.is_file() else None
    return {
        "clip": clip.name,
        "preset": preset or DEFAULT_PRESET,
        "model": model,
        "overall": scores["overall"],
        "segments": scores["segments"],
        "held_frames": scores["held_frames"],
        "frames": scores["frames"],
        "stats": stats,
    }


def label(result: Mapping) -> str:
    """A result's row name: its preset, and its model when one was asked for."""
    return result["preset"] if result["model"] is None else f"{result['preset']} / {result['model']}"


def _mean(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return math.fsum(present) / len(present) if present else None


def mean_by_preset(results: Sequence[dict]) -> dict[str, dict]:
    """:func:`label` (preset, or preset and model) -> {"overall": {metric: mean over clips},
    "segments": {name: {...}}}."""
    out: dict[str, dict] = {}
    for preset in dict.fromkeys(label(r) for r in results):
        rows = [r for r in results if label(r) == preset]
        names = dict.fromkeys(name for r in rows for name in r["segments"])
        out[preset] = {
            "overall": {k: _mean([r["overall"][k] for r in rows]) for k in METRICS},
            "segments": {
                name: {k: _mean([r["segments"][name][k] for r in rows if name in r["segments"]]) for k in METRICS}
                for name in names
            },
        }
    return out


def _fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def format_table(results: Sequence[dict], means: Mapping[str, dict]) -> str:
    """Rows per clip x preset, then per-preset means; segment columns are MAD/dtSSD."""
    names = list(dict.fromkeys(name for r in results for name in r["segments"]))
    header = ["clip", "preset", "MAD", "MSE", "Grad", "dtSSD", "IoU", "held"]
    header += [f"{n}:{m}" for n in names for m in ("MAD", "dtSSD")]

    def cells(clip: str, preset: str, overall: Mapping, segments: Mapping, held: str) -> list[str]:
        row = [clip, preset] + [_fmt(overall[k]) for k in ("mad", "mse", "grad", "dtssd")]
        row += [_fmt(overall["iou"], 4), held]
        for name in names:
            seg = segments.get(name, {})
            row += [_fmt(seg.get("mad")), _fmt(seg.get("dtssd"))]
        return row

    rows = [cells(r["clip"], label(r), r["overall"], r["segments"], f"{r['held_frames']}/{r['frames']}")
            for r in results]
    rows += [cells("MEAN", preset, m["overall"], m["segments"], "") for preset, m in means.items()]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))
             for row in [header, *rows]]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Score livematte's mattes against ground truth (see module docstring).")
    parser.add_argument("--clips", type=Path, default=DEFAULT_CLIPS, help=f"clip folders (default {DEFAULT_CLIPS})")
    parser.add_argument("--mode", choices=("video", "live"), default="video")
    parser.add_argument("--preset", nargs="+", action="extend", default=None, metavar="NAME",
                        help="preset(s) to compare (default: livematte's defaults)")
    parser.add_argument("--model", nargs="+", action="extend", default=None, metavar="NAME",
                        help="passed to livematte as --model; several are compared in one run")
    parser.add_argument("--clip", nargs="+", action="extend", default=None, metavar="NAME",
                        help="only these clips (full folder name or a prefix such as clip00)")
    parser.add_argument("--json", type=Path, default=None, metavar="PATH", help="also write the results here")
    parser.add_argument("--extra", nargs=argparse.REMAINDER, default=[], metavar="ARG",
                        help="everything after --extra goes to livematte as is")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        clips = find_clips(args.clips, args.clip)
    except (OSError, ValueError) as e:
        parser.error(str(e))
    if not clips:
        parser.error(f"no clip folders with input.mp4 and alpha.mkv under {args.clips}")
    presets = args.preset or [None]

    results, failures = [], 0
    for clip in clips:
        for preset in presets:
            for model in args.model or [None]:
                run = f"{clip.name} x {preset or DEFAULT_PRESET}" + (f" x {model}" if model else "")
                print(f"eval: {run} ...", file=sys.stderr, flush=True)
                try:
                    results.append(evaluate(clip, preset, args.mode, model, args.extra))
                except (RuntimeError, ValueError, OSError, av.FFmpegError) as e:
                    failures += 1
                    print(f"eval: {run} failed: {e}", file=sys.stderr)

    means = mean_by_preset(results)
    print(format_table(results, means))
    if args.json:
        report = {
            "mode": args.mode,
            "clips_dir": str(args.clips.resolve()),
            "results": results,
            "mean": {preset: m["overall"] for preset, m in means.items()},
        }
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
