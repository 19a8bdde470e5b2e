"""Frame sources: cameras and video files (or stream URLs), each read on its own thread.

A source yields ``(image, pts)`` pairs: ``uint8 [H, W, 3]`` BGR and seconds on
the source's timeline. ``live`` sources (cameras, files played with
``realtime=True``) are read at their own pace and hand over through a
newest-wins slot, so a slow model never sees a stale frame; other sources block
on a bounded queue, so every frame is processed. A ``mirror``ed source flips each frame
left to right as it is read, so the matte and the composite follow the flipped picture.
"""

from __future__ import annotations

import logging
import time
from typing import Callable, Iterator

import cv2
import numpy as np

from .cameras import list_cameras, quiet_opencv, why_not_opened
from ..config import CaptureSettings
from ..errors import LivematteError

log = logging.getLogger(__name__)


class FileSource:
    """A video file or stream URL, decoded with PyAV, opened once.

    The reader opened here describes the input (``info``) and decodes its frames later, so a
    URL is one connection. ``audio`` is that same reader's :class:`~livematte.media.audio.AudioFeed`
    (every audio stream; None when the file has no audio): give it to the output file's writer,
    which takes the packets the reader demuxes along with the frames. Unclaimed, it holds at most
    ``AudioFeed.CAPACITY_BYTES``. ``frames()`` is one pass; a second call (a caller looping
    the file) opens the file again, without audio.

    ``strict``: a file that turns out truncated part-way is an error (for processing a whole
    file), not a warning (for playing it like a camera). Either way a damaged stretch inside
    it is skipped, with one warning counting the frames lost (as FFmpeg does).
    ``loop``: play it over and over, the pts running on (a camera that never ends; the audio
    goes along the first time only).
    ``on_decode``: called with each frame's decode time in ms (benchmarks).
    ``mirror``: each frame flipped left to right.

    Played as a camera (``realtime``), the file is decoded on the thread that reads it, as a
    camera's frames are: its CPU is then the capture thread's, which the live governor counts as
    the matte's (FFmpeg's own decoding threads are no thread of the run's, and 3-10 ms a 720p
    frame went uncounted), and no frame waits in a decoding thread's queue.
    """

    def __init__(self, path: str, *, realtime: bool = False, strict: bool = False, loop: bool = False,
                 on_decode: Callable[[float], None] | None = None, mirror: bool = False):
        from ..media.reading import VideoReader

        self.path = path
        self.strict = strict
        self.loop = loop
        self.on_decode = on_decode
        self.mirror = mirror
        self._threads = 1 if realtime else None
        self._reader = VideoReader(path, strict=strict, audio=True, threads=self._threads)
        self._played = False
        self.info = self._reader.info
        self.audio = self._reader.audio
        self.width, self.height = self.info.width, self.info.height
        self.fps = self.info.fps or 30.0
        self.live = realtime
        self.name = f"{path} (looped)" if loop else str(path)

    def frames(self) -> Iterator[tuple[np.ndarray, float]]:
        """``(image, pts)``: ``uint8 [H, W, 3]`` BGR upright, pts in seconds on the file's timeline
        (looped: each pass starts one frame period after the last one ended)."""
        frames = self._passes()
        if self.mirror:
            frames = _mirrored(frames)
        if self.on_decode is not None:
            frames = _timed(frames, self.on_decode)
        return _paced(frames) if self.live else frames

    def _passes(self) -> Iterator[tuple[np.ndarray, float]]:
        next_start = None  # looped: where the next pass's first frame goes, seconds
        while True:
            shift, last = 0.0, None
            for image, pts in self._one_pass():
                if last is None and next_start is not None:
                    shift = next_start - pts
                last = pts + shift
                yield image, last
            if not self.loop or last is None:
                return
            next_start = last + 1.0 / self.fps

    def _one_pass(self) -> Iterator[tuple[np.ndarray, float]]:
        from ..media.reading import VideoReader

        reader = VideoReader(self.path, strict=self.strict, threads=self._threads) if self._played else self._reader
        self._played = True
        try:
            yield from reader.frames()
        finally:
            if reader is not self._reader:
                reader.close()

    def capture_cost_ms(self, frames: int = 8) -> float:
        """The CPU ms a frame of this file takes to decode and convert (mirrored too, if so), the
        median of its first ``frames`` after the first (which pays for the decoder's start), read
        by a second reader so that no frame of the run is used up; 0.0 for a stream URL (that would
        be a second connection) or a file that does not open again. For the live governor's start
        (:meth:`~livematte.runtime.governor.Governor.calibrate`): on the composited clips this was
        3-10 ms of a core at 720p, beside a frame's 13-20 ms of matte work besides the model."""
        from ..media.net import is_url
        from ..media.reading import VideoReader

        if is_url(self.path):
            return 0.0
        try:
            reader = VideoReader(self.path, threads=self._threads)
        except LivematteError:
            return 0.0
        costs = []
        try:
            # The reader decoded its first frame on opening. The process's CPU: FFmpeg's decoding
            # threads, where it has them, count too.
            started = time.process_time()
            for index, (image, _) in enumerate(reader.frames()):
                if self.mirror:
                    image = cv2.flip(image, 1)
                now = time.process_time()
                costs.append((now - started) * 1e3)
                started = now
                if index >= frames:
                    break
        finally:
            reader.close()
        later = sorted(costs[1:] or costs)
        return later[len(later) // 2] if later else 0.0

    def close(self) -> None:
        """Close the input (idempotent); ``audio`` keeps what was demuxed for its writer."""
        self._reader.close()


def _timed(frames: Iterator, on_decode: Callable[[float], None]) -> Iterator:
    while True:
        started = time.perf_counter()
        try:
            item = next(frames)
        except StopIteration:
            return
        on_decode((time.perf_counter() - started) * 1e3)
        yield item


def _mirrored(frames: Iterator[tuple[np.ndarray, float]]) -> Iterator[tuple[np.ndarray, float]]:
    for image, pts in frames:
        yield cv2.flip(image, 1), pts


def _paced(frames: Iterator[tuple[np.ndarray, float]]) -> Iterator[tuple[np.ndarray, float]]:
    """Played as a camera: frame k is released at its pts after the first, whatever the
    consumer does, so a slow consumer drops frames."""
    start_wall = first_pts = None
    for image, pts in frames:
        if start_wall is None:
            start_wall, first_pts = time.perf_counter(), pts
        delay = start_wall + (pts - first_pts) - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        yield image, pts


class CameraSource:
    """A camera by index or device path, through OpenCV.

    When the camera stops delivering (unplugged, taken by another program) it is
    reopened with back-off (0.5 s doubling to 8 s) until it comes back or the
    pipeline stops; the output meanwhile repeats the last frame. ``settings.mirror`` flips
    each frame left to right. ``opener`` is the hardware boundary (``cv2.VideoCapture``); tests replace it.
    """

    live = True

    def __init__(self, device: int | str, settings: CaptureSettings, *,
                 opener: Callable = cv2.VideoCapture, max_backoff: float = 8.0,
                 should_stop: Callable[[], bool] = lambda: False):
        self.device, self.settings, self.opener = device, settings, opener
        self.max_backoff = max_backoff
        self.should_stop = should_stop
        self.name = f"camera {device}"
        self.reconnects = 0
        self._capture = self._open()
        if self._capture is None:
            raise LivematteError(f"cannot open {self.name}: {why_not_opened(device, list_cameras())}")
        self.width = int(self._capture.get(cv2.CAP_PROP_FRAME_WIDTH)) or settings.width
        self.height = int(self._capture.get(cv2.CAP_PROP_FRAME_HEIGHT)) or settings.height
        self.fps = float(self._capture.get(cv2.CAP_PROP_FPS)) or settings.fps

    def _open(self):
        with quiet_opencv():  # else each backend OpenCV tries logs its own failure
            capture = self.opener(self.device)
        if not capture.isOpened():
            capture.release()
            return None
        if self.settings.fourcc:
            # Before the size: V4L2 offers sizes per pixel format, so asking 1280x720 first
            # can settle on a raw format that only manages a few fps at that size.
            capture.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter_fourcc(*self.settings.fourcc))
        capture.set(cv2.CAP_PROP_FRAME_WIDTH, self.settings.width)
        capture.set(cv2.CAP_PROP_FRAME_HEIGHT, self.settings.height)
        capture.set(cv2.CAP_PROP_FPS, self.settings.fps)
        return capture

    def frames(self) -> Iterator[tuple[np.ndarray, float]]:
        start = time.perf_counter()
        first_backoff = min(0.5, self.max_backoff)
        backoff = first_backoff
        while not self.should_stop():
            ok, image = self._capture.read() if self._capture is not None else (False, None)
            if ok and image is not None and image.size:
                backoff = first_backoff
                image = _as_bgr(image)
                yield cv2.flip(image, 1) if self.settings.mirror else image, time.perf_counter() - start
                continue
            log.warning("%s stopped delivering frames; retrying in %.1f s", self.name, backoff)
            if self._capture is not None:
                self._capture.release()
            self._capture = None
            self._sleep(backoff)
            backoff = min(backoff * 2, self.max_backoff)
            self._capture = self._open()
            if self._capture is not None:
                self.reconnects += 1
                log.info("%s is back", self.name)

    def capture_cost_ms(self) -> float:
        """0.0: a camera is not read ahead of the run (it cannot be opened twice, and its first
        frames come at its own pace); its capture's cost is measured in the run's first window."""
        return 0.0

    def _sleep(self, seconds: float) -> None:
        end = time.perf_counter() + seconds
        while time.perf_counter() < end and not self.should_stop():
            time.sleep(0.05)

    def close(self) -> None:
        if self._capture is not None:
            self._capture.release()
            self._capture = None


def _as_bgr(image: np.ndarray) -> np.ndarray:
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    return image


def open_source(camera: str | None, source: str | None, realtime: bool, settings: CaptureSettings,
                should_stop: Callable[[], bool] = lambda: False, opener: Callable | None = None,
                loop: bool = False):
    """The ``live`` command's source: ``--camera N|/dev/videoN`` or ``--source PATH [--realtime] [--loop]``,
    flipped left to right when ``settings.mirror`` says so.

    ``opener`` replaces ``cv2.VideoCapture`` for cameras (None: the real one).
    """
    if source is not None:
        return FileSource(source, realtime=realtime, loop=loop, mirror=settings.mirror)
    device: int | str = int(camera) if camera is not None and str(camera).isdigit() else (camera or 0)
    return CameraSource(device, settings, opener=opener or cv2.VideoCapture, should_stop=should_stop)
