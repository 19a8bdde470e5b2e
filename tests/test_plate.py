"""The background plate of a fixed camera (livematte.matte.plate): learnt from the frames, used at
the soft edge, forgotten when the camera moves. Real portraits and backgrounds from the shared
data, real RVM."""

from __future__ import annotations

import math
import time

import cv2
import numpy as np
import pytest

from livematte import config
from livematte.compose.compositor import blend
from livematte.frames import Frame
from livematte.matte.finishing import CompositeSettings
from livematte.matte.plate import BackgroundPlate
from livematte.models.base import ModelSettings
from livematte.runtime.engine import Engine
from make_fixed_camera_clips import cover

WIDTH, HEIGHT = 640, 360


@pytest.fixture(scope="module")
def rvm(rvm_weights):
    from livematte import models

    matter = models.load(ModelSettings(name="rvm", threads=2))
    yield matter
    matter.close()


class Scene:
    """A portrait (its photo and known alpha) standing in front of a still background, 640x360:
    every frame is exactly ``I = a F + (1 - a) B``, the person ``x`` px right of the centre."""

    def __init__(self, shared_data, portrait="p_514ca06a", background="home.jpg", wide=0):
        photo = cv2.imread(str(shared_data / "portraits" / "image" / f"{portrait}.jpg"))
        alpha = cv2.imread(str(shared_data / "portraits" / "alpha" / f"{portrait}.png"), cv2.IMREAD_GRAYSCALE)
        scale = 0.9 * HEIGHT / photo.shape[0]
        size = (round(photo.shape[1] * scale), round(photo.shape[0] * scale))
        self.photo = cv2.resize(photo, size, interpolation=cv2.INTER_AREA).astype(np.float32)
        self.alpha = cv2.resize(alpha, size, interpolation=cv2.INTER_AREA).astype(np.float32) / 255
        still = cv2.imread(str(shared_data / "backgrounds" / background))
        self.background = cover(still, WIDTH + wide, HEIGHT).astype(np.float32)  # ``wide``: room to pan

    def frame(self, x: int, pan: int = 0, light: float = 1.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """-> (I ``uint8``, a ``float32``, F ``float32``) with the person at ``x`` and the camera
        ``pan`` px right, the background's light times ``light``."""
        alpha = np.zeros((HEIGHT, WIDTH), np.float32)
        fg = np.zeros((HEIGHT, WIDTH, 3), np.float32)
        h, w = self.alpha.shape
        left, top = (WIDTH - w) // 2 + x, HEIGHT - h
        alpha[top:, left:left + w] = self.alpha
        fg[top:, left:left + w] = self.photo
        behind = self.background[:, pan:pan + WIDTH] * np.float32(light)
        image = alpha[..., None] * fg + (1 - alpha[..., None]) * behind
        return np.clip(image + 0.5, 0, 255).astype(np.uint8), alpha, fg


def sway(t: int) -> int:
    return round(60 * math.sin(2 * math.pi * t / 16))


def band_error(image, alpha, colours, alpha_true, fg_true) -> float:
    """Mean abs error (levels) over the true soft band, dilated 5 px, of the composite on green."""
    band = ((alpha_true > 0.02) & (alpha_true < 0.98)).astype(np.uint8)
    band = cv2.dilate(band, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (11, 11))).astype(bool)
    green = np.empty_like(image)
    green[:] = (0, 255, 0)
    truth = alpha_true[..., None] * fg_true + (1 - alpha_true[..., None]) * np.float32(green)
    composite = blend(image if colours is None else colours, green, alpha).astype(np.float32)
    return float(np.abs(composite - truth).mean(axis=2)[band].mean())


def test_with_the_plate_learnt_the_hair_carries_less_of_the_old_background(rvm, shared_data):
    # Given a person swaying in front of a still camera (curly dark hair over a bright sky and building),
    # matted by real RVM with the plate on and off (one model, each engine its own state)
    scene = Scene(shared_data)
    plain = Engine(rvm, composite=CompositeSettings())
    plated = Engine(rvm, composite=CompositeSettings(plate="auto"))
    errors = {"off": [], "plate": []}
    for t in range(24):
        image, alpha_true, fg_true = scene.frame(sway(t))
        for name, engine in (("off", plain), ("plate", plated)):
            matted = engine.process(Frame(t, image, t / 30, time.perf_counter()))
            if t >= 12:  # the plate has seen the background the person uncovers while swaying
                errors[name].append(band_error(image, matted.alpha, matted.colours, alpha_true, fg_true))

    # Then it knows most of the frame, and the composite's edge band is clearly closer to the
    # truth: the old background swapped for the new one and the matte measured against it
    # (measured: 7.0 -> 5.7 levels, 82 %)
    assert plated.finisher.plate.known_share > 0.6
    assert plated.finisher.plate.resets == 0
    off, plate = np.mean(errors["off"]), np.mean(errors["plate"])
    assert plate < 0.9 * off, (plate, off)
    assert "plate" in matted.timings


def test_the_plate_steps_aside_while_the_camera_pans_and_learns_again_once_it_stops(shared_data):
    # Given the plate learnt from a still camera (the true matte stands for the model's)
    scene = Scene(shared_data, wide=200)
    plate = BackgroundPlate()
    for t in range(12):
        image, alpha, _ = scene.frame(sway(t))
        plate.update(image, alpha)
    image, alpha, _ = scene.frame(sway(12))
    assert plate.known_share > 0.5 and plate.resets == 0
    assert plate.refine(image, alpha) is not alpha  # in use

    # When the camera pans 2 px a frame
    for t in range(13, 19):
        image, alpha, _ = scene.frame(sway(t), pan=2 * (t - 12))
        plate.update(image, alpha)

        # Then it is forgotten and stays out of the way: the matte and the colours are today's
        assert plate.resets == 1
        assert plate.known_share == 0 and plate.plate() is None  # nothing kept while it moves
        assert plate.refine(image, alpha) is alpha
        colours = image.copy()
        plate.decontaminate(image, alpha, colours, plate.points(alpha))
        assert np.array_equal(colours, image)

    # And once the camera stops, it learns the new view
    for t in range(19, 31):
        image, alpha, _ = scene.frame(sway(t), pan=12)
        plate.update(image, alpha)
    assert plate.known_share > 0.5 and plate.resets == 1


def test_the_plate_follows_a_change_of_light_even_behind_the_person(shared_data):
    # Given the plate learnt from a still camera
    scene = Scene(shared_data)
    plate = BackgroundPlate()
    for t in range(12):
        plate.update(*scene.frame(sway(t))[:2])
    # When the room gets 15 % brighter while the person stands still
    for t in range(12, 20):
        image, alpha, _ = scene.frame(0, light=1.15)
        plate.update(image, alpha)

    # Then nothing resets, and at the person's soft edge (hidden from the plate since the light
    # changed) the plate gives the new light's background, not the old one
    assert plate.resets == 0
    points = plate.points(alpha)
    values, known = plate._at(points)
    xs, ys = points[:, 0], points[:, 1]
    used = known > 0.99
    assert used.mean() > 0.3
    brighter = scene.background[ys, xs][used] * 1.15
    assert np.abs(values[used] - brighter).mean() < 4.0
    assert np.abs(values[used] - scene.background[ys, xs][used]).mean() > 10.0


def test_the_plate_keeps_its_own_copies_and_a_reset_forgets_it(shared_data):
    # Given a plate that learnt from frames the caller then reuses (as a decoder's buffer is)
    scene = Scene(shared_data)
    plate = BackgroundPlate()
    image = np.empty((HEIGHT, WIDTH, 3), np.uint8)
    alpha = np.empty((HEIGHT, WIDTH), np.float32)
    for t in range(8):
        picture, matte, _ = scene.frame(sway(t))
        image[:], alpha[:] = picture, matte
        plate.update(image, alpha)
    kept = plate.plate()
    image[:] = 0
    alpha[:] = 1
    kept[:] = 0

    # Then neither the caller's arrays nor the copy it handed out changed it
    again = plate.plate()
    assert again.max() > 100 and np.array_equal(again, plate.plate())
    picture, matte, _ = scene.frame(sway(8))
    before = matte.copy()
    refined = plate.refine(picture, matte)
    assert refined is not matte and np.array_equal(matte, before)  # the matte passed in is left alone

    # And a new stream (the engine's reset) forgets it
    engine_settings = CompositeSettings(plate="auto")
    from livematte.matte.finishing import Finisher

    finisher = Finisher(engine_settings)
    for t in range(8):
        picture, matte, _ = scene.frame(sway(t))
        finisher.apply(picture, matte, matte, {})
    assert finisher.plate.known_share > 0.3
    finisher.reset()
    assert finisher.plate.known_share == 0 and finisher.plate.refine(picture, matte) is matte


def test_the_plate_setting_is_checked_and_reaches_the_config(tmp_path):
    from livematte.cli import build_parser
    from livematte.commands.options import load_config
    from livematte.errors import LivematteError

    for command in (["live"], ["video", "in.mp4"]):
        assert load_config(build_parser().parse_args([*command, "--plate", "auto"])).composite.plate == "auto"
        assert load_config(build_parser().parse_args(command)).composite.plate == "off"  # off unless asked
    with pytest.raises(ValueError, match="plate got 'on', expected one of auto, off"):
        CompositeSettings(plate="on")
    settings = tmp_path / "plate.toml"
    settings.write_text('[composite]\nplate = "always"\n')
    with pytest.raises(LivematteError, match="plate got 'always'"):
        config.load("live", settings)
