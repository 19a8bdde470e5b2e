"""The live path end to end: real clips played as a camera, the BSHM test graph, a virtual camera.

Only hardware is faked, at its boundary: the virtual camera is a pyvirtualcam backend registered
here (the real ``pyvirtualcam.Camera`` front runs), and the physical camera is a stand-in for
``cv2.VideoCapture`` handed to ``CameraSource(opener=...)``. Clips are real H.264 files written
with PyAV; the model is the BSHM-contract TensorFlow graph from ``bshm_graph.py``, whose matte is
a known function of the colours: yellow (RGB 255, 255, 0) mattes to 1, blue (0, 0, 255) to 0.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import threading
import time
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
import pyvirtualcam
from pyvirtualcam.util import encode_fourcc

from livematte import config as livematte_config
from livematte import models
from livematte.sources.capture import CameraSource, FileSource
from livematte.compose.backgrounds import parse_background
from livematte.compose.compositor import Compositor
from livematte.config import CaptureSettings
from livematte.runtime.engine import Engine
from livematte.commands.live import LiveJob, run_live_job
from livematte.models.base import ModelSettings
from livematte.runtime.output import Outputs, output_loop
from livematte.runtime.pipeline import Pipeline
from livematte.sinks import NullSink
from livematte.sinks.vcam import VirtualCameraSink
from livematte.matte.smoothing import SmoothingSettings
from livematte.runtime.stats import Stats
from livematte.media.readback import read_alpha_with_pts

W, H, FPS = 160, 120, 30
SIDE = 32
SLOTS = [(16, 16), (112, 16), (16, 72), (112, 72)]  # (x, y) of the subject's square; frame k uses k % 4
YELLOW, BLUE = (0, 255, 255), (255, 0, 0)  # BGR; the test graph mattes them to 1 and 0
QUIET = (slice(52, 68), slice(60, 100))  # background in every frame (alpha 0)
MARKER_ROWS = slice(108, 116)  # a 4 px yellow block at x = marker_x(k): every frame's own position
STALL_S = 0.25  # the longest the virtual camera may go without a frame (7.5 periods; generous)


# --- synthetic scenes and real clips ---------------------------------------------------------------

def marker_x(k: int) -> int:
    return 10 + 3 * (k % 45)


def scene(k: int, slot: int | None = None) -> np.ndarray:
    """Frame ``k``: blue, with the subject's yellow square at ``SLOTS[k % 4]`` and a marker at marker_x(k)."""
    image = np.empty((H, W, 3), np.uint8)
    image[:] = BLUE
    x, y = SLOTS[k % 4 if slot is None else slot]
    image[y:y + SIDE, x:x + SIDE] = YELLOW
    image[MARKER_ROWS, marker_x(k):marker_x(k) + 4] = YELLOW
    return image


def inside(slot: int, margin: int = 4) -> tuple[slice, slice]:
    x, y = SLOTS[slot]
    return slice(y + margin, y + SIDE - margin), slice(x + margin, x + SIDE - margin)


def make_clip(path: Path, n: int) -> Path:
    """A real H.264 file (4:4:4, so colours stay crisp at the square's edges) with pts k / FPS."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=FPS, options={"preset": "ultrafast", "crf": "10", "threads": "1"})
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv444p"
        stream.codec_context.time_base = Fraction(1, 1000)
        for k in range(n):
            frame = av.VideoFrame.from_ndarray(scene(k), format="bgr24")
            frame.pts, frame.time_base = round(k * 1000 / FPS), Fraction(1, 1000)
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


@pytest.fixture(scope="module")
def clip45(tmp_path_factory) -> Path:
    return make_clip(tmp_path_factory.mktemp("clips") / "jumps45.mp4", 45)


@pytest.fixture(scope="module")
def clip60(tmp_path_factory) -> Path:
    return make_clip(tmp_path_factory.mktemp("clips") / "jumps60.mp4", 60)


def live_config(bshm_dir: Path, **output):
    # Every frame through the model (--adapt off): the subject here jumps between four places every
    # frame, which no optical flow follows, and these tests hold each frame's matte to that frame.
    # The governed path, the model on its own thread and its results moved along the flow, is
    # tests/test_governed_live.py's, on real motion. No fallback model: a slow model stays slow.
    return livematte_config.load("live", overrides={
        "model": {"name": "bshm", "model_dir": bshm_dir, "size": 0}, "live": {"fallback": "", "adapt": False},
        "output": output})


# --- the model, and the model made slower or broken ------------------------------------------------

@pytest.fixture(scope="module")
def matter(bshm_dir):
    return models.load(ModelSettings(name="bshm", model_dir=bshm_dir))


class Delegating:
    """Passes every Matter call to the real backend; subclasses change ``infer`` only."""

    def __init__(self, inner):
        self.inner = inner
        self.name = inner.name

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def input_size(self, width, height, size=None):
        return self.inner.input_size(width, height, size)

    def prepare(self, image_bgr):
        return self.inner.prepare(image_bgr)

    def initial_state(self):
        return self.inner.initial_state()

    def infer(self, prepared, state):
        return self.inner.infer(prepared, state)


class SlowMatter(Delegating):
    """The real model, ``delay`` seconds slower per frame: slower than the camera."""

    def __init__(self, inner, delay: float = 0.06):
        super().__init__(inner)
        self.delay = delay

    def infer(self, prepared, state):
        time.sleep(self.delay)
        return self.inner.infer(prepared, state)


class FailingMatter(Delegating):
    """Raises ``error`` on the ``fail_at``-th frame of the stream (warm-up's flat grey frames not counted)."""

    def __init__(self, inner, fail_at: int = 5):
        super().__init__(inner)
        self.fail_at = fail_at
        self.frames = 0
        self.error = RuntimeError(f"model failed on frame {fail_at}")
        self.failed_at: float | None = None

    def infer(self, prepared, state):
        if not np.all(prepared == 128):
            self.frames += 1
            if self.frames == self.fail_at:
                self.failed_at = time.perf_counter()
                raise self.error
        return self.inner.infer(prepared, state)


# --- the virtual camera: a pyvirtualcam backend that records ---------------------------------------

class Recorder:
    """What the virtual camera device received: each frame ``uint8 [H, W, 3]`` and when it came."""

    def __init__(self, name: str):
        self.name = name
        self.opened: dict | None = None
        self.frames: list[np.ndarray] = []
        self.times: list[float] = []
        self.shapes: set[tuple] = set()
        self.keep = True  # False: count and time frames only (large clips)
        self.closed = False
        self.fail_at: int | None = None  # send number (0-based) that raises ``error``
        self.error = RuntimeError("virtual camera device went away")
        self.failed_at: float | None = None
        self.on_send = None  # called with the number of frames received so far

    def backend(self):
        recorder = self

        class RecordingCamera:
            """pyvirtualcam's backend protocol (keyword-only constructor, send/close/device/native_fourcc)."""

            def __init__(self, *, width, height, fps, fourcc, device, **kw):
                recorder.opened = {"width": width, "height": height, "fps": fps, "fourcc": fourcc, "device": device}
                self._shape = (height, width, 3)

            def send(self, frame):
                now = time.perf_counter()
                if recorder.fail_at is not None and len(recorder.times) == recorder.fail_at:
                    recorder.failed_at = now
                    raise recorder.error
                recorder.times.append(now)
                recorder.shapes.add((frame.dtype.str, frame.size))
                if recorder.keep:
                    recorder.frames.append(frame.reshape(self._shape).copy())
                if recorder.on_send is not None:
                    recorder.on_send(len(recorder.times))

            def close(self):
                recorder.closed = True

            def device(self):
                return "test-vcam"

            def native_fourcc(self):
                return None

        return RecordingCamera


_names = itertools.count()


@pytest.fixture
def vcam():
    recorder = Recorder(f"livematte-test-{os.getpid()}-{next(_names)}")
    pyvirtualcam.register_backend(recorder.name, recorder.backend())
    yield recorder
    # Leave pyvirtualcam's registry as found: a backend left behind would answer every later
    # Camera(backend=None) in this process.
    pyvirtualcam.camera.BACKENDS.pop(recorder.name, None)


def yellow_slots(picture: np.ndarray) -> list[int]:
    """Slots whose square shows the subject (yellow) in a composited BGR picture."""
    found = []
    for slot in range(len(SLOTS)):
        b, g, r = picture[inside(slot)].reshape(-1, 3).mean(axis=0)
        if b < 60 and g > 200 and r > 200:
            found.append(slot)
    return found


def check_steady_output(times: list[float], fps: float, expected: float) -> None:
    """About ``expected`` frames at about ``fps``, and never a stall of more than STALL_S."""
    times = np.asarray(times)
    assert 0.75 * expected <= len(times) <= 1.5 * expected, f"{len(times)} frames, expected ~{expected:.0f}"
    gaps = np.diff(times)
    assert gaps.max() < STALL_S, f"the virtual camera stalled for {gaps.max() * 1e3:.0f} ms"
    rate = (len(times) - 1) / (times[-1] - times[0])
    assert 0.75 * fps <= rate <= 1.5 * fps, f"{rate:.1f} fps sent, expected ~{fps}"


def livematte_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("livematte-") and t.is_alive()]


def finishes(fn, timeout: float = 30.0):
    """Run ``fn`` on a helper thread; -> (its exception or None, perf_counter() when it returned)."""
    box: dict = {}

    def call():
        try:
            box["result"] = fn()
        except BaseException as e:  # handed to the test
            box["error"] = e
        box["ended"] = time.perf_counter()

    thread = threading.Thread(target=call, name="test-caller", daemon=True)
    thread.start()
    thread.join(timeout)
    assert not thread.is_alive(), f"still running after {timeout} s: the pipeline hangs"
    return box.get("error"), box["ended"]


# --- (a) a clip played as a camera into the virtual camera -------------------------------------------

def test_clip_played_as_a_camera_reaches_the_virtual_camera_at_the_source_rate(clip45, bshm_dir, vcam):
    # Given a 1.5 s, 30 fps clip played in real time, the live preset and the BSHM graph from the config
    job = LiveJob(config=live_config(bshm_dir), source=str(clip45), realtime=True, sink="vcam",
                  vcam_backend=vcam.name)

    # When the live job runs to the end of the clip
    stats = run_live_job(job)

    # Then the virtual camera was opened at the clip's size and rate in BGR, and closed
    assert vcam.opened == {"width": W, "height": H, "fps": FPS, "fourcc": encode_fourcc("24BG"), "device": None}
    assert vcam.closed
    # And it got BGR uint8 frames of that size, each with the subject where a frame put it
    assert vcam.shapes == {("|u1", H * W * 3)}
    assert all(len(yellow_slots(f)) == 1 for f in vcam.frames)
    # And they came at about the clip's rate, without stalls, every frame processed
    check_steady_output(vcam.times, FPS, expected=45)
    assert stats.frames_in == 45
    assert stats.frames_out == len(vcam.times)


def test_model_slower_than_the_camera_still_feeds_the_virtual_camera_at_the_camera_rate(
        clip45, bshm_dir, matter, vcam):
    # Given a model that takes 60 ms a frame on a 30 fps camera (about 16 fps)
    job = LiveJob(config=live_config(bshm_dir), source=str(clip45), realtime=True, sink="vcam",
                  vcam_backend=vcam.name)

    # When the live job runs
    stats = run_live_job(job, matter=SlowMatter(matter, 0.06))

    # Then the virtual camera still gets about 30 frames a second, never stalling
    check_steady_output(vcam.times, FPS, expected=45)
    # And that is because the last composite is sent again, while stale camera frames are dropped
    assert stats.repeated > 0
    assert stats.dropped_total > 0
    assert stats.composited < 45
    assert stats.frames_out == len(vcam.times) == stats.composited + stats.repeated
    again = sum(np.array_equal(a, b) for a, b in zip(vcam.frames, vcam.frames[1:]))
    assert again >= stats.repeated  # each repeat is exactly the picture before it


def test_real_clip_from_shared_data_reaches_the_virtual_camera(shared_data, bshm_dir, vcam):
    # Given the first 2 s of a real 720p, 30 fps clip played as a camera
    clip = shared_data / "clips" / "s18.mp4"
    if not clip.is_file():
        pytest.skip(f"{clip} is not present")
    info = FileSource(str(clip)).info
    config = livematte_config.load("live", overrides={"model": {"name": "bshm", "model_dir": bshm_dir, "size": 256}})
    vcam.keep = False  # 2.7 MB a frame: count and time them only
    job = LiveJob(config=config, source=str(clip), realtime=True, sink="vcam", vcam_backend=vcam.name,
                  max_frames=60)

    # When the live job runs
    stats = run_live_job(job)

    # Then full-size BGR frames arrive at about the clip's rate
    assert (vcam.opened["width"], vcam.opened["height"]) == (info.width, info.height)
    assert vcam.shapes == {("|u1", info.width * info.height * 3)}
    check_steady_output(vcam.times, info.fps, expected=60)
    assert stats.frames_in == 60


# --- (b) every matte belongs to its own frame ---------------------------------------------------

@pytest.mark.parametrize("realtime, delay", [(True, 0.0), (True, 0.06), (False, 0.0)],
                         ids=["live", "live-slow-model", "offline"])
def test_every_written_matte_belongs_to_the_frame_with_its_pts(clip45, bshm_dir, matter, tmp_path, realtime, delay):
    # Given a clip whose subject jumps between four places every frame, with a marker that moves
    # 3 px a frame (so a matte from any other frame is told apart), and the mattes written out
    alpha_out = tmp_path / "alpha.mkv"
    job = LiveJob(config=live_config(bshm_dir), source=str(clip45), realtime=realtime, sink="null",
                  alpha_out=alpha_out)

    # When the live job runs (with a 60 ms model on a 30 fps camera, frames are dropped)
    stats = run_live_job(job, matter=SlowMatter(matter, delay) if delay else matter)

    # Then there is one matte per output frame (a repeat is stamped 1 ms after the one it repeats),
    # and each written matte is the one of the frame with the same pts
    mattes = read_alpha_with_pts(alpha_out)
    assert len(mattes) == stats.frames_out == stats.composited + stats.repeated
    indexes = []
    for alpha, pts in mattes:
        k = round(pts * FPS)
        assert abs(pts - k / FPS) < 0.01 and 0 <= k < 45, pts
        indexes.append(k)
        assert alpha[inside(k % 4)].min() > 200, f"frame {k}: no subject where it was"
        for other in set(range(4)) - {k % 4}:
            assert alpha[inside(other)].max() < 50, f"frame {k}: subject of another frame at slot {other}"
        strip = alpha[110:114].astype(np.float64)
        centre = (strip * np.arange(W)).sum() / strip.sum()
        assert abs(centre - (marker_x(k) + 1.5)) < 1.0, f"frame {k}: marker at {centre:.1f}"
    shown = [k for i, k in enumerate(indexes) if i == 0 or k != indexes[i - 1]]  # repeats collapsed
    assert shown == sorted(set(indexes)), "mattes out of order"
    assert len(indexes) - len(shown) == stats.repeated, "a matte written twice that was not a repeat"
    if delay:
        assert stats.dropped_total > 0 and len(shown) < 45
    if not realtime:
        assert indexes == list(range(45))


# --- (c) an error in any stage reaches the caller, promptly, and every thread ends ---------------------

@pytest.mark.parametrize("realtime", [True, False], ids=["live", "offline"])
def test_a_model_error_reaches_the_caller_of_the_live_job(clip45, bshm_dir, matter, tmp_path, realtime):
    # Given a model that raises on the fifth frame, and a matte file being written
    broken = FailingMatter(matter, fail_at=5)
    out = tmp_path / "out"
    job = LiveJob(config=live_config(bshm_dir), source=str(clip45), realtime=realtime, sink="null",
                  alpha_out=out / "alpha.mkv")

    # When the live job runs
    error, ended = finishes(lambda: run_live_job(job, matter=broken))

    # Then the model's own error reaches the caller within seconds, nothing is left running,
    # and the unfinished matte file is removed
    assert error is broken.error
    assert ended - broken.failed_at < 5.0
    assert livematte_threads() == []
    assert not out.exists() or list(out.iterdir()) == []


def test_a_virtual_camera_error_reaches_the_caller_of_the_live_job(clip45, bshm_dir, matter, vcam):
    # Given a virtual camera that fails on its fifth frame
    vcam.fail_at = 4
    job = LiveJob(config=live_config(bshm_dir), source=str(clip45), realtime=True, sink="vcam",
                  vcam_backend=vcam.name)

    # When the live job runs
    error, ended = finishes(lambda: run_live_job(job, matter=matter))

    # Then its error reaches the caller within seconds, the device is closed, nothing is left running
    assert error is vcam.error
    assert ended - vcam.failed_at < 5.0
    assert vcam.closed
    assert livematte_threads() == []


class BrokenSource:
    """A real clip that fails after ``fail_after`` frames, like a stream that drops mid-way."""

    def __init__(self, path: Path, realtime: bool, fail_after: int = 5):
        self.inner = FileSource(str(path), realtime=realtime)
        self.width, self.height, self.fps, self.live = self.inner.width, self.inner.height, self.inner.fps, realtime
        self.fail_after = fail_after
        self.error = OSError("stream ended unexpectedly")
        self.failed_at: float | None = None
        self.closed = False

    def frames(self):
        for index, item in enumerate(self.inner.frames()):
            if index == self.fail_after:
                self.failed_at = time.perf_counter()
                raise self.error
            yield item

    def close(self):
        self.closed = True


def play(pipeline: Pipeline, live: bool, sink=None) -> None:
    outputs = Outputs(Compositor(parse_background("color:#00ff00")), sink or NullSink())
    with pipeline:
        output_loop(pipeline, outputs, paced=live, out_fps=FPS)


@pytest.mark.parametrize("live", [True, False], ids=["run_live", "run_offline"])
def test_a_source_error_reaches_the_caller_of_the_pipeline(clip45, matter, live):
    # Given a source that raises after five frames
    source = BrokenSource(clip45, realtime=live)
    pipeline = Pipeline(source, Engine(matter), Stats(), live=live, max_lag=2 / FPS)

    # When the pipeline plays it
    error, ended = finishes(lambda: play(pipeline, live))

    # Then the source's error reaches the caller within seconds, and every stage has stopped
    assert error is source.error
    assert ended - source.failed_at < 5.0
    assert not source.closed  # the pipeline leaves the source to whoever opened it
    assert livematte_threads() == []


@pytest.mark.parametrize("live", [True, False], ids=["run_live", "run_offline"])
def test_a_sink_error_reaches_the_caller_of_the_pipeline(clip45, matter, vcam, live):
    # Given a virtual camera that fails on its fifth frame
    vcam.fail_at = 4
    pipeline = Pipeline(FileSource(str(clip45), realtime=live), Engine(matter), Stats(), live=live, max_lag=2 / FPS)

    def run():
        with VirtualCameraSink(W, H, FPS, backend=vcam.name) as sink:
            play(pipeline, live, sink)

    # When the pipeline plays the clip into it
    error, ended = finishes(run)

    # Then the sink's error reaches the caller within seconds, and every stage has stopped
    assert error is vcam.error
    assert ended - vcam.failed_at < 5.0
    assert vcam.closed
    assert livematte_threads() == []


@pytest.mark.parametrize("live", [True, False], ids=["run_live", "run_offline"])
def test_a_model_error_reaches_the_caller_of_the_pipeline(clip45, matter, live):
    # Given a model that raises on the fifth frame
    broken = FailingMatter(matter, fail_at=5)
    pipeline = Pipeline(FileSource(str(clip45), realtime=live), Engine(broken), Stats(), live=live, max_lag=2 / FPS)

    # When the pipeline plays the clip
    error, ended = finishes(lambda: play(pipeline, live))

    # Then the model's error reaches the caller within seconds, and every stage has stopped
    assert error is broken.error
    assert ended - broken.failed_at < 5.0
    assert livematte_threads() == []


# --- (e) camera faults ---------------------------------------------------------------------------

class FakeCamera:
    """The camera hardware behind a stand-in for ``cv2.VideoCapture``.

    Delivers ``scene`` frames at FPS, with the subject at slot 0 before an outage and at slot 3
    after it. After ``frames_before`` frames it is unplugged for ``outage_s`` seconds (None: for
    good): reads fail and it cannot be opened.
    """

    def __init__(self, frames_before: int, outage_s: float | None):
        self.frames_before, self.outage_s = frames_before, outage_s
        self.delivered = 0
        self.opens = 0
        self.down_at: float | None = None  # last frame before the outage
        self.back_at: float | None = None  # first frame after it

    def up(self) -> bool:
        if self.down_at is None:
            return True
        return self.outage_s is not None and time.perf_counter() >= self.down_at + self.outage_s

    def open(self, device) -> FakeCapture:
        """The ``opener`` for CameraSource: what ``cv2.VideoCapture(device)`` would return."""
        self.opens += 1
        return FakeCapture(self)

    def read(self) -> tuple[bool, np.ndarray | None]:
        time.sleep(1 / FPS)  # a camera's read blocks until the sensor's next frame
        if not self.up():
            return False, None
        now = time.perf_counter()
        if self.down_at is not None and self.back_at is None:
            self.back_at = now
        image = scene(self.delivered, slot=0 if self.back_at is None else 3)
        self.delivered += 1
        if self.delivered == self.frames_before:
            self.down_at = now
        return True, image


class FakeCapture:
    """The part of ``cv2.VideoCapture`` that CameraSource uses."""

    def __init__(self, camera: FakeCamera):
        self.camera = camera
        self.opened = camera.up()

    def isOpened(self) -> bool:
        return self.opened

    def set(self, prop, value) -> bool:
        return True

    def get(self, prop) -> float:
        return {cv2.CAP_PROP_FRAME_WIDTH: W, cv2.CAP_PROP_FRAME_HEIGHT: H, cv2.CAP_PROP_FPS: FPS}.get(prop, 0.0)

    def read(self):
        return self.camera.read() if self.opened else (False, None)

    def release(self) -> None:
        self.opened = False


def test_camera_outage_keeps_the_virtual_camera_running_and_recovers(matter, vcam):
    # Given a camera that delivers 15 frames, is unplugged for 0.6 s, then comes back
    camera = FakeCamera(frames_before=15, outage_s=0.6)
    stopping = threading.Event()
    give_up = time.perf_counter() + 20
    source = CameraSource(0, CaptureSettings(W, H, FPS), opener=camera.open, max_backoff=0.2,
                          should_stop=lambda: stopping.is_set() or time.perf_counter() > give_up)
    stats = Stats()
    pipeline = Pipeline(source, Engine(matter, SmoothingSettings()), stats, live=True, max_frames=35, max_lag=2 / FPS)

    def run():
        with VirtualCameraSink(source.width, source.height, source.fps, backend=vcam.name) as sink:
            try:
                play(pipeline, live=True, sink=sink)
            finally:
                stopping.set()

    # When the live pipeline runs through the outage until 20 frames after it
    error, _ = finishes(run)
    assert error is None

    # Then the camera was reopened and new frames flowed after it came back
    assert source.reconnects >= 1
    assert camera.back_at is not None and stats.frames_in == 35
    times = np.asarray(vcam.times)
    after = [f for f, t in zip(vcam.frames, times) if t > camera.back_at]
    assert after and yellow_slots(after[-1]) == [3]
    # And during the outage the virtual camera kept getting frames at about the output rate:
    # the last picture from before it, again and again
    during = [f for f, t in zip(vcam.frames, times) if camera.down_at + 0.1 < t <= camera.back_at]
    window = camera.back_at - camera.down_at - 0.1
    assert len(during) >= 0.6 * window * FPS, f"{len(during)} frames in {window:.2f} s of outage"
    assert all(np.array_equal(f, during[0]) for f in during) and yellow_slots(during[0]) == [0]
    assert np.diff(times).max() < STALL_S
    assert stats.repeated >= len(during)
    assert livematte_threads() == []


def test_an_error_during_a_camera_outage_stops_the_live_job_promptly(bshm_dir, matter, vcam):
    # Given a camera that is unplugged for good after 10 frames, and a virtual camera that fails
    # while the output is repeating the last frame (about 0.5 s into the outage)
    camera = FakeCamera(frames_before=10, outage_s=None)
    vcam.fail_at = 25
    job = LiveJob(config=live_config(bshm_dir), camera="0", sink="vcam", vcam_backend=vcam.name)

    # When the live job runs
    error, ended = finishes(lambda: run_live_job(job, matter=matter, camera_opener=camera.open))

    # Then the error reaches the caller within seconds, though the camera is still retrying,
    # and no thread is left behind
    assert error is vcam.error
    assert camera.down_at is not None and vcam.failed_at > camera.down_at
    assert ended - vcam.failed_at < 3.0
    assert livematte_threads() == []


# --- (d) no v4l2loopback ---------------------------------------------------------------------------

@pytest.mark.skipif(Path("/sys/module/v4l2loopback").exists(), reason="v4l2loopback is loaded here")
def test_vcam_without_v4l2loopback_fails_at_start_with_how_to_load_it(clip45, bshm_dir):
    # Given a machine without the v4l2loopback module and no backend chosen
    command = [sys.executable, "-m", "livematte", "live", "--source", str(clip45), "--sink", "vcam",
               "--model", "bshm", "--model-dir", str(bshm_dir), "--frames", "3"]

    # When the live command starts
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)

    # Then it exits non-zero with one error line saying how to load the module, and no traceback
    assert done.returncode != 0
    errors = [line for line in done.stderr.splitlines() if line.startswith("livematte: error:")]
    assert len(errors) == 1, done.stderr
    assert "v4l2loopback" in errors[0] and "modprobe" in errors[0]
    assert "Traceback" not in done.stderr


# --- (f) background swapped while running ---------------------------------------------------------

def background_colour(picture: np.ndarray) -> str:
    b, g, r = picture[QUIET].reshape(-1, 3).mean(axis=0)
    if r > 200 and g < 50 and b < 50:
        return "red"
    if b > 200 and g < 50 and r < 50:
        return "blue"
    return f"other({b:.0f},{g:.0f},{r:.0f})"


def test_watched_background_file_switches_the_background_while_running(clip60, bshm_dir, matter, vcam, tmp_path):
    # Given a live job on red, watching a file that says red
    spec = tmp_path / "background.txt"
    spec.write_text("color:#ff0000\n", encoding="utf-8")
    job = LiveJob(config=live_config(bshm_dir, background="color:#ff0000"), source=str(clip60), realtime=True,
                  sink="vcam", vcam_backend=vcam.name, watch_background=spec)
    tenth = threading.Event()
    vcam.on_send = lambda n: n >= 10 and tenth.set()

    def edit():
        if tenth.wait(30):
            spec.write_text("color:#0000ff\n", encoding="utf-8")

    editor = threading.Thread(target=edit, name="test-editor", daemon=True)
    editor.start()

    # When the file is rewritten to blue after the tenth frame went out
    run_live_job(job, matter=matter)
    editor.join(5)

    # Then the virtual camera got red backgrounds first, then blue ones to the end, nothing else
    colours = [background_colour(f) for f in vcam.frames]
    runs = [(colour, len(list(group))) for colour, group in itertools.groupby(colours)]
    assert [colour for colour, _ in runs] == ["red", "blue"], runs
    assert runs[0][1] >= 10 and runs[1][1] >= 5, runs


# --- (g) --stats-json ----------------------------------------------------------------------------

def test_stats_json_has_the_documented_keys_and_types(clip45, bshm_dir, matter, tmp_path):
    # Given a live job asked for its figures
    path = tmp_path / "stats.json"
    config = livematte_config.load("live", overrides={"model": {"name": "bshm", "model_dir": bshm_dir, "size": 0},
                                                      "live": {"fallback": ""}})
    job = LiveJob(config=config, source=str(clip45), realtime=True, sink="null", stats_json=path, max_frames=20)

    # When it runs
    run_live_job(job, matter=matter)

    # Then the file holds the documented schema (extra keys allowed)
    stats = json.loads(path.read_text())
    assert type(stats["fps"]) is float and stats["fps"] > 0
    assert set(stats["latency_ms"]) >= {"p50", "p95"}
    assert all(type(stats["latency_ms"][k]) is float for k in ("p50", "p95"))
    assert 0 <= stats["latency_ms"]["p50"] <= stats["latency_ms"]["p95"]
    for key in ("frames_in", "frames_out", "dropped"):
        assert type(stats[key]) is int and stats[key] >= 0, key
    assert stats["frames_in"] == 20 and stats["frames_out"] >= 1
    assert isinstance(stats["stages_ms"], dict) and {"model", "motion", "composite", "sink"} <= set(stats["stages_ms"])
    assert all(type(name) is str and type(ms) is float for name, ms in stats["stages_ms"].items())
    assert type(stats["reused"]) is int and 0 <= stats["reused"] <= stats["composited"]
    # At most a call a frame; the two rates are timed on different threads over their own first
    # and last events, so over 20 frames one frame's jitter moves them about 5 % apart
    assert type(stats["model_calls_per_s"]) is float and 0 < stats["model_calls_per_s"] <= 1.1 * stats["fps"]
    assert set(stats["result_age"]) == {"p50", "p95"} and 0 <= stats["result_age"]["p50"] <= stats["result_age"]["p95"]
    assert type(stats["cpu_percent"]) is float and stats["cpu_percent"] > 0
    if sys.platform.startswith("linux"):
        # Each of the pipeline's threads' CPU a fresh frame, counted from the pipeline's start: all
        # of them together cannot have spent more than the run's wall time on every core
        threads = stats["cpu_ms_a_frame"]
        assert {"capture", "frames", "model", "output"} <= set(threads) <= {"capture", "frames", "finish", "model", "output"}
        assert all(type(ms) is float and ms >= 0 for ms in threads.values()) and threads["model"] > 0
        cores = len(os.sched_getaffinity(0))
        assert sum(threads.values()) * stats["composited"] <= stats["elapsed_s"] * 1e3 * cores, threads
    # The governor's part: the level now and the timeline of changes, from the calibrated start
    # ("model" names a fallback rung's model; "waits": true where keyframes wait for their own results)
    governor = stats["governor"]
    assert {"size", "stride"} <= set(governor["level"]) <= {"size", "stride", "model", "waits"}
    assert governor["level"]["stride"] >= 1
    assert governor["timeline"][0]["reason"].startswith("calibrated: ") and governor["timeline"][0]["t"] == 0.0
    assert all({"t", "size", "stride", "reason"} <= set(change) <= {"t", "size", "stride", "model", "waits", "reason"}
               for change in governor["timeline"])
    # And what each level is predicted to cost, against what the matte may use
    assert governor["capacity_percent"] > 0 and governor["predicted"]
    assert all(set(figures) == {"cpu_percent", "calls_per_s", "age", "mad"} for figures in governor["predicted"].values())
    assert [p.name for p in tmp_path.iterdir() if "part" in p.name] == []  # no temporary file left
