"""The blur background leaves the person out: no aura of the person's colours beside them (issue 23).

The rings and the aura are scripts/measure_aura.py's, the figures its acceptance quotes.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from livematte.compose.backgrounds import Blur, cover_fit, parse_background
from livematte.compose.compositor import Compositor, blend
from measure_aura import WholeFrameBlur, aura, rings, sharpness

H, W = 360, 640
WALL, PERSON = 40, 230  # a dark wall, a bright person


def person_on_wall() -> tuple[np.ndarray, np.ndarray]:
    """A bright head and shoulders on a dark striped wall (stripes 20 levels either side of
    ``WALL``), ``uint8 [H, W, 3]``, and its exact matte, ``float32 [H, W]``, soft over a pixel
    at the edge (drawn at 4x and averaged down)."""
    big = np.zeros((4 * H, 4 * W), np.uint8)
    cv2.ellipse(big, (4 * 320, 4 * 150), (4 * 70, 4 * 90), 0, 0, 360, 255, -1)  # head
    cv2.ellipse(big, (4 * 320, 4 * 380), (4 * 190, 4 * 150), 0, 0, 360, 255, -1)  # shoulders
    alpha = cv2.resize(big, (W, H), interpolation=cv2.INTER_AREA).astype(np.float32) / 255
    wall = np.where((np.arange(W) // 6) % 2, WALL + 20, WALL - 20).astype(np.float32)
    image = alpha * PERSON + (1 - alpha) * wall[None, :]
    return np.repeat(np.rint(image)[..., None], 3, axis=2).astype(np.uint8), alpha


def textured(rng) -> np.ndarray:
    """A frame with detail at every scale, 40..230: noise over a gradient."""
    ramp = np.linspace(40, 200, W, dtype=np.float32)[None, :, None]
    return np.clip(ramp + rng.uniform(0, 30, (H, W, 3)), 40, 230).astype(np.uint8)


def test_the_blur_beside_the_person_is_the_walls():
    image, alpha = person_on_wall()
    out = Compositor(parse_background("blur")).composite(image, alpha)
    near = rings(alpha)[0]
    # The whole frame blurred spreads the person over the wall: about 60 levels brighter here.
    assert abs(out[near].mean() - WALL) <= 3
    assert abs(aura(image, out, alpha)) <= 2
    assert sharpness(image, out, alpha) <= 0.65  # the stripes are still blurred away
    assert out.min() >= WALL - 20 and out.max() <= PERSON  # no garbage where the wall is hidden
    assert np.array_equal(out[alpha == 1], image[alpha == 1])


@pytest.mark.parametrize("strength", [1, 25, 100])
def test_a_frame_with_no_person_is_blurred_whole(rng, strength):
    image = textured(rng)
    blur = Blur(strength, f"blur:{strength}")
    whole = blur.render(image, 0.0)  # no matte: the whole frame is background
    assert np.abs(blur.render(image, 0.0, np.zeros((H, W), np.float32)).astype(int) - whole).max() <= 1
    out = Compositor(Blur(strength, "blur")).composite(image, np.zeros((H, W), np.float32))
    assert np.abs(out.astype(int) - whole).max() <= 1
    # The blur as it was: OpenCV's 8-bit Gaussian rounds its weights, a level either way.
    assert np.abs(WholeFrameBlur(strength).render(image, 0.0).astype(int) - whole).max() <= 2


@pytest.mark.parametrize("cover", ["all", "all but a soft strip"])
def test_a_person_filling_the_frame_leaves_no_garbage(rng, cover):
    """Where no wall is within the blur's reach the picture is hidden by the person, except at a
    soft edge: it must be finite colours there, not zeros or overflow."""
    image = textured(rng)
    alpha = np.ones((H, W), np.float32)
    if cover != "all":
        alpha[:, -12:] = np.linspace(1, 0.5, 12, dtype=np.float32)
    behind = Blur(25, "blur").render(image, 0.0, alpha)
    assert behind.shape == image.shape and behind.dtype == np.uint8
    assert behind.min() >= 40 and behind.max() <= 230
    if cover == "all":  # nothing to leave the person out for: the plain blur
        assert np.abs(behind.astype(int) - Blur(25, "blur").render(image, 0.0)).max() <= 1


def test_the_other_backgrounds_ignore_the_matte(tmp_path, rng):
    image, alpha = person_on_wall()
    still = textured(rng)[:200, :300]
    cv2.imwrite(str(tmp_path / "still.png"), still)
    expected = {"color:#3366cc": np.full((H, W, 3), (0xcc, 0x66, 0x33), np.uint8),
                "key": np.full((H, W, 3), (0, 255, 0), np.uint8),
                str(tmp_path / "still.png"): cover_fit(still, W, H)}
    for spec, picture in expected.items():
        assert np.array_equal(parse_background(spec).render(image, 0.0, alpha), picture), spec
        out = Compositor(parse_background(spec)).composite(image, alpha)
        assert np.array_equal(out, blend(image, picture, alpha)), spec
    assert parse_background("transparent").render(image, 0.0, alpha) is None
    out = Compositor(parse_background("transparent")).composite(image, alpha)
    assert out.shape == (H, W, 4) and np.array_equal(out[:, :, :3], image)


def test_real_portraits_have_no_aura(shared_data):
    """The nine portraits with their soft mattes (P3M's), at 1280 px: the mean |aura| is a few
    levels (a background's own light still differs next to the person), where the whole frame
    blurred makes it about 20."""
    auras = []
    for path in sorted((shared_data / "portraits" / "image").glob("*.jpg")):
        image = cv2.imread(str(path))
        matte = cv2.imread(str(shared_data / "portraits" / "alpha" / f"{path.stem}.png"), cv2.IMREAD_GRAYSCALE)
        scale = 1280 / max(image.shape[:2])
        size = (round(image.shape[1] * scale), round(image.shape[0] * scale))
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        alpha = cv2.resize(matte, size, interpolation=cv2.INTER_AREA).astype(np.float32) / 255
        auras.append(aura(image, Compositor(parse_background("blur")).composite(image, alpha), alpha))
    assert len(auras) == 9
    assert np.mean(np.abs(auras)) <= 5
