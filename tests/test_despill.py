"""Despill on real screens: a dull screen is a key (a channel's ratio, not its level), ``auto``
measures it from what the matte calls background and says what it found once, and the spill
goes from the soft band and the person's edge while skin and a green shirt inside keep their
colour. Real d0.mp4 (shot on a green screen) matted by real RVM; synthetic scenes for the rest."""

from __future__ import annotations

import colorsys
import logging
import re
import time

import av
import cv2
import numpy as np
import pytest

from livematte.compose.compositor import blend
from livematte.frames import Frame
from livematte.matte.finishing import CompositeSettings, Finisher
from livematte.matte.smoothing import SmoothingSettings
from livematte.models.base import ModelSettings
from livematte.runtime.engine import Engine

FRAMES = 8  # d0's first frames: RVM's recurrent state settles, the detector measures


@pytest.fixture(scope="module")
def rvm(rvm_weights):
    from livematte import models

    matter = models.load(ModelSettings(name="rvm", threads=2))
    yield matter
    matter.close()


@pytest.fixture(scope="module")
def d0(shared_data) -> list[np.ndarray]:
    """d0.mp4's first frames, ``uint8 [512, 512, 3]`` BGR: a man before a real green screen."""
    with av.open(str(shared_data / "clips" / "d0.mp4")) as container:
        return [frame.to_ndarray(format="bgr24") for _, frame in zip(range(FRAMES), container.decode(video=0))]


def matted(rvm, images: list[np.ndarray], despill: str):
    """Every picture through an engine with ``despill`` -> the last frame's Matted."""
    engine = Engine(rvm, SmoothingSettings(enabled=False), composite=CompositeSettings(despill=despill))
    for k, image in enumerate(images):
        result = engine.process(Frame(k, image, k / 25, time.perf_counter()))
    return result


def hue(bgr) -> float:
    b, g, r = (float(c) / 255 for c in bgr)
    return colorsys.rgb_to_hsv(r, g, b)[0] * 360


def green_excess(picture: np.ndarray) -> np.ndarray:
    p = picture.astype(np.int16)
    return np.maximum(0, p[..., 1] - np.maximum(p[..., 0], p[..., 2]))


def despill_lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith("despill:")]


# --- what counts as a screen ---------------------------------------------------------------------

def test_a_dull_screen_colour_is_a_key_and_grey_is_refused_with_the_threshold():
    # A real screen under real light, as measured from a held-out clip: dark and dull, but green
    # stands 1.49x above red and blue
    assert CompositeSettings(despill="#263D29").despill == "#263D29"
    Finisher(CompositeSettings(despill="#263D29"))
    for name in ("#00FF00", "blue", "#2A3F8F"):
        CompositeSettings(despill=name)
    # Grey and near-grey are refused, and the error says the rule
    for colour in ("#808080", "#7A8078"):
        with pytest.raises(ValueError, match=r"not a key colour \(one channel must be at least 1\.15x both others"):
            CompositeSettings(despill=colour)


# --- auto: the screen measured, and said once ----------------------------------------------------

def test_auto_finds_the_real_green_screen_and_says_so_once(rvm, d0, caplog):
    # Given d0's first frames matted by RVM with --despill (auto)
    with caplog.at_level(logging.INFO, logger="livematte"):
        matted(rvm, d0, "auto")

    # Then one line names the screen it found: green, its hue within 5 degrees of the screen's
    # own colour (the median of the top-left 64 px square, screen only), and a ratio near the
    # screen's (G / max(R, B) = 1.47 there)
    lines = despill_lines(caplog)
    assert len(lines) == 1, lines
    found = re.fullmatch(r"despill: screen #([0-9A-F]{6}) \(green, (\d\.\d\d)x\)", lines[0])
    assert found, lines[0]
    r, g, b = (int(found[1][i:i + 2], 16) for i in (0, 2, 4))
    screen = np.median(d0[0][:64, :64].reshape(-1, 3), axis=0)
    assert abs(hue((b, g, r)) - hue(screen)) <= 5, (found[1], screen)
    assert abs(float(found[2]) - screen[1] / max(screen[0], screen[2])) <= 0.1


def test_auto_says_once_why_it_found_no_screen(caplog):
    # Given a person before a plain grey wall, and then a person who fills the whole frame
    height, width = 120, 160
    alpha = np.zeros((height, width), np.float32)
    alpha[30:, 50:110] = 1
    wall = np.full((height, width, 3), (118, 124, 120), np.uint8)
    cases = ((alpha, "no screen: the background #787C76 has no dominant channel (green 1.03x, need 1.25x)"),
             (np.ones_like(alpha), "no screen found yet: too few background pixels (0% of the frame, need 5%)"))
    for matte, expected in cases:
        caplog.clear()
        finisher = Finisher(CompositeSettings(foreground="off", despill="auto"))
        with caplog.at_level(logging.INFO, logger="livematte"):
            for _ in range(30):
                _, colours = finisher.apply(wall, matte, matte, {})
        # Then nothing is despilled, and one line in 30 frames says why
        assert colours is None
        assert despill_lines(caplog) == [f"despill: {expected}"]


# --- the spill removed, the person's colours kept ------------------------------------------------

@pytest.mark.parametrize("exposure", [1.0, 0.4])
def test_auto_despill_cuts_the_spill_at_a_real_screen_edge_and_leaves_skin_alone(rvm, d0, exposure):
    # Given d0 as shot, and as a dimmer exposure (0.4: its screen becomes #1C3C29, as dull as the
    # held-out clip's #263D29), matted by RVM without and with --despill, on a grey background
    images = [np.clip(image * exposure + 0.5, 0, 255).astype(np.uint8) for image in d0]
    plain, despilled = matted(rvm, images, "off"), matted(rvm, images, "auto")
    alpha = plain.alpha
    grey = np.full_like(images[-1], 128)
    before, after = blend(plain.colours, grey, alpha), blend(despilled.colours, grey, despilled.alpha)

    # Then in the soft band the green excess falls to at most 40 % and at most 2 levels
    soft = (alpha > 0.05) & (alpha < 0.95)
    assert soft.sum() > 1000
    was, now = green_excess(before)[soft].mean(), green_excess(after)[soft].mean()
    assert now <= min(0.4 * was, 2.0), (was, now)
    # And just inside the edge (the screen's light bounced off the person) to at most 40 %
    depth = cv2.distanceTransform((alpha >= 0.5).astype(np.uint8), cv2.DIST_L2, 5)
    rim = (alpha > 0.95) & (depth <= 15)
    was, now = green_excess(before)[rim].mean(), green_excess(after)[rim].mean()
    assert was > 0.5 and now <= 0.4 * was, (was, now)
    # And skin more than 15 px from the edge (R > G > B, R > 80 * exposure) changes by at most 2 levels
    b, g, r = (before[..., c].astype(np.int16) for c in range(3))
    skin = (alpha > 0.98) & (depth > 15) & (r > g) & (g > b) & (r > 80 * exposure)
    assert skin.sum() > 10_000
    assert np.abs(after.astype(np.int16) - before)[skin].max() <= 2


def test_a_green_shirt_and_skin_away_from_the_edge_keep_their_colour():
    # Given a person before a dull real screen (#263D29), whose edge within 6 px carries the
    # screen's bounced light, wearing a green shirt far inside the edge, and the screen's colour
    height, width = 240, 320
    y, x = np.mgrid[:height, :width]
    r = np.hypot(y - 140, x - 160)
    alpha = np.clip((100 - r) / 4, 0, 1).astype(np.float32)  # a disc, 4 px of soft edge
    screen = np.array([41, 61, 38], np.float32)  # BGR
    skin = np.array([120, 160, 210], np.float32)
    person = np.broadcast_to(skin, (height, width, 3)).copy()
    shirt = (np.abs(y - 170) < 25) & (np.abs(x - 160) < 25)  # >= 50 px from the edge
    person[shirt] = (60, 150, 70)
    rim = (alpha == 1) & (r > 94)  # the 6 px inside the edge
    person[rim] = 0.6 * skin + 0.4 * np.array([60, 200, 50])  # skin lit green by the screen
    image = np.clip(alpha[..., None] * person + (1 - alpha[..., None]) * screen + 0.5, 0, 255).astype(np.uint8)

    # When it is finished with the screen's colour (foreground estimation off: the frame's own colours)
    _, colours = Finisher(CompositeSettings(foreground="off", despill="#263D29")).apply(image, alpha, alpha, {})

    # Then the lit rim loses its green excess, the shirt and the skin deep inside are untouched
    assert green_excess(image)[rim].mean() > 20
    assert green_excess(colours)[rim].mean() <= 1
    assert np.array_equal(colours[shirt], image[shirt])
    deep = (r < 80) & ~shirt
    assert np.array_equal(colours[deep], image[deep])
    # And the screen itself and the matte's zero are left as they are
    assert np.array_equal(colours[alpha == 0], image[alpha == 0])
