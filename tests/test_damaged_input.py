"""Damaged stretches inside a video: what decodes is kept at its time, the rest is counted once.

Each clip is real H.264 (PyAV, a keyframe every 10 frames so that decoding can resume), damaged in
a copy; ``livematte video`` (the real command line) must keep what FFmpeg itself decodes from it.
"""

from __future__ import annotations

import re
from pathlib import Path

import av
import numpy as np
import pytest

from media import make_video
from livematte.cli import main

FRAMES, W, H = 60, 160, 120


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return make_video(tmp_path_factory.mktemp("clip") / "clip.mp4", n=FRAMES, width=W, height=H, gop=10)


def damaged_copy(clip: Path, folder: Path, at: float, length: int = 4096) -> Path:
    """``clip`` with ``length`` bytes of junk from ``at`` (a share of the file) on."""
    data = bytearray(clip.read_bytes())
    start = int(len(data) * at)
    data[start:start + length] = np.random.default_rng(0).bytes(length)
    damaged = folder / "damaged.mp4"
    damaged.write_bytes(bytes(data))
    return damaged


def ffmpeg_times(path: Path) -> list[float]:
    """The times of the frames FFmpeg (through PyAV) decodes, a packet it rejects skipped."""
    times = []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for packet in container.demux(stream):
            try:
                times += [float(frame.time) for frame in packet.decode()]
            except av.error.InvalidDataError:
                continue
    return times


def video_times(path: Path) -> list[float]:
    with av.open(str(path)) as container:
        return [float(frame.time) for frame in container.decode(video=0)]


def run_video(source: Path, out: Path, bshm_dir: Path) -> int:
    return main(["video", str(source), "-o", str(out), "--model", "bshm", "--model-dir", str(bshm_dir), "--quiet"])


def livematte_lines(stderr: str) -> list[str]:
    assert "Traceback" not in stderr, stderr
    return [line for line in stderr.splitlines() if line.startswith("livematte: ")]


@pytest.mark.parametrize("at", [0.5, 0.02], ids=["middle", "first keyframe"])
def test_damaged_stretch_keeps_every_decodable_frame(tmp_path, clip, bshm_dir, capfd, at):
    damaged = damaged_copy(clip, tmp_path, at)
    expected = ffmpeg_times(damaged)
    assert 0 < len(expected) < FRAMES  # the junk did cost frames, and some survive
    out = tmp_path / "out.mp4"
    assert run_video(damaged, out, bshm_dir) == 0
    assert video_times(out) == pytest.approx(expected, abs=1e-3)  # the same frames, at their own times
    lost = [line for line in livematte_lines(capfd.readouterr().err) if "could not be decoded" in line]
    assert len(lost) == 1, lost
    assert re.search(rf"\b{FRAMES - len(expected)} of {FRAMES} frames could not be decoded", lost[0]), lost[0]
    assert "damaged.mp4" in lost[0]


def test_nothing_decodable_is_one_error(tmp_path, bshm_dir, capfd):
    source = make_video(tmp_path / "clip.mp4", n=20, width=W, height=H, gop=10)
    data = bytearray(source.read_bytes())
    with av.open(str(source)) as container:
        spans = [(p.pos, p.size) for p in container.demux(video=0) if p.size]
    rng = np.random.default_rng(1)
    for position, size in spans:  # every video packet junk, the container around them intact
        data[position:position + size] = rng.bytes(size)
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(bytes(data))
    assert ffmpeg_times(junk) == []
    out = tmp_path / "out.mp4"
    assert run_video(junk, out, bshm_dir) == 1
    lines = livematte_lines(capfd.readouterr().err)
    errors = [line for line in lines if line.startswith("livematte: error: ")]
    assert len(errors) == 1 and "junk.mp4" in errors[0] and "decod" in errors[0], lines
    assert not out.exists() and not list(tmp_path.glob(".*partial*"))


def test_frames_lost_before_a_frame_limit_are_counted_too(tmp_path, clip, bshm_dir, capfd):
    damaged = damaged_copy(clip, tmp_path, 0.5)
    expected = ffmpeg_times(damaged)
    lost_before = sum(1 for i in range(45) if not any(abs(t - i / 30) < 1e-3 for t in expected))
    assert lost_before > 0  # the damage lies before the limit
    out = tmp_path / "out.mp4"
    assert main(["video", str(damaged), "-o", str(out), "--frames", str(45 - lost_before), "--model", "bshm",
                 "--model-dir", str(bshm_dir), "--quiet"]) == 0
    assert video_times(out) == pytest.approx(expected[:45 - lost_before], abs=1e-3)
    lost = [line for line in livematte_lines(capfd.readouterr().err) if "could not be decoded" in line]
    assert len(lost) == 1 and re.search(rf"\b{lost_before} of \d+ frames could not be decoded", lost[0]), lost
