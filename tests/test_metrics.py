"""Matte quality metrics: hand-computed values, an independent Grad, and the eval script's scoring."""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

import metrics
from metrics import SequenceScorer, dtssd, grad, iou, mad, mse, score_sequence

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "eval_quality.py"


@pytest.fixture(scope="module")
def eval_quality():
    spec = importlib.util.spec_from_file_location("eval_quality", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    # dataclasses look their module up in sys.modules while the class is built.
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


def f32(rows) -> np.ndarray:
    return np.array(rows, dtype=np.float32)


# --- per-frame metrics, by hand -------------------------------------------------------------

P = f32([[0.0, 1.0], [0.5, 0.25]])
ZERO = np.zeros((2, 2), np.float32)


def test_mad_is_mean_absolute_error_times_1e3():
    # |0| + |1| + |0.5| + |0.25| = 1.75 over 4 pixels; the sign of the error must not matter.
    assert mad(P, ZERO) == pytest.approx(437.5)
    assert mad(ZERO, P) == pytest.approx(437.5)


def test_mse_is_mean_squared_error_times_1e3():
    # 0 + 1 + 0.25 + 0.0625 = 1.3125 over 4 pixels.
    assert mse(P, ZERO) == pytest.approx(328.125)


def test_uint8_mattes_are_divided_by_255():
    pred = np.array([[255, 0], [51, 0]], np.uint8)  # 1.0 and 0.2
    assert mad(pred, np.zeros((2, 2), np.uint8)) == pytest.approx(300.0, rel=1e-6)
    assert mad(pred, f32([[1.0, 0.0], [0.2, 0.0]])) == pytest.approx(0.0, abs=1e-4)


def test_dtssd_scores_the_change_of_the_error_not_the_error():
    # A constant error (the matte is off by 0.5 in two pixels, frame after frame) is not flicker.
    steady = f32([[0.5, 0.5], [0.0, 0.0]])
    assert dtssd(steady, steady, ZERO, ZERO) == 0.0
    assert mad(steady, ZERO) > 0
    # p changes by (0.2, 0, 0, -0.2) while g changes by (0, 0, 0, 0.2): residual (0.2, 0, 0, -0.4).
    p_prev, p = f32([[0.3, 0.0], [0.0, 0.6]]), f32([[0.5, 0.0], [0.0, 0.4]])
    g_prev, g = f32([[0.0, 0.0], [0.0, 0.0]]), f32([[0.0, 0.0], [0.0, 0.2]])
    # sqrt((0.04 + 0.16) / 4) * 100
    assert dtssd(p_prev, p, g_prev, g) == pytest.approx(math.sqrt(0.05) * 100, rel=1e-5)


def test_dtssd_of_one_changed_pixel():
    p = f32([[1.0, 0.0], [0.0, 0.0]])
    assert dtssd(ZERO, p, ZERO, ZERO) == pytest.approx(50.0)  # sqrt(1 / 4) * 100


def test_iou_thresholds_both_mattes():
    pred = f32([[0.9, 0.6], [0.4, 0.1]])
    truth = f32([[1.0, 1.0], [1.0, 0.0]])
    assert iou(pred, truth) == pytest.approx(2 / 3)
    assert iou(pred, truth, threshold=0.3) == 1.0
    # Foreground is strictly above the threshold.
    assert iou(f32([[0.5, 0.0], [0.0, 0.0]]), f32([[0.5, 0.0], [0.0, 0.0]])) == 1.0  # both empty
    assert iou(f32([[0.5, 0.0], [0.0, 0.0]]), f32([[0.51, 0.0], [0.0, 0.0]])) == 0.0


@pytest.mark.parametrize(
    ("pred", "error"),
    [
        (np.zeros((2, 2), np.int32), TypeError),
        ([[0.0, 1.0], [0.0, 1.0]], TypeError),
        (np.zeros((2, 2, 1), np.float32), ValueError),
        (np.full((2, 2), 200.0, np.float32), ValueError),  # 0..255 floats
        (np.full((2, 2), np.nan, np.float32), ValueError),
        (np.zeros((3, 2), np.float32), ValueError),  # not the truth's shape
    ],
)
def test_bad_mattes_are_refused(pred, error):
    with pytest.raises(error):
        mad(pred, ZERO)


# --- Grad -----------------------------------------------------------------------------------


def slow_grad(pred: np.ndarray, truth: np.ndarray, sigma: float = 1.4) -> float:
    """The documented definition, written out with loops and a full 2-D kernel."""
    half = math.ceil(sigma * math.sqrt(-2 * math.log(math.sqrt(2 * math.pi) * sigma * 0.01)))
    size = 2 * half + 1
    kx = np.zeros((size, size))
    for y in range(size):
        for x in range(size):
            gy = math.exp(-((y - half) ** 2) / (2 * sigma**2)) / (sigma * math.sqrt(2 * math.pi))
            gx = math.exp(-((x - half) ** 2) / (2 * sigma**2)) / (sigma * math.sqrt(2 * math.pi))
            kx[y, x] = gy * (-(x - half) / sigma**2) * gx
    kx /= math.sqrt((kx**2).sum())
    ky = kx.T

    def magnitude(a: np.ndarray) -> np.ndarray:
        # numpy's "reflect" mirrors without repeating the edge pixel, like BORDER_REFLECT_101.
        padded = np.pad(a.astype(np.float64), half, mode="reflect")
        out = np.zeros(a.shape)
        for i in range(a.shape[0]):
            for j in range(a.shape[1]):
                # A true convolution (flipped kernel): the sign flip must not change |grad|.
                window = padded[i : i + size, j : j + size][::-1, ::-1]
                out[i, j] = math.hypot((window * kx).sum(), (window * ky).sum())
        return out

    return float(((magnitude(pred) - magnitude(truth)) ** 2).sum()) * 1e-3


def step(shape=(16, 16), column=8) -> np.ndarray:
    a = np.zeros(shape, np.float32)
    a[:, column:] = 1.0
    return a


def test_grad_kernel_for_sigma_1_4_is_9_taps_with_unit_norm():
    smooth, derivative = metrics.gaussian_derivative_kernels(1.4)
    assert smooth.shape == derivative.shape == (9,)
    assert np.linalg.norm(np.outer(smooth, derivative)) == pytest.approx(1.0, rel=1e-6)
    assert derivative[4] == 0 and derivative[3] == -derivative[5]


def test_grad_is_zero_for_identical_mattes(rng):
    a = rng.random((20, 30), dtype=np.float32)
    assert grad(a, a) == 0.0


def test_grad_ignores_a_constant_offset_that_mad_sees():
    assert grad(np.full((12, 12), 0.7, np.float32), np.full((12, 12), 0.2, np.float32)) == pytest.approx(0.0, abs=1e-9)


def test_grad_of_an_edge_against_flat_is_positive_symmetric_and_direction_free():
    flat = np.zeros((16, 16), np.float32)
    value = grad(step(), flat)
    assert value > 0
    assert grad(flat, step()) == pytest.approx(value, rel=1e-6)
    assert grad(step().T.copy(), flat) == pytest.approx(value, rel=1e-5)  # horizontal edge
    # A sum over pixels, not a mean: twice the edge length, twice the error.
    assert grad(step((32, 16)), np.zeros((32, 16), np.float32)) == pytest.approx(2 * value, rel=1e-5)


def test_grad_matches_a_straightforward_implementation(rng):
    pred = rng.random((12, 10), dtype=np.float32)
    truth = np.clip(pred + rng.normal(0, 0.2, pred.shape).astype(np.float32), 0, 1)
    assert grad(pred, truth) == pytest.approx(slow_grad(pred, truth), rel=1e-4)
    flat = np.zeros((16, 16), np.float32)
    assert grad(step(), flat) == pytest.approx(slow_grad(step(), flat), rel=1e-4)


# --- sequences ------------------------------------------------------------------------------


def constant_frames(values, shape=(2, 2)):
    return [np.full(shape, v, np.float32) for v in values]


def test_sequence_scorer_keeps_segments_apart():
    # Truth is empty; prediction t is the constant v_t, so frame MAD = 1000 v_t and
    # the pair (t-1, t) has dtSSD = 100 |v_t - v_t-1|: 20, 0, 30.
    values = [0.1, 0.3, 0.3, 0.0]
    segments = {"a": (0, 1), "b": (1, 3), "last": (3, 3), "past_end": (2, 10)}
    scorer = SequenceScorer(segments)
    frame_scores = [scorer.add(p, t) for p, t in zip(constant_frames(values), constant_frames([0] * 4))]
    assert frame_scores[0]["dtssd"] is None
    assert frame_scores[3]["dtssd"] == pytest.approx(30.0, rel=1e-5)

    result = scorer.result()
    assert result["frames"] == 4 and result["pairs"] == 3
    overall = result["overall"]
    assert overall["mad"] == pytest.approx(175.0, rel=1e-5)
    assert overall["mse"] == pytest.approx((10 + 90 + 90 + 0) / 4, rel=1e-5)
    assert overall["dtssd"] == pytest.approx(50 / 3, rel=1e-5)
    assert overall["iou"] == 1.0 and overall["grad"] == pytest.approx(0.0, abs=1e-9)
    seg = result["segments"]
    assert seg["a"]["mad"] == pytest.approx(200.0, rel=1e-5)
    assert seg["a"]["dtssd"] == pytest.approx(20.0, rel=1e-5)
    # Frame 1 is in b but frame 0 is not: the pair (0, 1) must not count toward b.
    assert seg["b"]["mad"] == pytest.approx(200.0, rel=1e-5)
    assert seg["b"]["dtssd"] == pytest.approx(15.0, rel=1e-5)
    assert seg["last"]["mad"] == pytest.approx(0.0, abs=1e-6)
    assert seg["last"]["dtssd"] is None
    assert seg["past_end"]["mad"] == pytest.approx(150.0, rel=1e-5)
    assert seg["past_end"]["dtssd"] == pytest.approx(30.0, rel=1e-5)  # pair (2, 3) only


def test_score_sequence_takes_generators_and_matches_the_scorer(rng):
    preds = [rng.random((8, 6), dtype=np.float32) for _ in range(5)]
    truths = [rng.random((8, 6), dtype=np.float32) for _ in range(5)]
    scorer = SequenceScorer({"s": (1, 2)})
    for p, t in zip(preds, truths):
        scorer.add(p, t)
    assert score_sequence(iter(preds), (t for t in truths), {"s": (1, 2)}) == scorer.result()


def test_score_sequence_refuses_unequal_lengths():
    with pytest.raises(ValueError, match="more truths"):
        score_sequence(constant_frames([0, 0]), constant_frames([0, 0, 0]))


def test_scorer_refuses_a_change_of_size_and_bad_segments():
    scorer = SequenceScorer()
    scorer.add(np.zeros((4, 4), np.float32), np.zeros((4, 4), np.float32))
    with pytest.raises(ValueError, match="frame shape"):
        scorer.add(np.zeros((4, 5), np.float32), np.zeros((4, 5), np.float32))
    with pytest.raises(ValueError):
        SequenceScorer({"backwards": (5, 2)})


# --- the eval script's scoring path ---------------------------------------------------------

H, W, FPS = 24, 32, 30


def write_gray_mkv(path: Path, frames: dict[int, np.ndarray], rate: int = FPS) -> Path:
    """FFV1 gray mkv with frame ``i`` at time ``i / rate``; missing keys leave gaps."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("ffv1", rate=rate)
        stream.width, stream.height, stream.pix_fmt = W, H, "gray"
        for index in sorted(frames):
            frame = av.VideoFrame.from_ndarray(frames[index], format="gray")
            frame.pts, frame.time_base = index, Fraction(1, rate)
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


def truth_frames(count: int = 10) -> dict[int, np.ndarray]:
    # Every frame a different grey: holding the wrong frame changes the score.
    return {i: np.full((H, W), 10 + 20 * i, np.uint8) for i in range(count)}


STEP = 20 / 255  # difference between consecutive truth frames, in alpha units


def test_score_files_holds_the_last_matte_over_a_dropped_frame(tmp_path, eval_quality):
    truth = truth_frames()
    pred = {i: a for i, a in truth.items() if i != 4}
    result = eval_quality.score_files(
        write_gray_mkv(tmp_path / "pred.mkv", pred),
        write_gray_mkv(tmp_path / "truth.mkv", truth),
        segments={"before": (0, 3), "gap": (3, 5), "after": (6, 9)},
    )
    assert result["frames"] == 10 and result["held_frames"] == 1
    # Frame 4 is shown frame 3's matte: off by one step there, exact elsewhere.
    assert result["overall"]["mad"] == pytest.approx(STEP * 1e3 / 10, rel=1e-5)
    # The error appears at pair (3, 4) and disappears at (4, 5).
    assert result["overall"]["dtssd"] == pytest.approx(2 * STEP * 1e2 / 9, rel=1e-5)
    seg = result["segments"]
    assert seg["before"]["mad"] == 0 and seg["after"]["mad"] == 0
    assert seg["gap"]["mad"] == pytest.approx(STEP * 1e3 / 3, rel=1e-5)
    assert seg["gap"]["dtssd"] == pytest.approx(STEP * 1e2, rel=1e-5)


def test_score_files_uses_the_first_matte_before_it_and_holds_at_the_end(tmp_path, eval_quality):
    truth = truth_frames()
    pred = {i: a for i, a in truth.items() if i not in (0, 9)}
    result = eval_quality.score_files(
        write_gray_mkv(tmp_path / "pred.mkv", pred), write_gray_mkv(tmp_path / "truth.mkv", truth), fps=FPS
    )
    assert result["held_frames"] == 2
    # Frame 0: frame 1's grey, one step off (a live run's start); frame 9: frame 8's, one step off.
    assert result["overall"]["mad"] == pytest.approx(2 * STEP * 1e3 / 10, rel=1e-5)
    assert result["segments"] == {}


def test_score_files_aligns_by_time_not_by_order(tmp_path, eval_quality):
    # The same mattes written at 60 fps timestamps (0, 2, 4, ... in 1/60 s) land on the same truth frames.
    truth = truth_frames()
    pred = {2 * i: a for i, a in truth.items()}
    result = eval_quality.score_files(
        write_gray_mkv(tmp_path / "pred.mkv", pred, rate=60), write_gray_mkv(tmp_path / "truth.mkv", truth)
    )
    assert result["held_frames"] == 0
    assert result["overall"]["mad"] == 0


def test_meta_segments_are_half_open(eval_quality):
    meta = {"segments": {"sway": [0, 36], "still": [36, 54], "fast": [54, 90]}}
    assert eval_quality.segments_from_meta(meta) == {"sway": (0, 35), "still": (36, 53), "fast": (54, 89)}
    assert list(eval_quality.segments_from_meta({})) == ["all"]


def test_livematte_commands_follow_the_contract(tmp_path, eval_quality):
    video = eval_quality.livematte_command("video", Path("c/input.mp4"), tmp_path, "fast", "rvm", ["--threads", "2"])
    assert video[:4] == [sys.executable, "-m", "livematte", "video"]
    assert video[video.index("--alpha-out") + 1] == str(tmp_path / "alpha.mkv")
    assert video[video.index("--preset") + 1] == "fast" and video[-2:] == ["--threads", "2"]
    assert "--quiet" in video
    live = eval_quality.livematte_command("live", Path("c/input.mp4"), tmp_path, None, None)
    assert live[3:6] == ["live", "--source", "c/input.mp4"]
    assert {"--realtime", "--stats-json"} <= set(live) and "--preset" not in live and "--model" not in live
    assert live[live.index("--alpha-out") + 1] == str(tmp_path / "alpha.nut")  # raw: every matte kept


def one_clip(tmp_path: Path) -> tuple[Path, dict]:
    """``tmp_path/clips/clipA`` with its truth (``truth_frames``) and an empty input -> (folder, truth)."""
    clip = tmp_path / "clips" / "clipA"
    clip.mkdir(parents=True)
    truth = truth_frames()
    write_gray_mkv(clip / "alpha.mkv", truth)
    (clip / "input.mp4").write_bytes(b"")  # livematte is faked in the tests: never read
    return clip, truth


def test_main_writes_the_documented_json(tmp_path, eval_quality, monkeypatch, capsys):
    clip, truth = one_clip(tmp_path)
    (clip / "meta.json").write_text(json.dumps({"fps": 30, "segments": {"a": [0, 5], "b": [5, 10]}}))
    ran = []

    def fake_livematte(cmd, **kwargs):
        ran.append(cmd)
        if "broken" in cmd:
            return subprocess.CompletedProcess(cmd, 2, "", "livematte: error: no such preset\n")
        out = Path(cmd[cmd.index("--alpha-out") + 1])
        write_gray_mkv(out, {i: a for i, a in truth.items() if i != 7})
        Path(cmd[cmd.index("--stats-json") + 1]).write_text('{"dropped": 1}')
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(eval_quality, "run_command", fake_livematte)
    report_path = tmp_path / "report.json"
    code = eval_quality.main(["--clips", str(tmp_path / "clips"), "--mode", "live", "--preset", "good", "broken",
                              "--json", str(report_path), "--extra", "--threads", "1"])
    assert code == 1  # the broken preset failed
    assert len(ran) == 2 and all(cmd[-2:] == ["--threads", "1"] for cmd in ran)
    out, err = capsys.readouterr()
    assert "no such preset" in err and "clipA" in out and "MEAN" in out

    report = json.loads(report_path.read_text())
    assert report["mode"] == "live" and report["clips_dir"] == str((tmp_path / "clips").resolve())
    [entry] = report["results"]
    assert entry["clip"] == "clipA" and entry["preset"] == "good" and entry["model"] is None
    assert entry["frames"] == 10 and entry["held_frames"] == 1 and entry["stats"] == {"dropped": 1}
    assert set(entry["overall"]) == {"mad", "mse", "grad", "dtssd", "iou"}
    assert entry["overall"]["mad"] == pytest.approx(STEP * 1e3 / 10, rel=1e-5)
    # Frame 7 (held) lies in b = frames 5..9, not in a = frames 0..4.
    assert entry["segments"]["a"]["mad"] == 0
    assert entry["segments"]["b"]["mad"] == pytest.approx(STEP * 1e3 / 5, rel=1e-5)
    assert report["mean"] == {"good": entry["overall"]}


def test_several_models_are_compared_in_one_run(tmp_path, eval_quality, monkeypatch, capsys):
    _, truth = one_clip(tmp_path)
    models_run = []

    def fake_livematte(cmd, **kwargs):
        model = cmd[cmd.index("--model") + 1]
        models_run.append(model)
        # "good" returns the truth itself, "off" the truth with frame 3 left out (held)
        write_gray_mkv(Path(cmd[cmd.index("--alpha-out") + 1]),
                       {i: a for i, a in truth.items() if model == "good" or i != 3})
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(eval_quality, "run_command", fake_livematte)
    report_path = tmp_path / "report.json"
    assert eval_quality.main(["--clips", str(tmp_path / "clips"), "--preset", "quality", "--model", "good", "off",
                              "--json", str(report_path)]) == 0
    assert models_run == ["good", "off"]
    assert "quality / good" in capsys.readouterr().out
    report = json.loads(report_path.read_text())
    assert [r["model"] for r in report["results"]] == ["good", "off"]
    assert set(report["mean"]) == {"quality / good", "quality / off"}
    assert report["mean"]["quality / good"]["mad"] == 0 < report["mean"]["quality / off"]["mad"]
