"""Sources: a file is opened once for the whole run, audio included; a camera is asked for MJPG.

The file tests run the real command line in-process on a real clip written with PyAV. The
camera is hardware, so its ``cv2.VideoCapture`` is replaced, at ``CameraSource(opener=...)``,
by a stand-in that records what it is asked.
"""

from __future__ import annotations

from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from livematte import config as livematte_config
from livematte.sources.capture import CameraSource
from livematte.cli import main
from livematte.config import CaptureSettings
from livematte.errors import LivematteError
from media import FPS, N, W, H, audio_seconds, make_video

PROPERTY_NAMES = {cv2.CAP_PROP_FOURCC: "fourcc", cv2.CAP_PROP_FRAME_WIDTH: "width",
                  cv2.CAP_PROP_FRAME_HEIGHT: "height", cv2.CAP_PROP_FPS: "fps"}


def audio_packets(path: Path) -> list[tuple[int, bytes]]:
    """(pts, data) of every audio packet, in the stream's time base."""
    with av.open(str(path)) as container:
        return [(p.pts, bytes(p)) for p in container.demux(container.streams.audio[0]) if p.size]


def test_a_video_run_opens_its_input_once_and_keeps_its_audio(tmp_path, monkeypatch, rvm_weights):
    # Given a clip with audio, and av.open counting the times it is asked for that clip
    source = make_video(tmp_path / "in.mp4")
    out = tmp_path / "out.mp4"
    real_open = av.open
    opened: list[str] = []

    def counting_open(file, *args, **kwargs):
        if str(file) == str(source):
            opened.append(str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(av, "open", counting_open)

    # When the whole clip is processed
    assert main(["video", str(source), "-o", str(out), "--model", "rvm", "--quiet"]) == 0
    monkeypatch.undo()

    # Then the input was opened once: its description, frames and audio all come from that one container
    assert len(opened) == 1
    # And the audio is all there, copied packet for packet at the same timestamps, so in step with the video
    assert audio_packets(out) == audio_packets(source)
    assert abs(audio_seconds(out)[1] - audio_seconds(source)[1]) <= 1 / FPS
    with av.open(str(out)) as container:
        assert container.streams.video[0].frames == N


class RecordingCapture:
    """The part of ``cv2.VideoCapture`` that CameraSource uses; notes every ``set`` in order."""

    def __init__(self, device):
        self.calls: list[tuple[str, float]] = []

    def isOpened(self) -> bool:
        return True

    def set(self, prop, value) -> bool:
        self.calls.append((PROPERTY_NAMES.get(prop, str(prop)), value))
        return True

    def get(self, prop) -> float:
        return {cv2.CAP_PROP_FRAME_WIDTH: W, cv2.CAP_PROP_FRAME_HEIGHT: H, cv2.CAP_PROP_FPS: FPS}.get(prop, 0.0)

    def read(self):
        return True, np.zeros((H, W, 3), np.uint8)

    def release(self) -> None:
        pass


def open_camera(settings: CaptureSettings) -> list[tuple[str, float]]:
    """The ``set`` calls a CameraSource makes while opening a camera with ``settings``."""
    captures: list[RecordingCapture] = []

    def opener(device):
        captures.append(RecordingCapture(device))
        return captures[-1]

    CameraSource(0, settings, opener=opener).close()
    return captures[0].calls


def test_camera_is_asked_for_mjpg_before_the_size():
    calls = open_camera(CaptureSettings(1280, 720, 30.0))
    names = [name for name, _ in calls]
    assert ("fourcc", cv2.VideoWriter_fourcc(*"MJPG")) in calls
    # V4L2 chooses sizes within the pixel format, so the format has to come first.
    assert names.index("fourcc") < names.index("width") and names.index("fourcc") < names.index("height")


def test_camera_keeps_its_own_format_when_fourcc_is_empty():
    calls = open_camera(CaptureSettings(1280, 720, 30.0, fourcc=""))
    assert [name for name, _ in calls] == ["width", "height", "fps"]


def test_fourcc_is_four_characters_or_empty():
    config = livematte_config.load("live", overrides={"capture": {"fourcc": "YUYV"}})
    assert config.capture.fourcc == "YUYV"
    for bad in ("MJPEG", "MJ", "MJP\n"):
        with pytest.raises(LivematteError, match="fourcc.*four characters"):
            livematte_config.load("live", overrides={"capture": {"fourcc": bad}})


def test_a_looped_file_plays_on_with_its_timestamps_running_on(tmp_path):
    from livematte.sources.capture import FileSource

    clip = make_video(tmp_path / "short.mp4")
    source = FileSource(str(clip), loop=True)
    frames = []
    for image, pts in source.frames():
        frames.append((image, pts))
        if len(frames) == 2 * N + 3:
            break
    source.close()
    steps = np.diff([pts for _, pts in frames])
    assert np.allclose(steps, 1 / FPS, atol=1e-3), steps  # no jump back, no gap at the seams
    assert np.array_equal(frames[0][0], frames[N][0]) and np.array_equal(frames[1][0], frames[2 * N + 1][0])
    assert source.name.endswith("(looped)")


def test_a_files_decoding_cost_is_measured_without_using_up_its_frames(tmp_path):
    from livematte.sources.capture import FileSource

    clip = make_video(tmp_path / "clip.mp4", width=1280, height=720)
    source = FileSource(str(clip))
    # A real decode of 720p H.264 and its conversion to BGR: some CPU, well under a frame period
    assert 0.0 < source.capture_cost_ms() < 1e3 / FPS
    # The run still gets every frame, the first included (the cost was read by a second reader)
    assert len(list(source.frames())) == N
    source.close()


def test_loop_needs_a_source_file(capsys):
    assert main(["live", "--loop", "--sink", "null"]) == 1
    assert "--loop plays a --source file over and over; it needs --source PATH" in capsys.readouterr().err
