"""Video files in and out: decoding to upright BGR frames, encoding composites and mattes safely.

Reading: :func:`probe` and :class:`VideoReader` turn any file (or http(s) URL) FFmpeg can demux
into ``uint8 [H, W, 3]`` BGR pictures with their presentation times in seconds.

Writing: :class:`VideoWriter` (composites, optionally transparent, with the source's audio) and
:class:`AlphaWriter` (lossless mattes) write under a temporary name beside the target and move
the result into place only when :meth:`close` succeeds, so a crash or an interrupted run never
leaves a half-written file under the name the user asked for.
"""

from __future__ import annotations

import logging
import math
import operator
import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import av.error
import cv2
import numpy as np

from . import net
from .errors import LivematteError

log = logging.getLogger(__name__)

PathLike = str | os.PathLike

# Output kind by file extension; a path with no extension (or ending in "/") is a PNG folder.
OUTPUT_SUFFIXES = {".mp4": "mp4", ".m4v": "mp4", ".mkv": "mkv", ".webm": "webm", ".mov": "mov"}
OUTPUT_KINDS = ("mp4", "mkv", "webm", "mov", "png")
# File names taken for videos: batch folders, and backgrounds that play rather than stand still.
VIDEO_SUFFIXES = frozenset({".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v", ".mpg", ".mpeg", ".ts", ".flv",
                            ".wmv", ".gif"})
ALPHA_KINDS = ("mkv", "png")

# How far audio may run ahead of the latest video frame when interleaving, seconds.
AUDIO_LEAD_S = 0.1

_FRAME_NAME = re.compile(r"^\d{6}\.png$")
_MKV_DURATION = re.compile(r"^\d+:\d\d:\d\d(\.\d+)?$")  # the per-track DURATION tag
_CLOCKWISE = {90: cv2.ROTATE_90_CLOCKWISE, 180: cv2.ROTATE_180, 270: cv2.ROTATE_90_COUNTERCLOCKWISE}
# x264 preset names mapped onto libvpx's speed (cpu-used); above 5 libvpx wants the realtime deadline.
_VP9_SPEED = {"ultrafast": 8, "superfast": 8, "veryfast": 7, "faster": 6, "fast": 5,
              "medium": 4, "slow": 2, "slower": 1, "veryslow": 0, "placebo": 0}


@dataclass(frozen=True)
class _Kind:
    container: str  # FFmpeg muxer name
    codec: str
    pix_fmt: str
    alpha: bool
    even: bool  # the pixel format subsamples chroma 2x2 and the encoder rejects odd sizes
    tick: Fraction  # time base the muxer keeps anyway; finer ticks would only be rounded off
    audio_copy: frozenset[str]
    audio_codec: str


_KINDS = {
    "mp4": _Kind("mp4", "libx264", "yuv420p", False, True, Fraction(1, 90000),
                 frozenset({"aac", "mp3"}), "aac"),
    "mkv": _Kind("matroska", "libx264", "yuv420p", False, True, Fraction(1, 1000),
                 frozenset({"aac", "opus", "vorbis", "mp3", "flac", "ac3"}), "aac"),
    "webm": _Kind("webm", "libvpx-vp9", "yuva420p", True, False, Fraction(1, 1000),
                  frozenset({"opus", "vorbis"}), "libopus"),
    "mov": _Kind("mov", "prores_ks", "yuva444p10le", True, False, Fraction(1, 90000),
                 frozenset({"aac", "mp3", "alac"}), "aac"),
}
_AUDIO_FRAME_SIZE = {"aac": 1024, "libopus": 960}
_AUDIO_BIT_RATE = {"aac": 192_000, "libopus": 128_000}
_AAC_RATES = {96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000}


@dataclass(frozen=True)
class VideoInfo:
    """What :func:`probe` learns about a video file.

    width, height: the picture as displayed, i.e. after ``rotation``; pixels.
    fps: average frame rate, frames per second.
    rate: the same as an exact fraction (e.g. 30000/1001), for an encoder.
    frame_count: frames the container declares, or None when it does not say (Matroska).
    duration: seconds, or None when unknown.
    rotation: clockwise degrees (0, 90, 180 or 270) that turn the stored picture upright,
        from the stream's display matrix; :class:`VideoReader` applies it.
    has_audio: the file has at least one audio stream.
    codec: FFmpeg's name for the video codec, e.g. ``"h264"``.
    """

    width: int
    height: int
    fps: float
    rate: Fraction
    frame_count: int | None
    duration: float | None
    rotation: int
    has_audio: bool
    codec: str


# ---------------------------------------------------------------------------------------------
# Reading


def _open_input(source: PathLike) -> av.container.InputContainer:
    """Open a media file or http(s) URL, turning every failure into one line naming it."""
    name = str(source)
    if net.is_url(name):
        net.check_scheme(name)
    else:
        path = Path(name)
        if not path.exists():
            raise LivematteError(f"{name}: no such file")
        if path.is_dir():
            raise LivematteError(f"{name} is a folder, expected a video file")
        if path.stat().st_size == 0:
            raise LivematteError(f"{name} is empty")
    timeout = net.TIMEOUT_S if net.is_url(name) else None
    try:
        container = av.open(name, "r", timeout=timeout)
    except av.error.ExitError as e:  # PyAV's interrupt callback: the timeout ran out
        reason = f"no answer within {timeout:g} s" if timeout else e.strerror
        raise LivematteError(f"cannot open {name}: {reason}") from e
    except av.error.InvalidDataError as e:
        raise LivematteError(f"{name} is not a video file FFmpeg can read, or it is damaged or truncated") from e
    except PermissionError as e:
        raise LivematteError(f"cannot read {name}: permission denied") from e
    except (av.error.FFmpegError, OSError) as e:
        raise LivematteError(f"cannot open {name}: {getattr(e, 'strerror', None) or e}") from e
    # FFmpeg happily opens a single picture as a one-frame "video"; that is a user mix-up.
    if container.format.name == "image2" or container.format.name.endswith("_pipe"):
        container.close()
        raise LivematteError(f"{name} is a still image, not a video")
    return container


def _clockwise(frame: av.VideoFrame) -> int:
    """Clockwise degrees that make ``frame`` upright (PyAV reports counter-clockwise, +-180)."""
    return int(round(-frame.rotation / 90.0)) % 4 * 90


def _to_bgr(frame: av.VideoFrame) -> np.ndarray:
    """Decoded frame -> ``uint8 [h, w, 3]`` BGR as stored (not yet rotated)."""
    # Full-range ("JPEG") YUV without the yuvj pixel format is common from phones; without
    # the hint swscale would treat it as limited range and crush blacks and whites.
    if frame.color_range == 2:
        return frame.to_ndarray(format="bgr24", src_color_range=2)
    return frame.to_ndarray(format="bgr24")


class VideoReader:
    """Decodes one video file or http(s) URL into upright BGR frames.

    Opening reads the headers and decodes the first frame, so a file that cannot be read
    fails here with a :class:`LivematteError` naming it, before any work is done.
    ``info`` describes the video; :meth:`frames` yields every frame once, in order.

    A file that ends before its container says it should (a partial download, a damaged
    middle) is noticed once decoding stops: ``strict`` raises :class:`LivematteError`
    then, otherwise a warning is logged and the frames decoded so far are kept.
    """

    def __init__(self, path: PathLike, *, strict: bool = False):
        self.path = str(path)
        self.strict = strict
        self._stopped = False  # decoding failed part-way (already reported)
        self._container = _open_input(self.path)
        try:
            self._first, self.info = self._start()
        except BaseException:
            self._container.close()
            raise

    def _start(self) -> tuple[av.VideoFrame, VideoInfo]:
        container, name = self._container, self.path
        if not container.streams.video:
            what = "audio only, " if container.streams.audio else ""
            raise LivematteError(f"{name} has no video stream ({what}nothing to matte)")
        stream = container.streams.video[0]
        if stream.codec_context is None:
            raise LivematteError(f"{name}: its video codec is not supported by this FFmpeg")
        codec = stream.codec_context.name
        stream.thread_type = "AUTO"
        self._stream = stream
        self._decoded = container.decode(stream)
        try:
            first = next(self._decoded)
        except StopIteration:
            raise LivematteError(f"{name} contains no decodable video frames") from None
        except av.error.FFmpegError as e:
            raise LivematteError(f"cannot decode {name} ({codec} video): {e.strerror or e}") from e

        rotation = _clockwise(first)
        width, height = first.width, first.height
        if rotation in (90, 270):
            width, height = height, width
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        # With coarse timestamps (e.g. milliseconds) the average of a 30 fps file comes out
        # as 32000/1067; the guessed rate is the nominal one whenever the two agree.
        guessed = stream.guessed_rate
        if rate and guessed and abs(guessed - rate) <= rate / 100:
            rate = guessed
        if not rate:
            log.warning("%s does not state a frame rate; assuming 30 fps", name)
            rate = Fraction(30)
        frame_count = stream.frames or None
        duration = None
        if stream.duration is not None and stream.time_base:
            duration = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            duration = container.duration / av.time_base
        info = VideoInfo(width=width, height=height, fps=float(rate), rate=Fraction(rate),
                         frame_count=frame_count, duration=duration, rotation=rotation,
                         has_audio=bool(container.streams.audio), codec=codec)
        return first, info

    def frames(self) -> Iterator[tuple[np.ndarray, float]]:
        """Yield ``(image, pts)``: ``uint8 [H, W, 3]`` BGR upright, pts in seconds.

        pts are the stream's own (variable frame rates are preserved). A damaged or truncated
        file stops early: see ``strict``. Single pass.
        """
        step = 1.0 / self.info.fps
        pts: float | None = None
        for frame in self._frames():
            if frame.pts is not None and frame.time_base:
                pts = float(frame.pts * frame.time_base)
            else:
                pts = 0.0 if pts is None else pts + step
            image = _to_bgr(frame)
            turn = _clockwise(frame)
            if turn:
                image = cv2.rotate(image, _CLOCKWISE[turn])
            yield image, pts
        if pts is not None and not self._stopped:
            missing = self._missing(pts + step)
            if missing:
                self._ended_early(missing)

    def _frames(self) -> Iterator[av.VideoFrame]:
        if self._first is None:
            return
        first, self._first = self._first, None
        yield first
        count = 1
        while True:
            try:
                frame = next(self._decoded)
            except StopIteration:
                return
            except av.error.FFmpegError as e:
                self._stopped = True
                self._ended_early(f"decoding stopped after {count} frames ({e.strerror or e})")
                return
            count += 1
            yield frame

    def _missing(self, end: float) -> str | None:
        """How far short of its declared length decoding stopped (at ``end`` s), or None.

        FFmpeg reports no error when a file simply stops (a partial download), so the
        stream's duration (MP4, AVI...) or Matroska's DURATION tag is the reference. Frame
        counts are not: files cut without re-encoding hold pre-roll frames that are never
        shown. The margin leaves room for a long-lasting last frame.
        """
        stream = self._stream
        declared = None
        if stream.duration is not None and stream.time_base:
            declared = float((stream.duration + (stream.start_time or 0)) * stream.time_base)
        elif _MKV_DURATION.match(stream.metadata.get("DURATION", "")):
            hours, minutes, seconds = stream.metadata["DURATION"].split(":")
            declared = int(hours) * 3600 + int(minutes) * 60 + float(seconds)
        if declared and end < declared - max(0.5, declared / 10):
            return f"it ends at {end:.2f} s of its {declared:.2f} s"
        return None

    def _ended_early(self, what: str) -> None:
        if self.strict:
            raise LivematteError(f"{self.path} is damaged or truncated: {what}")
        log.warning("%s: %s; the file looks damaged or truncated, keeping what was decoded", self.path, what)

    def close(self) -> None:
        self._first = None
        self._container.close()

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def probe(path: PathLike) -> VideoInfo:
    """Describe a video file or http(s) URL; :class:`LivematteError` if it is not a readable video."""
    with VideoReader(path) as reader:
        return reader.info


# ---------------------------------------------------------------------------------------------
# Writing: shared machinery


def output_kind(path: PathLike) -> str:
    """The output kind a path asks for: ``"mp4"``, ``"mkv"``, ``"webm"``, ``"mov"`` or ``"png"``.

    A path ending in ``/``, with no extension, or naming an existing folder is a PNG sequence.
    """
    text = os.fspath(path)
    suffix = Path(text).suffix.lower()
    if text.endswith(("/", os.sep)) or not suffix or Path(text).is_dir():
        return "png"
    if suffix in OUTPUT_SUFFIXES:
        return OUTPUT_SUFFIXES[suffix]
    choices = ", ".join(sorted(OUTPUT_SUFFIXES))
    raise LivematteError(f"{text}: unknown video extension {suffix!r}; use one of {choices}, "
                         "or a folder name for a PNG sequence")


def _check_size(width: int, height: int) -> tuple[int, int]:
    try:
        width, height = operator.index(width), operator.index(height)
    except TypeError:
        raise ValueError(f"width and height must be integers, got {width!r}x{height!r}") from None
    if width < 1 or height < 1:
        raise ValueError(f"width and height must be positive, got {width}x{height}")
    return width, height


def _check_rate(rate: Fraction | float) -> Fraction:
    """A positive frame rate as a fraction FFmpeg's 32-bit rationals can hold (29.97 -> 2997/100)."""
    rate = Fraction(rate).limit_denominator(1_000_000)
    if rate <= 0:
        raise ValueError(f"frame rate must be positive, got {rate}")
    return rate


def _check_image(image: np.ndarray, width: int, height: int, channels: tuple[int, ...]) -> None:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
        raise ValueError(f"expected a uint8 array, got {getattr(image, 'dtype', type(image))}")
    shape = image.shape
    ok_channels = (len(shape) == 2 and 0 in channels) or (len(shape) == 3 and shape[2] in channels)
    if shape[:2] != (height, width) or not ok_channels:
        wanted = " or ".join(f"[{height}, {width}]" if c == 0 else f"[{height}, {width}, {c}]" for c in channels)
        raise ValueError(f"expected an image of shape {wanted}, got {list(shape)}")


class _SafeOutput:
    """A file or folder written under a hidden temporary name beside ``path``.

    :meth:`close` finishes it and renames it into place; :meth:`abort` (also run by
    ``__exit__`` when an exception propagates) deletes it. Both are idempotent.
    """

    def __init__(self, path: PathLike, *, folder: bool):
        self.path = Path(path)
        self._folder = folder
        self._state = "open"
        target = self.path
        if folder:
            if target.exists() and not target.is_dir():
                raise LivematteError(f"{target} exists and is not a folder; cannot write a PNG sequence there")
            if target.is_dir() and any(not _FRAME_NAME.match(p.name) for p in target.iterdir()):
                raise LivematteError(f"{target} already holds other files; choose an empty or new folder")
            self._partial = target.with_name(f".{target.name}.partial")
        else:
            if target.is_dir():
                raise LivematteError(f"{target} is a folder, expected a file name")
            # Same extension so that anything keyed on it (players, muxer guesses) still works.
            self._partial = target.with_name(f".{target.stem}.partial{target.suffix}")
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            self._remove_partial()
            if folder:
                self._partial.mkdir()
        except OSError as e:
            raise LivematteError(f"cannot write {target}: {e.strerror or e}") from e

    def _finish(self) -> None:
        """Flush and close what is being written into ``self._partial``."""

    def _discard(self) -> None:
        """Release what is being written without finishing it; must not raise."""

    def close(self) -> None:
        """Finish the output and move it to its final name."""
        if self._state != "open":
            return
        try:
            self._finish()
            self._state = "closed"
            self._install()
        except BaseException:
            self._state = "open"
            self.abort()
            raise

    def abort(self) -> None:
        """Stop and delete the unfinished output; nothing is left under the final or temporary name."""
        if self._state == "aborted":
            return
        was_open = self._state == "open"
        self._state = "aborted"
        if was_open:
            self._discard()
        self._remove_partial()

    def _install(self) -> None:
        try:
            if self._folder and self.path.is_dir():
                # A folder cannot be replaced in one step: move the old one aside first.
                aside = self.path.with_name(f".{self.path.name}.old")
                shutil.rmtree(aside, ignore_errors=True)
                os.replace(self.path, aside)
                os.replace(self._partial, self.path)
                shutil.rmtree(aside, ignore_errors=True)
            else:
                os.replace(self._partial, self.path)
        except OSError as e:
            raise LivematteError(f"cannot write {self.path}: {e.strerror or e}") from e

    def _remove_partial(self) -> None:
        if self._partial.is_dir():
            shutil.rmtree(self._partial, ignore_errors=True)
        elif self._partial.exists():
            self._partial.unlink(missing_ok=True)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


class _Clock:
    """Turns seconds into strictly increasing ticks of ``tick`` seconds."""

    def __init__(self, tick: Fraction, rate: Fraction, name: str):
        self.tick = tick
        self._step = 1 / (rate * tick)  # ticks per frame, for frames given without a pts
        self._last: int | None = None
        self._name = name
        self._warned = False

    def next(self, pts: float | None) -> int:
        if pts is None:
            ticks = 0 if self._last is None else self._last + max(1, round(self._step))
        else:
            ticks = round(pts / self.tick)
        if self._last is not None and ticks <= self._last:
            # Muxers reject repeated or backward timestamps; nudging keeps every frame.
            if not self._warned:
                log.warning("%s: non-increasing timestamp %.6f s after %.6f s; shifted forward",
                            self._name, float(ticks * self.tick), float(self._last * self.tick))
                self._warned = True
            ticks = self._last + 1
        self._last = ticks
        return ticks


class _PngFolder:
    """Numbered PNGs (``000000.png``...) written into a folder in call order."""

    def __init__(self, folder: Path, name: Path):
        self._folder = folder
        self._name = name
        self.count = 0

    def write(self, image: np.ndarray) -> None:
        ok, encoded = cv2.imencode(".png", image, [cv2.IMWRITE_PNG_COMPRESSION, 3])
        if not ok:
            raise LivematteError(f"cannot encode frame {self.count} for {self._name}")
        try:
            (self._folder / f"{self.count:06d}.png").write_bytes(encoded.tobytes())
        except OSError as e:
            raise LivematteError(f"cannot write {self._name}: {e.strerror or e}") from e
        self.count += 1


class _AudioCarrier:
    """Moves the audio of a source file into an output container, alongside the video.

    Packets are copied untouched when the output container accepts the codec, otherwise
    decoded, resampled and encoded with the kind's audio encoder. :meth:`pump` advances
    up to a time so that audio is interleaved with the video as it is written.
    """

    def __init__(self, source: str, output: av.container.OutputContainer, kind: _Kind, out_name: Path):
        self._source = source
        self._out = output
        self._out_name = out_name
        self._input = _open_input(source)
        self.active = False
        try:
            self._setup(kind)
        except BaseException:
            self._input.close()
            raise

    def _setup(self, kind: _Kind) -> None:
        if not self._input.streams.audio:
            log.info("%s has no audio; %s will be silent", self._source, self._out_name)
            self._input.close()
            return
        src = self._input.streams.audio[0]
        self._src = src
        codec = src.codec_context.name if src.codec_context is not None else None
        # ADTS (raw .aac, MPEG-TS) AAC needs a bitstream filter to go into MP4/MOV; re-encoding is simpler.
        adts = self._input.format.name in ("aac", "mpegts") and kind.container in ("mp4", "mov")
        self._copy = codec in kind.audio_copy and not adts
        if self._copy:
            try:
                self._dst = self._out.add_stream_from_template(src)
            except ValueError:
                self._copy = False
        if not self._copy:
            if src.codec_context is None:
                log.warning("%s: its audio codec cannot be decoded; %s will be silent", self._source, self._out_name)
                self._input.close()
                return
            self._setup_encoder(kind.audio_codec, src)
        self._packets = self._input.demux(src)
        self._pending: av.Packet | None = None
        self._ended = False
        self.active = True
        log.info("audio from %s: %s", self._source,
                 f"{codec} copied" if self._copy else f"{codec} re-encoded as {kind.audio_codec}")

    def _setup_encoder(self, encoder: str, src) -> None:
        if encoder == "libopus":
            rate = 48000
        else:
            rate = src.rate if src.rate in _AAC_RATES else 48000
        layout = src.layout.name if src.layout.nb_channels <= 2 else "stereo"
        dst = self._out.add_stream(encoder, rate=rate)
        dst.layout = layout
        dst.bit_rate = _AUDIO_BIT_RATE[encoder]
        sample_format = dst.codec_context.codec.audio_formats[0].name
        dst.format = sample_format
        dst.codec_context.time_base = Fraction(1, rate)
        self._dst = dst
        self._rate = rate
        self._resampler = av.AudioResampler(format=sample_format, layout=layout, rate=rate,
                                            frame_size=_AUDIO_FRAME_SIZE[encoder])
        self._next_sample: int | None = None

    def pump(self, until: float) -> None:
        """Mux source audio whose timestamp is at or before ``until`` seconds."""
        while self.active and not self._ended:
            packet = self._pending or self._read()
            if packet is None:
                self._ended = True
                break
            when = packet.pts if packet.pts is not None else packet.dts
            if when is not None and packet.time_base and float(when * packet.time_base) > until:
                self._pending = packet
                break
            self._pending = None
            self._carry(packet)
        if self._ended and self.active and not self._copy:
            self._carry(None)

    def _read(self) -> av.Packet | None:
        try:
            return next(self._packets)
        except StopIteration:
            return None
        except av.error.FFmpegError as e:
            log.warning("%s: audio ends early (%s)", self._source, e.strerror or e)
            return None

    def _carry(self, packet: av.Packet | None) -> None:
        if self._copy:
            # The demuxer's final packet is an empty marker for flushing decoders.
            if packet.dts is None and packet.pts is None:
                return
            packet.stream = self._dst
            self._out.mux(packet)
            return
        if packet is None:
            frames = [None]
            self.active = False  # flushing happens once
        else:
            try:
                frames = self._src.decode(packet)
            except av.error.FFmpegError as e:
                log.warning("%s: skipped undecodable audio (%s)", self._source, e.strerror or e)
                return
        for frame in frames:
            if frame is not None and self._next_sample is None:
                start = frame.time if frame.time is not None else 0.0
                self._next_sample = round(start * self._rate)
            for out in self._resampler.resample(frame):
                out.pts = self._next_sample
                out.time_base = Fraction(1, self._rate)
                self._next_sample += out.samples
                self._out.mux(self._dst.encode(out))
        if packet is None:
            self._out.mux(self._dst.encode(None))

    def finish(self) -> None:
        self.pump(math.inf)
        self.close()

    def close(self) -> None:
        self.active = False
        self._input.close()


# ---------------------------------------------------------------------------------------------
# Writers


class VideoWriter(_SafeOutput):
    """Encodes composites to a video file or an RGBA PNG sequence.

    Kinds (``kind``, or from ``path``'s extension):

    - ``mp4`` (.mp4, .m4v): H.264 (libx264) yuv420p in MP4, ``+faststart``.
    - ``mkv``: H.264 yuv420p in Matroska.
    - ``webm``: VP9 (libvpx-vp9) yuva420p in WebM, with alpha, lossless (the matte survives exactly).
    - ``mov``: ProRes 4444 (prores_ks, profile 4) yuva444p10le in QuickTime, with alpha.
    - ``png`` (a folder: path ending in ``/`` or without extension): RGBA PNGs ``000000.png``...

    yuv420p cannot hold an odd width or height: such frames are padded by one pixel, repeating
    the last row/column, so an H.264 file of a 63x47 input is 64x48. Alpha kinds keep the size.

    ``rate`` is the nominal frame rate (the encoder's hint, and the step for frames written
    without a pts); the file keeps the pts given to :meth:`write`, so variable rates survive.
    ``crf`` (lower is better) applies to libx264; ``preset`` is an x264 preset
    name, mapped onto libvpx's speed for VP9. ``audio_from`` names the file whose audio goes
    along (copied when the container allows its codec, else AAC, or Opus for WebM).
    """

    def __init__(self, path: PathLike, *, width: int, height: int, rate: Fraction, kind: str | None = None,
                 audio_from: PathLike | None = None, crf: int = 18, preset: str = "veryfast"):
        width, height = _check_size(width, height)
        kind = kind or output_kind(path)
        if kind not in OUTPUT_KINDS:
            raise LivematteError(f"unknown output kind {kind!r} for {path}; use one of {', '.join(OUTPUT_KINDS)}")
        self.kind = kind
        self.has_alpha = kind == "png" or _KINDS[kind].alpha
        self.width, self.height = width, height
        self.rate = _check_rate(rate)
        self._audio: _AudioCarrier | None = None
        self._container = None
        super().__init__(path, folder=kind == "png")
        try:
            self._open(audio_from, crf, preset)
        except BaseException:
            self.abort()
            raise

    def _open(self, audio_from: PathLike | None, crf: int, preset: str) -> None:
        if self.kind == "png":
            self._png = _PngFolder(self._partial, self.path)
            self._clock = _Clock(Fraction(1, 90000), self.rate, str(self.path))
            if audio_from is not None:
                log.warning("PNG sequences have no audio; the audio of %s is dropped", audio_from)
            return
        spec = _KINDS[self.kind]
        self._spec = spec
        self._clock = _Clock(spec.tick, self.rate, str(self.path))
        self._pad = (self.height % 2, self.width % 2) if spec.even else (0, 0)
        if any(self._pad):
            log.info("%s: H.264 yuv420p needs even sizes; encoding %dx%d with the edge repeated",
                     self.path, self.width + self._pad[1], self.height + self._pad[0])
        options = {"mp4": {"movflags": "+faststart"}, "mov": {"movflags": "+faststart"}}.get(self.kind, {})
        try:
            self._container = av.open(str(self._partial), "w", format=spec.container, options=options)
            stream = self._container.add_stream(spec.codec, rate=self.rate, options=_codec_options(spec, crf, preset))
            stream.width = self.width + self._pad[1]
            stream.height = self.height + self._pad[0]
            stream.pix_fmt = spec.pix_fmt
            stream.codec_context.time_base = spec.tick
            if spec.codec == "libvpx-vp9":
                stream.codec_context.thread_count = os.cpu_count() or 1
            self._stream = stream
        except (av.error.FFmpegError, OSError, ValueError) as e:
            raise LivematteError(f"cannot write {self.path}: {getattr(e, 'strerror', None) or e}") from e
        if audio_from is not None:
            self._audio = _AudioCarrier(str(audio_from), self._container, spec, self.path)

    def write(self, image: np.ndarray, pts: float | None = None) -> None:
        """Add one frame.

        image: ``uint8 [H, W, 3]`` BGR or ``uint8 [H, W, 4]`` BGRA at the writer's size. Alpha
            kinds get alpha 255 for a BGR image; H.264 drops a BGRA image's alpha.
        pts: presentation time, seconds; None means one frame after the previous one.
        """
        if self._state != "open":
            raise ValueError(f"{self.path} is already closed")
        _check_image(image, self.width, self.height, (3, 4))
        ticks = self._clock.next(pts)
        if self.kind == "png":
            self._png.write(image if image.shape[2] == 4 else cv2.cvtColor(image, cv2.COLOR_BGR2BGRA))
            return
        if self._spec.alpha:
            if image.shape[2] == 3:
                image = cv2.cvtColor(image, cv2.COLOR_BGR2BGRA)
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="bgra")
        else:
            if image.shape[2] == 4:
                image = np.ascontiguousarray(image[:, :, :3])
            if any(self._pad):
                image = cv2.copyMakeBorder(image, 0, self._pad[0], 0, self._pad[1], cv2.BORDER_REPLICATE)
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="bgr24")
        frame.pts = ticks
        frame.time_base = self._clock.tick
        try:
            self._container.mux(self._stream.encode(frame))
            if self._audio is not None:
                self._audio.pump(float(ticks * self._clock.tick) + AUDIO_LEAD_S)
        except av.error.FFmpegError as e:
            raise LivematteError(f"cannot write {self.path}: {e.strerror or e}") from e

    def _finish(self) -> None:
        if self.kind == "png":
            if self._png.count == 0:
                log.warning("%s: no frames were written", self.path)
            return
        try:
            self._container.mux(self._stream.encode())
            if self._audio is not None:
                self._audio.finish()
            self._container.close()
        except av.error.FFmpegError as e:
            raise LivematteError(f"cannot write {self.path}: {e.strerror or e}") from e

    def _discard(self) -> None:
        if self._audio is not None:
            self._audio.close()
        if self._container is not None:
            try:
                self._container.close()
            except Exception:  # the file is deleted next; a broken trailer does not matter
                pass


def _codec_options(spec: _Kind, crf: int, preset: str) -> dict[str, str]:
    if spec.codec == "libx264":
        return {"crf": str(crf), "preset": preset}
    if spec.codec == "libvpx-vp9":
        # Lossless: libvpx codes alpha with the colour planes' settings, and any lossy
        # setting moves sharp matte edges by tens of levels (crf 18: up to 37). Overlays
        # need the exact matte; the price is ~40 Mbit/s at 720p.
        speed = _VP9_SPEED.get(preset, 6)
        return {"lossless": "1", "cpu-used": str(speed), "row-mt": "1",
                "deadline": "realtime" if speed > 5 else "good"}
    if spec.codec == "prores_ks":
        return {"profile": "4", "vendor": "apl0"}
    return {}


class AlphaWriter(_SafeOutput):
    """Writes mattes losslessly: reading them back gives exactly the values written.

    ``.mkv``: FFV1 (level 3) gray in Matroska, keeping the pts given to :meth:`write`
    (millisecond ticks). A folder (path ending in ``/`` or without extension): 8-bit gray
    PNGs ``000000.png``... in write order (no timestamps).
    """

    def __init__(self, path: PathLike, *, width: int, height: int, rate: Fraction):
        width, height = _check_size(width, height)
        try:
            kind = output_kind(path)
        except LivematteError:
            kind = None
        if kind not in ALPHA_KINDS:
            raise LivematteError(f"{path}: mattes are written as .mkv (FFV1) or to a folder of PNGs")
        self.kind = kind
        self.width, self.height = width, height
        self.rate = _check_rate(rate)
        self._container = None
        super().__init__(path, folder=kind == "png")
        self._clock = _Clock(Fraction(1, 1000), self.rate, str(self.path))
        if kind == "png":
            self._png = _PngFolder(self._partial, self.path)
            return
        try:
            self._container = av.open(str(self._partial), "w", format="matroska")
            stream = self._container.add_stream("ffv1", rate=self.rate, options={"level": "3"})
            stream.width, stream.height, stream.pix_fmt = width, height, "gray"
            stream.codec_context.time_base = self._clock.tick
            self._stream = stream
        except (av.error.FFmpegError, OSError, ValueError) as e:
            self.abort()
            raise LivematteError(f"cannot write {self.path}: {getattr(e, 'strerror', None) or e}") from e

    def write(self, alpha: np.ndarray, pts: float | None = None) -> None:
        """Add one matte: ``uint8 [H, W]``, 255 where the person is; pts in seconds or None."""
        if self._state != "open":
            raise ValueError(f"{self.path} is already closed")
        _check_image(alpha, self.width, self.height, (0,))
        ticks = self._clock.next(pts)
        if self.kind == "png":
            self._png.write(alpha)
            return
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(alpha), format="gray")
        frame.pts = ticks
        frame.time_base = self._clock.tick
        try:
            self._container.mux(self._stream.encode(frame))
        except av.error.FFmpegError as e:
            raise LivematteError(f"cannot write {self.path}: {e.strerror or e}") from e

    def _finish(self) -> None:
        if self.kind == "png":
            return
        try:
            self._container.mux(self._stream.encode())
            self._container.close()
        except av.error.FFmpegError as e:
            raise LivematteError(f"cannot write {self.path}: {e.strerror or e}") from e

    def _discard(self) -> None:
        if self._container is not None:
            try:
                self._container.close()
            except Exception:  # the file is deleted next
                pass


# ---------------------------------------------------------------------------------------------
# Reading outputs back


def _png_files(folder: Path) -> list[Path]:
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() == ".png")
    if not files:
        raise LivematteError(f"{folder} holds no PNG files")
    return files


def _read_png(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise LivematteError(f"{path} is not a PNG OpenCV can read")
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    return image


def read_alpha_with_pts(path: PathLike, fps: float | None = None) -> list[tuple[np.ndarray, float]]:
    """Mattes from an FFV1 gray ``.mkv`` (or any video) or a PNG folder -> ``[(uint8 [H, W], pts s)]``.

    PNG folders carry no timestamps: pass ``fps`` to number them ``i / fps``.
    """
    path = Path(path)
    if path.is_dir():
        if fps is None:
            raise LivematteError(f"{path} is a PNG folder and has no timestamps; give a frame rate")
        return [(alpha, i / fps) for i, alpha in enumerate(read_alpha(path))]
    container = _open_input(path)
    try:
        if not container.streams.video:
            raise LivematteError(f"{path} has no video stream")
        out = []
        for frame in container.decode(container.streams.video[0]):
            out.append((frame.to_ndarray(format="gray"), float(frame.time or 0.0)))
        return out
    except av.error.FFmpegError as e:
        raise LivematteError(f"cannot decode {path}: {e.strerror or e}") from e
    finally:
        container.close()


def read_alpha(path: PathLike) -> list[np.ndarray]:
    """Mattes from an FFV1 gray ``.mkv`` or a PNG folder -> list of ``uint8 [H, W]``.

    Colour PNGs give their alpha channel (BGRA) or their luma (BGR).
    """
    path = Path(path)
    if not path.is_dir():
        return [alpha for alpha, _ in read_alpha_with_pts(path)]
    out = []
    for file in _png_files(path):
        image = _read_png(file)
        if image.ndim == 3:
            image = image[:, :, 3].copy() if image.shape[2] == 4 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        out.append(image)
    return out


def read_rgba(path: PathLike) -> list[np.ndarray]:
    """Every frame of a (transparent) output -> list of ``uint8 [H, W, 4]`` BGRA.

    VP9 (.webm) is decoded with libvpx, since FFmpeg's own vp9 decoder drops the alpha plane;
    ProRes 4444 and PNG keep alpha with the defaults. Videos without alpha read as alpha 255.
    """
    path = Path(path)
    if path.is_dir():
        out = []
        for file in _png_files(path):
            image = _read_png(file)
            if image.ndim == 2:
                image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGRA)
            elif image.shape[2] == 3:
                image = cv2.cvtColor(image, cv2.COLOR_BGR2BGRA)
            out.append(image)
        return out
    container = _open_input(path)
    try:
        if not container.streams.video:
            raise LivematteError(f"{path} has no video stream")
        stream = container.streams.video[0]
        codec = stream.codec_context.name if stream.codec_context is not None else None
        alpha_decoder = {"vp9": "libvpx-vp9", "vp8": "libvpx"}.get(codec)
        if alpha_decoder in av.codecs_available:
            decoder = av.CodecContext.create(alpha_decoder, "r")
            frames = []
            for packet in container.demux(stream):
                frames.extend(decoder.decode(packet if packet.size else None))
        else:
            frames = container.decode(stream)
        return [frame.to_ndarray(format="bgra") for frame in frames]
    except av.error.FFmpegError as e:
        raise LivematteError(f"cannot decode {path}: {e.strerror or e}") from e
    finally:
        container.close()
