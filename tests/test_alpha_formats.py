"""Transparent video at a chosen quality: lossy VP9 (``webm_crf``, ``--crf`` for .webm) and the
ProRes 4444 profiles (``prores``, ``--prores``), on real files written and read back here.

The tolerances are measured on this test's picture, a soft-edged shape with hair-like strands
moving 4 px a frame: lossless VP9 and ProRes read alpha back within 1 level (8-bit <-> YUVA
conversion); VP9 crf 30 has a mean alpha error of 0.47 levels over the frame and 2.4 on the soft
edge (largest 28), and crf 45 0.64 / 3.3 (largest 45), at 6 % and 2 % of the lossless size.
"""

from __future__ import annotations

import itertools
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from media import make_video
from livematte import config
from livematte.cli import build_parser, main
from livematte.commands.video import video_job
from livematte.config import OutputSettings
from livematte.errors import LivematteError
from livematte.media.readback import read_rgba
from livematte.media.writing import VideoWriter
from livematte.sinks.file import FileSink

W, H, N = 320, 240, 15


def picture(i: int) -> np.ndarray:
    """Frame ``i``: BGRA, a soft ellipse with random strands at its edge, moving right 4 px a frame."""
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    inside = ((((xx - 120 - 4 * i) / 70) ** 2 + ((yy - 140) / 90) ** 2) < 1).astype(np.float32)
    strands = (np.random.default_rng(i).random((H, W)) < 0.15) * cv2.GaussianBlur(inside, (0, 0), 10)
    alpha = np.maximum(cv2.GaussianBlur(inside, (0, 0), 4), 0.6 * strands)
    colour = np.clip(np.dstack([60 + 0.5 * xx + 2 * i, 40 + 0.8 * yy, 200 - 0.4 * xx]), 0, 255)
    return np.dstack([colour, 255 * alpha]).round().astype(np.uint8)


FRAMES = [picture(i) for i in range(N)]


def write(path: Path, **options) -> Path:
    with VideoWriter(path, width=W, height=H, rate=Fraction(30), **options) as writer:
        for i, frame in enumerate(FRAMES):
            writer.write(frame, i / 30)
    return path


def alpha_errors(path: Path) -> tuple[float, float, int]:
    """(mean abs alpha error over all pixels, over the soft edge, the largest), levels, read back."""
    back = read_rgba(path)
    assert len(back) == N
    error = np.stack([np.abs(got[:, :, 3].astype(int) - ref[:, :, 3]) for got, ref in zip(back, FRAMES)])
    soft = np.stack([(ref[:, :, 3] > 0) & (ref[:, :, 3] < 255) for ref in FRAMES])
    return float(error.mean()), float(error[soft].mean()), int(error.max())


@pytest.fixture(scope="module")
def lossless(tmp_path_factory) -> Path:
    return write(tmp_path_factory.mktemp("webm") / "lossless.webm")


def test_lossless_webm_and_prores_keep_alpha_within_one_level(lossless, tmp_path):
    for path in (lossless, write(tmp_path / "p.mov"), write(tmp_path / "x.mov", prores="4444xq")):
        assert alpha_errors(path)[2] <= 1, path.name


@pytest.mark.parametrize("crf, mean_max, soft_max", [(30, 0.8, 4.0), (45, 1.2, 6.0)])
def test_lossy_webm_round_trip_is_close_and_smaller(lossless, tmp_path, crf, mean_max, soft_max):
    path = write(tmp_path / f"crf{crf}.webm", webm_crf=crf)
    mean, soft, _ = alpha_errors(path)
    assert mean <= mean_max and soft <= soft_max, (mean, soft)
    assert path.stat().st_size < 0.2 * lossless.stat().st_size
    colour = np.mean([np.abs(got[:, :, :3].astype(int) - ref[:, :, :3])[ref[:, :, 3] > 0].mean()
                      for got, ref in zip(read_rgba(path), FRAMES)])
    assert colour < 3


def test_lower_crf_is_larger_and_closer(tmp_path):
    fine, coarse = write(tmp_path / "fine.webm", webm_crf=15), write(tmp_path / "coarse.webm", webm_crf=45)
    assert fine.stat().st_size > 2 * coarse.stat().st_size
    assert alpha_errors(fine)[1] < alpha_errors(coarse)[1]


@pytest.mark.parametrize("profile, tag, name", [("4444", "ap4h", "4444"), ("4444xq", "ap4x", "XQ")])
def test_prores_profile_lands_in_the_file(tmp_path, profile, tag, name):
    path = write(tmp_path / "out.mov", prores=profile)
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "prores"
        assert stream.codec_context.codec_tag == tag
        assert name in stream.profile
        assert stream.codec_context.pix_fmt.startswith("yuva444")  # the decoder gives 12 bits


@pytest.mark.parametrize("options, message", [
    ({"webm_crf": 64}, "webm_crf got 64, expected 0..63"),
    ({"webm_crf": -1}, "webm_crf got -1, expected 0..63"),
    ({"crf": 52}, "crf got 52, expected 0..51"),
    ({"prores": "422"}, "prores got '422', expected one of 4444, 4444xq"),
])
def test_bad_values_are_one_line_errors_and_leave_no_file(tmp_path, options, message):
    with pytest.raises(ValueError, match=message):
        VideoWriter(tmp_path / "out.webm", width=W, height=H, rate=Fraction(30), **options)
    assert list(tmp_path.iterdir()) == []


def test_live_file_sink_takes_the_config(tmp_path):
    settings = OutputSettings(webm_crf=40)
    with FileSink(tmp_path / "rec.webm", W, H, Fraction(30), **settings.writer_options()) as sink:
        for i, frame in enumerate(FRAMES):
            sink.send(frame, i / 30)
    assert 0 < alpha_errors(tmp_path / "rec.webm")[0] < 1.5  # lossy, and close


# --- the settings and the command line ------------------------------------------------------------

def test_config_keys(tmp_path):
    assert config.load("offline").output.webm_crf is None  # lossless unless asked
    good = tmp_path / "good.toml"
    good.write_text('[output]\nwebm_crf = 30\nprores = "4444xq"\n')
    loaded = config.load("offline", good).output
    assert (loaded.webm_crf, loaded.prores, loaded.crf) == (30, "4444xq", 18)
    bad = tmp_path / "bad.toml"
    bad.write_text("[output]\nwebm_crf = 70\n")
    with pytest.raises(LivematteError, match=r"\[output\]: webm_crf got 70, expected 0..63"):
        config.load("offline", bad)


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return make_video(tmp_path_factory.mktemp("in") / "clip.mp4", n=5)


def job_for(*args: str):
    return video_job(build_parser().parse_args(["video", *args]))


def test_crf_goes_to_the_codec_of_the_output(clip, tmp_path):
    webm = job_for(str(clip), "-o", str(tmp_path / "x.webm"), "--crf", "60").config.output
    assert (webm.webm_crf, webm.crf) == (60, 18)
    mp4 = job_for(str(clip), "-o", str(tmp_path / "x.mp4"), "--crf", "30").config.output
    assert (mp4.webm_crf, mp4.crf) == (None, 30)
    mov = job_for(str(clip), "-o", str(tmp_path / "x.mov"), "--prores", "4444xq").config.output
    assert mov.prores == "4444xq"


@pytest.mark.parametrize("name, crf, message", [
    ("x.mp4", "60", "--crf: crf got 60, expected 0..51 (H.264)"),
    ("x.webm", "70", "--crf: webm_crf got 70, expected 0..63 (VP9); without it .webm is lossless"),
])
def test_crf_out_of_range_is_refused(clip, tmp_path, capfd, name, crf, message):
    assert main(["video", str(clip), "-o", str(tmp_path / name), "--crf", crf]) == 1
    err = capfd.readouterr().err.strip().splitlines()
    assert err == [f"livematte: error: {message}"]
    assert not (tmp_path / name).exists()


def test_ignored_quality_flags_are_named(clip, tmp_path, caplog):
    job_for(str(clip), "-o", str(tmp_path / "x.mov"), "--crf", "30")
    job_for(str(clip), "-o", str(tmp_path / "x.webm"), "--prores", "4444xq")
    text = caplog.text
    assert "--crf is for H.264 (.mp4, .mkv) and VP9 (.webm); ignored for mov (use --prores for .mov)" in text
    assert "--prores is for .mov; ignored for webm" in text


# --- constant-rate recordings: repeats that cost no encode ---------------------------------------------

GAPS = {3, 4, 5, 9, 12, 13}  # ticks with no frame of their own


@pytest.mark.parametrize("kind, options", [("webm", {}), ("webm", {"webm_crf": 30}), ("mov", {})])
def test_a_constant_rate_recording_shows_the_last_frame_again_without_encoding_it(tmp_path, kind, options):
    # Given frames at the ticks of 30 fps but with some ticks missing, written at a constant rate
    path = tmp_path / f"cfr.{kind}"
    with VideoWriter(path, width=W, height=H, rate=Fraction(30), constant_rate=True, **options) as writer:
        assert writer.cheap_repeats
        for i, frame in enumerate(FRAMES):
            if i not in GAPS:
                writer.write(frame, i / 30)
    # Then the file has a frame at every tick, each missing one the frame before it exactly,
    # its alpha included, read back by libvpx (the alpha) and by FFmpeg's own decoder alike
    assert writer.repeated == len(GAPS)
    back = read_rgba(path)
    assert len(back) == N
    for i in GAPS:
        assert np.array_equal(back[i], back[i - 1]), i
    shown = [i for i in range(N) if i not in GAPS]
    assert not any(np.array_equal(back[a], back[b]) for a, b in itertools.pairwise(shown))
    with av.open(str(path)) as container:
        colour = [f.to_ndarray(format="bgr24") for f in container.decode(video=0)]
    assert len(colour) == N and all(np.array_equal(colour[i], colour[i - 1]) for i in GAPS)
    # And each repeat costs the file a few bytes (VP9: a one-byte header for colour and alpha
    # each), not a frame (ProRes: a copy of the frame's own packet)
    if kind == "webm":
        with av.open(str(path)) as container:
            sizes = [p.size for p in container.demux(video=0) if p.size]
        assert sorted(sizes)[:len(GAPS)] == [1] * len(GAPS), sizes
        assert min(size for i, size in enumerate(sizes) if i not in GAPS) > 10  # a frame of its own

