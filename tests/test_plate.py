"""The background plate (livematte.matte.plate): learnt from the frames, used at the soft edge,
following a camera that pans (offline), forgotten when it jumps. Real portraits and backgrounds
from the shared data, real RVM."""

from __future__ import annotations

import dataclasses
import math
import time
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from livematte import assembly, config
from livematte.compose.backgrounds import parse_background
from livematte.compose.compositor import Compositor, blend
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


def assert_out_of_the_way(plate: BackgroundPlate, image: np.ndarray, alpha: np.ndarray) -> None:
    """The plate knows nothing and leaves the frame's matte and colours as they are."""
    assert plate.known_share == 0
    assert plate.refine(image, alpha) is alpha
    colours = image.copy()
    plate.decontaminate(image, alpha, colours, plate.points(alpha))
    assert np.array_equal(colours, image)


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


def test_the_plate_follows_a_panning_camera_and_reads_the_background_where_it_now_lies(shared_data):
    # Given the plate learnt from a still camera (the true matte stands for the model's)
    scene = Scene(shared_data, wide=200)
    plate = BackgroundPlate()
    for t in range(12):
        plate.update(*scene.frame(sway(t))[:2])
    assert plate.known_share > 0.5 and plate.resets == 0

    # When the camera pans 2 px a frame while the person sways, each frame registered first (as
    # the finisher does) and then learnt from
    for t in range(12, 40):
        pan = 2 * (t - 11)
        image, alpha, _ = scene.frame(sway(t), pan=pan)
        plate.see(image, alpha)
        plate.update(image, alpha)

    # Then it is never forgotten, it knows what came into view, and at the person's soft edge it
    # gives the background that lies there now (measured: 3.4 levels off, a still camera's plate 2.4
    # at its half size), not where it lay
    assert plate.resets == 0
    assert plate.known_share > 0.8
    image, alpha, _ = scene.frame(sway(40), pan=2 * 29)
    plate.see(image, alpha)
    points = plate.points(alpha)
    values, known = plate._at(points)
    used = known > 0.99
    assert used.mean() > 0.5
    xs, ys = points[used, 0], points[used, 1]
    assert np.abs(values[used] - scene.background[ys, xs + 2 * 29]).mean() < 4.0
    assert np.abs(values[used] - scene.background[ys, xs]).mean() > 10.0  # where the plate began
    assert plate.refine(image, alpha) is not alpha


def test_a_plate_that_does_not_follow_steps_aside_while_the_camera_pans_and_learns_once_it_stops(shared_data):
    # Given a still camera's plate (as live keeps it) learnt from a still camera
    scene = Scene(shared_data, wide=200)
    plate = BackgroundPlate(follow=False)
    for t in range(12):
        plate.update(*scene.frame(sway(t))[:2])
    image, alpha, _ = scene.frame(sway(12))
    assert plate.known_share > 0.5 and plate.resets == 0
    assert plate.refine(image, alpha) is not alpha  # in use

    # When the camera pans 2 px a frame
    for t in range(13, 19):
        image, alpha, _ = scene.frame(sway(t), pan=2 * (t - 12))
        plate.see(image, alpha)
        plate.update(image, alpha)

        # Then it is forgotten and stays out of the way: the matte and the colours are today's
        assert plate.resets == 1
        assert_out_of_the_way(plate, image, alpha)

    # And once the camera stops, it learns the new view
    for t in range(19, 31):
        plate.update(*scene.frame(sway(t), pan=12)[:2])
    assert plate.known_share > 0.5 and plate.resets == 1


def test_the_plate_is_forgotten_when_the_camera_jumps_and_learns_the_new_view(shared_data):
    # Given the plate learnt from a still camera
    scene = Scene(shared_data, wide=200)
    plate = BackgroundPlate()
    for t in range(12):
        plate.update(*scene.frame(sway(t))[:2])
    assert plate.known_share > 0.5

    # When the camera jumps 60 px between two frames (far beyond where the motion so far puts it)
    image, alpha, _ = scene.frame(sway(12), pan=60)
    plate.see(image, alpha)

    # Then it is forgotten and stays out of the way: the matte and the colours are today's
    assert plate.resets == 1 and plate.plate() is None
    assert_out_of_the_way(plate, image, alpha)

    # And it learns the new view
    for t in range(12, 24):
        plate.update(*scene.frame(sway(t), pan=60)[:2])
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


def edge_frame(wall: np.ndarray, person: np.ndarray, edge: int,
               soft: dict[int, tuple[np.ndarray, float]] = {}) -> tuple[np.ndarray, np.ndarray]:
    """A 160x120 frame of a ``wall`` colour with a person left of column ``edge``, ``person`` the
    colour of each column (``[160, 3]``), and ``soft`` columns {column: (colour, the model's alpha)}
    -> (``uint8`` BGR, the model's matte ``float32``)."""
    image = np.empty((120, 160, 3), np.float32)
    image[:] = wall
    image[:, :edge] = person[:edge]
    alpha = np.zeros((120, 160), np.float32)
    alpha[:, :edge] = 1
    for column, (colour, model_alpha) in soft.items():
        image[:, column], alpha[:, column] = colour, model_alpha
    return np.clip(image + 0.5, 0, 255).astype(np.uint8), alpha


def test_the_plate_measures_the_share_only_where_the_colour_lies_between_it_and_the_person():
    # Given a plate learnt behind a person of one colour whose edge sways over a grey wall
    wall, person = np.float32([200, 200, 200]), np.float32([160, 60, 40])
    columns = np.broadcast_to(person, (160, 3))
    plate = BackgroundPlate()

    def frame(edge: int, soft: dict[int, tuple[np.ndarray, float]] = {}):
        return edge_frame(wall, columns, edge, soft)

    for t in range(12):
        plate.update(*frame(30 + 10 * (t % 3)))

    # When the model calls two edge pixels 0.8: one truly 0.3 person over the wall, one of a colour
    # off the line from the wall to the person (a strand of another colour)
    on_line = 0.3 * person + 0.7 * wall
    off_line = wall + np.float32([-60, 60, 0])
    image, alpha = frame(60, {60: (on_line, 0.8), 61: (off_line, 0.8)})
    plate.see(image, alpha)
    refined = plate.refine(image, alpha)

    # Then the first gets its share measured against the plate, the second keeps the model's
    assert abs(float(refined[60, 60]) - 0.3) < 0.05
    assert abs(float(refined[60, 61]) - 0.8) < 0.05


def test_live_keeps_a_still_cameras_plate_and_video_one_that_follows(rvm):
    # Given the `live` and `offline` presets with the plate on, on real RVM
    def with_plate(preset: str):
        settings = config.load(preset)
        return dataclasses.replace(settings, composite=dataclasses.replace(settings.composite, plate="auto"))

    source = SimpleNamespace(width=WIDTH, height=HEIGHT, fps=30.0)
    live = assembly.live_engine(with_plate("live"), (rvm, None, None), source,
                                Compositor(parse_background("blur:25")), governed=False)
    offline = assembly.video_engine(with_plate("offline"), rvm, WIDTH, HEIGHT)

    # Then live's plate steps aside while the camera moves (followed, it cost 22-28 ms a 720p
    # frame on s18 and frames were dropped), and the offline engine's follows a pan
    assert live.finisher.plate is not None and not live.finisher.plate.follow
    assert offline.finisher.plate.follow


@pytest.mark.parametrize("strand, share, within", [("skin", 0.5, 0.05), ("hair", 0.3, 0.15)])
def test_the_plate_reads_a_strands_share_against_the_person_colour_it_is_of_not_the_nearby_mean(
        strand, share, within):
    # Given a plate learnt behind a person of two colours (dark hair and skin, in stripes 8 px wide:
    # their mean nearby is neither) whose edge sways over a grey wall
    wall = np.float32([200, 200, 200])
    colours = {"hair": np.float32([40, 40, 120]), "skin": np.float32([120, 150, 220])}
    stripes = np.where((np.arange(160) // 8 % 2 == 0)[:, None], colours["hair"], colours["skin"])
    plate = BackgroundPlate()

    for t in range(12):
        plate.update(*edge_frame(wall, stripes, 30 + 10 * (t % 3)))

    # When the model calls an edge pixel 0.8 that is a strand of one of the two over the wall
    image, alpha = edge_frame(wall, stripes, 60, {60: (share * colours[strand] + (1 - share) * wall, 0.8)})
    plate.see(image, alpha)
    refined = plate.refine(image, alpha)

    # Then its share is read against that colour: against the nearby mean, skin's 0.5 reads 0.67
    # and hair's 0.3 0.57 (the turns from the mean stop short of hair: PERSON_SPREAD)
    assert abs(float(refined[60, 60]) - share) < within
