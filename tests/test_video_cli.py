"""Offline video processing end to end through the command line, read back with PyAV."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import numpy as np
import pytest

from media import FPS, N, audio_seconds, make_video
from livematte.cli import main
from livematte.media.reading import probe
from livematte.media.readback import read_alpha, read_alpha_with_pts, read_rgba


@pytest.fixture(scope="module")
def talking(tmp_path_factory) -> Path:
    """A real 64x48 H.264 clip, 30 frames at 30 fps, with an AAC track."""
    return make_video(tmp_path_factory.mktemp("in") / "talking.mp4")


def bshm(bshm_dir) -> list[str]:
    return ["--model", "bshm", "--model-dir", str(bshm_dir), "--quiet"]


def video_stream_facts(path: Path) -> tuple[int, float, list[float]]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        times = [float(frame.time) for frame in container.decode(stream)]
        return len(times), float(stream.average_rate), times


def test_every_frame_in_order_with_its_audio(tmp_path, talking, bshm_dir):
    out = tmp_path / "out.mp4"
    assert main(["video", str(talking), "-o", str(out), "--background", "color:#00ff00", *bshm(bshm_dir)]) == 0
    frames, rate, times = video_stream_facts(out)
    # The input's timestamps are whole milliseconds and are kept, so the average rate is 30 within 0.1 %.
    assert frames == N and rate == pytest.approx(FPS, rel=1e-3)
    assert times == sorted(times) and np.allclose(times, np.arange(N) / FPS, atol=1e-3)
    codec, seconds = audio_seconds(out)
    assert codec == "aac"
    assert abs(seconds - audio_seconds(talking)[1]) <= 1 / FPS
    assert not list(tmp_path.glob(".*partial*"))


@pytest.mark.parametrize("name", ["out.webm", "out.mov"])
def test_transparent_outputs_keep_the_matte(tmp_path, talking, bshm_dir, name):
    out, matte = tmp_path / name, tmp_path / "alpha.mkv"
    assert main(["video", str(talking), "-o", str(out), "--background", "transparent",
                 "--alpha-out", str(matte), *bshm(bshm_dir)]) == 0
    written = read_alpha(matte)
    decoded = read_rgba(out)
    assert len(decoded) == len(written) == N
    worst = max(np.abs(d[:, :, 3].astype(int) - w.astype(int)).max() for d, w in zip(decoded, written))
    assert worst <= 3, worst


def test_png_sequence_and_matte_folder(tmp_path, talking, bshm_dir):
    out, matte = tmp_path / "frames", tmp_path / "mattes"
    assert main(["video", str(talking), "-o", str(out), "--format", "png", "--background", "transparent",
                 "--alpha-out", str(matte), *bshm(bshm_dir)]) == 0
    assert len(list(out.glob("*.png"))) == len(list(matte.glob("*.png"))) == N


def test_variable_frame_rate_keeps_its_timestamps(tmp_path, bshm_dir):
    stamps = list(np.cumsum([0.0] + [1 / 30 if i % 3 else 1 / 12 for i in range(1, 24)]))
    source = make_video(tmp_path / "vfr.mp4", n=24, pts=stamps, audio=False)
    out, matte = tmp_path / "out.mkv", tmp_path / "alpha.mkv"
    assert main(["video", str(source), "-o", str(out), "--alpha-out", str(matte), *bshm(bshm_dir)]) == 0
    assert np.allclose(video_stream_facts(out)[2], stamps, atol=2e-3)
    assert np.allclose([t for _, t in read_alpha_with_pts(matte)], stamps, atol=2e-3)


def test_single_frame_and_odd_size(tmp_path, bshm_dir):
    source = make_video(tmp_path / "one.mkv", n=1, width=63, height=47, audio=False, codec="ffv1")
    out = tmp_path / "one_out.mp4"
    assert main(["video", str(source), "-o", str(out), *bshm(bshm_dir)]) == 0
    assert video_stream_facts(out)[0] == 1


def test_batch_goes_on_past_a_broken_file(tmp_path, talking, bshm_dir, caplog):
    folder = tmp_path / "batch"
    folder.mkdir()
    (folder / "a.mp4").write_bytes(talking.read_bytes())
    (folder / "b.mp4").write_text("not a video")
    (folder / "c.mkv").write_bytes(talking.read_bytes())
    out = tmp_path / "results"
    assert main(["video", str(folder), "-o", str(out), *bshm(bshm_dir)]) == 1
    assert sorted(p.name for p in out.iterdir()) == ["a.mp4", "c.mp4"]


@pytest.mark.parametrize("signum, status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_interruption_leaves_no_file_under_the_final_name(tmp_path, bshm_dir, signum, status):
    # Long enough (300 frames of 320x240) that the signal lands mid-run.
    source = make_video(tmp_path / "long.mp4", n=300, width=320, height=240)
    out = tmp_path / "out.mp4"
    command = [sys.executable, "-m", "livematte", "video", str(source), "-o", str(out), *bshm(bshm_dir),
               "--smoothing", "0"]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while time.time() < deadline and not list(tmp_path.glob(".out.partial*")):
        time.sleep(0.02)  # the partial file appears once the first frames are being encoded
    assert process.poll() is None, process.stderr.read()
    time.sleep(0.3)
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == status, stderr
    assert "Traceback" not in stderr
    assert not out.exists()
    assert not list(tmp_path.glob(".out.partial*"))
    assert [t for t in os.listdir(tmp_path) if "partial" in t] == []


def test_real_clip_with_audio(shared_data, rvm_weights, tmp_path):
    """The acceptance check: s18.mp4 -> 282 frames at 30 fps and its AAC audio, as long as the input's."""
    source = shared_data / "clips" / "s18.mp4"
    out = tmp_path / "out.mp4"
    assert main(["video", str(source), "-o", str(out), "--background",
                 str(shared_data / "backgrounds" / "coffee.png"), "--quiet"]) == 0
    frames, rate, _ = video_stream_facts(out)
    assert (frames, rate) == (282, 30.0)
    codec, seconds = audio_seconds(out)
    assert codec == "aac" and abs(seconds - audio_seconds(source)[1]) <= 1 / 30
    info = probe(out)
    assert (info.width, info.height) == (1280, 720)


def test_demo_makes_a_video(tmp_path, monkeypatch, rvm_weights):
    """The demo replaces the room around the person with its backdrop and leaves her as she is.

    The demo builds its clip itself, so the test can film the same frames again and know
    where she is: everywhere more than 6 px away from her is room in the clip and must be
    backdrop, nothing of the room left, in the output; her face must come through as filmed.
    """
    import cv2

    from livematte.sources import demo_clip as demo

    monkeypatch.setenv("LIVEMATTE_CACHE", str(tmp_path / "cache"))
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / rvm_weights.name).symlink_to(rvm_weights)  # RVM's weights, not fetched again
    out = tmp_path / "demo.mp4"
    assert main(["demo", "-o", str(out), "--frames", "20", "--quiet"]) == 0
    assert video_stream_facts(out)[0] == 20
    info = probe(out)
    assert (info.width, info.height) == (demo.WIDTH, demo.HEIGHT)

    def first_frames(path: Path) -> list[np.ndarray]:
        with av.open(str(path)) as container:
            frames = [frame.to_ndarray(format="bgr24").astype(np.int16)
                      for _, frame in zip(range(20), container.decode(container.streams.video[0]))]
        assert len(frames) == 20
        return frames

    inputs = first_frames(tmp_path / "cache" / "demo" / demo.CLIP_NAME)
    outputs = first_frames(out)
    portrait = demo.sample_portrait()
    colours, alpha = demo.cut_out_person(portrait, demo.matte_still(portrait))
    room, backdrop = demo.room_background(), demo.demo_background().astype(np.int16)
    around = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (13, 13))
    for index in (0, 10, 19):
        seen, made = inputs[index], outputs[index]
        filmed, cover = demo.film(index, colours, alpha, room)
        assert np.abs(seen - filmed).mean() < 4, index  # the clip is what the test films again
        away = cv2.dilate((cover > 0.002).astype(np.uint8), around) == 0
        assert away.mean() > 0.5
        # Away from her the clip shows the busy room, far from the backdrop ...
        assert np.abs(seen[away] - backdrop[away]).mean() > 30
        # ... and the output the backdrop, nothing of the room left (H.264 noise aside).
        error = np.abs(made - backdrop).max(axis=2)[away]
        assert error.mean() < 4 and (error > 30).sum() < 50, (index, error.mean(), (error > 30).sum())
        x, y = (round(v) for v in demo.to_frame(index, demo.PORTRAIT_FACE))
        face = np.s_[y - 40:y + 40, x - 40:x + 40]
        assert cover[face].min() > 0.999
        # Her face comes through as it was filmed (H.264 noise aside), not blended with the backdrop.
        assert np.abs(made[face] - seen[face]).mean() < 6, index
        assert np.abs(seen[face] - backdrop[face]).mean() > 40


def test_demo_clip_is_made_once_under_its_own_name(tmp_path, monkeypatch):
    """The clip is made once into the cache; a clip of the old demo there is not taken for it."""
    from livematte.sources import demo_clip as demo

    monkeypatch.setenv("LIVEMATTE_CACHE", str(tmp_path))
    (tmp_path / "demo").mkdir()
    (tmp_path / "demo" / "grace_hopper_pan.mp4").write_bytes(b"the old demo's clip")
    made = []

    def make_clip(path: Path) -> Path:
        made.append(path)
        path.write_bytes(b"clip")
        return path

    monkeypatch.setattr(demo, "make_clip", make_clip)
    first = demo.prepare_inputs()
    assert demo.prepare_inputs() == first
    assert made == [tmp_path / "demo" / demo.CLIP_NAME] and first[0] == made[0]
    assert first[0].name != "grace_hopper_pan.mp4"
    backdrop = demo.demo_background()
    assert (backdrop.shape, backdrop.dtype) == ((demo.HEIGHT, demo.WIDTH, 3), np.uint8)
    assert first[1].is_file()
