"""Backgrounds: what a background SPEC names, and the picture each puts behind a frame.

A background SPEC is one of:
- ``PATH`` or ``URL``: an image (cover-fit to the frame) or a video (looped), refused from its
  header when its pictures are over the pixel limit (:mod:`livematte.media.image_header`);
- one of the named :data:`KINDS`, ``name[:argument]``:
  ``color:COLOUR`` a solid colour (:mod:`livematte.compose.colors`: ``#RRGGBB``, ``#RGB`` or a
  CSS name); ``key[:COLOUR]`` a key colour for chroma keying downstream (``#00FF00`` by
  default); ``blur[:N]`` the frame's own background blurred, N = strength 1..100 (default 25);
  ``transparent`` (or ``none``) no background: the output carries the matte as alpha.

The named kinds are listed once, here: the command line's help, the web page's choices and the
preview's ``b`` key all read :data:`KINDS`. A new kind is one entry there and its class.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from ..errors import LivematteError
from ..frames import halved
from ..media import image_header, images as image_files, net
from .colors import parse_color

KEY_GREEN = (0, 255, 0)  # BGR: the key's colour when the SPEC names none


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
    """Produces the picture behind a frame."""

    spec: str = ""

    def render(self, image: np.ndarray, pts: float, alpha: np.ndarray | None = None) -> np.ndarray | None:
        """The picture behind frame ``image`` (``uint8 [H, W, 3]`` BGR) at ``pts`` seconds: a
        ``uint8 [H, W, 3]`` BGR picture of the frame's size, or None for transparent.

        alpha: the frame's matte, ``float32 [H, W]`` in [0, 1] (1: the person), or None when none
        is known (the whole frame is background). Only a background made from the frame itself
        (``blur``) reads it, to leave the person out.
        """
        raise NotImplementedError

    def close(self) -> None:
        pass


class Transparent(Background):
    spec = "transparent"

    def render(self, image, pts, alpha=None):
        return None


class _SizedCache(Background):
    """A background whose picture depends only on the frame size: built once per size."""

    def __init__(self):
        self._cached: np.ndarray | None = None

    def render(self, image, pts, alpha=None):
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
    """The frame's own background, blurred, with the person left out.

    Given the frame's matte, the person is masked out by a normalised convolution,
    ``blur(w * I) / blur(w)``, on the eighth-size copy the blur works on: ``w`` is
    ``1 - 2 * (the matte's mean over each cell)``, at least 0, so the blur beside the person is
    the wall's, not the person's colours spread outwards (an aura). Where no background lies
    within the blur's reach (deep inside a large person) the floor on ``w`` makes it the plain
    blur: finite, and behind the person. Given no matte, the whole frame is blurred.
    """

    _FLOOR = 1e-3  # the least weight a pixel has: the plain blur where no background is near

    def __init__(self, strength: int, spec: str):
        if not 1 <= strength <= 100:
            raise LivematteError(f"blur strength {strength} out of range, expected 1..100")
        self.strength, self.spec = strength, spec

    def render(self, image, pts, alpha=None):
        # Blur an eighth-size copy: a wide Gaussian at full size costs many times more and
        # looks the same once it is this soft (README: Measurements behind the code).
        h, w = image.shape[:2]
        small = halved(image, 3)  # an eighth
        if alpha is None:
            weight = np.ones(small.shape[:2], np.float32)
        else:
            # An eighth-size cell's colour mixes the person's in as much as the matte covers it:
            # a cell half person or more counts for nothing, a partly covered one for less.
            cover = halved(alpha, 3)
            weight = np.clip(1.0 - 2.0 * cover, 0.0, 1.0) + self._FLOOR
        sigma = self.strength / 8.0
        weighted = cv2.GaussianBlur(small * weight[..., None], (0, 0), sigmaX=sigma, sigmaY=sigma)
        total = cv2.GaussianBlur(weight, (0, 0), sigmaX=sigma, sigmaY=sigma)
        small = cv2.divide(weighted, cv2.merge([total] * 3), dtype=cv2.CV_8U)  # rounded, within 0..255
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

    def render(self, image, pts, alpha=None):
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


@dataclass(frozen=True)
class Kind:
    """A named kind of background SPEC, ``name[:argument]``.

    syntax: how help texts write it, with ``{colour}`` where a colour goes. build: (argument,
    the whole SPEC) -> the Background. argument: whether it takes one (``transparent:x`` is
    no transparent, but a file name). still: offered for stills (``image --background``).
    cycle: the SPEC the preview window's ``b`` key cycles through, or None.
    """

    name: str
    syntax: str
    build: Callable[[str, str], Background]
    aliases: tuple[str, ...] = ()
    argument: bool = True
    still: bool = True
    cycle: str | None = None


def _blur(argument: str, spec: str) -> Blur:
    try:
        strength = int(argument) if argument else 25
    except ValueError as e:
        raise LivematteError(f"bad blur strength {argument!r}, expected an integer 1..100") from e
    return Blur(strength, spec)


KINDS = (
    Kind("color", "color:{colour}", lambda argument, spec: SolidColor(parse_color(argument), spec),
         aliases=("colour",)),
    Kind("key", "key[:{colour}]", lambda argument, spec: SolidColor(parse_color(argument) if argument else KEY_GREEN,
                                                                  spec),
         still=False, cycle="key:#00FF00"),
    Kind("blur", "blur[:N]", _blur, cycle="blur:25"),
    Kind("transparent", "transparent", lambda argument, spec: Transparent(), aliases=("none",), argument=False,
         cycle="transparent"),
)
_BY_NAME = {name: kind for kind in KINDS for name in (kind.name, *kind.aliases)}
TRANSPARENT = _BY_NAME["transparent"]


def kind_of(spec: str) -> Kind | None:
    """The named kind ``spec`` starts with (``blur:5`` -> blur), or None (a file, a URL)."""
    return _BY_NAME.get(str(spec).strip().partition(":")[0].lower())


def is_transparent(spec: str) -> bool:
    """Whether ``spec`` is the transparent background (``transparent``, ``none``, any case)."""
    name, colon, _ = str(spec).strip().partition(":")
    return _BY_NAME.get(name.lower()) is TRANSPARENT and not colon


def describe(colour: str = "#RRGGBB", *, still: bool = False, last: str = ", ") -> str:
    """The named kinds as help texts list them: ``color:#RRGGBB, key[:#RRGGBB], blur[:N], transparent``
    (``still``: those offered for stills; ``last``: what joins the last one, e.g. " or ")."""
    syntaxes = [kind.syntax.format(colour=colour) for kind in KINDS if kind.still or not still]
    return ", ".join(syntaxes[:-1]) + last + syntaxes[-1]


def syntax_of(name: str, colour: str = "#RRGGBB") -> str:
    """How help texts write the kind called ``name``: ``key[:#RRGGBB]``."""
    return _BY_NAME[name].syntax.format(colour=colour)


def preview_cycle(configured: str) -> list[str]:
    """The SPECs the preview's ``b`` key steps through: the configured one, then each kind's."""
    return list(dict.fromkeys([configured, *(kind.cycle for kind in KINDS if kind.cycle)]))


def parse_background(spec: str) -> Background:
    """A background SPEC (see the module docstring) -> a Background, or a clear error."""
    text = str(spec).strip()
    name, colon, argument = text.partition(":")
    kind = _BY_NAME.get(name.lower())
    if kind is not None and (kind.argument or not argument):
        return kind.build(argument, text)
    if not text:
        raise LivematteError("empty background spec")
    if net.is_url(text):
        return StillImage(text)
    # os.path's expanduser leaves ~user of an unknown user as it is (pathlib's raises RuntimeError).
    path = Path(os.path.expanduser(text))
    if not path.is_file():
        raise LivematteError(f"background {text!r} is not a file nor one of {describe('COLOUR')} "
                             "(COLOUR: #RRGGBB, #RGB or a CSS name such as red)")
    from ..media.reading import VIDEO_SUFFIXES  # here, not at the top: PyAV costs 0.1 s to import

    if path.suffix.lower() in VIDEO_SUFFIXES:
        return LoopingVideo(str(path))
    return StillImage(str(path))


