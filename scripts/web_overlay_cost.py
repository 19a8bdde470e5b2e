"""What an OBS overlay client costs a live session: s18 live on the null sink with ``--web``, runs
alternated without a client and with one overlay client, in one run.

    python scripts/web_overlay_cost.py [--pairs 2] [--frames 600] [--client browser|ws]

The client is a headless Chromium showing ``/overlay`` (``browser``: the browser's own work on
the same cores, as OBS on the streaming machine), or a bare WebSocket reader in this script
(``ws``: the server's side alone). Prints, per run: fresh fps, latency p50/p95, dropped, the
livematte process's CPU, and with the client the encoder thread's CPU ms per frame and, for the
browser, its CPU (all its processes) per frame shown.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
from webtools import TOKEN, browser_or_skip, quit_browser  # noqa: E402

CLIP = Path(os.environ.get("LIVEMATTE_TEST_DATA", HERE.parent.parent / "shared" / "data")) / "clips" / "s18.mp4"


def tree_cpu_s(pid: int) -> float:
    """CPU seconds of a process and its children."""
    total = 0.0
    try:
        root = psutil.Process(pid)
        for process in [root, *root.children(recursive=True)]:
            times = process.cpu_times()
            total += times.user + times.system
    except psutil.NoSuchProcess:
        pass
    return total


def one_run(frames: int, browser) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        stats_path = Path(folder) / "stats.json"
        process = subprocess.Popen(
            [sys.executable, "-m", "livematte", "live", "--source", str(CLIP), "--realtime", "--loop",
             "--sink", "null", "--frames", str(frames), "--web", "127.0.0.1:0", "--web-token", TOKEN,
             "--stats-json", str(stats_path)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        port = int(re.search(r":(\d+)/", process.stdout.readline()).group(1))
        web, browser_cpu = {}, None
        if browser == "ws":
            threading.Thread(target=_read_stream, args=(port,), daemon=True).start()
            for web in _web_stats(process, port):
                pass
        elif browser is not None:
            browser.get(f"http://127.0.0.1:{port}/overlay?token={TOKEN}")
            driver_pid = browser.service.process.pid
            cpu_start, encoded_start = tree_cpu_s(driver_pid), None
            for web in _web_stats(process, port):
                if encoded_start is None:
                    encoded_start, cpu_start = web["frames_encoded"], tree_cpu_s(driver_pid)
                cpu_end, encoded_end = tree_cpu_s(driver_pid), web["frames_encoded"]
            browser.get("about:blank")
            if encoded_start is not None and encoded_end > encoded_start:
                browser_cpu = 1e3 * (cpu_end - cpu_start) / (encoded_end - encoded_start)
        process.wait()
        figures = json.loads(stats_path.read_text())
    return {"fps": figures["fps"], "p50": figures["latency_ms"]["p50"], "p95": figures["latency_ms"]["p95"],
            "dropped": figures["dropped"], "frames_in": figures["frames_in"], "cpu": figures["cpu_percent"],
            "encode_ms": web.get("encode_cpu_ms_per_frame"), "browser_ms": browser_cpu}


def _web_stats(process: subprocess.Popen, port: int):
    """The server's ``web`` stats about every second, while the run lasts and answers."""
    while process.poll() is None:
        time.sleep(1.0)
        try:
            yield _get(port, "/api/stats")["web"]
        except OSError:
            return


def _read_stream(port: int) -> None:
    """Take the overlay stream's messages until the server goes (no decoding: the server's side alone)."""
    import asyncio

    import aiohttp

    async def read():
        async with aiohttp.ClientSession() as client:
            async with client.ws_connect(f"http://127.0.0.1:{port}/api/stream?kind=overlay&token={TOKEN}") as ws:
                async for _ in ws:
                    pass

    try:
        asyncio.run(read())
    except aiohttp.ClientError:
        pass


def _get(port: int, path: str) -> dict:
    import http.client

    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request("GET", f"{path}?token={TOKEN}")
        return json.loads(connection.getresponse().read())
    finally:
        connection.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=2)
    parser.add_argument("--frames", type=int, default=600)
    parser.add_argument("--client", choices=("browser", "ws"), default="browser")
    args = parser.parse_args()
    browser = browser_or_skip() if args.client == "browser" else "ws"
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}, {os.cpu_count()} cores")
    try:
        for pair in range(args.pairs):
            for with_client in (False, True) if pair % 2 == 0 else (True, False):
                r = one_run(args.frames, browser if with_client else None)
                extra = f", encoder {r['encode_ms']:.2f} ms/frame" if with_client and r["encode_ms"] else ""
                if with_client and r["browser_ms"] is not None:
                    extra += f", browser {r['browser_ms']:.1f} ms/frame"
                print(f"{'overlay client' if with_client else 'no client     '}: {r['fps']:.2f} fps, latency p50 "
                      f"{r['p50']:.0f} p95 {r['p95']:.0f} ms, dropped {r['dropped']} of {r['frames_in']}, "
                      f"CPU {r['cpu']:.0f}%{extra}; load {os.getloadavg()[0]:.2f}", flush=True)
    finally:
        if browser != "ws":
            quit_browser(browser)


if __name__ == "__main__":
    main()
