"""Frames of any size from 1x1 up: the engine pads each backend's input up to its ``min_side``
and crops the matte back (issue #10), and ``--model-size`` stays in a range the networks take."""

from __future__ import annotations

import subprocess
import sys

import av
import cv2
import numpy as np
import pytest

from bshm_graph import expected_alpha
from media import make_video
from livematte import models
from livematte.cli import main
from livematte.runtime.engine import Engine
from livematte.frames import Frame
from livematte.models.base import ModelSettings

# (height, width): each has a side below RVM's minimum of 5 (and all below BSHM's 32)
SIZES = [(1, 1), (2, 2), (3, 5), (5, 3), (4, 4), (4, 17), (17, 4), (1, 40)]


def frame(image: np.ndarray, index: int = 0) -> Frame:
    return Frame(index, image, index / 30, 0.0)


def assert_is_a_matte(alpha: np.ndarray, height: int, width: int) -> None:
    assert alpha.shape == (height, width) and alpha.dtype == np.float32
    assert np.isfinite(alpha).all() and alpha.min() >= 0.0 and alpha.max() <= 1.0


@pytest.fixture(scope="module", params=["openvino", "onnxruntime"])
def rvm(request, rvm_weights):
    return models.load(ModelSettings(name="rvm", runtime=request.param))


@pytest.fixture(scope="module", params=["openvino", "onnxruntime"])
def modnet(request, modnet_weights):
    return models.load(ModelSettings(name="modnet", runtime=request.param))


@pytest.fixture(scope="module")
def selfie(selfie_weights):
    return models.load(ModelSettings(name="selfie"))


@pytest.fixture(scope="module")
def bshm(bshm_dir):
    return models.load(ModelSettings(name="bshm", model_dir=bshm_dir))


@pytest.mark.parametrize("height, width", SIZES)
def test_rvm_mattes_a_frame_of_any_size(rvm, portrait, height, width):
    image = cv2.resize(portrait, (width, height), interpolation=cv2.INTER_AREA)
    engine = Engine(rvm)
    assert engine.prepare(frame(image)).model_input.shape == (1, 3, max(height, 5), max(width, 5))
    for index in range(2):  # the second frame runs on the state the padded first one left
        assert_is_a_matte(engine.process(frame(image, index)).alpha, height, width)


@pytest.mark.parametrize("height, width", SIZES + [(33, 65), (719, 1281)])
def test_modnet_mattes_a_frame_of_any_size(modnet, portrait, height, width):
    # Scaled to sides that are multiples of 32 (at least 32), whatever the frame's: odd ones included.
    image = cv2.resize(portrait, (width, height), interpolation=cv2.INTER_AREA)
    engine = Engine(modnet)
    model_height, model_width = engine.prepare(frame(image)).model_input.shape[2:]
    assert model_height % 32 == 0 and model_width % 32 == 0 and min(model_height, model_width) >= 32
    assert_is_a_matte(engine.process(frame(image)).alpha, height, width)


@pytest.mark.parametrize("height, width", SIZES + [(33, 65), (719, 1281)])
def test_selfie_mattes_a_frame_of_any_size(selfie, portrait, height, width):
    # Stretched to one of its two fixed inputs, whatever the frame's size.
    image = cv2.resize(portrait, (width, height), interpolation=cv2.INTER_AREA)
    engine = Engine(selfie)
    assert engine.prepare(frame(image)).model_input.shape[1:3] in ((144, 256), (256, 256))
    for index in range(2):
        assert_is_a_matte(engine.process(frame(image, index)).alpha, height, width)


def test_rvm_at_the_smallest_model_size_on_a_thin_frame(rvm_weights, portrait):
    # 400x6 at --model-size 32 makes a 32x2 network input: padded, then cropped back.
    matter = models.load(ModelSettings(name="rvm", size=32))
    image = cv2.resize(portrait, (400, 6), interpolation=cv2.INTER_AREA)
    assert matter.input_size(400, 6) == (32, 2)
    assert_is_a_matte(Engine(matter).process(frame(image)).alpha, 6, 400)


@pytest.mark.parametrize("height, width", SIZES)
def test_bshm_pads_to_its_minimum_and_crops_back_exactly(bshm, rng, height, width):
    image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    engine = Engine(bshm)
    prepared = engine.prepare(frame(image))
    assert prepared.model_input.shape == (max(height, bshm.min_side), max(width, bshm.min_side), 3)
    alpha = engine.infer(prepared).alpha
    assert_is_a_matte(alpha, height, width)
    # The stand-in graph's matte is per pixel: after the crop, exactly the frame's own pixels remain.
    assert np.abs(alpha * 255 - expected_alpha(image[:, :, ::-1])).max() <= 1e-3


def frame_count(path) -> int:
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


@pytest.mark.parametrize("side", [2, 1])
def test_video_command_on_a_tiny_video(tmp_path, rvm_weights, side):
    # FFV1, as H.264 cannot hold a 1x1 picture.
    source = make_video(tmp_path / "tiny.mkv", n=4, width=side, height=side, codec="ffv1", audio=False)
    out = tmp_path / "out.mp4"
    assert main(["video", str(source), "-o", str(out), "--model", "rvm", "--quiet"]) == 0
    assert frame_count(out) == 4


def test_model_size_below_the_range_is_one_error_line(tmp_path, rvm_weights):
    # 64x36 at --model-size 7 would feed the network 8x4, which OpenVINO cannot pool.
    source = make_video(tmp_path / "clip.mp4", n=3, width=64, height=36, audio=False)
    out = tmp_path / "out.mp4"
    done = subprocess.run([sys.executable, "-m", "livematte", "video", str(source), "-o", str(out),
                           "--model", "rvm", "--model-size", "7"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 2  # refused while parsing the command line, before anything runs
    assert "Traceback" not in done.stderr
    assert done.stderr.splitlines()[-1] == ("livematte video: error: argument --model-size: "
                                            "got 7, expected 0 (the backend's default) or 32..4096")
    assert not out.exists()


def test_model_settings_take_0_or_32_to_4096():
    for size in (0, 32, 4096):
        assert ModelSettings(size=size).size == size
    for size in (1, 7, 31, 4097, 1 << 16):
        with pytest.raises(ValueError, match=rf"^size got {size}, expected 0 \(the backend's default\) or 32\.\.4096$"):
            ModelSettings(size=size)
