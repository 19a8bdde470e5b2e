"""Nothing the user has is lost: inputs are never overwritten, batch outputs never collide,
a live recording stopped with Ctrl-C or SIGTERM is finished and kept, with its audio.

Everything runs the real command line on real files with the default model (RVM).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import cv2
import pytest

from media import FPS, audio_seconds, make_video
from livematte.cli import main


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    """A real 64x48 H.264 clip, 30 frames at 30 fps, with AAC audio."""
    return make_video(tmp_path_factory.mktemp("in") / "clip.mp4")


def error_of(capfd) -> str:
    return capfd.readouterr().err


def video_facts(path: Path) -> tuple[int, float]:
    """(frames, seconds from the first frame's start to the last frame's end) of the first video stream."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        times = [float(frame.time) for frame in container.decode(stream)]
    return len(times), times[-1] - times[0] + 1 / float(stream.average_rate)


# --- never overwrite an input ---------------------------------------------------------------------

def test_video_refuses_to_write_over_its_input(tmp_path, clip, capfd):
    source = tmp_path / "a.mp4"
    source.write_bytes(clip.read_bytes())
    before = source.read_bytes()
    assert main(["video", str(source), "-o", str(source), "--quiet"]) == 1
    assert "never overwrites its input" in error_of(capfd)
    assert source.read_bytes() == before


@pytest.mark.parametrize("link", ["symlink", "hardlink", "dotdot"])
def test_video_refuses_an_output_that_is_the_input_by_another_name(tmp_path, clip, link, capfd):
    source = tmp_path / "a.mp4"
    source.write_bytes(clip.read_bytes())
    (tmp_path / "sub").mkdir()
    other = {"symlink": tmp_path / "link.mp4", "hardlink": tmp_path / "hard.mp4",
             "dotdot": tmp_path / "sub" / ".." / "a.mp4"}[link]
    if link == "symlink":
        other.symlink_to(source)
    elif link == "hardlink":
        os.link(source, other)
    before = source.read_bytes()
    assert main(["video", str(source), "-o", str(other), "--quiet"]) == 1
    assert "never overwrites its input" in error_of(capfd)
    assert source.read_bytes() == before


def test_alpha_out_may_not_be_the_input_either(tmp_path, clip, capfd):
    source = tmp_path / "a.mkv"
    source.write_bytes(clip.read_bytes())
    assert main(["video", str(source), "-o", str(tmp_path / "out.mp4"), "--alpha-out", str(source)]) == 1
    assert "never overwrites its input" in error_of(capfd)


def test_video_folder_into_itself_leaves_the_originals(tmp_path, clip, capfd):
    folder = tmp_path / "videos"
    folder.mkdir()
    for name in ("a.mp4", "b.mp4"):
        (folder / name).write_bytes(clip.read_bytes())
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    assert main(["video", str(folder), "-o", str(folder), "--quiet"]) == 1
    assert "never overwrites its input" in error_of(capfd)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before


def test_live_recording_may_not_be_its_source(tmp_path, clip, capfd):
    source = tmp_path / "a.mp4"
    source.write_bytes(clip.read_bytes())
    assert main(["live", "--source", str(source), "-o", str(source)]) == 1
    assert "never overwrites its input" in error_of(capfd)
    assert source.read_bytes() == clip.read_bytes()


def test_images_into_their_own_folder_never_overwrite_an_input(tmp_path, portrait, capfd):
    folder = tmp_path / "photos"
    folder.mkdir()
    cv2.imwrite(str(folder / "pic.png"), portrait)
    cv2.imwrite(str(folder / "pic_alpha.png"), portrait)  # an input that pic.png's matte would replace
    before = (folder / "pic_alpha.png").read_bytes()
    assert main(["image", "-i", str(folder), "-d", str(folder)]) == 1
    assert "never overwrites its input" in error_of(capfd)
    assert (folder / "pic_alpha.png").read_bytes() == before


# --- batch names never collide ----------------------------------------------------------------------

def test_videos_sharing_a_name_get_distinct_outputs(tmp_path, clip):
    folder, out = tmp_path / "in", tmp_path / "out"
    folder.mkdir()
    make_video(folder / "a.mkv", n=12)
    (folder / "a.mp4").write_bytes(clip.read_bytes())
    make_video(folder / "b.mp4", n=5)
    assert main(["video", str(folder), "-o", str(out), "--alpha-out", str(tmp_path / "mattes"), "--quiet"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["a_mkv.mp4", "a_mp4.mp4", "b.mp4"]
    assert video_facts(out / "a_mkv.mp4")[0] == 12
    assert video_facts(out / "a_mp4.mp4")[0] == 30
    assert sorted(p.name for p in (tmp_path / "mattes").iterdir()) == [
        "a_mkv_alpha.mkv", "a_mp4_alpha.mkv", "b_alpha.mkv"]


def test_images_sharing_a_name_get_distinct_outputs(tmp_path, portrait):
    folder, out = tmp_path / "in", tmp_path / "out"
    folder.mkdir()
    small = cv2.resize(portrait, (128, 150))
    for name in ("pic.bmp", "pic.tiff", "pic.webp"):
        assert cv2.imwrite(str(folder / name), small)
    assert main(["image", "-i", str(folder), "-d", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(
        f"pic_{ext}_{kind}.png" for ext in ("bmp", "tiff", "webp") for kind in ("alpha", "foreground"))


def test_unique_stems_number_what_still_clashes():
    from livematte.media.outpaths import unique_stems

    sources = ["x/a.mp4", "y/a.mp4", "a.mkv", "b.mov", "http://h/p/c.jpg?q=1", "http://g/c.png"]
    stem = lambda s: Path(s.split("?")[0]).stem  # noqa: E731
    assert unique_stems(sources, stem) == ["a_mp4_1", "a_mp4_2", "a_mkv", "b", "c_jpg", "c_png"]


# --- a live recording stopped by the user is kept ------------------------------------------------------

@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_live_recording_stopped_by_a_signal_is_finished_and_kept_with_its_audio(tmp_path, signum, rvm_weights):
    # A 10 s clip with audio played like a camera, recorded by the default model (RVM).
    source = make_video(tmp_path / "call.mp4", n=300)
    rec, stats, mattes = tmp_path / "rec.mp4", tmp_path / "stats.json", tmp_path / "alpha.mkv"
    command = [sys.executable, "-m", "livematte", "live", "--source", str(source), "--realtime",
               "-o", str(rec), "--stats-json", str(stats), "--alpha-out", str(mattes)]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    lines = []
    for line in process.stderr:  # wait until frames flow
        lines.append(line)
        if "live:" in line:
            break
    deadline = time.time() + 30
    while time.time() < deadline and not list(tmp_path.glob(".rec.partial*")):
        time.sleep(0.05)
    time.sleep(1.5)  # about 45 frames recorded
    process.send_signal(signum)
    _, rest = process.communicate(timeout=60)
    stderr = "".join(lines) + rest
    assert process.returncode == 0, stderr
    assert "Traceback" not in stderr and "stopped; kept" in stderr
    frames, video_seconds = video_facts(rec)
    assert 10 <= frames < 300, stderr
    codec, seconds = audio_seconds(rec)
    assert codec == "aac"
    # The audio ends with the last frame (to within one AAC packet and a frame), not at the source's 10 s.
    assert abs(seconds - video_seconds) <= 1024 / 48000 + 1 / FPS, (seconds, video_seconds)
    snapshot = json.loads(stats.read_text())
    assert snapshot["frames_out"] == frames
    with av.open(str(mattes)) as container:
        assert sum(1 for _ in container.decode(video=0)) == frames  # one matte per recorded frame
    assert [p.name for p in tmp_path.iterdir() if "partial" in p.name] == []


def test_live_run_that_ends_by_itself_does_not_say_it_was_stopped(tmp_path, clip, capfd, rvm_weights):
    rec = tmp_path / "rec.mp4"
    assert main(["live", "--source", str(clip), "-o", str(rec)]) == 0
    assert "stopped" not in capfd.readouterr().err
    assert video_facts(rec)[0] == 30


def test_frames_limit_ends_the_audio_with_the_video(tmp_path, rvm_weights):
    source = make_video(tmp_path / "long.mp4", n=60)  # 2 s of video and audio
    out = tmp_path / "out.mp4"
    assert main(["video", str(source), "-o", str(out), "--frames", "15", "--quiet"]) == 0
    frames, video_seconds = video_facts(out)
    assert frames == 15
    assert audio_seconds(out)[1] == pytest.approx(video_seconds, abs=1024 / 48000 + 1e-3)
