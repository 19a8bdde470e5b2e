"""The web server on its own, without a model: where it binds, what it warns about, what it serves
before the first frame, and that it stops cleanly."""

from __future__ import annotations

import json
import logging
import socket
import threading
import urllib.error
import urllib.request

import numpy as np
import pytest

from livematte.compose.backgrounds import parse_background

from livematte.compose.compositor import Compositor
from livematte.config import Config
from livematte.frames import Frame, Matted
from livematte.errors import LivematteError
from livematte.runtime.stats import Stats
from livematte.web.control import LiveControl
from livematte.web.server import WebServer

TOKEN = "test-token-0123456789abcdef"


@pytest.fixture
def control(tmp_path):
    compositor = Compositor(parse_background("blur:25"))
    yield LiveControl(Config(), compositor, "rvm", build_engine=lambda config: None, uploads=tmp_path)
    compositor.close()


def get(url: str, token: str = TOKEN) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def test_binds_loopback_by_default_and_serves_before_the_first_frame(control):
    with WebServer(control, Stats(), port=0, token=TOKEN) as server:
        assert server.host == "127.0.0.1" and server.port > 0
        assert server.urls() == {"control": f"http://127.0.0.1:{server.port}/?token={TOKEN}",
                                 "overlay": f"http://127.0.0.1:{server.port}/overlay?token={TOKEN}"}
        status, body = get(f"http://127.0.0.1:{server.port}/api/frame.png")
        assert status == 503 and json.loads(body) == {"error": "no frame yet"}
        assert json.loads(get(f"http://127.0.0.1:{server.port}/api/state")[1]) == {
            "background": "blur:25", "paused": False, "preset": "live", "model_size": 0}
        image = np.zeros((8, 8, 3), np.uint8)
        control.publish(image, Matted(Frame(0, image, 0.0, 0.0), np.zeros((8, 8), np.float32), {}))
        assert get(f"http://127.0.0.1:{server.port}/api/frame.png")[0] == 200
    assert not [t for t in threading.enumerate() if t.name.startswith("livematte-web")]


def test_a_random_token_per_run(control):
    with WebServer(control, Stats()) as first, WebServer(control, Stats()) as second:
        assert first.token != second.token and len(first.token) >= 32


def test_other_addresses_are_warned_about(control, caplog):
    with caplog.at_level(logging.WARNING, logger="livematte"):
        with WebServer(control, Stats(), host="0.0.0.0", port=0, token=TOKEN) as server:
            assert f"0.0.0.0:{server.port}" in server.allowed_hosts()
    assert "reachable from other machines" in caplog.text


def test_a_taken_port_is_one_clear_error(control):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(LivematteError, match=rf"cannot serve the web page on 127.0.0.1:{port}: "):
            with WebServer(control, Stats(), port=port, token=TOKEN):
                pass
    assert not [t for t in threading.enumerate() if t.name.startswith("livematte-web")]
