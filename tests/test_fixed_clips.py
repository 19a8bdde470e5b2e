"""scripts/make_fixed_camera_clips.py builds clips that are exactly the truth scripts/eval_composite.py
scores them against: ``I = a F + (1 - a) B``, with the photo's colours as ``F`` or, with
``--foreground clean``, the person's colours without the photo's own background."""

from __future__ import annotations

import av
import cv2
import numpy as np
import pytest

import eval_composite
import make_fixed_camera_clips


def built(shared_data, out, foreground: str):
    """fixed00_home (no camera noise, no change of light: its background is the still itself),
    three frames -> (the clip's folder, its background ``float32`` BGR)."""
    make_fixed_camera_clips.main(["-o", str(out), "--frames", "3", "--clips", "fixed00_home",
                                  "--shared", str(shared_data.parent), "--foreground", foreground])
    still = cv2.imread(str(shared_data / "backgrounds" / "home.jpg"))
    return out / "fixed00_home", make_fixed_camera_clips.cover(still, 1280, 720).astype(np.float32)


def frames_against_truth(clip, shared_data):
    """Per frame: (the frame, float32 BGR; the truth's alpha; its F, BGR)."""
    truth = eval_composite.load_truth(shared_data.parent)
    with av.open(str(clip / "input.mp4")) as container:
        pictures = container.decode(video=0)
        for (alpha, colours), picture in zip(truth(clip, shared_data / "portraits"), pictures):
            yield picture.to_ndarray(format="bgr24").astype(np.float32), alpha, colours[..., ::-1]


@pytest.mark.parametrize("foreground", ["photo", "clean"])
def test_a_fixed_camera_clip_is_its_truth(shared_data, tmp_path, foreground):
    clip, background = built(shared_data, tmp_path, foreground)
    assert (clip / "foreground.png").is_file() == (foreground == "clean")
    count = 0
    for frame, alpha, colours in frames_against_truth(clip, shared_data):
        a = alpha[..., None]
        error = np.abs(frame - (a * colours + (1 - a) * background)).mean(axis=2)
        soft = (alpha > 0.05) & (alpha < 0.95)
        # H.264 at crf 12, 4:2:0 and back: about 2 levels over the frame, 4-5 at the edge's colours
        # (the photo's and the clean colours differ there by 34 levels on average).
        assert error.mean() < 3.0 and error[soft].mean() < 6.0, (error.mean(), error[soft].mean())
        count += 1
    assert count == 3


def test_a_clean_foreground_is_the_photo_without_its_own_background(shared_data, tmp_path):
    clip, _ = built(shared_data, tmp_path, "clean")
    clean = cv2.imread(str(clip / "foreground.png")).astype(np.float32)
    photo, alpha = make_fixed_camera_clips.placed_portrait(shared_data / "portraits", "p_22fc0130.jpg")
    assert clean.shape == photo.shape
    solid, soft = alpha == 255, (alpha > 25) & (alpha < 230)
    # The person's own pixels keep their colours; the soft ones lose the photo's background.
    assert np.abs(clean - photo)[solid].mean() < 3.0
    assert np.abs(clean - photo)[soft].mean() > 10.0
