"""Unusual but valid input is handled, not rejected: odd and tiny sizes into every output kind,
a rotated phone video, a very large still, 16-bit, float and EXIF-rotated images (and an empty
background spec, which is still refused in one line).
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from badfiles import error_line
from bshm_graph import expected_alpha
from media import gradient, make_video
from livematte.cli import main
from livematte.media.reading import probe
from livematte.media.readback import read_alpha


def bshm_args(bshm_dir) -> list[str]:
    return ["--model", "bshm", "--model-dir", str(bshm_dir)]


@pytest.mark.parametrize("name, size", [("out.mp4", (34, 22)), ("out.webm", (33, 21)), ("out.mov", (33, 21)),
                                        ("frames", (33, 21))])
def test_odd_size_with_audio_into_every_output_kind(tmp_path, bshm_dir, name, size):
    source = make_video(tmp_path / "odd.mkv", n=5, width=33, height=21, codec="ffv1")
    out = tmp_path / name
    assert main(["video", str(source), "-o", str(out), "--quiet", *bshm_args(bshm_dir)]) == 0
    if out.is_dir():
        pictures = sorted(out.glob("*.png"))
        assert len(pictures) == 5 and cv2.imread(str(pictures[0])).shape[:2] == size[::-1]
    else:
        info = probe(out)  # H.264 pads odd sides by one repeated row/column; the others keep the size
        assert (info.width, info.height) == size and info.has_audio


@pytest.mark.parametrize("width, height", [(2, 2), (1, 1)])
def test_tiny_video(tmp_path, bshm_dir, width, height):
    source = make_video(tmp_path / "tiny.mkv", n=4, width=width, height=height, audio=False, codec="ffv1")
    out, matte = tmp_path / "out.mp4", tmp_path / "alpha.mkv"
    assert main(["video", str(source), "-o", str(out), "--alpha-out", str(matte), "--background", "blur",
                 "--quiet", *bshm_args(bshm_dir)]) == 0
    assert probe(out).width == 2 and probe(out).height == 2
    mattes = read_alpha(matte)
    assert len(mattes) == 4 and mattes[0].shape == (height, width)


def test_rotated_phone_video_comes_out_upright(tmp_path, bshm_dir):
    # Display matrix +90: the stored 64x48 picture is shown turned a quarter counter-clockwise, 48x64.
    source = make_video(tmp_path / "phone.mp4", n=3, rotation=90)
    out, matte = tmp_path / "out.mp4", tmp_path / "alpha.mkv"
    assert main(["video", str(source), "-o", str(out), "--alpha-out", str(matte), "--quiet",
                 *bshm_args(bshm_dir)]) == 0
    info = probe(out)
    assert (info.width, info.height, info.rotation) == (48, 64, 0)
    first = read_alpha(matte)[0].astype(int)
    upright = cv2.rotate(gradient(0), cv2.ROTATE_90_COUNTERCLOCKWISE)
    sideways = cv2.rotate(gradient(0), cv2.ROTATE_90_CLOCKWISE)
    assert np.abs(first - expected_alpha(upright[:, :, ::-1])).mean() < 3
    assert np.abs(first - expected_alpha(sideways[:, :, ::-1])).mean() > 10


def test_very_large_still_image(tmp_path, bshm_dir):
    big = cv2.resize(gradient(0), (4000, 3000), interpolation=cv2.INTER_LINEAR)
    assert cv2.imwrite(str(tmp_path / "big.png"), big, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    out = tmp_path / "out"
    assert main(["image", "-i", str(tmp_path / "big.png"), "-d", str(out), "--background", "color:#0000ff",
                 *bshm_args(bshm_dir)]) == 0
    alpha = cv2.imread(str(out / "big_alpha.png"), cv2.IMREAD_UNCHANGED)
    assert alpha.shape == (3000, 4000)
    assert np.abs(alpha[::50, ::50].astype(int) - expected_alpha(big[::50, ::50, ::-1])).max() <= 1
    assert cv2.imread(str(out / "big_composite.png")).shape == (3000, 4000, 3)


def exif_oriented_jpeg(image: np.ndarray, orientation: int) -> bytes:
    """A JPEG of ``image`` as stored, with an EXIF Orientation tag (6: show turned 90 clockwise)."""
    ok, jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 98])
    # Big-endian TIFF header, one IFD entry: tag 0x0112, type SHORT, count 1, the value.
    tiff = b"MM\x00\x2a\x00\x00\x00\x08" + b"\x00\x01" + b"\x01\x12\x00\x03\x00\x00\x00\x01" \
        + orientation.to_bytes(2, "big") + b"\x00\x00" + b"\x00\x00\x00\x00"
    app1 = b"Exif\x00\x00" + tiff
    return jpeg[:2].tobytes() + b"\xff\xe1" + (len(app1) + 2).to_bytes(2, "big") + app1 + jpeg[2:].tobytes()


def test_unusual_image_formats(tmp_path, bshm_dir):
    """16-bit gray, 16-bit BGRA, float TIFF and an EXIF-rotated phone photo: mattes of what a viewer shows."""
    folder, out = tmp_path / "in", tmp_path / "out"
    folder.mkdir()
    base = gradient(3, 40, 30)  # [30, 40, 3]
    gray16 = cv2.cvtColor(base, cv2.COLOR_BGR2GRAY).astype(np.uint16) * 257
    assert cv2.imwrite(str(folder / "gray16.png"), gray16)
    bgra16 = np.dstack([base, np.full(base.shape[:2], 128, np.uint8)]).astype(np.uint16) * 257
    assert cv2.imwrite(str(folder / "bgra16.png"), bgra16)
    assert cv2.imwrite(str(folder / "float.tiff"), base.astype(np.float32) / 255)
    (folder / "phone.jpg").write_bytes(exif_oriented_jpeg(base, 6))
    assert main(["image", "-i", str(folder), "-d", str(out), *bshm_args(bshm_dir)]) == 0
    shown = {"gray16": cv2.cvtColor((gray16 >> 8).astype(np.uint8), cv2.COLOR_GRAY2BGR), "bgra16": base,
             "float": base, "phone": cv2.rotate(base, cv2.ROTATE_90_CLOCKWISE)}
    for stem, picture in shown.items():
        alpha = cv2.imread(str(out / f"{stem}_alpha.png"), cv2.IMREAD_UNCHANGED)
        assert alpha.shape == picture.shape[:2], stem
        tolerance = 4 if stem == "phone" else 1  # JPEG
        assert np.abs(alpha.astype(int) - expected_alpha(picture[:, :, ::-1])).mean() <= tolerance, stem


def test_empty_background_spec_is_refused_for_images(tmp_path, bad_dir, bshm_dir, capfd):
    assert main(["image", "-i", str(bad_dir / "photo.png"), "-d", str(tmp_path / "out"), "--background", " ",
                 *bshm_args(bshm_dir)]) == 1
    assert "empty background spec" in error_line(capfd.readouterr().err)
