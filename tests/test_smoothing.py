"""Temporal smoothing on synthetic matte sequences, and the engine's reset on a scene cut.

The formula under test (livematte/matte/smoothing.py):

    w = strength * exp(-(|a_t - s_{t-1}| / sigma)^2)
    s_t = w * s_{t-1} + (1 - w) * a_t
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from bshm_graph import expected_alpha
from livematte import models
from livematte.runtime.engine import Engine
from livematte.frames import Frame
from livematte.models.base import ModelSettings
from livematte.matte.smoothing import SmoothingSettings, TemporalSmoother

H, W = 24, 32


def reference(past: np.ndarray, alpha: np.ndarray, strength: float, sigma: float) -> np.ndarray:
    """The docstring's formula in float64, written out independently of the module."""
    past, alpha = past.astype(np.float64), alpha.astype(np.float64)
    weight = strength * np.exp(-((np.abs(alpha - past) / sigma) ** 2))
    return weight * past + (1.0 - weight) * alpha


def run(smoother: TemporalSmoother, mattes) -> list[np.ndarray]:
    return [smoother.apply(matte) for matte in mattes]


# --- (1) jitter on a still region --------------------------------------------------------------

def test_jitter_on_a_still_matte_falls(rng):
    # Given a still matte (0.5 everywhere) with fresh noise of std 0.02 on every frame
    mattes = [np.clip(0.5 + rng.normal(0, 0.02, (H, W)), 0, 1).astype(np.float32) for _ in range(40)]
    smoother = TemporalSmoother(SmoothingSettings(strength=0.8, sigma=0.15))

    # When it is smoothed frame by frame
    out = run(smoother, mattes)

    # Then the frame-to-frame change is much smaller than the input's (an EMA with w ~ 0.79
    # brings it to ~0.16x; no smoothing would leave it at 1x), and the level is kept
    jitter_in = np.std(np.diff(np.stack(mattes[10:]), axis=0))
    jitter_out = np.std(np.diff(np.stack(out[10:]), axis=0))
    assert jitter_out < 0.4 * jitter_in, (jitter_out, jitter_in)
    assert abs(float(np.mean(out[10:])) - 0.5) < 0.01
    assert all(o.dtype == np.float32 and o.shape == (H, W) for o in out)


# --- (2) a moving edge leaves no trail ----------------------------------------------------------

def test_moving_edge_leaves_no_trail():
    # Given a person (alpha 1) whose left and right edges move 4 px right every frame,
    # smoothed at the strongest setting
    def matte(t: int) -> np.ndarray:
        a = np.zeros((H, W * 2), np.float32)
        a[:, 4 + 4 * t: 20 + 4 * t] = 1.0
        return a

    smoother = TemporalSmoother(SmoothingSettings(strength=0.95, sigma=0.15))
    previous = None
    for t in range(10):
        current = matte(t)
        # When each frame is smoothed
        out = smoother.apply(current)
        if previous is not None:
            # Then the pixels the person just left are already background (no ghost of the
            # past 0.95), the pixels it just entered are already person, and nothing else moved
            left = (previous == 1) & (current == 0)
            entered = (previous == 0) & (current == 1)
            assert left.any() and entered.any()
            assert out[left].max() < 0.01, f"trail at frame {t}: {out[left].max():.3f}"
            assert out[entered].min() > 0.99
            np.testing.assert_allclose(out, current, atol=0.01)
        previous = current


def test_soft_edge_catches_up_within_a_few_frames():
    # Given a soft edge (a 6 px ramp) that moves 6 px per frame, then stops
    x = np.arange(80, dtype=np.float32)

    def matte(edge: float) -> np.ndarray:
        return np.tile(np.clip((x - edge) / 6.0, 0, 1), (H, 1)).astype(np.float32)

    smoother = TemporalSmoother(SmoothingSettings(strength=0.7, sigma=0.2))
    for t in range(6):
        smoother.apply(matte(10 + 6 * t))
    final = matte(10 + 6 * 6)

    # When the edge stands still for three frames
    outs = [smoother.apply(final) for _ in range(3)]

    # Then the matte has caught up with the input to within a small tolerance
    np.testing.assert_allclose(outs[-1], final, atol=0.03)


# --- (3) the past is really mixed in ------------------------------------------------------------

def test_small_change_is_mixed_by_the_documented_formula(rng):
    # Given a smoothed past and a next matte that differs from it by small, varied amounts
    strength, sigma = 0.6, 0.15
    smoother = TemporalSmoother(SmoothingSettings(strength=strength, sigma=sigma))
    first = np.full((H, W), 0.5, np.float32)
    second = (first + rng.uniform(0.01, 0.1, (H, W))).astype(np.float32)
    third = (second - rng.uniform(0.01, 0.1, (H, W))).astype(np.float32)

    # When the three mattes are smoothed
    s1 = smoother.apply(first)
    s2 = smoother.apply(second)
    s3 = smoother.apply(third)

    # Then the first passes as it is, the second lies strictly between the past and the new
    # value, and both follow the formula (the third against the *smoothed* past s2)
    np.testing.assert_array_equal(s1, first)
    assert np.all(s2 > first) and np.all(s2 < second)
    np.testing.assert_allclose(s2, reference(s1, second, strength, sigma), atol=1e-6)
    np.testing.assert_allclose(s3, reference(s2, third, strength, sigma), atol=1e-6)
    assert not np.allclose(s3, reference(second, third, strength, sigma), atol=1e-4)


def test_planes_ride_along_with_the_alphas_weights(rng):
    # Planes after the first (a guided filter's coefficients) are mixed with the weights the
    # first plane's change earns: a copy of the alpha comes out as the smoothed alpha, twice
    # the alpha as twice it, and a constant stays constant.
    smoother = TemporalSmoother(SmoothingSettings(strength=0.8, sigma=0.1))
    for _ in range(4):
        alpha = rng.uniform(0.4, 0.6, (H, W)).astype(np.float32)
        out = smoother.apply(np.stack([alpha, alpha, 2 * alpha, np.full_like(alpha, 0.3)]))
        assert out.shape == (4, H, W)
        assert np.allclose(out[1], out[0], atol=1e-6) and np.allclose(out[2], 2 * out[0], atol=1e-6)
        assert np.allclose(out[3], 0.3, atol=1e-6)
    # and the past is mixed in: the smoothed alpha is not the last input
    assert np.abs(out[0] - alpha).max() > 0.01


def test_one_pixel_by_hand():
    # Given past 0.5 and new 0.55 with strength 0.6, sigma 0.15: w = 0.6 * exp(-1/9)
    smoother = TemporalSmoother(SmoothingSettings(strength=0.6, sigma=0.15))
    smoother.apply(np.full((1, 1), 0.5, np.float32))

    # When the new value arrives
    out = float(smoother.apply(np.full((1, 1), 0.55, np.float32))[0, 0])

    # Then the output is the hand-computed mix
    w = 0.6 * np.exp(-1 / 9)
    assert out == pytest.approx(w * 0.5 + (1 - w) * 0.55, abs=1e-6)
    assert 0.5 < out < 0.55


# --- (4) the smoother owns its past ---------------------------------------------------------------

def test_a_reused_input_buffer_does_not_stop_smoothing():
    # Given a segmenter that writes every matte into the same buffer
    # (the Linux-Fake-Background-Webcam bug: smoothing silently stopped)
    strength, sigma = 0.6, 0.15
    smoother = TemporalSmoother(SmoothingSettings(strength=strength, sigma=sigma))
    buffer = np.full((H, W), 0.5, np.float32)
    s1 = smoother.apply(buffer)
    kept = s1.copy()

    # When the buffer is overwritten in place with the next matte
    buffer[:] = 0.55
    s2 = smoother.apply(buffer)

    # Then the earlier result did not change, and the next one is still mixed with 0.5
    np.testing.assert_array_equal(s1, kept)
    np.testing.assert_allclose(s2, reference(kept, buffer, strength, sigma), atol=1e-6)
    assert np.all(s2 < 0.55)


def test_mutating_the_returned_matte_does_not_change_the_past():
    # Given smoothed mattes that the caller then scribbles on (e.g. a compositor working in place)
    strength, sigma = 0.6, 0.15
    smoother = TemporalSmoother(SmoothingSettings(strength=strength, sigma=sigma))
    first = smoother.apply(np.full((H, W), 0.5, np.float32))
    past = first.copy()
    first[:] = 0.0
    second = smoother.apply(np.full((H, W), 0.55, np.float32))
    past = reference(past, np.full((H, W), 0.55), strength, sigma)
    np.testing.assert_allclose(second, past, atol=1e-6)
    second[:] = 0.0

    # When the next matte arrives
    third = smoother.apply(np.full((H, W), 0.56, np.float32))

    # Then it is mixed with the real past, not with the caller's zeros
    np.testing.assert_allclose(third, reference(past, np.full((H, W), 0.56), strength, sigma), atol=1e-6)


def test_a_reused_grey_buffer_still_detects_the_cut():
    # Given scene-cut detection fed from one reused grey buffer
    smoother = TemporalSmoother(SmoothingSettings(cut_threshold=0.25))
    gray = np.full((H, W), 0.1, np.float32)
    assert smoother.is_cut(gray) is False

    # When the buffer is overwritten in place with a very different frame
    gray[:] = 0.9

    # Then the cut is still seen (the smoother compared against its own copy)
    assert smoother.is_cut(gray) is True


# --- (5) off switch ------------------------------------------------------------------------------

@pytest.mark.parametrize("settings", [SmoothingSettings(enabled=False, strength=0.9),
                                      SmoothingSettings(enabled=True, strength=0.0)],
                         ids=["disabled", "strength-0"])
def test_off_returns_the_input_values(settings, rng):
    # Given a smoother that is switched off and a sequence with small and large changes
    smoother = TemporalSmoother(settings)
    mattes = [rng.uniform(0, 1, (H, W)).astype(np.float32) for _ in range(3)]
    mattes.append((mattes[-1] + 0.01).clip(0, 1).astype(np.float32))

    # When they are smoothed
    out = run(smoother, mattes)

    # Then every output equals its input, and is not the caller's own array
    for o, m in zip(out, mattes):
        np.testing.assert_array_equal(o, m)
        assert o is not m


# --- (6) scene cut ------------------------------------------------------------------------------

def test_is_cut_on_two_very_different_grey_frames():
    # Given a smoother that has seen a dark frame
    smoother = TemporalSmoother(SmoothingSettings(cut_threshold=0.25))
    dark = np.full((H, W), 0.1, np.float32)
    assert smoother.is_cut(dark) is False  # the first frame is never a cut

    # When a slightly different, then a very different frame follows
    slight = smoother.is_cut(np.full((H, W), 0.2, np.float32))
    cut = smoother.is_cut(np.full((H, W), 0.9, np.float32))

    # Then only the wholesale change counts as a cut
    assert slight is False
    assert cut is True
    assert smoother.cuts == 1


@pytest.fixture(scope="module")
def bshm(bshm_dir):
    """The BSHM test graph (stateless; alpha = bshm_graph.expected_alpha of the colours)."""
    return models.load(ModelSettings(name="bshm", model_dir=bshm_dir))


def solid(bgr: tuple[int, int, int]) -> np.ndarray:
    return np.full((H, W, 3), bgr, np.uint8)


def graph_alpha(bgr: tuple[int, int, int]) -> float:
    return float(expected_alpha(np.array(bgr[::-1], np.float32)[None, None])[0, 0]) / 255


def frame(index: int, image: np.ndarray) -> Frame:
    return Frame(index, image, index / 30, time.perf_counter())


BLACK = (0, 0, 0)          # grey 0,    graph alpha 20/255  = 0.078
BLACK_RED = (0, 0, 22)     # grey 0.03, graph alpha 33/255  = 0.130  (no cut: small grey change)
BLUE_GREEN = (255, 224, 0)  # grey 0.63, graph alpha 33/255 = 0.130  (a cut: large grey change)


def test_engine_mixes_a_small_matte_change_without_a_cut(bshm):
    # Given an engine with strong smoothing that has seen a black frame several times
    engine = Engine(bshm, SmoothingSettings(strength=0.9, sigma=0.15, cut_threshold=0.25))
    for i in range(3):
        engine.process(frame(i, solid(BLACK)))

    # When a frame with nearly the same brightness but a slightly higher matte follows
    out = engine.process(frame(3, solid(BLACK_RED)))

    # Then it is no cut, and the smoothed matte lies strictly between the old and new raw mattes
    old, new = graph_alpha(BLACK), graph_alpha(BLACK_RED)
    assert new - old == pytest.approx(13 / 255, abs=1e-6)
    assert engine.smoother.cuts == 0
    assert old + 0.005 < float(out.alpha.mean()) < new - 0.005


def test_engine_resets_the_smoother_on_a_scene_cut(bshm):
    # Given an engine with strong smoothing that has seen a black frame several times
    engine = Engine(bshm, SmoothingSettings(strength=0.9, sigma=0.15, cut_threshold=0.25))
    for i in range(3):
        engine.process(frame(i, solid(BLACK)))

    # When a scene cut follows whose raw matte differs as little as in the test above
    out = engine.process(frame(3, solid(BLUE_GREEN)))

    # Then the cut is counted and the past is forgotten: the matte is the new frame's own,
    # not mixed with the black frames (which would give ~0.085)
    new = graph_alpha(BLUE_GREEN)
    assert new == pytest.approx(graph_alpha(BLACK_RED), abs=1e-6)
    assert engine.smoother.cuts == 1
    np.testing.assert_allclose(out.alpha, new, atol=1e-5)

    # And the next frame of the new scene is smoothed against the new scene only: going back to a
    # slightly lower matte mixes it with the cut frame's 0.13, not with the old scene's 0.078
    after = engine.process(frame(4, solid((255, 201, 0))))  # grey 0.58, alpha 24/255 = 0.094
    raw = graph_alpha((255, 201, 0))
    expected = reference(np.full((1, 1), new), np.full((1, 1), raw), 0.9, 0.15)[0, 0]
    assert engine.smoother.cuts == 1
    np.testing.assert_allclose(after.alpha, expected, atol=1e-5)
