"""Backgrounds and the blend that puts the person in front of one.

A background SPEC is one of:
- ``PATH`` or ``URL``: an image (cover-fit to the frame) or a video (looped), refused from its
  header when its pictures are over the pixel limit (:mod:`livematte.media.image_header`);
- ``color:COLOUR``: a solid colour, ``#RRGGBB``, ``#RGB`` or a CSS name (``red``);
- ``key[:COLOUR]``: a key colour for chroma keying downstream (``#00FF00`` by default);
- ``blur[:N]``: the frame's own background blurred, N = strength 1..100 (default 25);
- ``transparent`` (or ``none``): no background; the output carries the matte as alpha.

The person's colours are the estimated foreground (:mod:`livematte.matte.foreground`) when the
engine gives one, so no old background comes along at soft edges; a transparent output
carries those colours with straight (not premultiplied) alpha, the convention of PNG, WebM
and ProRes 4444.
"""

from __future__ import annotations

import difflib
import os
import string
import threading
from pathlib import Path

import cv2
import numpy as np

from ..matte import edges
from ..media import images as image_files, image_header, net
from .colors import CSS_COLORS
from ..errors import LivematteError
from ..frames import alpha_to_u8

KEY_GREEN = (0, 255, 0)  # BGR


def parse_color(text: str) -> tuple[int, int, int]:
    """``#RRGGBB`` (the ``#`` optional), ``#RGB`` or a CSS colour name (``red``, ``rebeccapurple``;
    any case) -> (B, G, R), or a LivematteError that suggests the closest name."""
    name = text.strip().lower()
    digits = CSS_COLORS.get(name) or name.removeprefix("#")
    if len(digits) == 3 and name.startswith("#"):  # without the "#", three letters may be a typo'd name
        digits = "".join(c * 2 for c in digits)
    if len(digits) != 6 or any(c not in string.hexdigits for c in digits):
        raise LivematteError(f"bad colour {text!r}, expected #RRGGBB, #RGB or a CSS colour name{color_hint(text)}")
    r, g, b = (int(digits[i:i + 2], 16) for i in (0, 2, 4))
    return b, g, r


def color_hint(text: str) -> str:
    """`` (did you mean NAME?)`` for the CSS colour name closest to ``text``, or ""."""
    close = difflib.get_close_matches(text.strip().lower(), CSS_COLORS, n=1)
    return f" (did you mean {close[0]}?)" if close else ""


def cover_fit(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """Scale ``image`` to cover ``width`` x ``height`` and crop the centre, like CSS ``cover``."""
    h, w = image.shape[:2]
    if (w, h) == (width, height):
        return image
    scale = max(width / w, height / h)
    new_w, new_h = max(width, round(w * scale)), max(height, round(h * scale))
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    resized = cv2.resize(image, (new_w, new_h), interpolation=interpolation)
    x, y = (new_w - width) // 2, (new_h - height) // 2
    return np.ascontiguousarray(resized[y:y + height, x:x + width])


class Background:
    """Produces the ``uint8 [H, W, 3]`` BGR picture behind frame ``image``; None means transparent."""

    spec: str = ""

    def render(self, image: np.ndarray, pts: float) -> np.ndarray | None:
        raise NotImplementedError

    def close(self) -> None:
        pass


class Transparent(Background):
    spec = "transparent"

    def render(self, image, pts):
        return None


class _SizedCache(Background):
    """A background whose picture depends only on the frame size: built once per size."""

    def __init__(self):
        self._cached: np.ndarray | None = None

    def render(self, image, pts):
        h, w = image.shape[:2]
        if self._cached is None or self._cached.shape[:2] != (h, w):
            self._cached = self.build(w, h)
        return self._cached

    def build(self, width: int, height: int) -> np.ndarray:
        raise NotImplementedError


class SolidColor(_SizedCache):
    def __init__(self, bgr: tuple[int, int, int], spec: str):
        super().__init__()
        self.bgr, self.spec = bgr, spec

    def build(self, width, height):
        return np.full((height, width, 3), self.bgr, np.uint8)


class StillImage(_SizedCache):
    def __init__(self, source: str):
        super().__init__()
        self.spec = source
        self.picture = image_files.read(source)

    def build(self, width, height):
        return cover_fit(self.picture, width, height)


class Blur(Background):
    def __init__(self, strength: int, spec: str):
        if not 1 <= strength <= 100:
            raise LivematteError(f"blur strength {strength} out of range, expected 1..100")
        self.strength, self.spec = strength, spec

    def render(self, image, pts):
        # Blur an eighth-size copy: a wide Gaussian at full 720p costs ~20x more
        # and looks the same once it is this soft (1 ms instead of 20 at 720p).
        h, w = image.shape[:2]
        small = cv2.resize(image, (max(1, w // 8), max(1, h // 8)), interpolation=cv2.INTER_AREA)
        sigma = self.strength / 8.0
        small = cv2.GaussianBlur(small, (0, 0), sigmaX=sigma, sigmaY=sigma)
        return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


class LoopingVideo(Background):
    """A video file played in a loop, in step with the foreground's timestamps, decoded as it plays.

    ``render(image, pts)`` (pts in seconds) gives frame ``int(pts * fps) % N`` of the file's N
    frames, cover-fitted to ``image``'s size: ``uint8 [H, W, 3]`` BGR. ``fps`` is the stream's
    average rate (25 when it states none). Rendering decodes forward from the frame shown last,
    and reopens the file when the loop wraps or pts go back (a restarted source). Memory does
    not grow with the video's length: it holds one decoded frame and one fitted copy.

    The constructor decodes the file once through (nothing kept) to learn N, on the thread
    that builds the background (the watcher's, for a switch): so the output thread never
    decodes more than the frames it shows, even when the first pts is far past the end, and
    a damaged file is refused here instead of failing mid-run. Render and close on one
    thread (the compositor's output thread).
    """

    def __init__(self, path: str):
        self.spec = path
        self.fps = 25.0
        self._container = self._decoder = None
        self._frame = None  # the current decoded frame (av.VideoFrame), number ``_index`` of the file
        self._index = -1
        self._fitted: np.ndarray | None = None  # ``_frame`` cover-fitted to the size last asked for
        self._open()
        while self._advance():
            pass
        self.length = self._index + 1  # N, the frames in one loop
        self._open()

    def render(self, image, pts):
        if self._container is None:
            raise ValueError(f"background video {self.spec} is closed")
        self._go_to(int(pts * self.fps))
        h, w = image.shape[:2]
        if self._fitted is None or self._fitted.shape[:2] != (h, w):
            self._fitted = cover_fit(self._frame.to_ndarray(format="bgr24"), w, h)
        return self._fitted

    def close(self) -> None:
        """Release the file (idempotent); rendering afterwards raises ValueError."""
        container, self._container = self._container, None
        self._decoder = self._frame = self._fitted = None
        if container is not None:
            container.close()

    def _go_to(self, count: int) -> None:
        """Make the current frame number ``count`` (any integer) of the endless loop."""
        while True:
            target = count % self.length
            if target < self._index:
                self._open()  # the loop wrapped or the source restarted: back to frame 0
            if target == self._index:
                return
            if not self._advance():  # the file was made shorter on disk since it was measured
                self.length = self._index + 1

    def _open(self) -> None:
        """(Re)open the file with its first frame decoded; any failure closes it and names it."""
        import av  # here, not at the top: PyAV costs 0.1 s to import

        self.close()
        try:
            self._container = av.open(self.spec)
        except (av.FFmpegError, OSError) as e:
            raise LivematteError(f"cannot read background video {self.spec}: {_reason(e)}") from e
        if not self._container.streams.video:
            self.close()
            raise LivematteError(f"background video {self.spec} has no video stream")
        stream = self._container.streams.video[0]
        try:  # the stream's header gives the size: a frame over the pixel limit is never decoded
            image_header.check(stream.codec_context.width, stream.codec_context.height,
                               f"background video {self.spec}")
        except LivematteError:
            self.close()
            raise
        self.fps = float(stream.average_rate or 25)
        self._decoder, self._index = self._container.decode(stream), -1
        if not self._advance():
            self.close()
            raise LivematteError(f"background video {self.spec} has no frames")

    def _advance(self) -> bool:
        """Decode the next frame into ``_frame``; False at the end of the file."""
        import av

        try:
            frame = next(self._decoder, None)
        except av.FFmpegError as e:
            self.close()
            raise LivematteError(f"cannot decode background video {self.spec}: {_reason(e)}") from e
        if frame is None:
            return False
        # Only the frame that is shown gets converted to BGR (in render); skipped ones stay YUV.
        self._frame, self._index, self._fitted = frame, self._index + 1, None
        return True


def _reason(error: Exception) -> str:
    """An FFmpeg or OS error -> its one-line cause."""
    return str(getattr(error, "strerror", None) or error)


def parse_background(spec: str) -> Background:
    """A background SPEC (see the module docstring) -> a Background, or a clear error."""
    text = str(spec).strip()
    kind, _, argument = text.partition(":")
    kind = kind.lower()
    if kind in ("transparent", "none") and not argument:
        return Transparent()
    if kind in ("color", "colour"):
        return SolidColor(parse_color(argument), text)
    if kind == "key":
        return SolidColor(parse_color(argument) if argument else KEY_GREEN, text)
    if kind == "blur":
        try:
            strength = int(argument) if argument else 25
        except ValueError as e:
            raise LivematteError(f"bad blur strength {argument!r}, expected an integer 1..100") from e
        return Blur(strength, text)
    if not text:
        raise LivematteError("empty background spec")
    if net.is_url(text):
        return StillImage(text)
    # os.path's expanduser leaves ~user of an unknown user as it is (pathlib's raises RuntimeError).
    path = Path(os.path.expanduser(text))
    if not path.is_file():
        raise LivematteError(
            f"background {text!r} is not a file nor one of color:COLOUR, key[:COLOUR], blur[:N], transparent "
            "(COLOUR: #RRGGBB, #RGB or a CSS name such as red)")
    from ..media.reading import VIDEO_SUFFIXES  # here, not at the top: PyAV costs 0.1 s to import

    if path.suffix.lower() in VIDEO_SUFFIXES:
        return LoopingVideo(str(path))
    return StillImage(str(path))


class Compositor:
    """Blends frames over a background that other threads may replace while it runs.

    One thread, the output thread, calls :meth:`composite` and owns ``background``.
    :meth:`set_background` only leaves the new one pending; the next ``composite`` swaps it
    in and closes the old one, so no background is closed while it renders.
    """

    def __init__(self, background: Background, light_wrap: float = 0.0):
        self.background = background
        self.light_wrap = light_wrap  # 0..1: the new background's light on the edge (edges.light_wrap)
        self._pending: Background | None = None  # handed over, not yet swapped in
        self._closed = False
        self._lock = threading.Lock()

    @property
    def transparent(self) -> bool:
        """Whether the next frame comes out with alpha (BGRA): its background is transparent."""
        with self._lock:
            upcoming = self.background if self._pending is None else self._pending
        return isinstance(upcoming, Transparent)

    def set_background(self, background: Background) -> None:
        """Hand over ``background`` from any thread; the next :meth:`composite` uses it.

        The compositor owns it from here on and closes it when it is replaced or closed.
        """
        with self._lock:
            if self._closed:
                unused = background
            else:
                unused, self._pending = self._pending, background
        if unused is not None:  # never rendered, so no other thread can be using it
            unused.close()

    def composite(self, image: np.ndarray, alpha: np.ndarray, pts: float = 0.0,
                  colours: np.ndarray | None = None) -> np.ndarray:
        """``uint8 [H, W, 3]`` BGR frame + ``float32 [H, W]`` alpha (0..1) at ``pts`` seconds
        -> the output picture. ``colours``: the person's estimated colours (``uint8 [H, W, 3]``
        BGR, straight), blended instead of the frame's own; the frame (a blur background's
        source) is still ``image``.

        Returns ``uint8 [H, W, 3]`` BGR, or ``uint8 [H, W, 4]`` BGRA (straight alpha) when transparent.
        """
        with self._lock:
            incoming, self._pending = self._pending, None
        if incoming is not None:
            self.background.close()
            self.background = incoming
        behind = self.background.render(image, pts)
        person = image if colours is None else colours
        if behind is None:
            return np.dstack([person, alpha_to_u8(alpha)])
        picture = blend(person, behind, alpha)
        if self.light_wrap > 0:
            picture = edges.light_wrap(picture, behind, alpha, self.light_wrap)
        return picture

    def close(self) -> None:
        """Close the current and any pending background, once the last ``composite`` returned.

        A background handed over afterwards is closed at once.
        """
        with self._lock:
            self._closed = True
            pending, self._pending = self._pending, None
        if pending is not None:
            pending.close()
        self.background.close()


def blend(foreground: np.ndarray, background: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """``a * fg + (1 - a) * bg`` on uint8 BGR images (``[H, W, 3]``, ``alpha`` ``float32 [H, W]`` in
    [0, 1]) -> a new ``uint8 [H, W, 3]``; ~10x faster than numpy float maths.

    Only the box around the pixels with ``a > 0`` is blended; the rest is the background as it is
    (the same values ``cv2.blendLinear`` gives there). A talking head's box is about half a 720p
    frame: on s18's mattes 2.9 ms a frame against 3.9 ms for the whole frame (medians, one core
    of the AVX2 machine).
    """
    alpha = np.ascontiguousarray(alpha, dtype=np.float32)
    box = _support_box(alpha)
    if box is None:
        return background.copy()
    (y0, y1), (x0, x1) = box
    if (y1 - y0) * (x1 - x0) == alpha.size:
        return cv2.blendLinear(foreground, background, alpha, 1.0 - alpha)
    picture = background.copy()
    inside = alpha[y0:y1, x0:x1]
    picture[y0:y1, x0:x1] = cv2.blendLinear(foreground[y0:y1, x0:x1], background[y0:y1, x0:x1], inside, 1.0 - inside)
    return picture


def _support_box(alpha: np.ndarray) -> tuple[tuple[int, int], tuple[int, int]] | None:
    """The rows and columns, ``((y0, y1), (x0, x1))`` end-exclusive, that hold every pixel of
    ``alpha`` (``float32 [H, W]``, >= 0) above 0; None when there is none. Found on an area
    average at an eighth of the size (0.3 ms at 720p; any pixel above 0 keeps its cell above
    0), so the box can be up to a cell wider than the pixels' own."""
    height, width = alpha.shape
    small_w, small_h = max(1, width // 8), max(1, height // 8)
    small = cv2.resize(alpha, (small_w, small_h), interpolation=cv2.INTER_AREA)
    ys, xs = np.nonzero(small > 0)
    if not len(xs):
        return None
    # Cell i covers the pixels [i * W / w, (i + 1) * W / w): rounded outwards.
    return ((ys.min() * height // small_h, -(-(ys.max() + 1) * height // small_h)),
            (xs.min() * width // small_w, -(-(xs.max() + 1) * width // small_w)))
