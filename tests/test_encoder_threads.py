"""Each live output's encoder on a thread of its own, and live recordings at a constant frame rate.

Real encoders and real files throughout: ProRes 4444 at 1080p (108 ms a frame on the fast Xeon of
2026-12-05, where 720p took 46 ms and kept two thirds of the camera's rate) stands for the encoder
that cannot keep up; the clips are real
H.264 files with AAC audio written with PyAV, some with frames missing and with white flashes
at the same times as beeps, so the recording's picture can be checked against its audio; the
model is the real RVM.
"""

from __future__ import annotations

import itertools
import os
import logging
import resource
import signal
import subprocess
import sys
import threading
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from media import AUDIO_RATE, gradient
from livematte import assembly, models, sinks
from livematte import config as livematte_config
from livematte.commands.live import LiveJob, run_live_job
from livematte.errors import LivematteError
from livematte.models.base import ModelSettings
from livematte.sinks.file import FileSink
from livematte.sinks.threaded import ThreadedSink
from livematte.sources.capture import FileSource

FPS = 30
FLASH_TICKS = (15, 45, 70, 100)  # white frames, each with a beep at its time
MISSING_TICKS = set(range(20, 25)) | {50, 51} | set(range(80, 90))  # a dropped frame, a pair, a 1/3 s stall
TICKS = 120  # 4 s
BEEP_S = 0.03


@pytest.fixture(scope="module")
def rvm(rvm_weights):
    return models.load(ModelSettings(name="rvm", size=160))


def rvm_config(**output):
    return livematte_config.load("live", overrides={"model": {"name": "rvm", "size": 160}, "live": {"fallback": ""},
                                                    "output": output})


def picture(tick: int, width: int, height: int) -> np.ndarray:
    if tick in FLASH_TICKS:
        return np.full((height, width, 3), 255, np.uint8)
    return gradient(tick, width, height)


def make_clip(path: Path, *, width: int, height: int, ticks: int = TICKS, missing=frozenset(),
              beeps=()) -> Path:
    """A real H.264 file, ``ticks`` frames at 30 fps with those in ``missing`` left out (the others
    keep their times), and mono AAC: silence with a 1 kHz beep of BEEP_S at each tick in ``beeps``."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=FPS, options={"preset": "ultrafast", "crf": "16"})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.time_base = Fraction(1, 1000)
        sound = container.add_stream("aac", rate=AUDIO_RATE)
        sound.layout = "mono"
        for tick in range(ticks):
            if tick in missing:
                continue
            frame = av.VideoFrame.from_ndarray(picture(tick, width, height), format="bgr24")
            frame.pts, frame.time_base = round(tick * 1000 / FPS), Fraction(1, 1000)
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
        samples = np.zeros(AUDIO_RATE * ticks // FPS, np.float32)
        for tick in beeps:
            start = round(tick / FPS * AUDIO_RATE)
            n = round(BEEP_S * AUDIO_RATE)
            samples[start:start + n] = 0.5 * np.sin(2 * np.pi * 1000 * np.arange(n) / AUDIO_RATE)
        for start in range(0, len(samples), 1024):
            frame = av.AudioFrame.from_ndarray(samples[None, start:start + 1024], format="fltp", layout="mono")
            frame.sample_rate, frame.pts, frame.time_base = AUDIO_RATE, start, Fraction(1, AUDIO_RATE)
            container.mux(sound.encode(frame))
        container.mux(sound.encode())
    return path


def video_frames(path: Path) -> tuple[list[float], list[float]]:
    """(each frame's time in seconds, its mean brightness 0..255), decoded."""
    times, brightness = [], []
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            times.append(float(frame.time))
            brightness.append(float(frame.to_ndarray(format="gray").mean()))
    return times, brightness


def beep_onsets(path: Path) -> list[float]:
    """The times the decoded audio first rises above 0.1 after 0.2 s of quiet, seconds."""
    with av.open(str(path)) as container:
        rate = container.streams.audio[0].sample_rate
        chunks = [(float(f.time), f.to_ndarray()[0]) for f in container.decode(audio=0)]
    start = chunks[0][0]
    samples = np.concatenate([c for _, c in chunks])
    loud = np.flatnonzero(np.abs(samples) > 0.1)
    onsets = [loud[0]] + [b for a, b in itertools.pairwise(loud) if b - a > 0.2 * rate] if len(loud) else []
    return [start + i / rate for i in onsets]


def on_every_tick(times: list[float], rate: float = FPS) -> bool:
    """A frame at every tick of ``rate`` from the first, and nothing else (within a millisecond,
    the coarsest container's tick)."""
    return bool(np.all(np.abs(np.diff(times) - 1 / rate) < 0.0011))


def source_rate(path: Path) -> float:
    """The rate livematte reads ``path`` at, which a live recording of it keeps (a file with frames
    missing states its average)."""
    return FileSource(str(path)).fps


# --- the encoder thread on its own ---------------------------------------------------------------------

def test_an_encoder_slower_than_the_camera_costs_its_own_frames_not_the_callers_time(tmp_path, caplog):
    # Given a 1080p ProRes 4444 recording (under a third of the camera's rate) opened as live opens it
    path = tmp_path / "out.mov"
    sink = assembly.sink(sinks.FILE, rvm_config(), 1920, 1080, Fraction(FPS), output=path, live=True)
    frames = [gradient(k, 1920, 1080) for k in range(8)]

    # When a 30 fps camera loop sends it 3 s of frames, each at its time
    durations, start = [], time.perf_counter()
    with caplog.at_level(logging.WARNING, logger="livematte"), sink:
        for k in range(90):
            time.sleep(max(0.0, start + k / FPS - time.perf_counter()))
            sent = time.perf_counter()
            sink.send(frames[k % 8], k / FPS)
            durations.append(time.perf_counter() - sent)
        loop_s = time.perf_counter() - start
        figures = sink.figures()

    # Then each send only handed the picture over, and the loop kept the camera's rate
    assert np.percentile(durations, 95) < 0.002 and max(durations) < 0.02, max(durations)
    assert loop_s < 3.2
    # And the output dropped frames of its own, and said so once, naming what to change
    assert figures["taken"] == 90 and figures["dropped"] > 30, figures
    warnings = [r.getMessage() for r in caplog.records if "the encoder keeps" in r.getMessage()]
    assert len(warnings) == 1, warnings
    assert warnings[0].startswith(f"recording {path}: the encoder keeps ") and "(ProRes 4444)" in warnings[0]
    assert ".webm" in warnings[0] and "webm_crf" in warnings[0]
    # And the file is complete: a frame at every tick of the 3 s, the last one the last sent
    times, _ = video_frames(path)
    assert len(times) == 90 and on_every_tick(times) and times[0] == 0.0


def test_a_stalled_camera_is_filled_while_it_stalls(tmp_path):
    # Given a live recording (H.264) of a camera that sends 1 s, stalls for 1 s, then sends 1 s more,
    # while the output loop says every 50 ms of the stall that no new frame came (Outputs.repeat)
    path = tmp_path / "out.mp4"
    sink = assembly.sink(sinks.FILE, rvm_config(), 320, 240, Fraction(FPS), output=path, live=True)
    start = time.perf_counter()
    with sink:
        for k in range(30):
            time.sleep(max(0.0, start + k / FPS - time.perf_counter()))
            sink.send(gradient(k, 320, 240), k / FPS)
        while time.perf_counter() < start + 2.0:
            time.sleep(0.05)
            sink.hold()
        during = sink.figures()
        for k in range(60, 90):
            time.sleep(max(0.0, start + k / FPS - time.perf_counter()))
            sink.send(gradient(k, 320, 240), k / FPS)
    # Then the stall's ticks were filled as it went, up to half a second behind, and the rest
    # when the camera came back: a frame at every tick of the 3 s
    assert during["written"] >= 30 + 12, during
    times, _ = video_frames(path)
    assert len(times) == 90 and on_every_tick(times)


def test_an_error_on_the_encoder_thread_reaches_the_caller_and_removes_the_file(tmp_path):
    path = tmp_path / "out.mp4"
    inner = FileSink(path, 64, 48, Fraction(FPS), constant_rate=True)
    inner.name = "file"
    sink = ThreadedSink(inner, name="file out.mp4", label="recording out.mp4", what="H.264", advice="",
                        source_timed=True)
    # A picture of the wrong size fails in the writer, on the encoder's thread
    sink.send(np.zeros((48, 64, 3), np.uint8), 0.0)
    sink.send(np.zeros((40, 64, 3), np.uint8), 1 / FPS)
    deadline = time.perf_counter() + 5
    with pytest.raises(ValueError, match=r"expected an image of shape \[48, 64"):
        while time.perf_counter() < deadline:
            sink.send(np.zeros((48, 64, 3), np.uint8), 2 / FPS)
            time.sleep(0.01)
    sink.abort()
    assert not sink.thread._thread.is_alive()
    assert list(tmp_path.iterdir()) == []


def test_vfr_needs_a_recording():
    with pytest.raises(LivematteError, match="--vfr is how a recording keeps time; it needs -o FILE"):
        run_live_job(LiveJob(config=rvm_config(), source="x.mp4", sink="null", vfr=True))


# --- live runs: the recording does not slow the matte ---------------------------------------------------

@pytest.fixture(scope="module")
def clip720(tmp_path_factory) -> Path:
    return make_clip(tmp_path_factory.mktemp("clips") / "clip720.mp4", width=1280, height=720, ticks=90)


def test_a_slow_recording_drops_no_more_source_frames_than_no_output(clip720, rvm, tmp_path):
    # Given a 720p clip played as a camera, once into nothing and once recorded as ProRes 4444
    # (it kept 12.4 fps beside the matte; at 540p it kept 22.4 in a slow spell and all 30 in a
    # fast one, so the size that makes it too slow for the camera leaves room for fast machines)
    null = run_live_job(LiveJob(config=rvm_config(), source=str(clip720), realtime=True, sink="null"), matter=rvm)
    out = tmp_path / "out.mov"
    recorded = run_live_job(LiveJob(config=rvm_config(), source=str(clip720), realtime=True, sink="file",
                                    output=out), matter=rvm)

    # Then the run dropped about as many source frames as without the recording, which dropped its own
    assert recorded.dropped_total <= null.dropped_total + 9, (recorded.dropped_total, null.dropped_total)
    figures = recorded.snapshot()["outputs"][f"file {out}"]
    assert figures["dropped"] > 0, figures
    # And the file has a frame at every tick from the first frame to the last
    times, _ = video_frames(out)
    assert on_every_tick(times) and len(times) == figures["written"] >= 80, (len(times), figures)


# --- live recordings at the source's rate, in step with its audio ---------------------------------------

@pytest.fixture(scope="module")
def gappy(tmp_path_factory) -> Path:
    return make_clip(tmp_path_factory.mktemp("clips") / "gappy.mp4", width=320, height=240,
                     missing=MISSING_TICKS, beeps=FLASH_TICKS)


@pytest.mark.parametrize("suffix", [".mp4", ".webm"])  # H.264 encodes its repeats, VP9 shows them by a header
def test_a_recording_of_a_source_with_gaps_has_a_frame_at_every_tick_in_step_with_its_audio(gappy, rvm, tmp_path,
                                                                                           suffix):
    # Given a 30 fps clip with frames missing (one, two, then a third of a second) and white
    # flashes at the times of beeps in its audio, recorded live at its rate (the default)
    out = tmp_path / f"out{suffix}"
    stats = run_live_job(LiveJob(config=rvm_config(), source=str(gappy), realtime=True, sink="file", output=out),
                         matter=rvm)

    # Then the file has a frame at every tick of the rate (the clip's average: 25.7 fps) from the
    # first frame to the last: duration x rate frames, the gaps filled with the frame before
    rate = source_rate(gappy)
    times, brightness = video_frames(out)
    figures = stats.snapshot()["outputs"][f"file {out}"]
    assert on_every_tick(times, rate), np.diff(times)
    assert len(times) == round((times[-1] + 1 / rate - times[0]) * rate) == figures["written"]
    assert len(times) >= 0.9 * TICKS / FPS * rate and figures["repeated"] >= 8, figures  # 8: the stall's ticks
    # And each flash is shown within one frame of its beep
    flashes = [t for t, b in zip(times, brightness) if b > 200]
    flashes = [t for i, t in enumerate(flashes) if i == 0 or t - flashes[i - 1] > 0.1]  # a flash's first frame
    beeps = beep_onsets(out)
    assert len(beeps) == len(FLASH_TICKS), beeps
    assert len(flashes) >= len(FLASH_TICKS) - 1, flashes  # one may be a source frame dropped
    for flash in flashes:
        nearest = min(beeps, key=lambda b: abs(b - flash))
        assert abs(nearest - flash) <= 1 / FPS, (flash, beeps)


def test_a_vfr_recording_keeps_each_frames_own_time(gappy, rvm, tmp_path):
    out = tmp_path / "out.mkv"
    stats = run_live_job(LiveJob(config=rvm_config(), source=str(gappy), realtime=True, sink="file", output=out,
                                 vfr=True), matter=rvm)
    times, brightness = video_frames(out)
    figures = stats.snapshot()["outputs"][f"file {out}"]
    # One frame for each frame written, at its source time (all moved by the muxer as the audio
    # is, 21 ms for the AAC's priming here): the missing ones stay missing, none repeated
    assert len(times) == figures["written"] and figures["repeated"] == 0
    shift = beep_onsets(out)[0] - FLASH_TICKS[0] / FPS
    ticks = [round((t - shift) * FPS) for t in times]
    assert all(abs((t - shift) * FPS - k) < 0.05 for t, k in zip(times, ticks)), times
    assert not set(ticks) & MISSING_TICKS and len(set(ticks)) == len(ticks)
    assert {k for k, b in zip(ticks, brightness) if b > 200} <= set(FLASH_TICKS)


# --- a stopped recording is kept; a failing one is a clear error ---------------------------------------

def test_a_stopped_recording_is_finished_and_kept(gappy, rvm, tmp_path):
    out = tmp_path / "out.webm"
    stop = threading.Event()
    threading.Timer(2.0, stop.set).start()
    run_live_job(LiveJob(config=rvm_config(), source=str(gappy), realtime=True, loop=True, sink="file",
                         output=out), matter=rvm, stop=stop)
    times, _ = video_frames(out)
    assert on_every_tick(times, source_rate(gappy)) and len(times) >= 30
    assert [t.name for t in threading.enumerate() if t.name.startswith("livematte-")] == []


def _limit_file_size():
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails (EFBIG) instead of killing
    resource.setrlimit(resource.RLIMIT_FSIZE, (400_000, resource.RLIM_INFINITY))


def test_a_recording_that_cannot_be_written_is_a_clear_error_and_leaves_nothing(gappy, rvm_weights, tmp_path):
    # Given a recording that fails part-way (files limited to 400 kB: a real write error, on the encoder's thread)
    out = tmp_path / "out.mov"
    result = subprocess.run([sys.executable, "-m", "livematte", "live", "--source", str(gappy), "--realtime", "--loop",
                             "--model", "rvm", "--model-size", "160", "-o", str(out)],
                            capture_output=True, text=True, timeout=120, preexec_fn=_limit_file_size, check=False)
    # Then the run ends with one line naming the file, and nothing is left of it
    assert result.returncode == 1, result.stderr
    assert f"livematte: error: cannot write {out}: File too large" in result.stderr
    assert "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_the_advice_for_a_slow_vp9_recording_names_only_what_encodes_faster():
    import dataclasses

    def advice(preset: str, crf: int) -> tuple[str, str]:
        config = livematte_config.load("live")
        output = dataclasses.replace(config.output, encoder_preset=preset, webm_crf=crf)
        return assembly._recording_advice("webm", dataclasses.replace(config, output=output))

    # `live` records at superfast, libvpx's fastest speed already (as ultrafast): a higher crf is what is left
    what, text = advice("superfast", 30)
    assert what == "VP9 crf 30" and "a higher webm_crf (40) under [output]" in text and "encoder_preset" not in text
    # From medium (speed 4), the next presets that map onto faster speeds
    assert "a faster encoder_preset (fast or faster)" in advice("medium", 30)[1]


@pytest.mark.skipif(not hasattr(os, "SCHED_IDLE"), reason="Linux's idle scheduling class")
def test_video_encoders_run_in_the_idle_class_and_the_matte_file_at_nice_10(tmp_path):
    from livematte.media.writing import AlphaWriter
    from livematte.sinks.threaded import ThreadedWriter

    def policy_of(encoder) -> list[tuple[int, int]]:
        """(scheduling policy, niceness) of an EncoderThread's thread, read from inside it at each delivery."""
        seen = []
        original = encoder._deliver

        def deliver(item):
            seen.append((os.sched_getscheduler(0), os.getpriority(os.PRIO_PROCESS, threading.get_native_id())))
            return original(item)

        encoder._deliver = deliver
        return seen

    # Given a live recording and a live matte file, each on its encoder thread
    sink = assembly.sink(sinks.FILE, rvm_config(), 64, 48, Fraction(FPS), output=tmp_path / "out.mp4", live=True)
    writer = ThreadedWriter(AlphaWriter(tmp_path / "m.mkv", width=64, height=48, rate=Fraction(FPS)),
                            name="alpha", label="matte file", what="FFV1", advice="-")
    video_seen, matte_seen = policy_of(sink.thread), policy_of(writer.thread)

    # When each gets a frame
    with sink, writer:
        sink.send(gradient(0, 64, 48), 0.0)
        writer.write(np.zeros((48, 64), np.uint8), 0.0)

    # Then the video encoder ran in the idle class and the matte writer at nice 10
    assert video_seen and video_seen[0][0] == os.SCHED_IDLE
    assert matte_seen and matte_seen[0] == (os.SCHED_OTHER, 10)
