"""The local web server beside a live session: the control page, the OBS overlay and their API.

aiohttp on its own thread and event loop; frames are encoded on another thread
(:class:`~livematte.web.encoder.Encoder`), only while a client watches, once per new frame (so at
most at the output rate), newest frame wins. The live run only hands references to
:class:`~livematte.web.control.LiveControl`: it never waits for a browser.

Routes (every one needs the token, see :func:`guard`):
    GET  /, /overlay            the control page, the overlay (``?token=``)
    GET  /assets/NAME           the pages' own files, from the package (nothing else from disk)
    GET  /api/state             {"background", "paused", "preset", "model_size"}
    POST /api/state             any subset of those; 400 with {"error": one line} for a bad one, 413
                                for a body over 16 KB
    GET  /api/options           the presets, the pictures this run used, the model size range
    POST /api/background?name=  a picture's bytes as the body (at most 20 MB, and --max-pixels
                                pixels by its header): the background
    GET  /api/frame.png         the latest composite, RGBA PNG
    GET  /api/stats             the run's figures (``--stats-json``'s) and the web side's
    GET  /api/stream?kind=      WebSocket of frames, kind ``overlay`` (the person, full size) or
                                ``preview`` (the composite, at most 640 px wide); the message
                                format is :mod:`.encoder`'s
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import os
import re
import secrets
import threading
from importlib import resources

import cv2
from aiohttp import WSMsgType, web

from ..errors import LivematteError
from .control import MAX_UPLOAD_BYTES, LiveControl, RequestError
from ..runtime.workers import lower_priority
from .encoder import KINDS, NICE, Encoder

log = logging.getLogger(__name__)

TOKEN_PATTERN = re.compile(r"[A-Za-z0-9_-]{16,128}")
CONTENT_TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css"}
# A state change is four keys; the longest value, a picture's path, is at most 4 KB (PATH_MAX), and
# the JSON parser recurses once per [ or {: a few KB is all a real request needs.
MAX_STATE_BYTES = 16 * 1024


def parse_address(text: str) -> tuple[str, int]:
    """``[HOST:]PORT`` -> (host, port); HOST defaults to 127.0.0.1, PORT 0 picks a free one."""
    host, _, port = str(text).rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    if not port.isdigit() or int(port) > 65535:
        raise LivematteError(f"--web got {text!r}, expected [HOST:]PORT with PORT 0..65535")
    return host, int(port)


def check_token(token: str) -> str:
    if not TOKEN_PATTERN.fullmatch(token):
        raise LivematteError("--web-token needs 16..128 characters of A-Z a-z 0-9 _ -")
    return token


class WebServer:
    """The server on ``host:port`` (port 0: a free one, see ``port``) for ``control``; ``stats``:
    the run's Stats. A context manager: entering binds (a LivematteError when it cannot) and
    serves on a daemon thread; exiting closes every connection and joins the threads."""

    def __init__(self, control: LiveControl, stats, *, host: str = "127.0.0.1", port: int = 0,
                 token: str | None = None):
        self.control, self.stats = control, stats
        self.host, self.port = host, port
        self.token = check_token(token) if token is not None else secrets.token_urlsafe(24)
        self._assets = {entry.name: entry.read_text(encoding="utf-8")
                        for entry in (resources.files(__package__) / "assets").iterdir()
                        if entry.name.endswith(tuple(CONTENT_TYPES))}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._encoder: Encoder | None = None
        self._latest: dict[str, tuple[int, bytes]] = {}  # kind -> (number, message); the loop's thread only
        self._changed: asyncio.Event | None = None
        self._sockets: set[web.WebSocketResponse] = set()

    # --- life cycle ---

    def __enter__(self) -> WebServer:
        started: concurrent.futures.Future = concurrent.futures.Future()
        self._encoder = Encoder(self.control, self._from_encoder)
        self._thread = threading.Thread(target=self._serve, args=(started,), name="livematte-web", daemon=True)
        self._thread.start()
        try:
            self.port = started.result()  # the bind's error, if any, is raised here
        except BaseException:
            self._thread.join()
            self._thread = None
            self.close()
            raise
        if self.host not in ("127.0.0.1", "localhost", "::1"):
            log.warning("web: serving on %s, reachable from other machines: anyone with the token can "
                        "watch and drive this session", self.host)
        return self

    def __exit__(self, *exc) -> bool:
        self.close()
        return False

    def close(self) -> None:
        """Stop serving, close the connections, join the threads (idempotent)."""
        if self._encoder is not None:
            self._encoder.close()
            self._encoder = None
        if self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
            self._thread = None

    def urls(self) -> dict[str, str]:
        base = f"http://{self.host if ':' not in self.host else f'[{self.host}]'}:{self.port}"
        return {"control": f"{base}/?token={self.token}", "overlay": f"{base}/overlay?token={self.token}"}

    def _serve(self, started: concurrent.futures.Future) -> None:
        lower_priority(NICE)
        loop = self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self._changed = asyncio.Event()
        app = web.Application(middlewares=[self.guard], client_max_size=MAX_UPLOAD_BYTES)
        app.add_routes([web.get("/", self._page), web.get("/overlay", self._page),
                        web.get("/assets/{name}", self._asset),
                        web.get("/api/state", self._get_state), web.post("/api/state", self._post_state),
                        web.get("/api/options", self._options), web.post("/api/background", self._upload),
                        web.get("/api/frame.png", self._frame_png), web.get("/api/stats", self._stats),
                        web.get("/api/stream", self._stream)])
        app.on_shutdown.append(self._close_sockets)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        try:
            loop.run_until_complete(runner.setup())
            site = web.TCPSite(runner, self.host, self.port)
            loop.run_until_complete(site.start())
        except OSError as e:
            loop.run_until_complete(runner.cleanup())
            loop.close()
            started.set_exception(LivematteError(f"cannot serve the web page on {self.host}:{self.port}: "
                                                 f"{e.strerror or e}"))
            return
        started.set_result(runner.addresses[0][1])
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(runner.cleanup())
            loop.close()

    async def _close_sockets(self, app) -> None:
        for ws in list(self._sockets):
            await ws.close(code=1001, message=b"livematte stopped")

    # --- security ---

    def allowed_hosts(self) -> set[str]:
        """Host header values this server answers: the bound address and the loopback names, with the port."""
        bound = f"[{self.host}]" if ":" in self.host else self.host
        return {f"{name}:{self.port}".lower() for name in ("127.0.0.1", "localhost", bound)}

    @web.middleware
    async def guard(self, request: web.Request, handler):
        """Every request: the Host header is this server's (DNS rebinding), an Origin, when sent, is
        this server's, and the token comes in ``Authorization: Bearer`` (any method) or ``?token=``
        (GET only; never a cookie)."""
        allowed = self.allowed_hosts()
        if request.headers.get("Host", "").lower() not in allowed:
            return _error(403, f"Host {request.headers.get('Host', '')!r} is not this server's address")
        origin = request.headers.get("Origin")
        if origin is not None and origin.lower() not in {f"http://{host}" for host in allowed}:
            return _error(403, f"requests from {origin} are not allowed")
        token = None
        scheme, _, value = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            token = value.strip()
        elif request.method in ("GET", "HEAD"):
            token = request.query.get("token")
        if not token:
            where = "?token= or " if request.method in ("GET", "HEAD") else ""
            return _error(401, f"this needs the session's token: {where}Authorization: Bearer TOKEN",
                          headers={"WWW-Authenticate": "Bearer"})
        if not secrets.compare_digest(token.encode(), self.token.encode()):
            return _error(403, "wrong token")
        return await handler(request)

    # --- pages ---

    async def _page(self, request: web.Request) -> web.Response:
        name = "index.html" if request.path == "/" else "overlay.html"
        return web.Response(text=self._assets[name].replace("{{token}}", self.token), content_type="text/html",
                            headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"})

    async def _asset(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in self._assets or name.endswith(".html"):
            return _error(404, f"no asset {name!r}")
        return web.Response(text=self._assets[name], content_type=CONTENT_TYPES[os.path.splitext(name)[1]])

    # --- API ---

    async def _get_state(self, request: web.Request) -> web.Response:
        return web.json_response(self.control.state())

    async def _post_state(self, request: web.Request) -> web.Response:
        if (request.content_length or 0) > MAX_STATE_BYTES:
            return _error(413, f"the body is {request.content_length:,} bytes, over the {MAX_STATE_BYTES:,} "
                               "allowed here")
        body = bytearray()  # read up to one byte past the limit: a chunked body has no length to check first
        while len(body) <= MAX_STATE_BYTES and (part := await request.content.read(MAX_STATE_BYTES + 1 - len(body))):
            body += part
        if len(body) > MAX_STATE_BYTES:
            return _error(413, f"the body is over the {MAX_STATE_BYTES:,} bytes allowed here")
        try:
            changes = json.loads(body)
        except RecursionError:  # the parser recurses once per level of [ or {
            return _error(400, "malformed JSON: nested too deeply")
        except (ValueError, UnicodeDecodeError) as e:
            return _error(400, f"malformed JSON: {e}")
        return await self._apply(self.control.update, changes)

    async def _options(self, request: web.Request) -> web.Response:
        return web.json_response(self.control.options())

    async def _upload(self, request: web.Request) -> web.Response:
        if (request.content_length or 0) > MAX_UPLOAD_BYTES:
            return _error(413, f"the picture is {request.content_length:,} bytes, over the {MAX_UPLOAD_BYTES:,} allowed")
        try:
            data = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return _error(413, f"the picture is over the {MAX_UPLOAD_BYTES:,} bytes allowed")
        return await self._apply(self.control.upload, data, request.query.get("name", "upload"))

    async def _apply(self, change, *args) -> web.Response:
        """``change(*args)`` off the event loop (loading a picture takes a while) -> the new state, or its error."""
        try:
            return web.json_response(await asyncio.get_running_loop().run_in_executor(None, change, *args))
        except RequestError as e:
            return _error(e.status, str(e))

    async def _frame_png(self, request: web.Request) -> web.Response:
        latest = self.control.latest()
        if latest is None:
            return _error(503, "no frame yet")
        picture = latest[1]

        def encode() -> bytes:
            bgra = picture if picture.shape[2] == 4 else cv2.cvtColor(picture, cv2.COLOR_BGR2BGRA)
            return cv2.imencode(".png", bgra, [cv2.IMWRITE_PNG_COMPRESSION, 1])[1].tobytes()

        body = await asyncio.get_running_loop().run_in_executor(None, encode)
        return web.Response(body=body, content_type="image/png", headers={"Cache-Control": "no-store"})

    async def _stats(self, request: web.Request) -> web.Response:
        figures = self.stats.snapshot()
        figures["web"] = self._encoder.figures() if self._encoder is not None else {}
        return web.json_response(figures)

    # --- frames ---

    def _from_encoder(self, kind: str, message: bytes) -> None:
        """On the encoder's thread: hand the message to the loop's thread."""
        self._loop.call_soon_threadsafe(self._arrived, kind, message)

    def _arrived(self, kind: str, message: bytes) -> None:
        number = self._latest.get(kind, (0, b""))[0] + 1
        self._latest[kind] = (number, message)
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        kind = request.query.get("kind", "overlay")
        if kind not in KINDS:
            return _error(400, f"kind got {kind!r}, expected {' or '.join(KINDS)}")
        ws = web.WebSocketResponse(heartbeat=10.0)
        await ws.prepare(request)
        self._sockets.add(ws)
        self._encoder.watch(kind, +1)
        sender = asyncio.create_task(self._send_frames(ws, kind))
        try:
            async for message in ws:  # the page sends nothing; this reads its close
                if message.type == WSMsgType.ERROR:
                    break
        finally:
            sender.cancel()
            self._encoder.watch(kind, -1)
            self._sockets.discard(ws)
        return ws

    async def _send_frames(self, ws: web.WebSocketResponse, kind: str) -> None:
        """The newest message of ``kind`` each time one arrives; a slow client skips the ones it missed."""
        sent = self._latest.get(kind, (0, b""))[0]  # start with the next frame, not a stale one
        try:
            while not ws.closed:
                number, message = self._latest.get(kind, (0, b""))
                if number == sent:
                    await self._changed.wait()
                    continue
                await ws.send_bytes(message)
                sent = number
        except (ConnectionError, RuntimeError):  # the client went away mid-send
            await ws.close()


def _error(status: int, message: str, headers: dict | None = None) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers)
