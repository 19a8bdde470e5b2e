"""Fetching over the network is bounded: only http and https, a size limit, and a time limit when
a server accepts the connection and never answers (pictures and video URLs alike).
"""

from __future__ import annotations

import socket
import time

import pytest

from livematte.errors import LivematteError
from livematte.media import net
from livematte.media.reading import probe


@pytest.fixture(scope="module")
def silent_port():
    """A port on 127.0.0.1 that accepts connections (the kernel's backlog) and never answers."""
    listener = socket.create_server(("127.0.0.1", 0), backlog=8)
    yield listener.getsockname()[1]
    listener.close()


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
