"""The live, engine and smoothing paths on the real RVM model, the default of every fresh install.

tests/test_live.py and tests/test_smoothing.py run these paths on the BSHM-contract stand-in graph,
whose matte is a known function of the colours. Here the model is RVM itself
(``models.load(ModelSettings(name="rvm"))``, default runtime): a :class:`GuidedMatte` whose
coefficients the engine smooths and finishes at full resolution, with a recurrent state that
lives across frames. The subject is a real photo of a person (Grace Hopper, the ``portrait``
fixture) shrunk to 72x84 and moved 8 px a frame over a plain wall. At 160x128 RVM mattes her
confidently: run over the frames in order, the matte's centroid keeps the same place on her
(34.5 +- 0.4 px right of her left edge) on every frame, and the matte of the frame before or
after hers is ~0.07 away in mean absolute difference, 10x farther than her own.

Only the virtual camera device is faked (a pyvirtualcam backend registered here). The model is
wrapped only to record what it was given, so a test can rebuild the exact history (recurrent
state, smoother's past) behind each matte of a run that dropped frames.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import time
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
import pyvirtualcam

from livematte import config as livematte_config
from livematte import models
from livematte.sources.capture import FileSource
from livematte.compose.compositor import blend
from livematte.runtime.engine import Engine, _warm_up_picture
from livematte.frames import Frame
from livematte.commands.live import LiveJob, run_live_job
from livematte.models.base import GuidedMatte, ModelSettings
from livematte.matte.refine import apply_coefficients
from livematte.matte.smoothing import SmoothingSettings
from livematte.media.readback import read_alpha_with_pts
from test_live import Delegating

W, H, FPS = 160, 128, 30  # small, and below every preset's model size: the network sees the frame as it is
PW, PH = 72, 84  # the portrait, shrunk
WALL, DARK_WALL = (200, 190, 180), (40, 40, 40)  # BGR
GREEN = (0, 255, 0)
N = 20  # frames in the clip
STEP = 8  # px the person moves per frame


def xpos(k: int) -> int:
    """The person's left edge in frame ``k``: 8 px right each frame, back to the left every 10."""
    return 8 + STEP * (k % 10)


def scene(person: np.ndarray, x: int, wall=WALL) -> np.ndarray:
    """``uint8 [H, W, 3]`` BGR: a plain wall with the person standing at ``x``, cut off by the bottom edge."""
    image = np.empty((H, W, 3), np.uint8)
    image[:] = wall
    image[H - PH:, x:x + PW] = person
    return image


def frame(k: int, image: np.ndarray) -> Frame:
    return Frame(k, image, k / FPS, time.perf_counter())


def centroid_x(alpha: np.ndarray) -> float:
    return float((alpha * np.arange(alpha.shape[1])).sum() / alpha.sum())


def mad(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float64) - b).mean())


def is_initial(state, initial) -> bool:
    return len(state) == len(initial) and all(
        s.shape == i.shape and np.array_equal(s, i) for s, i in zip(state, initial))


class Recording(Delegating):
    """The real backend, recording what each ``infer`` got and gave (copies: runners may reuse buffers)."""

    def __init__(self, inner):
        super().__init__(inner)
        self.inputs: list[np.ndarray] = []
        self.states_in: list[tuple] = []
        self.states_out: list[tuple] = []
        self.mattes: list[GuidedMatte] = []

    def infer(self, prepared, state):
        self.inputs.append(np.array(prepared))
        self.states_in.append(tuple(np.array(s) for s in state))
        matte, state_out = self.inner.infer(prepared, state)
        self.mattes.append(GuidedMatte(*(np.array(plane) for plane in
                                         (matte.a, matte.b, matte.colour_a, matte.colour_b))))
        self.states_out.append(tuple(np.array(s) for s in state_out))
        return matte, state_out


@pytest.fixture(scope="module")
def person(portrait) -> np.ndarray:
    return cv2.resize(portrait, (PW, PH), interpolation=cv2.INTER_AREA)


@pytest.fixture(scope="module")
def rvm(rvm_weights):
    """RVM as a fresh install loads it: default size and runtime (OpenVINO on a CPU)."""
    return models.load(ModelSettings(name="rvm"))


# --- (1) every written matte belongs to the frame with its pts ---------------------------------

def live_config(adapt: bool = False):
    """The live preset on RVM over green; the governor off unless ``adapt``: these tests rebuild
    the exact model history behind each matte (tests/test_governed_live.py covers it on), on
    RVM alone (no fallback model)."""
    return livematte_config.load("live", overrides={"model": {"name": "rvm"}, "live": {"adapt": adapt, "fallback": ""},
                                                    "output": {"background": "color:#00ff00"}})


@pytest.fixture(scope="module")
def live_rvm(rvm_weights):
    """RVM as the live preset loads it (size 384, 2 threads; a 160x128 frame is fed as it is)."""
    return models.load(live_config().model)


@pytest.fixture(scope="module")
def clip(tmp_path_factory, person) -> Path:
    """A real H.264 file (4:4:4, crf 10) of the person moving 8 px a frame, pts k / FPS."""
    path = tmp_path_factory.mktemp("rvm-clips") / "walk.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=FPS, options={"preset": "ultrafast", "crf": "10", "threads": "1"})
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv444p"
        stream.codec_context.time_base = Fraction(1, 1000)
        for k in range(N):
            picture = av.VideoFrame.from_ndarray(scene(person, xpos(k)), format="bgr24")
            picture.pts, picture.time_base = round(k * 1000 / FPS), Fraction(1, 1000)
            container.mux(stream.encode(picture))
        container.mux(stream.encode())
    return path


@pytest.fixture(scope="module")
def reference(clip, live_rvm):
    """The clip decoded as the pipeline decodes it, and RVM's matte of every frame, run offline
    in order through an engine with the live preset's settings: -> (images, mattes, offset), offset
    being where the matte's centroid sits right of the person's left edge."""
    config = live_config()
    decoded = list(FileSource(str(clip)).frames())
    assert [round(pts * FPS) for _, pts in decoded] == list(range(N))
    images = [image for image, _ in decoded]
    engine = Engine(live_rvm, config.smoothing, config.refine.mode)
    mattes = [engine.process(frame(k, image)).alpha for k, image in enumerate(images)]
    offsets = np.array([centroid_x(alpha) - xpos(k) for k, alpha in enumerate(mattes)])
    # RVM really mattes the person: her centroid moves with her, frame by frame, to within a pixel
    assert offsets.max() - offsets.min() < 2.0, offsets
    assert all(0.12 < alpha.mean() < 0.3 for alpha in mattes)
    return images, mattes, float(offsets.mean())


class VirtualCamera:
    """A pyvirtualcam backend that keeps what it was sent (the device is the only thing faked)."""

    _names = itertools.count()

    def __init__(self):
        self.name = f"livematte-rvm-test-{os.getpid()}-{next(self._names)}"
        self.frames: list[np.ndarray] = []
        recorder = self

        class Backend:
            def __init__(self, *, width, height, fps, fourcc, device, **kw):
                self.shape = (height, width, 3)

            def send(self, picture):
                recorder.frames.append(picture.reshape(self.shape).copy())

            def close(self):
                pass

            def device(self):
                return "test-vcam"

            def native_fourcc(self):
                return None

        self.backend = Backend


@pytest.fixture
def vcam():
    camera = VirtualCamera()
    pyvirtualcam.register_backend(camera.name, camera.backend)
    yield camera
    pyvirtualcam.camera.BACKENDS.pop(camera.name, None)


def fresh_mattes(written: list[tuple[np.ndarray, float]], stats) -> list[tuple[np.ndarray, float]]:
    """The matte file without repeats. When the live output repeats its last picture (the model
    is late), the matte file may hold that picture's matte again, stamped one tick (1 ms) after
    the matte before it: each such repeat must be an exact copy of the last fresh matte, and
    there can be no more of them than repeated pictures."""
    fresh: list[tuple[np.ndarray, float]] = []
    last_pts = None
    for alpha, pts in written:
        if fresh and abs(pts - last_pts - 0.001) < 0.0005:
            assert np.array_equal(alpha, fresh[-1][0]), f"pts {pts:.3f}: a repeat that is another matte"
        else:
            fresh.append((alpha, pts))
        last_pts = pts
    assert len(written) - len(fresh) <= stats.repeated
    return fresh


def replay(rvm, images: list[np.ndarray], inputs: list[np.ndarray],
           in_order: list[np.ndarray]) -> dict[int, np.ndarray]:
    """Which frames a pipeline's model ran on (told from the inputs it got, in order; the warm-up's
    flat frames skipped), and each one's matte from an engine run offline on those frames only,
    in that order: the same history (recurrent state, smoother's past, scene cuts) as the pipeline.
    ``in_order``: the mattes of every frame in order, already computed that way."""
    config = live_config()
    prepared = [rvm.prepare(image) for image in images]
    warm_up_person = rvm.prepare(_warm_up_picture(W, H))
    processed: list[int] = []
    for given in inputs:
        later = [k for k in range(processed[-1] + 1 if processed else 0, N)
                 if prepared[k].shape == given.shape and np.array_equal(prepared[k], given)]
        if not later:
            warm_up = np.all(given == given.flat[0]) or np.array_equal(given, warm_up_person)
            assert not processed and warm_up, "the model got a picture not in the clip"
            continue  # the warm-up (flat frames, then a person), before the stream
        processed.append(later[0])
    if processed == list(range(N)):
        return dict(enumerate(in_order))
    engine = Engine(rvm, config.smoothing, config.refine.mode)
    return {k: engine.process(frame(k, images[k])).alpha for k in processed}


@pytest.mark.parametrize("realtime, sink", [(False, "null"), (True, "null"), (True, "vcam")],
                         ids=["offline", "live", "live-vcam"])
def test_every_written_rvm_matte_belongs_to_the_frame_with_its_pts(clip, reference, live_rvm, vcam, tmp_path,
                                                                   realtime, sink):
    # Given a clip of a real person moving 8 px a frame, played from a file (every frame, as
    # fast as the model goes; or in real time like a camera, when a model slower than 30 fps
    # drops frames), through the live pipeline on RVM with the live preset, writing the mattes out
    images, ref, offset = reference
    alpha_out = tmp_path / "alpha.mkv"
    job = LiveJob(config=live_config(), source=str(clip), realtime=realtime, sink=sink,
                  vcam_backend=vcam.name if sink == "vcam" else None, alpha_out=alpha_out)
    recording = Recording(live_rvm)

    # When the live job runs
    stats = run_live_job(job, matter=recording)

    # Then each written matte is RVM's matte of the frame with the same pts, given the frames the
    # model ran on before it: an offline engine fed the same frames in the same order gives it
    # to within the file's 8-bit rounding (a neighbour's matte is 8 px away: ~0.07 MAD)
    mattes = fresh_mattes(read_alpha_with_pts(alpha_out), stats)
    assert len(mattes) == stats.composited >= 3
    same_history = replay(live_rvm, images, recording.inputs, ref)
    indexes = []
    for alpha_u8, pts in mattes:
        k = round(pts * FPS)
        assert abs(pts - k / FPS) < 0.002 and 0 <= k < N, pts
        assert k in same_history, f"frame {k}: a matte written for a frame the model never ran on"
        indexes.append(k)
        alpha = alpha_u8.astype(np.float32) / 255
        diff = np.abs(alpha - same_history[k]).max()
        assert diff <= 1.01 / 255, f"frame {k}: {diff * 255:.1f}/255 from that frame's own matte"
        # And the person is where that frame has her: the matte is closer to that frame's matte
        # in an unbroken run than to either neighbour's (after dropped frames RVM's state, not
        # the smoothing, lags her by up to ~3 px of the 8 between frames)
        own = mad(alpha, ref[k])
        neighbours = [mad(alpha, ref[j]) for j in (k - 1, k + 1) if 0 <= j < N]
        assert own < min(neighbours), f"frame {k}: MAD {own:.4f} vs neighbours {neighbours}"
    assert indexes == sorted(set(indexes)), "mattes out of order or written twice"
    if not realtime:
        assert indexes == list(same_history) == list(range(N))
        for (alpha_u8, _), k in zip(mattes, indexes):
            centre = centroid_x(alpha_u8.astype(np.float32))
            assert abs(centre - (xpos(k) + offset)) < 1.0, f"frame {k}: person's matte at {centre:.1f}"

    if sink == "vcam":
        # And every picture the virtual camera got (repeats collapsed) is the composite of the
        # frame with that pts over green, by that frame's own written matte (compared where the
        # matte is 0 or 1: at soft pixels the person's colours are the estimated foreground's)
        pictures = [p for i, p in enumerate(vcam.frames) if i == 0 or not np.array_equal(p, vcam.frames[i - 1])]
        assert len(pictures) == len(mattes)
        green = np.empty((H, W, 3), np.uint8)
        green[:] = GREEN
        for picture, (alpha_u8, _), k in zip(pictures, mattes, indexes):
            expected = blend(images[k], green, alpha_u8.astype(np.float32) / 255)
            hard = (alpha_u8 == 0) | (alpha_u8 == 255)
            diff = np.abs(picture.astype(np.int16) - expected)[hard].max()
            assert diff <= 2, f"frame {k}: the picture differs from its own composite by {diff}"


# --- (2) a scene cut resets RVM's recurrent state ------------------------------------------------

SMOOTHING = SmoothingSettings(strength=0.7, sigma=0.2, cut_threshold=0.25)  # the live preset's


def walk_in(engine: Engine, person: np.ndarray, frames: int = 4) -> None:
    """The person moving 2 px a frame on the light wall: a recurrent state builds up."""
    for k in range(frames):
        engine.process(frame(k, scene(person, 36 + 2 * k)))


def test_scene_cut_resets_rvm_state_and_the_matte_equals_a_fresh_engines(rvm, person):
    # Given an engine on real RVM that has seen four frames of one scene
    recording = Recording(rvm)
    engine = Engine(recording, SMOOTHING)
    walk_in(engine, person)
    assert engine.smoother.cuts == 0
    assert not is_initial(engine.state, rvm.initial_state())  # the state has built up

    # When the wall turns dark (the grey frame changes by ~0.44 on average: a scene cut)
    cut = scene(person, 44, DARK_WALL)
    out = engine.process(frame(4, cut))

    # Then the cut is counted, RVM was given its initial state for the cut frame,
    # and the matte is exactly what a fresh engine gives for that frame
    assert engine.smoother.cuts == 1
    assert is_initial(recording.states_in[-1], rvm.initial_state())
    fresh = Engine(rvm, SMOOTHING)
    np.testing.assert_allclose(out.alpha, fresh.process(frame(0, cut)).alpha, rtol=0, atol=1e-6)

    # And the new scene goes on from the cut frame alone: the next frame gets the state the cut
    # frame returned, and its matte is the fresh engine's for the same two frames
    after = scene(person, 46, DARK_WALL)
    out = engine.process(frame(5, after))
    assert engine.smoother.cuts == 1
    assert all(np.array_equal(a, b) for a, b in zip(recording.states_in[-1], recording.states_out[-2]))
    np.testing.assert_allclose(out.alpha, fresh.process(frame(1, after)).alpha, rtol=0, atol=1e-6)


@pytest.mark.parametrize("smoothing", [SMOOTHING, dataclasses.replace(SMOOTHING, enabled=False)],
                         ids=["smoothed", "unsmoothed"])
def test_without_a_cut_rvm_state_carries_over(rvm, person, smoothing):
    # Given an engine on real RVM that has seen four frames of one scene
    recording = Recording(rvm)
    engine = Engine(recording, smoothing)
    walk_in(engine, person)

    # When the next frame of the same scene follows (grey change ~0.035: no cut)
    image = scene(person, 44)
    out = engine.process(frame(4, image))

    # Then RVM was given the state the previous frame returned, not its initial one
    assert engine.smoother.cuts == 0
    assert not is_initial(recording.states_in[-1], rvm.initial_state())
    assert all(np.array_equal(a, b) for a, b in zip(recording.states_in[-1], recording.states_out[-2]))
    # And that state shows: the matte is not what a fresh engine gives for that frame (measured:
    # up to 0.5 apart at the edges, 0.004 on average), even with smoothing off
    fresh = Engine(rvm, smoothing).process(frame(0, image)).alpha
    diff = np.abs(out.alpha - fresh)
    assert diff.max() > 0.1 and diff.mean() > 1e-3, (diff.max(), diff.mean())


# --- (3) smoothing mixes RVM's coefficients with their past, by the documented formula -----------

def jittered(person: np.ndarray, frames: int = 6) -> list[np.ndarray]:
    """Small frame-to-frame change: the person sways by 1 px, with fresh +-6 noise on every pixel."""
    rng = np.random.default_rng(7)
    out = []
    for k in range(frames):
        image = scene(person, 44 + k % 2).astype(np.int16) + rng.integers(-6, 7, (H, W, 3))
        out.append(np.clip(image, 0, 255).astype(np.uint8))
    return out


def smoothed_reference(planes: list[np.ndarray], strength: float, sigma: float) -> list[np.ndarray]:
    """smoothing.py's docstring in float64, written out independently of the module:
    w = strength * exp(-(|a_t - s_{t-1}| / sigma)^2) from the first plane (the coarse alpha),
    s_t = w * s_{t-1} + (1 - w) * a_t for every plane."""
    out = [planes[0].astype(np.float64)]
    for current in planes[1:]:
        past, current = out[-1], current.astype(np.float64)
        weight = strength * np.exp(-((np.abs(current[0] - past[0]) / sigma) ** 2))
        out.append(weight * past + (1.0 - weight) * current)
    return out


def test_rvm_coefficients_are_smoothed_by_the_documented_formula(rvm, person):
    # Given two engines on real RVM, one smoothing (the live preset's strength 0.7, sigma 0.2),
    # one not, and a sequence with small frame-to-frame change
    smoothed_rvm, raw_rvm = Recording(rvm), Recording(rvm)
    smoothed = Engine(smoothed_rvm, SMOOTHING)
    raw = Engine(raw_rvm, dataclasses.replace(SMOOTHING, enabled=False))
    outs, raw_outs, pasts, guides = [], [], [], []

    # When both run over the same frames
    for k, image in enumerate(jittered(person)):
        prepared = raw.prepare(frame(k, image))
        raw_outs.append(raw.infer(prepared).alpha)
        guides.append((prepared.guide, prepared.full_guide))
        outs.append(smoothed.process(frame(k, image)).alpha)
        pasts.append(smoothed.smoother._past.copy())

    # Then both saw the same frames with the same states, so RVM gave both the same raw
    # coefficients (smoothing never feeds back into the model)
    assert smoothed.smoother.cuts == raw.smoother.cuts == 0
    for s, r in zip(smoothed_rvm.mattes, raw_rvm.mattes):
        np.testing.assert_array_equal(s.a, r.a)
        np.testing.assert_array_equal(s.b, r.b)
    # And the unsmoothed matte is those coefficients applied to the full-size guide
    for (guide, full_guide), matte, out in zip(guides, raw_rvm.mattes, raw_outs):
        np.testing.assert_allclose(out, apply_coefficients(matte.a, matte.b, full_guide), rtol=0, atol=1e-6)

    # And the smoothed coefficients and matte follow s_t = w * s_{t-1} + (1 - w) * a_t on the
    # planes (coarse alpha, A, b, then the colour coefficients), with weights from the coarse alpha's change
    planes = [np.concatenate([np.stack([m.a * g + m.b, m.a, m.b]), m.colour_a, m.colour_b])
              for m, (g, _) in zip(raw_rvm.mattes, guides)]
    expected = smoothed_reference(planes, SMOOTHING.strength, SMOOTHING.sigma)
    for t, (past, want, out, (_, full_guide)) in enumerate(zip(pasts, expected, outs, guides)):
        np.testing.assert_allclose(past, want, rtol=0, atol=2e-5, err_msg=f"coefficients at frame {t}")
        applied = apply_coefficients(want[1].astype(np.float32), want[2].astype(np.float32), full_guide)
        np.testing.assert_allclose(out, applied, rtol=0, atol=2e-5, err_msg=f"matte at frame {t}")

    # And the past is really mixed in: the first frame passes as it is, every later one is
    # measurably different from the unsmoothed matte (measured: 0.13..0.42 apart at most), and
    # is mixed with the *smoothed* past, not with the previous raw coefficients
    np.testing.assert_array_equal(outs[0], raw_outs[0])
    for t in range(1, len(outs)):
        diff = np.abs(outs[t] - raw_outs[t])
        assert diff.max() > 0.05 and diff.mean() > 2e-4, (t, diff.max(), diff.mean())
    for t in range(2, len(outs)):
        one_step = smoothed_reference([planes[t - 1], planes[t]], SMOOTHING.strength, SMOOTHING.sigma)[1]
        assert np.abs(pasts[t] - one_step).max() > 1e-3, t


class SharedOutputs:
    """An OpenVINO infer request that hands out its own output buffers, overwritten by the next run."""

    def __init__(self, request):
        self.request = request

    def infer(self, feeds):
        return self.request.infer(feeds, share_outputs=True)

    def __getattr__(self, name):
        return getattr(self.request, name)


@pytest.mark.parametrize("shared", [False, True], ids=["default-request", "shared-output-buffers"])
def test_smoothers_past_is_not_aliased_to_the_runners_output_buffers(rvm, person, monkeypatch, shared):
    runner = rvm._runner
    if not hasattr(runner, "request"):
        pytest.skip(f"RVM runs on {rvm.device}, not OpenVINO")
    if shared:
        monkeypatch.setattr(runner, "request", SharedOutputs(runner.request))
    buffers = [runner.request.get_output_tensor(i).data for i in range(len(runner.compiled.outputs))]
    first, second = jittered(person, 2)

    # Given an engine on real RVM with smoothing, after one frame
    engine = Engine(rvm, SMOOTHING)
    engine.process(frame(0, first))
    past = engine.smoother._past
    kept_past, kept_state = past.copy(), [np.array(s) for s in engine.state]

    # Then neither the smoother's past nor RVM's state lies in the runner's output buffers
    held = [past, *engine.state]
    assert not any(np.shares_memory(a, b) for a in held for b in buffers)

    # When the runner runs again, outside the engine, on another picture
    prepared = engine.prepare(frame(1, second))
    other, _ = rvm.infer(rvm.prepare(scene(person, 20, DARK_WALL)), rvm.initial_state())
    # (and the raw coefficients of the next frame, from the kept state)
    next_raw, _ = rvm.infer(prepared.model_input, tuple(kept_state))
    next_raw = GuidedMatte(*(np.array(p) for p in (next_raw.a, next_raw.b, next_raw.colour_a, next_raw.colour_b)))

    # Then the stored past and state did not change
    np.testing.assert_array_equal(engine.smoother._past, kept_past)
    assert all(np.array_equal(a, b) for a, b in zip(engine.state, kept_state))

    # And the next frame is mixed with that past, by the formula
    out = engine.infer(prepared)
    current = np.concatenate([np.stack([next_raw.a * prepared.guide + next_raw.b, next_raw.a, next_raw.b]),
                              next_raw.colour_a, next_raw.colour_b])
    want = smoothed_reference([kept_past, current], SMOOTHING.strength, SMOOTHING.sigma)[1]
    applied = apply_coefficients(want[1].astype(np.float32), want[2].astype(np.float32), prepared.full_guide)
    np.testing.assert_allclose(out.alpha, applied, rtol=0, atol=2e-5)
    assert np.abs(want - current).max() > 1e-3  # the past made a difference
