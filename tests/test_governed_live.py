"""The governed live path on the real RVM model: the model on its own thread, its results landing
frames after their input, and every frame still gets a matte of its own, aligned with its own picture.

The subject is the real portrait of tests/test_rvm_engine.py, moving 8 px a frame over a wall.
The engine tests replay the model thread on a schedule (:func:`livematte.runtime.schedule.on_schedule`:
a call's result lands ``lag`` frames after its input) with a governor held at one level, so they
are deterministic; the end-to-end tests run the live job with its threads and the governor free,
on a model made slower than the camera, and check every matte it wrote.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest

from livematte import config as livematte_config
from livematte.sources.capture import FileSource
from livematte.runtime.engine import Engine, WaitingModel
from livematte.runtime.governor import Governor, Level
from livematte.runtime.schedule import on_schedule
from livematte.runtime.stats import Stats
from livematte.commands.live import LiveJob, run_live_job
from livematte.media.readback import read_alpha_with_pts
from test_live import Delegating
from test_rvm_engine import (FPS, H, N, PW, SMOOTHING, STEP, W, WALL, centroid_x, frame, live_config, mad, scene, xpos,  # noqa: F401
                             clip, live_rvm, person, reference, rvm)


def held_at(level: Level) -> Governor:
    return Governor([level], 1 / FPS)


def scheduled(engine: Engine, images, lag: int) -> list:
    return list(on_schedule(engine, (frame(k, image) for k, image in enumerate(images)), lag))


def test_results_that_land_frames_late_are_moved_to_each_frames_own_picture(rvm, person):
    # Given the person moving 8 px a frame, and the model's results landing two frames after their input
    images = [scene(person, 8 + STEP * k) for k in range(10)]
    every_frame = Engine(rvm, SMOOTHING)
    own = [every_frame.process(frame(k, image)).alpha for k, image in enumerate(images)]
    offset = np.mean([centroid_x(alpha) - (8 + STEP * k) for k, alpha in enumerate(own)])
    engine = Engine(rvm, SMOOTHING, governor=held_at(Level(384, 1)))

    # When the frames go through it in order
    results = scheduled(engine, images, lag=2)

    # Then the first frame waited for its own result; the model took a frame as each call landed,
    # so every later one used a result 2-3 frames old (1 before the second landed); and each matte
    # sits on its own frame's person: within 1.5 px of where the model puts her on that frame,
    # where the result's own frame has her 16-24 px away
    assert [r.result_age for r in results] == [0, 1, 2, 2, 3, 2, 3, 2, 3, 2]
    for k, result in enumerate(results):
        centre = centroid_x(result.alpha)
        assert abs(centre - (8 + STEP * k + offset)) < 1.5, f"frame {k}: matte at {centre:.1f}"
        if result.reused:
            made_from = k - result.result_age
            assert mad(result.alpha, own[k]) < 0.5 * mad(result.alpha, own[made_from]), f"frame {k}"
            assert "model" not in result.timings and result.timings["motion"] >= 0


def test_where_keyframes_wait_each_keyframe_has_its_own_result_and_the_frames_between_follow_it(rvm, person):
    # Given the person moving 8 px a frame, a level of a call every third frame whose keyframes
    # wait for their own results, and calls that would otherwise land two frames late
    images = [scene(person, 8 + STEP * k) for k in range(10)]
    every_frame = Engine(rvm, SMOOTHING)
    own = [every_frame.process(frame(k, image)).alpha for k, image in enumerate(images)]
    offset = np.mean([centroid_x(alpha) - (8 + STEP * k) for k, alpha in enumerate(own)])
    engine = Engine(rvm, SMOOTHING, governor=held_at(Level(384, 3, waits=True)))

    # When the frames go through it in order
    results = scheduled(engine, images, lag=2)

    # Then every third frame is matted from its own call and the two after it from that result,
    # moved along the flow to their own picture
    assert [r.result_age for r in results] == [0, 1, 2, 0, 1, 2, 0, 1, 2, 0]
    for k, result in enumerate(results):
        assert abs(centroid_x(result.alpha) - (8 + STEP * k + offset)) < 1.5, f"frame {k}"


def test_where_keyframes_wait_a_jump_the_flow_cannot_follow_waits_for_the_next_keyframe(rvm, person):
    # Given keyframes every third frame that wait, and the person jumping 60 px at frame 4
    engine = Engine(rvm, SMOOTHING, governor=held_at(Level(384, 3, waits=True)))
    positions = [4, 8, 12, 16, 76, 80, 84]
    results = scheduled(engine, [scene(person, x) for x in positions], lag=0)
    # Then no call of its own for the frame after the jump (it would make every frame of a fast
    # swing wait): the next keyframe, two frames on, has one
    assert [r.result_age for r in results] == [0, 1, 2, 0, 1, 2, 0]


def test_a_jump_the_flow_cannot_follow_sends_the_next_frame_to_the_model_whatever_the_stride(rvm, person):
    # Given a stride of 4 frames, results landing at once, and the person jumping 64 px at frame 3
    engine = Engine(rvm, SMOOTHING, governor=held_at(Level(384, 4)))
    positions = [8, 12, 16, 80, 84, 88]  # 4 px a frame, a jump, 4 px
    results = scheduled(engine, [scene(person, x) for x in positions], lag=0)
    # Then frames 1-3 use frame 0's result, and the frame after the jump has a call of its own
    assert [r.result_age for r in results] == [0, 1, 2, 3, 0, 1]


def test_over_a_swing_the_flow_cannot_follow_the_urgent_calls_keep_the_levels_rate(rvm, person):
    # Given a stride of 3 frames whose keyframes do not wait, results landing at once, and the
    # person jumping 44 or 88 px every frame: no frame is explained by the flow from the one or
    # two before it
    engine = Engine(rvm, SMOOTHING, governor=held_at(Level(384, 3)))
    positions = [0, 44, 88] * 5
    results = scheduled(engine, [scene(person, x) for x in positions], lag=0)
    # Then the frame after the first jump has a call of its own, two frames before its stride
    # was up, and the calls after it come early but no more often than the stride: one every
    # third frame, the rate the level's CPU is priced at (every second frame before)
    ages = [r.result_age for r in results]
    assert ages == [0, 1, 0, 1, 0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1], ages


def test_a_restart_waits_for_a_result_of_its_own_picture(rvm, person):
    engine = Engine(rvm, SMOOTHING, governor=held_at(Level(384, 8)))
    image = scene(person, 40)
    frames = [frame(0, image), frame(1, image), frame(2, image).__class__(2, image, 2 / FPS, time.perf_counter(), restart=True),
              frame(3, image)]
    results = list(on_schedule(engine, frames, lag=3))
    assert [r.result_age for r in results] == [0, 1, 0, 1]


def test_a_schedule_lands_each_levels_calls_at_that_levels_own_lag(rvm, person):
    # Given two levels of one size, calls landing a frame after their input at the first and three
    # frames after at the second, and the governor changing level at frame 6
    first, second = Level(384, 1), Level(384, 2)
    governor = Governor([first, second], 1 / FPS)
    engine = Engine(rvm, SMOOTHING, governor=governor)
    images = [scene(person, xpos(k)) for k in range(14)]

    def frames():
        for k, image in enumerate(images):
            governor._index = int(k >= 6)
            yield frame(k, image)

    # When the frames go through the schedule with each level's lag
    ages = [matted.result_age for matted in on_schedule(engine, frames(), {first: 1, second: 3})]

    # Then the first frame waits for its own result, and calls land a frame late until the change
    # and three frames late after it: the call taken at frame 5 lands at 6; the next, two frames
    # after it (the second level's stride), at frame 7, lands at 10, and one taken there at 13
    assert ages == [0, 1, 1, 1, 1, 1, 1, 2, 3, 4, 3, 4, 5, 3], ages


def test_the_governor_steps_down_to_the_fallback_model_and_back_and_each_switch_starts_a_stream(
        rvm, person, selfie_weights):
    # Given RVM with Selfie Segmentation as the ladder's last rung
    from livematte import models
    from livematte.models import ModelSettings

    selfie = models.load_fallback("selfie", ModelSettings(name="rvm"), rvm)
    fallback = Level(256, 1, "selfie")
    governor = Governor([Level(256, 1), fallback], 1 / FPS)
    engine = Engine(rvm, SMOOTHING, governor=governor, fallback=selfie)
    # 256x256 frames: both models see them at 256x256, so only the change of model tells a new stream
    images = [cv2.copyMakeBorder(scene(person, 8 + STEP * k), 64, 64, 48, 48, cv2.BORDER_CONSTANT, value=WALL)
              for k in range(9)]
    levels = [0, 0, 0, 1, 1, 1, 0, 0, 0]  # RVM, the fallback, RVM again

    # When the governor's level changes between frames (a call on every frame, landing at once)
    def frames():
        for k, (image, index) in enumerate(zip(images, levels)):
            governor._index = index
            yield frame(k, image)

    results = list(on_schedule(engine, frames(), lag=0))

    # Then every frame has the person matted where she stands, whichever model made it
    assert all(r.result_age == 0 for r in results)
    for k, result in enumerate(results):
        assert abs(centroid_x(result.alpha) - (48 + 8 + STEP * k + PW / 2)) < 6, f"frame {k}"
    # And RVM's recurrent state and the finishing start afresh after the fallback: the first frame
    # back equals a fresh engine's first frame on that picture
    fresh = Engine(rvm, SMOOTHING).process(frame(6, images[6])).alpha
    assert np.abs(results[6].alpha - fresh).max() < 1e-4
    selfie.close()


class Slowed(Delegating):
    """The real backend with each model call made ``delay_s`` longer (a slower machine)."""

    def __init__(self, inner, delay_s: float):
        super().__init__(inner)
        self.delay_s = delay_s

    def infer(self, prepared, state):
        time.sleep(self.delay_s)
        return self.inner.infer(prepared, state)


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory, person):
    """180 frames (6 s) of the person sweeping 8 px a frame, back and forth."""
    from test_rvm_engine import W, H  # noqa: F401
    import av
    from fractions import Fraction

    path = tmp_path_factory.mktemp("governed") / "sweep.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=FPS, options={"preset": "ultrafast", "crf": "10", "threads": "1"})
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv444p"
        stream.codec_context.time_base = Fraction(1, 1000)
        for k in range(180):
            picture = av.VideoFrame.from_ndarray(scene(person, sweep(k)), format="bgr24")
            picture.pts, picture.time_base = round(k * 1000 / FPS), Fraction(1, 1000)
            container.mux(stream.encode(picture))
        container.mux(stream.encode())
    return path


def sweep(k: int) -> int:
    """The person's left edge in frame ``k``: 8 px a frame right, then left, over 9 steps."""
    phase = k % 18
    return 8 + STEP * (phase if phase <= 9 else 18 - phase)


def test_results_landing_frames_late_in_a_live_run_still_give_every_frame_its_own_matte(long_clip, live_rvm, tmp_path):
    # Given a live run of the clip in real time with the governor on, on a model made 80 ms slower
    # than this machine's: each result lands three or more frames after its input
    config = live_config(adapt=True)
    alpha_out, stats_json = tmp_path / "alpha.mkv", tmp_path / "stats.json"
    job = LiveJob(config=config, source=str(long_clip), realtime=True, sink="null", alpha_out=alpha_out,
                  stats_json=stats_json)

    # When it runs
    stats = run_live_job(job, matter=Slowed(live_rvm, 0.08))

    # Then no frame waited for the model: the source's rate held, the frames used results several
    # frames old, and the stats say so
    figures = stats.snapshot()
    assert figures["dropped"] <= 0.05 * figures["frames_in"], figures
    assert figures["result_age"]["p50"] >= 3 and figures["model_calls_per_s"] < 0.5 * figures["fps"], figures
    # And every matte written is on its own frame's person, reused or not: its centroid is nearer
    # to where a model call on that very frame puts her than to either neighbour's (8 px away).
    # (A model call right after dropped frames lags her by up to ~3 px: RVM's state, not the reuse.)
    decoded = list(FileSource(str(long_clip)).frames())
    offline = Engine(live_rvm, config.smoothing)
    offsets = [centroid_x(offline.process(frame(k, image)).alpha) - sweep(k) for k, (image, _) in
               enumerate(decoded[:18])]  # one sweep there and back: the offset is the same on every frame
    offset = float(np.median(offsets))
    checked = 0
    for alpha_u8, pts in read_alpha_with_pts(alpha_out):
        k = round(pts * FPS)
        if abs(pts - k / FPS) > 0.002:
            continue  # a repeat of the last picture's matte, stamped a tick later
        centre = centroid_x(alpha_u8.astype(np.float32))
        assert abs(centre - (sweep(k) + offset)) < STEP / 2, f"frame {k}: matte at {centre:.1f}, person at {sweep(k)}"
        checked += 1
    assert checked >= figures["composited"] - 1 >= 30


def test_a_model_far_slower_than_the_camera_still_gives_fresh_frames_at_the_cameras_rate(
        long_clip, live_rvm, selfie_weights, tmp_path):
    # Given RVM made 200 ms slower a call (six frames at 30 fps) and the live preset's fallback,
    # Selfie Segmentation. The delay is a wait, not CPU: the machine can run RVM, only late, so
    # the governor weighs RVM's old results against the fallback's fresh ones
    # (tests/test_governor.py has a machine too slow to run RVM at all, which takes the fallback)
    config = livematte_config.load("live", overrides={"model": {"name": "rvm"}, "live": {"adapt": True},
                                                      "output": {"background": "color:#00ff00"}})
    assert config.live.fallback == "selfie"
    stats_json = tmp_path / "stats.json"
    job = LiveJob(config=config, source=str(long_clip), realtime=True, sink="null", stats_json=stats_json,
                  max_frames=90)

    # When it runs
    run_live_job(job, matter=Slowed(live_rvm, 0.2))

    # Then it starts on the warm-up's costs, and the frames are fresh: no frame waits for the model
    import json

    figures = json.loads(stats_json.read_text())
    start = figures["governor"]["timeline"][0]
    assert start["reason"].startswith("calibrated: "), start
    assert figures["composited"] >= 0.85 * figures["frames_in"], figures
    # And the figures say what the governor weighed: RVM's results far older than the fallback's
    # (at the levels whose keyframes wait they would be young, but a 200 ms call fits none of them)
    predicted = figures["governor"]["predicted"]
    rvm_ages = [figures["age"] for name, figures in predicted.items()
                if not name.startswith("selfie") and not name.endswith(", waits")]
    assert not any(change.get("waits") for change in figures["governor"]["timeline"])
    assert predicted["selfie 256px whenever free"]["age"] < min(rvm_ages), predicted


def test_the_flow_is_composed_frame_by_frame_so_a_far_result_is_followed(rvm, person):
    # Given the person sweeping 8 px a frame, calls at least four frames apart and their results
    # landing three frames late: a frame is up to 6 frames (48 px) from its result's, more than DIS
    # (ultrafast) follows in one measurement on this small picture (it fell ~5 px short at 24 px
    # before the flow was composed frame to frame)
    engine = Engine(rvm, SMOOTHING, governor=held_at(Level(384, 4)))
    every_frame = Engine(rvm, SMOOTHING)
    images = [scene(person, sweep(k)) for k in range(36)]
    offset = np.median([centroid_x(every_frame.process(frame(k, image)).alpha) - sweep(k)
                        for k, image in enumerate(images[:18])])
    # When the frames go through it
    results = scheduled(engine, images, lag=3)
    # Then all but the first use a result 3 to 6 frames old, and every matte is within 1.5 px of
    # her, turns included
    assert sorted({r.result_age for r in results[4:]}) == [3, 4, 5, 6]
    errors = [abs(centroid_x(r.alpha) - sweep(k) - offset) for k, r in enumerate(results)]
    assert max(errors) < 1.5, [f"{e:.1f}" for e in errors]


def test_a_network_smaller_than_the_motions_size_follows_the_motion_measured_at_that_size(rvm, person):
    # Given the sweep at three times the size (480x384, 24 px a frame) and a governor at 192 px, one
    # model call every fourth frame: the network sees 192x154, the motion is measured at 384x307
    scale = 3
    engine = Engine(rvm, SMOOTHING, governor=held_at(Level(192, 4)))
    every_frame = Engine(rvm, SMOOTHING, governor=held_at(Level(192, 1)))
    images = [cv2.resize(scene(person, sweep(k)), (W * scale, H * scale), interpolation=cv2.INTER_LINEAR)
              for k in range(36)]
    offset = np.median([centroid_x(r.alpha) - scale * sweep(k)
                        for k, r in enumerate(scheduled(every_frame, images[:18], lag=0))])
    # When the frames go through it, the results landing two frames late
    results = scheduled(engine, images, lag=2)
    # Then every frame but the first uses an older result (the flow explains them), and every matte
    # is within 1.5 network px (4.5 px here) of her, turns included
    assert all(r.result_age >= 1 for r in results[1:]) and max(r.result_age for r in results) >= 4
    errors = [abs(centroid_x(r.alpha) - scale * sweep(k) - offset) for k, r in enumerate(results)]
    assert max(errors) < 1.5 * scale, [f"{e:.1f}" for e in errors]


def test_a_flow_moved_to_another_size_keeps_its_motion_in_that_sizes_px():
    from livematte.matte.motion import flow_at

    flow = np.zeros((216, 384, 2), np.float32)
    flow[...] = (8.0, -4.0)
    half = flow_at(flow, (108, 192))
    assert half.shape == (108, 192, 2) and np.allclose(half, (4.0, -2.0))
    assert flow_at(flow, (216, 384)) is flow


@pytest.fixture(scope="module")
def governed_rvm(rvm_weights):
    """RVM as a governed live run loads it: one runtime thread (a second one stalls whenever the
    frames take its core: ``assembly.LIVE_MODEL_THREADS``)."""
    from livematte import assembly, models

    matter = models.load(assembly.live_model_settings(live_config(adapt=True)))
    yield matter
    matter.close()


def governed_live_run(clip, engine: Engine) -> list:
    """``clip`` played as a camera through the live pipeline -> every Matted that came out."""
    from livematte.runtime.pipeline import Pipeline
    from livematte.runtime.workers import END

    out = []
    with Pipeline(FileSource(str(clip), realtime=True), engine, Stats(), live=True) as pipeline:
        while (matted := pipeline.next(timeout=10)) is not END:
            out.append(matted)
    return out


def test_a_live_run_whose_keyframes_wait_mattes_them_from_their_own_call(long_clip, governed_rvm):
    # Given the live pipeline with the governor held at a call every second frame, keyframes
    # waiting (RVM at this clip's 160x128 takes a few ms a call: every wait ends in time)
    engine = Engine(governed_rvm, live_config().smoothing, governor=held_at(Level(160, 2, waits=True)))

    # When the clip plays through it in real time
    results = governed_live_run(long_clip, engine)

    # Then the frames came out at the camera's rate, in order, and about every second one was
    # matted from a call on its own picture, after waiting for it; the others from the frame before
    # (on a busy machine a keyframe may give up now and then, and the frames after it use older ones)
    assert len(results) >= 0.8 * 180 and [r.frame.index for r in results] == sorted(r.frame.index for r in results)
    own = [r for r in results if r.result_age == 0]
    assert len(own) >= 0.4 * len(results) and sum(r.result_age <= 1 for r in results) >= 0.9 * len(results)
    assert all("wait_model" in r.timings for r in own[1:])
    assert not any("wait_model" in r.timings for r in results if r.result_age > 0)
    # And every matte sits on its own frame's person
    offline = Engine(governed_rvm, live_config().smoothing)
    decoded = list(FileSource(str(long_clip)).frames())
    offset = float(np.median([centroid_x(offline.process(frame(k, image)).alpha) - sweep(k)
                              for k, (image, _) in enumerate(decoded[:18])]))
    for result in results:
        k = result.frame.index
        assert abs(centroid_x(result.alpha) - (sweep(k) + offset)) < STEP / 2, f"frame {k}, age {result.result_age}"


def test_a_keyframe_waits_no_longer_than_the_governors_give_up_time(long_clip, governed_rvm):
    # Given keyframes every eighth frame that wait, on a model made 120 ms slower a call: the
    # model is free at each keyframe, and no call lands within the give-up time
    governor = held_at(Level(160, 8, waits=True))
    engine = Engine(Slowed(governed_rvm, 0.12), live_config().smoothing, governor=governor)
    assert governor.give_up_s() < 0.12

    # When the clip plays through the live pipeline
    results = governed_live_run(long_clip, engine)

    # Then each keyframe gave up at the governor's time after its capture and was finished from
    # the newest result there was, moved to it: the frames still came at the camera's rate
    waits = [r.timings["wait_model"] for r in results if "wait_model" in r.timings]
    assert waits and max(waits) <= governor.give_up_s() * 1e3 + 10, max(waits)
    assert len(results) >= 0.8 * 180 and np.median([r.result_age for r in results]) >= 2


def test_where_keyframes_wait_the_model_takes_only_frames_that_wait_for_it(long_clip, governed_rvm):
    # Given keyframes every second frame that wait, on a model made 120 ms slower a call: each call
    # outlasts the give-up time and the stride, so frames come while the model is still busy
    governor = held_at(Level(160, 2, waits=True))
    engine = Engine(Slowed(governed_rvm, 0.12), live_config().smoothing, governor=governor)

    # When the clip plays through the live pipeline
    results = governed_live_run(long_clip, engine)

    # Then every call was on a frame that waited for it: a frame that came while the model was
    # busy went by without one (on one core such a call runs in the gaps between the frames, and
    # its result lands so late that the next keyframe finds the model busy again)
    out = {r.frame.index for r in results}
    waited = {r.frame.index for r in results if "wait_model" in r.timings}
    inputs = {r.frame.index - r.result_age for r in results} & out
    assert len(inputs) >= 10 and inputs <= waited | {0}, sorted(inputs - waited)


class Counted(Delegating):
    """The real backend, its calls counted."""

    def __init__(self, inner):
        super().__init__(inner)
        self.calls = 0

    def infer(self, prepared, state):
        self.calls += 1
        return self.inner.infer(prepared, state)


@pytest.fixture(scope="module")
def wide_rvm(governed_rvm):
    """The copy of the governed RVM that calls the keyframes that wait, on two runtime threads."""
    import dataclasses

    from livematte import assembly, models

    settings = assembly.live_model_settings(live_config(adapt=True))
    copy = models.load_copy(governed_rvm, dataclasses.replace(settings, threads=assembly.WAITING_MODEL_THREADS))
    yield copy
    copy.close()


def test_keyframes_that_wait_are_called_on_the_wide_copy_in_the_same_stream(governed_rvm, wide_rvm, person):
    # Given an engine whose waiting keyframes go to the two-thread copy, and one without it
    copy = Counted(wide_rvm)
    wide = Engine(governed_rvm, SMOOTHING, governor=Governor([Level(160, 2, waits=True)], 1 / FPS, wide_waits=True),
                  waiting=WaitingModel(copy, 2))
    narrow = Engine(governed_rvm, SMOOTHING, governor=held_at(Level(160, 2, waits=True)))

    # When both call the model on the same frames, at levels that wait or not, in turn
    levels = [Level(160, 2, waits=True), Level(160, 2), Level(160, 3, waits=True), Level(160, 1, waits=True)] * 2
    images = [scene(person, 8 + STEP * k) for k in range(len(levels))]
    pairs = [(wide.model_call(frame(k, image), wide.motion_grey(image), level, 0),
              narrow.model_call(frame(k, image), narrow.motion_grey(image), level, 0))
             for k, (image, level) in enumerate(zip(images, levels))]

    # Then the copy took exactly the waiting keyframes two frames apart or more (every frame
    # waiting stays on the one thread), its runtime threads are counted for the call, and the
    # recurrent state and the smoothing ran on as one stream: each result is the one-thread
    # engine's, to bfloat16's rounding
    assert copy.calls == 4
    assert [wide.extra_threads(level) for level in levels[:4]] == [1, 0, 1, 0]
    assert len({result.stream for result, _ in pairs}) == 1
    for k, (result, alone) in enumerate(pairs):
        assert np.abs(result.planes[0] - alone.planes[0]).max() < 0.05, f"call {k}"


def test_a_live_run_counts_the_wide_copys_runtime_threads_in_the_models_cpu(long_clip, governed_rvm, wide_rvm):
    # Given the live pipeline held at a call every second frame, keyframes waiting on the copy
    from livematte.runtime.pipeline import Pipeline
    from livematte.runtime.workers import END, thread_cpu_s

    copy = Counted(wide_rvm)
    engine = Engine(governed_rvm, live_config().smoothing, waiting=WaitingModel(copy, 2),
                    governor=Governor([Level(160, 2, waits=True)], 1 / FPS, wide_waits=True))

    # When the clip plays through it in real time (the figures read while the model thread runs)
    results = []
    with Pipeline(FileSource(str(long_clip), realtime=True), engine, Stats(), live=True) as pipeline:
        while (matted := pipeline.next(timeout=10)) is not END:
            results.append(matted)
            if len(results) == 120:
                model_thread_s, model_s = thread_cpu_s(pipeline._model_worker) or 0.0, pipeline.model_cpu_s()

    # Then the copy made the calls, about every second frame had its own, and the model's CPU is
    # its thread's and as much again for the runtime's second thread, busy through each call
    assert copy.calls >= 0.4 * len(results) and sum(r.result_age == 0 for r in results) >= 0.4 * len(results)
    assert model_thread_s > 0 and model_s > 1.5 * model_thread_s, (model_s, model_thread_s)


def test_the_wide_copy_is_loaded_only_where_the_cpu_budget_holds_two_cores(monkeypatch, rvm_weights):
    import contextlib

    from livematte import assembly

    def copy_with(cores: int, max_cpu: float | None):
        monkeypatch.setattr(assembly, "available_cores", lambda: cores)
        config = livematte_config.load("live", overrides={"model": {"name": "rvm"}, "live": {
            "fallback": "", **({} if max_cpu is None else {"max_cpu": max_cpu})}})
        with contextlib.ExitStack() as stack:
            return assembly.load_models(config, stack, governed=True).waiting

    assert copy_with(2, 0) is not None and copy_with(2, 0).threads == 2  # no budget
    assert copy_with(4, None) is not None  # the default, all cores but one: three
    assert copy_with(2, None) is None  # the default on two: one core, where one thread's cheaper calls win
    assert copy_with(1, 0) is None


class SpikedOnce(Delegating):
    """The real backend with the third call of each input shape made ``delay_s`` longer: one call
    that something else on the machine slowed (the source's decoder starting beside the warm-up)."""

    def __init__(self, inner, delay_s: float):
        super().__init__(inner)
        self.delay_s, self.calls = delay_s, {}

    def infer(self, prepared, state):
        shape = np.shape(prepared)
        self.calls[shape] = self.calls.get(shape, 0) + 1
        if self.calls[shape] == 3:
            time.sleep(self.delay_s)
        return self.inner.infer(prepared, state)


def test_the_warm_up_prices_each_size_by_its_quickest_call_not_one_slowed_by_the_machine(governed_rvm):
    # Given a governor over three sizes, and a model one of whose warm-up calls at each size is
    # 300 ms late (the warm-up makes three a size, the first paying for first calls)
    governor = Governor([Level(160, 1), Level(128, 1), Level(96, 1)], 1 / FPS)
    engine = Engine(SpikedOnce(governed_rvm, 0.3), live_config().smoothing, governor=governor)

    # When it warms up
    engine.warm_up(W, H)

    # Then each size is priced near its own call's cost (a few ms at these sizes), not the late one's
    reason = governor.timeline[0].reason
    prices = [float(ms) for ms in re.findall(r"(\d+(?:\.\d+)?) ms", reason.split(";")[0])]
    assert len(prices) == 3 and max(prices) < 150, reason


def test_a_live_run_on_one_core_holds_only_levels_whose_keyframes_wait(shared_data, rvm_weights, tmp_path):
    # On one core a call that no frame waits for runs in what the frames leave of the core, and
    # its results came 14-20 frames old: every level there waits, but the last rung (the fallback
    # not waiting, for where nothing fits)
    if shutil.which("taskset") is None:
        pytest.skip("no taskset")
    clip, stats = shared_data / "clips" / "s18.mp4", tmp_path / "stats.json"
    subprocess.run(["taskset", "-c", "0", sys.executable, "-m", "livematte", "live", "--source", str(clip),
                    "--realtime", "--sink", "null", "--frames", "60", "--stats-json", str(stats)],
                   check=True, capture_output=True, timeout=300)
    figures = json.loads(stats.read_text())
    governor = figures["governor"]
    ladder = list(governor["predicted"])
    assert len(ladder) == 14 and ladder[-1] == "selfie 256px whenever free", ladder
    assert all(level.endswith(", waits") for level in ladder[:-1]), ladder
    assert all(change.get("waits") or change.get("model") for change in governor["timeline"]), governor["timeline"]
    # The keyframes that waited, and those that gave up, are counted: the level held waited unless
    # the run ended on the last rung, which does not
    keyframes = figures["keyframes"]
    waited_to_the_end = governor["level"].get("waits", False)
    assert 0 <= keyframes["gave_up"] <= keyframes["waited"], keyframes
    assert keyframes["waited"] > 0 or not waited_to_the_end, keyframes


def test_with_a_cpu_budget_the_governor_counts_all_the_cpu_the_matte_uses(shared_data, rvm_weights):
    # Given a live run of a 720p clip played as a camera, with a budget of one core: the budget is
    # held on the CPU of the run's own threads, so no work of the matte may run on threads the
    # governor does not count (FFmpeg's decoding threads, OpenCV's workers: 10-20 % of a core went
    # uncounted before, on two cores)
    import contextlib

    from livematte import assembly
    from livematte.runtime.pipeline import Pipeline
    from livematte.runtime.workers import END

    config = livematte_config.load("live", overrides={"model": {"name": "rvm"},
                                                      "live": {"fallback": "", "max_cpu": 100}})
    opencv_threads = cv2.getNumThreads()
    try:
        with contextlib.ExitStack() as stack:
            source = FileSource(str(shared_data / "clips" / "s18.mp4"), realtime=True)
            stack.callback(source.close)
            compositor = assembly.compositor(config)
            stack.callback(compositor.close)
            loaded = assembly.load_models(config, stack, governed=True)
            engine = assembly.live_engine(config, loaded, source, compositor, governed=True)
            # When it plays for four seconds after the first second
            frames = 0
            with Pipeline(source, engine, Stats(), live=True) as pipeline:
                while (matted := pipeline.next(timeout=10)) is not END:
                    frames += 1
                    if frames == 30:
                        counted, process = pipeline.matte_cpu_s(), time.process_time()
                    if frames == 150:
                        counted, process = pipeline.matte_cpu_s() - counted, time.process_time() - process
                        break
    finally:
        cv2.setNumThreads(opencv_threads)
    # Then the CPU the governor counted is the process's (this test's own thread only takes frames)
    assert process > 0.5 and counted >= 0.93 * process, (counted, process)


def test_the_latency_the_governor_reads_leaves_out_the_frames_before_the_level_settled():
    # The pipeline's first frames (or the old level's backlog) come out late: captured a second
    # before the level settled, they read about 1,000 ms
    stats = Stats()
    settled = time.perf_counter() - 0.05
    for _ in range(6):
        stats.output(settled - 1.0)
    # Then the frames captured as it settled, out about 50 ms later
    for _ in range(24):
        stats.output(settled)
    # Read since the level settled, only those count; read whole, the late ones set the p95
    assert 50.0 <= stats.recent_latency_p95(since=settled) < 200.0
    assert stats.recent_latency_p95() >= 1000.0
    # And before any frame since, there is nothing to read
    assert stats.recent_latency_p95(since=time.perf_counter() + 1.0) is None
