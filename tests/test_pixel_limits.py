"""The pixel limit (``--max-pixels``): every picture livematte opens (backgrounds from files and URLs,
``image -i`` files, folders and URLs, background videos) is sized from its header and refused over
the limit before anything is decoded, with one line. A decompression bomb (a 49 KB PNG that says
20000x20000, 1.2 GB decoded) is the case in point. The header reader agrees with OpenCV's
decoders on every format they read, EXIF-rotated and CMYK photos included."""

from __future__ import annotations

import functools
import http.server
import io
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from bombs import bomb_png
from livematte.media import images as image_files, image_header
from livematte.cli import main
from livematte.compose.backgrounds import parse_background
from livematte.errors import LivematteError
from livematte.media.image_header import DEFAULT_MAX_PIXELS, TooManyPixels, picture_size
from media import gradient, make_video

W, H = 64, 40


@pytest.fixture(autouse=True)
def default_limit():
    """Each test starts, and leaves, with the default limit (``main`` sets it from its flags)."""
    image_header.set_max_pixels(DEFAULT_MAX_PIXELS)
    yield
    image_header.set_max_pixels(DEFAULT_MAX_PIXELS)


@pytest.fixture(scope="module")
def bomb(tmp_path_factory) -> Path:
    return bomb_png(tmp_path_factory.mktemp("bomb") / "bomb.png")


# Starts the command and prints its peak RSS (kB). The command is forked from this small
# process, not from pytest: a child's peak counts the memory of the process it was forked from,
# and pytest's, with TensorFlow loaded, is gigabytes.
_MEASURE = ("import resource, subprocess, sys; rc = subprocess.call(sys.argv[1:], stdout=subprocess.DEVNULL); "
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(rc)")


def run_measured(*args: str, timeout: float = 120) -> tuple[int, str, float, float]:
    """``python -m livematte ARGS`` -> (exit code, stderr, seconds, peak RSS in MB of that process)."""
    start = time.monotonic()
    done = subprocess.run([sys.executable, "-c", _MEASURE, sys.executable, "-m", "livematte", *args],
                          capture_output=True, text=True, timeout=timeout)
    return done.returncode, done.stderr, time.monotonic() - start, int(done.stdout.split()[-1]) / 1024


def one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.startswith("livematte: error:")]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


# --- the header reader ----------------------------------------------------------------------------

def _opencv(ext: str, picture: np.ndarray, *params: int) -> bytes:
    ok, data = cv2.imencode(ext, picture, list(params))
    assert ok, ext
    return data.tobytes()


BGR = gradient(0, W, H)
GRAY = cv2.cvtColor(BGR, cv2.COLOR_BGR2GRAY)
OPENCV_WRITES = {
    "png": lambda: _opencv(".png", BGR),
    "png 16-bit BGRA": lambda: _opencv(".png", np.dstack([BGR, GRAY]).astype(np.uint16) * 257),
    "jpeg": lambda: _opencv(".jpg", BGR),
    "jpeg progressive": lambda: _opencv(".jpg", BGR, cv2.IMWRITE_JPEG_PROGRESSIVE, 1),
    "webp lossless (VP8L)": lambda: _opencv(".webp", BGR, cv2.IMWRITE_WEBP_QUALITY, 101),
    "webp lossy (VP8)": lambda: _opencv(".webp", BGR, cv2.IMWRITE_WEBP_QUALITY, 80),
    "bmp": lambda: _opencv(".bmp", BGR),
    "tiff": lambda: _opencv(".tiff", BGR),
    "tiff float": lambda: _opencv(".tiff", BGR.astype(np.float32) / 255),
    "gif": lambda: _opencv(".gif", BGR),
    "ppm": lambda: _opencv(".ppm", BGR),
    "pgm": lambda: _opencv(".pgm", GRAY),
    "pbm": lambda: _opencv(".pbm", GRAY),
    "pam": lambda: _opencv(".pam", BGR),
    "pfm": lambda: _opencv(".pfm", BGR.astype(np.float32) / 255),
    "sun raster": lambda: _opencv(".sr", BGR),
    "radiance hdr": lambda: _opencv(".hdr", BGR.astype(np.float32) / 255),
    "jpeg 2000 (jp2)": lambda: _opencv(".jp2", BGR),
    "avif": lambda: _opencv(".avif", BGR),
}


def _pillow(format: str, mode: str = "RGB", **options) -> bytes:
    from PIL import Image

    picture = Image.fromarray(BGR[:, :, ::-1].copy()).convert(mode) if mode != "I;16B" else \
        Image.frombytes("I;16B", (W, H), (GRAY.astype(">u2") * 257).tobytes())
    out = io.BytesIO()
    picture.save(out, format, **options)
    return out.getvalue()


def _exif(orientation: int) -> bytes:
    from PIL import Image

    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif.tobytes()


# Variants OpenCV does not write (Pillow, in the test extra through matplotlib, does).
PILLOW_WRITES = {
    "jpeg CMYK": lambda: _pillow("JPEG", "CMYK"),
    "jpeg EXIF-rotated (6)": lambda: _pillow("JPEG", exif=_exif(6)),
    "webp extended (VP8X, EXIF)": lambda: _pillow("WEBP", exif=_exif(1)),
    "tiff big-endian": lambda: _pillow("TIFF", "I;16B"),
    "bigtiff": lambda: _pillow("TIFF", big_tiff=True),
    "jpeg 2000 codestream (j2k)": lambda: _pillow("JPEG2000", no_jp2=True),
    "bmp 1-bit": lambda: _pillow("BMP", "1"),
    "gif animated": lambda: _pillow("GIF", save_all=True, append_images=[]),
}


@pytest.mark.parametrize("kind", [*OPENCV_WRITES, *PILLOW_WRITES])
def test_the_header_gives_the_size_opencv_decodes(kind):
    if kind in PILLOW_WRITES:
        pytest.importorskip("PIL")
    data = (OPENCV_WRITES | PILLOW_WRITES)[kind]()
    decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    assert decoded is not None and decoded.shape[:2] == (H, W), kind
    assert picture_size(data) == (W, H), kind
    # At the limit it decodes (upright, 3 channels); one pixel under, it is refused undecoded.
    image_header.set_max_pixels(W * H)
    picture = image_files.decode(data, kind)
    assert picture.shape == ((W, H, 3) if "rotated" in kind else (H, W, 3)) and picture.dtype == np.uint8
    image_header.set_max_pixels(W * H - 1)
    with pytest.raises(TooManyPixels, match=rf"^{re.escape(kind)} is {W}x{H} pixels \(2,560\), over the limit of 2,559 "
                                            r"\(--max-pixels\)$"):
        image_files.decode(data, kind)


def test_unreadable_headers_are_one_line_errors():
    png, jpeg, tiff = OPENCV_WRITES["png"](), OPENCV_WRITES["jpeg"](), OPENCV_WRITES["tiff"]()
    for data, message in ((png[:14] + b"IEND", "a damaged PNG (no size in its header)"),
                          (jpeg[:20], "a damaged JPEG (no size in its header)"),
                          (tiff[:4] + b"\xff\xff\xff\x00" + tiff[8:], "a damaged TIFF (no size in its header)"),
                          (b"RIFF\0\0\0\0WEBPVP8Z" + bytes(30), "a damaged WebP (no size in its header)"),
                          (b"II+\0\x08\0\0\0" + (2**63).to_bytes(8, "little"),  # BigTIFF, IFD far away
                           "a damaged TIFF (no size in its header)"),
                          (b"just some text\n" * 10, "not an image OpenCV can read")):
        with pytest.raises(LivematteError, match=rf"^picture is {re.escape(message)}$"):
            image_files.decode(data, "picture")
    assert picture_size(b"\0" * 100) is None


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(kind=st.sampled_from(sorted(OPENCV_WRITES)), cut=st.integers(0, 400),
       changes=st.lists(st.tuples(st.integers(0, 399), st.integers(0, 255)), max_size=4))
def test_any_damage_to_a_header_is_a_size_or_a_value_error(kind, cut, changes):
    data = bytearray(OPENCV_WRITES[kind]())
    for at, value in changes:
        if at < len(data):
            data[at] = value
    for sample in (bytes(data), bytes(data[:cut])):
        try:
            size = picture_size(sample)
        except ValueError:
            continue
        assert size is None or all(isinstance(side, int) and side >= 0 for side in size)


# --- backgrounds ----------------------------------------------------------------------------------

def test_a_bomb_background_fails_fast_in_one_line(tmp_path, bomb):
    """Before: exit 0 after 12 s, peak RSS 1.6 GB (the 1.2 GB picture kept for the whole run)."""
    clip = make_video(tmp_path / "in.mp4", audio=False)
    rc, stderr, seconds, peak_mb = run_measured("video", str(clip), "-o", str(tmp_path / "out.mp4"),
                                                "--background", str(bomb))
    assert rc == 1, stderr
    assert one_error_line(stderr) == (f"livematte: error: {bomb} is 20000x20000 pixels (400,000,000), over the "
                                      f"limit of {DEFAULT_MAX_PIXELS:,} (--max-pixels)")
    assert seconds < 10 and peak_mb < 400, (seconds, peak_mb)
    assert not (tmp_path / "out.mp4").exists()


def test_max_pixels_sets_the_limit(tmp_path, capsys, rvm_weights):
    clip = make_video(tmp_path / "in.mp4", n=2, audio=False)
    picture = tmp_path / "wall.jpg"
    assert cv2.imwrite(str(picture), gradient(0, 300, 200))  # 60,000 pixels
    run = ["video", str(clip), "-o", str(tmp_path / "out.mp4"), "--background", str(picture)]
    assert main([*run, "--max-pixels", "59_999"]) == 1
    assert one_error_line(capsys.readouterr().err).endswith(
        "wall.jpg is 300x200 pixels (60,000), over the limit of 59,999 (--max-pixels)")
    assert main([*run, "--max-pixels", "60000"]) == 0
    assert cv2.VideoCapture(str(tmp_path / "out.mp4")).read()[0]
    # A background video is sized from its stream before a frame is decoded.
    wall = make_video(tmp_path / "wall.mp4", n=2, audio=False)  # 64x48
    assert main(["video", str(clip), "-o", str(tmp_path / "out2.mp4"), "--background", str(wall),
                 "--max-pixels", "3071"]) == 1
    assert one_error_line(capsys.readouterr().err) == (
        f"livematte: error: background video {wall} is 64x48 pixels (3,072), over the limit of 3,071 (--max-pixels)")
    # The next command without the flag has the default again.
    assert main(["video", str(clip), "-o", str(tmp_path / "out3.mp4"), "--background", str(wall)]) == 0
    assert image_header.max_pixels() == DEFAULT_MAX_PIXELS


def test_max_pixels_values_and_help(capsys):
    for command in ("video", "live", "demo", "image"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        assert "--max-pixels" in capsys.readouterr().out, command
    with pytest.raises(SystemExit) as exit_info:
        main(["video", "in.mp4", "--max-pixels", "0"])
    assert exit_info.value.code == 2
    assert "argument --max-pixels: got 0, expected 1 or more" in capsys.readouterr().err


@pytest.fixture
def served(tmp_path):
    """A real HTTP server on 127.0.0.1 serving ``tmp_path``: -> its base URL."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    thread.join()
    server.server_close()


def test_a_bomb_url_is_refused_as_background_and_as_image_input(tmp_path, served, capsys):
    bomb_png(tmp_path / "bomb.png")
    url = f"{served}/bomb.png"
    with pytest.raises(TooManyPixels, match=rf"^{re.escape(url)} is 20000x20000 pixels \(400,000,000\), over the"):
        parse_background(url)
    assert main(["image", "-i", url, "-d", str(tmp_path / "out")]) == 1
    assert one_error_line(capsys.readouterr().err).startswith(f"livematte: error: {url} is 20000x20000 pixels")


# --- image -i -------------------------------------------------------------------------------------

def test_a_bomb_image_input_fails_fast_in_one_line(tmp_path, bomb):
    """Before: exit 0 after 30 s, peak RSS 7.6 GB."""
    rc, stderr, seconds, peak_mb = run_measured("image", "-i", str(bomb), "-d", str(tmp_path / "out"))
    assert rc == 1, stderr
    assert one_error_line(stderr).startswith(f"livematte: error: {bomb} is 20000x20000 pixels (400,000,000)")
    assert seconds < 10 and peak_mb < 400, (seconds, peak_mb)


def test_a_bomb_in_a_folder_is_skipped_and_the_rest_done(tmp_path, bomb, capsys, rvm_weights):
    folder, out = tmp_path / "in", tmp_path / "out"
    folder.mkdir()
    (folder / "bomb.png").write_bytes(bomb.read_bytes())
    assert cv2.imwrite(str(folder / "photo.jpg"), gradient(0, 160, 120))
    assert main(["image", "-i", str(folder), "-d", str(out), "--model", "rvm"]) == 1
    err = capsys.readouterr().err
    assert f"skipped {folder / 'bomb.png'}: {folder / 'bomb.png'} is 20000x20000 pixels (400,000,000), over the " \
           f"limit of {DEFAULT_MAX_PIXELS:,} (--max-pixels)" in err
    assert "1 of 2 images failed" in err and "Traceback" not in err
    assert sorted(p.name for p in out.iterdir()) == ["photo_alpha.png", "photo_foreground.png"]
