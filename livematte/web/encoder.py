"""The frames the web page streams: their message format and the thread that encodes them.

A frame message is binary: a little-endian uint32 N, then N bytes of JPEG colour, then
(when the picture has transparency) a JPEG of the alpha as grey, the same size. Kind
``overlay`` is the person, full size; ``preview`` the composite, at most ``PREVIEW_WIDTH`` wide.

:class:`Encoder` encodes on its own thread, only while a client watches, once per new frame
(so at most at the output rate), newest frame wins.
"""

from __future__ import annotations

import logging
import struct
import threading
import time

import cv2
import numpy as np

from ..frames import alpha_to_u8
from ..runtime.workers import lower_priority
from .control import LiveControl

log = logging.getLogger(__name__)

KINDS = ("overlay", "preview")
PREVIEW_WIDTH = 640
JPEG_QUALITY = {"colour": 85, "alpha": 90, "preview": 75}
NICE = 10  # the web threads' niceness: under contention the live path's threads go first


def _jpeg(image: np.ndarray, quality: int) -> bytes:
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return data.tobytes()


def encode_frame(kind: str, picture: np.ndarray, matted) -> bytes:
    """One frame message (see the module docstring) of ``kind`` for the composite ``picture``
    (``uint8 [H, W, 3|4]`` BGR(A)) and its Matted."""
    if kind == "overlay":  # the person's own colours over their matte, whatever the background
        person = matted.frame.image if matted.foreground is None else matted.foreground
        colour, alpha = _jpeg(person, JPEG_QUALITY["colour"]), _jpeg(alpha_to_u8(matted.alpha), JPEG_QUALITY["alpha"])
    else:
        height, width = picture.shape[:2]
        if width > PREVIEW_WIDTH:
            picture = cv2.resize(picture, (PREVIEW_WIDTH, round(height * PREVIEW_WIDTH / width)),
                                 interpolation=cv2.INTER_AREA)
        colour = _jpeg(np.ascontiguousarray(picture[:, :, :3]), JPEG_QUALITY["preview"])
        alpha = _jpeg(np.ascontiguousarray(picture[:, :, 3]), JPEG_QUALITY["alpha"]) if picture.shape[2] == 4 else b""
    return struct.pack("<I", len(colour)) + colour + alpha


class Encoder:
    """Encodes the newest published frame for each kind a client watches, on its own thread.

    ``deliver(kind, message)`` is called with each message, on the encoder's thread. Figures:
    frames encoded and the thread's CPU ms per frame, for ``/api/stats``.
    """

    def __init__(self, control: LiveControl, deliver):
        self._control, self._deliver = control, deliver
        self._watchers = {kind: 0 for kind in KINDS}
        self._refresh = False
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.frames = 0
        self.cpu_ms = 0.0
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="livematte-web-encoder", daemon=True)
        self._thread.start()

    def watch(self, kind: str, change: int) -> None:
        """A client of ``kind`` came (+1) or went (-1); one that comes gets the newest frame
        at once, even while the run is paused."""
        with self._lock:
            self._watchers[kind] += change
            self._refresh = self._refresh or change > 0

    def watched(self) -> list[str]:
        with self._lock:
            return [kind for kind, count in self._watchers.items() if count > 0]

    def figures(self) -> dict:
        with self._lock:
            return {"clients": dict(self._watchers), "frames_encoded": self.frames,
                    "encode_cpu_ms_per_frame": round(self.cpu_ms / self.frames, 2) if self.frames else None,
                    "error": None if self.error is None else str(self.error)}

    def close(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        lower_priority(NICE)
        seen = 0
        try:
            while not self._stop.is_set():
                kinds = self.watched()
                if not kinds:  # nobody watches: nothing is encoded
                    self._stop.wait(0.05)
                    continue
                with self._lock:
                    if self._refresh:
                        seen, self._refresh = 0, False
                latest = self._control.wait_newer(seen, timeout=0.25)
                if latest is None:
                    continue
                seen, picture, matted = latest
                start = time.thread_time()
                for kind in kinds:
                    self._deliver(kind, encode_frame(kind, picture, matted))
                with self._lock:
                    self.frames += 1
                    self.cpu_ms += (time.thread_time() - start) * 1e3
        except BaseException as e:  # noqa: BLE001 -- reported by /api/stats and the log; the live run goes on
            self.error = e
            log.error("web: frame encoder stopped: %s", e)
