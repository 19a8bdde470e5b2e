"""Bad files and a local HTTP server for the tests of bad input, model faults and fetching.

``bad_dir`` writes the bad files (and a good clip and photo beside them), ``server`` serves that
folder on 127.0.0.1; conftest.py registers both fixtures for every test module. ``error_line`` is
the check that a failure said one line and no traceback.
"""

from __future__ import annotations

import http.server
import struct
import threading
import zlib
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from media import gradient, make_video


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


def error_line(stderr: str) -> str:
    """The one line of ``stderr`` that mentions an error; fails on none, several or a traceback."""
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if "error" in line.lower()]
    assert len(lines) == 1, stderr
    return lines[0]
