"""The web page beside a live session (``livematte live --web``): the API and its security, the
frame stream, pause, preset and model size, clients that come and go, and, in headless Chromium,
the control page and the OBS overlay.

One real session (s18 played as a camera, looped, RVM, null sink) serves every test here.
"""

from __future__ import annotations

import asyncio
import json
import struct
import time

import cv2
import numpy as np
import pytest

from livematte.cli import main
from livematte.errors import LivematteError
from livematte.web.server import check_token, parse_address
from webtools import TOKEN, Session, browser_or_skip, quit_browser, wait_for


@pytest.fixture(scope="module")
def session(shared_data):
    live = Session(shared_data / "clips" / "s18.mp4")
    yield live
    log = live.close()
    assert live.process.returncode == 0, log[-3000:]


@pytest.fixture(scope="module")
def browser():
    driver = browser_or_skip()
    yield driver
    quit_browser(driver)


def regions(alpha: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Masks, well inside, of where the matte is 0 and where it is 1 (``alpha`` uint8)."""
    kernel = np.ones((41, 41), np.uint8)
    background = cv2.erode((alpha == 0).astype(np.uint8), kernel).astype(bool)
    person = cv2.erode((alpha == 255).astype(np.uint8), kernel).astype(bool)
    assert background.sum() > 10_000 and person.sum() > 10_000, "s18 should have a clear background and person"
    return background, person


def matte_now(session: Session) -> np.ndarray:
    session.post_state({"background": "transparent"})
    wait_for(lambda: session.frame().shape[2] == 4 and (session.frame()[:, :, 3] == 0).any(), what="a transparent frame")
    return session.frame()[:, :, 3]


# --- address and token ----------------------------------------------------------------------------

def test_address_and_token_checks():
    assert parse_address("8750") == ("127.0.0.1", 8750)
    assert parse_address("0.0.0.0:80") == ("0.0.0.0", 80)
    assert parse_address("[::1]:9000") == ("::1", 9000)
    for bad in ("", "host:", "x:70000", "abc"):
        with pytest.raises(LivematteError, match=r"\[HOST:\]PORT"):
            parse_address(bad)
    with pytest.raises(LivematteError, match="16..128"):
        check_token("short")
    assert check_token(TOKEN) == TOKEN


def test_web_flag_errors_are_one_line(capsys, tmp_path):
    assert main(["live", "--source", "x.mp4", "--sink", "null", "--web-token", TOKEN]) == 1
    assert "--web-token is the web page's token; it needs --web" in capsys.readouterr().err
    assert main(["live", "--source", "x.mp4", "--sink", "null", "--web", "1:2:x"]) == 1
    assert "expected [HOST:]PORT" in capsys.readouterr().err


# --- security -------------------------------------------------------------------------------------

def test_every_request_needs_the_token(session):
    for path in ("/", "/overlay", "/api/state", "/api/stats", "/api/frame.png", "/assets/app.js"):
        assert session.request("GET", path)[0] == 401, path
        assert session.request("GET", f"{path}?token=wrong-token-0123456789")[0] == 403, path
        assert session.request("GET", path, token="wrong-token-0123456789")[0] == 403, path
        assert session.request("GET", f"{path}?token={TOKEN}")[0] == 200, path
    status, body = session.request("POST", "/api/state", b'{"paused": false}')
    assert status == 401 and b"Authorization: Bearer" in body


def test_a_post_takes_the_token_from_the_header_only(session):
    before = session.state()
    body = json.dumps({"background": "color:#123456"}).encode()
    # A cookie (what another site open in the browser could make it send) and ?token= are not taken.
    assert session.request("POST", "/api/state", body, headers={"Cookie": f"token={TOKEN}"})[0] == 401
    assert session.request("POST", f"/api/state?token={TOKEN}", body)[0] == 401
    assert session.state() == before


def test_foreign_host_and_origin_are_refused(session):
    status, body = session.request("GET", "/api/state", headers={"Host": f"attacker.example:{session.port}"},
                                   token=True)
    assert status == 403 and b"not this server's address" in body
    assert session.request("GET", "/api/state", headers={"Host": f"localhost:{session.port}"}, token=True)[0] == 200
    status, _ = session.request("POST", "/api/state", b"{}", headers={"Origin": "http://attacker.example"}, token=True)
    assert status == 403


def test_no_files_beyond_its_own_assets(session):
    for path in ("/assets/../../setup.py", "/assets/%2e%2e%2fcontrol.py", "/assets/index.html", "/etc/passwd",
                 "/assets/server.py"):
        assert session.request("GET", path, token=True)[0] == 404, path


# --- state ----------------------------------------------------------------------------------------

def test_bad_requests_get_a_400_with_one_line(session):
    before = session.state()
    for body, reason in ((b'{"background": ', "malformed JSON"), (b"[1, 2]", "expected a JSON object"),
                         (b'{"colour": "red"}', "unknown key 'colour'"),
                         (b'{"paused": "yes"}', "expected true or false"),
                         (b'{"model_size": 5}', "expected 0"), (b'{"preset": "fastest"}', "expected one of"),
                         (b'{"background": "color:#12"}', "expected #RRGGBB"),
                         (b'{"background": "/etc/hosts"}', "upload it"),
                         (b'{"background": "blur:25", "paused": 1}', "paused got 1")):
        status, answer = session.request("POST", "/api/state", body, token=True)
        assert status == 400, body
        error = json.loads(answer)["error"]
        assert reason in error and "\n" not in error, (body, error)
    assert session.state() == before  # a bad key spoils the whole request


def test_uploads_are_limited_in_size_and_kind(session, tmp_path):
    session.post_state({"background": "color:#00ff00"})
    status, body = session.request("POST", "/api/background?name=big.png", b"\0" * (50 * 2**20), token=True)
    assert status == 413 and b"over the 20,971,520 allowed" in body
    status, body = session.request("POST", "/api/background?name=notes.png", b"just some text\n" * 100, token=True)
    assert status == 415 and json.loads(body)["error"] == "'notes.png' is not an image OpenCV can read"
    status, body = session.request("POST", "/api/background?name=notes.txt", b"text", token=True)
    assert status == 415 and b"is not a picture" in body
    assert session.state()["background"] == "color:#00ff00"
    # A real picture is taken, and offered again among the pictures this run used.
    picture = np.zeros((90, 160, 3), np.uint8)
    picture[:] = (0, 0, 255)
    status, body = session.request("POST", "/api/background?name=red.jpg", cv2.imencode(".jpg", picture)[1].tobytes(),
                                   token=True)
    assert status == 200, body
    spec = json.loads(body)["background"]
    options = json.loads(session.request("GET", "/api/options", token=True)[1])
    assert spec in options["images"] and "live-fast" in options["presets"]
    background, _ = regions(matte_now(session))
    session.post_state({"background": spec})
    wait_for(lambda: (session.frame()[background][:, 2] > 200).mean() > 0.95, what="the uploaded red background")


def test_background_colour_reaches_the_frame(session):
    background, person = regions(matte_now(session))
    for hex_colour, bgr in (("#ff0000", (0, 0, 255)), ("#0000ff", (255, 0, 0))):
        session.post_state({"background": f"color:{hex_colour}"})
        wait_for(lambda: np.abs(session.frame()[background][:, :3].astype(int) - bgr).max(axis=1).mean() < 8,
                 what=f"the background {hex_colour}")
    frame = session.frame()
    assert frame.shape == (720, 1280, 4) and (frame[:, :, 3] == 255).all()  # opaque over a colour


def test_pause_holds_the_picture_and_frees_the_model(session):
    session.post_state({"paused": True})
    wait_for(lambda: session.state()["paused"])
    time.sleep(0.5)
    before = session.stats()
    time.sleep(1.5)
    after = session.stats()
    assert after["composited"] == before["composited"]  # no new frame matted
    assert after["frames_out"] - before["frames_out"] >= 30  # the sink still gets its 30 fps
    session.post_state({"paused": False})
    wait_for(lambda: session.stats()["composited"] > after["composited"] + 15, what="frames after the pause")


def test_preset_and_model_size_change_the_network(session):
    assert session.post_state({"preset": "live-fast"})["model_size"] == 320
    wait_for(lambda: "adaptive: from 320px whenever free" in session.log(), what="the live-fast ladder")
    assert session.post_state({"model_size": 256})["model_size"] == 256
    wait_for(lambda: "adaptive: from 256px whenever free" in session.log(), what="a 256 px ladder")
    state = session.post_state({"preset": "live"})
    assert state == {**state, "preset": "live", "model_size": 384}
    composited = session.stats()["composited"]
    wait_for(lambda: session.stats()["composited"] > composited + 30, what="frames after the changes")


# --- frame stream ---------------------------------------------------------------------------------

async def _watch(port: int, kind: str, frames: int, leave_abruptly: bool = False) -> list[bytes]:
    import aiohttp

    async with aiohttp.ClientSession() as client:
        ws = await client.ws_connect(f"http://127.0.0.1:{port}/api/stream?kind={kind}&token={TOKEN}")
        received = []
        while len(received) < frames:
            message = await asyncio.wait_for(ws.receive(), 20)
            received.append(message.data)
        if leave_abruptly:  # the TCP connection drops mid-stream, no close handshake
            ws._response.connection.transport.abort()
        else:
            await ws.close()
        return received


def decode_message(message: bytes) -> tuple[np.ndarray, np.ndarray | None]:
    (n,) = struct.unpack("<I", message[:4])
    colour = cv2.imdecode(np.frombuffer(message[4:4 + n], np.uint8), cv2.IMREAD_COLOR)
    alpha = cv2.imdecode(np.frombuffer(message[4 + n:], np.uint8), cv2.IMREAD_GRAYSCALE) if len(message) > 4 + n else None
    return colour, alpha


def test_overlay_stream_carries_the_person_and_the_matte(session):
    session.post_state({"background": "blur:25"})  # the overlay is the person whatever the background
    colour, alpha = decode_message(asyncio.run(_watch(session.port, "overlay", 3))[-1])
    assert colour.shape == (720, 1280, 3) and alpha.shape == (720, 1280)
    background, person = regions(alpha)
    assert alpha[background].max() < 8 and alpha[person].min() > 247
    preview, no_alpha = decode_message(asyncio.run(_watch(session.port, "preview", 2))[-1])
    assert preview.shape == (360, 640, 3) and no_alpha is None  # the composite is opaque over a blur


def test_clients_that_come_and_go_leave_the_session_running_with_flat_memory(session):
    async def crowd(count: int):
        await asyncio.gather(*(_watch(session.port, "overlay" if i % 2 else "preview", 2, leave_abruptly=i % 3 == 0)
                               for i in range(count)))

    asyncio.run(crowd(20))  # warm: the first clients allocate what every later one reuses
    time.sleep(1)
    rss_before, composited = session.rss_mb(), session.stats()["composited"]
    for _ in range(3):
        asyncio.run(crowd(20))
    time.sleep(2)
    rss_after, stats = session.rss_mb(), session.stats()
    print(f"RSS {rss_before:.1f} MB before 60 clients came and went, {rss_after:.1f} MB after")
    assert session.process.poll() is None
    assert stats["composited"] > composited + 30
    assert stats["web"]["clients"] == {"overlay": 0, "preview": 0}
    assert rss_after - rss_before < 40


# --- in the browser -------------------------------------------------------------------------------

def canvas_png(browser, element_id: str) -> np.ndarray:
    png = browser.find_element("id", element_id).screenshot_as_png
    return cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_UNCHANGED)


def test_control_page_preview_updates(session, browser):
    session.post_state({"background": "blur:25", "paused": False})
    browser.get(f"{session.base}/?token={TOKEN}")
    wait_for(lambda: browser.execute_script("return window.livematteFrames") >= 3, what="preview frames")
    first = canvas_png(browser, "preview")
    wait_for(lambda: np.abs(canvas_png(browser, "preview").astype(int) - first).mean() > 1.0,
             what="the preview to change")
    wait_for(lambda: "fps" in browser.find_element("id", "stats").text, what="the stats line")


def test_the_pages_own_background_control_changes_the_frame(session, browser):
    background, _ = regions(matte_now(session))
    browser.get(f"{session.base}/?token={TOKEN}")
    wait_for(lambda: browser.find_element("id", "preset").get_attribute("value") == "live", what="the page's state")
    browser.execute_script("document.getElementById('color').value = '#ff00ff'")  # the colour picker's choice
    browser.find_element("id", "apply-color").click()
    wait_for(lambda: "applied" in browser.find_element("id", "message").text, what="the page's confirmation")
    wait_for(lambda: np.abs(session.frame()[background][:, :3].astype(int) - (255, 0, 255)).max(axis=1).mean() < 8,
             what="magenta where the matte is 0")
    assert session.state()["background"] == "color:#ff00ff"


def test_overlay_is_transparent_around_the_person(session, browser):
    session.post_state({"background": "color:#ffffff"})  # the overlay ignores it
    browser.get(f"{session.base}/overlay?token={TOKEN}")
    browser.execute_cdp_cmd("Emulation.setDefaultBackgroundColorOverride", {"color": {"r": 0, "g": 0, "b": 0, "a": 0}})
    wait_for(lambda: browser.execute_script("return window.livematteFrames") >= 5, what="overlay frames")
    session.post_state({"paused": True})  # one picture, so the screenshot and the matte are the same frame
    try:
        time.sleep(1.0)
        alpha = decode_message(asyncio.run(_watch(session.port, "overlay", 1))[-1])[1]
        time.sleep(0.5)
        shot = cv2.imdecode(np.frombuffer(browser.get_screenshot_as_png(), np.uint8), cv2.IMREAD_UNCHANGED)
    finally:
        session.post_state({"paused": False, "background": "blur:25"})
    assert shot.shape == (720, 1280, 4)
    background, person = regions(alpha)
    assert shot[:, :, 3][background].max() <= 8, "transparent where the matte is 0"
    assert shot[:, :, 3][person].min() >= 247, "opaque on the person"
    soft = (alpha > 20) & (alpha < 235)
    assert np.abs(shot[:, :, 3].astype(int) - alpha)[soft].mean() < 4, "the soft edge's alpha as streamed"
