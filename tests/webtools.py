"""Helpers for the web page's tests: a real live session with --web in a child process, plain
HTTP requests with any headers, and the system's headless Chromium through selenium."""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

TOKEN = "test-token-0123456789abcdef"
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


class Session:
    """``livematte live --source CLIP --realtime --loop --sink null --web 127.0.0.1:0`` running."""

    def __init__(self, clip: Path, *extra: str):
        self._log = tempfile.TemporaryFile("w+")  # a file, not a pipe nobody reads while the tests run
        self.process = subprocess.Popen(
            [sys.executable, "-m", "livematte", "live", "--source", str(clip), "--realtime", "--loop",
             "--sink", "null", "--web", "127.0.0.1:0", "--web-token", TOKEN, *extra],
            stdout=subprocess.PIPE, stderr=self._log, text=True)
        line = self.process.stdout.readline()  # "control: http://127.0.0.1:PORT/?token=..."
        found = re.search(r"127\.0\.0\.1:(\d+)", line)
        if not found:
            self.process.kill()
            raise RuntimeError(f"no address from livematte: {line!r} {self.log()[-2000:]}")
        self.port = int(found.group(1))
        self.base = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 60
        while self.request("GET", "/api/frame.png", token=True)[0] != 200:
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError("no frame within 60 s")
            time.sleep(0.2)

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None,
                token: bool | str = False) -> tuple[int, bytes]:
        """-> (status, body); ``token``: True sends the session's as a Bearer header, a str as given."""
        headers = dict(headers or {})
        if token:
            headers["Authorization"] = f"Bearer {TOKEN if token is True else token}"
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            connection.putrequest(method, path, skip_host="Host" in headers)
            for name, value in headers.items():
                connection.putheader(name, value)
            connection.putheader("Content-Length", str(len(body or b"")))
            connection.endheaders(body)
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()

    def state(self) -> dict:
        status, body = self.request("GET", "/api/state", token=True)
        assert status == 200, body
        return json.loads(body)

    def post_state(self, changes: dict) -> dict:
        status, body = self.request("POST", "/api/state", json.dumps(changes).encode(), token=True)
        assert status == 200, body
        return json.loads(body)

    def stats(self) -> dict:
        return json.loads(self.request("GET", "/api/stats", token=True)[1])

    def frame(self) -> np.ndarray:
        """The latest composite, ``uint8 [H, W, 4]`` BGRA."""
        status, body = self.request("GET", "/api/frame.png", token=True)
        assert status == 200, body
        return cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_UNCHANGED)

    def log(self) -> str:
        """Its log (stderr) so far."""
        self._log.seek(0)
        return self._log.read()

    def rss_mb(self) -> float:
        import psutil

        return psutil.Process(self.process.pid).memory_info().rss / 2**20

    def close(self) -> str:
        """Stop it as Ctrl-C does; -> its log."""
        if self.process.poll() is None:
            self.process.send_signal(2)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
        return self.log()


def browser_or_skip():
    """A headless Chromium driven by selenium; skipped where there is none, except under CI."""
    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI needs Chromium for the web page's tests ({CHROMIUM}, {CHROMEDRIVER}): "
                        "apt-get install chromium chromium-driver")
        pytest.skip("no Chromium here (apt-get install chromium chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="livematte-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    # The flags keep it from reaching for a network this machine does not have (it hangs otherwise).
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", f"--user-data-dir={profile}", "--window-size=1280,720"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                           {"width": 1280, "height": 720, "deviceScaleFactor": 1, "mobile": False})
    driver.set_page_load_timeout(30)
    driver.livematte_profile = profile
    return driver


def quit_browser(driver) -> None:
    driver.quit()
    shutil.rmtree(driver.livematte_profile, ignore_errors=True)


def wait_for(condition, timeout: float = 20.0, what: str = "the condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")
