"""Hostile requests to the web page's API (``livematte live --web``), through a real session and real
HTTP on 127.0.0.1: a JSON body nested millions deep, bodies far larger than any state change, and a
decompression bomb (a 49 KB PNG that says 20000x20000) uploaded as the background. Each gets a
one-line 4xx answer, no traceback in the log, and the session's memory stays where it was."""

from __future__ import annotations

import http.client
import json

import cv2
import pytest

from bombs import bomb_png
from livematte.web.server import MAX_STATE_BYTES
from media import gradient, make_video
from webtools import TOKEN, Session

LIMIT = 4_000_000  # the session's --max-pixels


@pytest.fixture(scope="module")
def session(tmp_path_factory, rvm_weights):
    folder = tmp_path_factory.mktemp("web-hostile")
    live = Session(make_video(folder / "clip.mp4", width=160, height=120, audio=False), "--max-pixels", str(LIMIT))
    yield live
    log = live.close()
    assert live.process.returncode == 0, log[-3000:]
    assert "Traceback" not in log and "RecursionError" not in log, log[-3000:]


def one_line_error(body: bytes) -> str:
    error = json.loads(body)["error"]
    assert "\n" not in error, error
    return error


def test_deeply_nested_json_is_a_400(session):
    """Before: 500, and a RecursionError traceback in the log."""
    before = session.state()
    status, body = session.request("POST", "/api/state", b"[" * 10_000, token=True)
    assert status == 400 and one_line_error(body) == "malformed JSON: nested too deeply"
    status, body = session.request("POST", "/api/state", b'{"paused": ' + b"[" * 5_000 + b"]" * 5_000 + b"}",
                                   token=True)
    assert status == 400 and "nested too deeply" in one_line_error(body)
    assert session.state() == before


def test_the_state_api_takes_a_few_kb_at_most(session):
    """Before: 2.5 million ``[`` were read whole and answered 500 (RecursionError)."""
    status, body = session.request("POST", "/api/state", b"[" * 2_500_000, token=True)
    assert status == 413
    assert one_line_error(body) == f"the body is 2,500,000 bytes, over the {MAX_STATE_BYTES:,} allowed here"
    # Without a Content-Length (chunked), the body is cut off at the limit all the same.
    connection = http.client.HTTPConnection("127.0.0.1", session.port, timeout=30)
    try:
        connection.request("POST", "/api/state", body=(b" " * 1000 for _ in range(1000)),
                           headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})
        response = connection.getresponse()
        assert response.status == 413
        assert one_line_error(response.read()) == f"the body is over the {MAX_STATE_BYTES:,} bytes allowed here"
    finally:
        connection.close()
    # A real change fits with room to spare, padding and all.
    changes = b'{"background": "color:#123456",' + b" " * 4000 + b'"paused": false}'
    assert len(changes) <= MAX_STATE_BYTES
    status, body = session.request("POST", "/api/state", changes, token=True)
    assert status == 200 and json.loads(body)["background"] == "color:#123456"


def test_a_bomb_upload_is_a_413_and_memory_stays_flat(session, tmp_path):
    """Before: 200, the bomb became the background, RSS 519 MB -> 2.1 GB (1.7 GB after)."""
    session.post_state({"background": "color:#00ff00"})
    before_mb = session.rss_mb()
    bomb = bomb_png(tmp_path / "bomb.png").read_bytes()
    status, body = session.request("POST", "/api/background?name=bomb.png", bomb, token=True)
    assert status == 413
    assert one_line_error(body) == (f"'bomb.png' is 20000x20000 pixels (400,000,000), over the limit of {LIMIT:,} "
                                    "(--max-pixels)")
    assert session.rss_mb() < before_mb + 100
    assert session.state()["background"] == "color:#00ff00"
    # The same limit as --max-pixels: just over it is refused, at it taken.
    over = cv2.imencode(".png", gradient(0, 2001, 2000))[1].tobytes()
    status, body = session.request("POST", "/api/background?name=over.png", over, token=True)
    assert status == 413 and "2001x2000 pixels (4,002,000), over the limit of 4,000,000" in one_line_error(body)
    at = cv2.imencode(".jpg", gradient(0, 2000, 2000))[1].tobytes()
    status, body = session.request("POST", "/api/background?name=at.jpg", at, token=True)
    assert status == 200, body
    options = json.loads(session.request("GET", "/api/options", token=True)[1])
    assert len(options["images"]) == 1 and options["images"][0].endswith(".jpg")
