"""Video files in and out: decoding to upright BGR frames, encoding composites and mattes safely.

Reading: :func:`probe` and :class:`VideoReader` turn any file (or http(s) URL) FFmpeg can demux
into ``uint8 [H, W, 3]`` BGR pictures with their presentation times in seconds. A reader opened
with ``audio=True`` also hands the file's audio packets, demuxed along with the video from the
same container, to an :class:`AudioFeed` that a writer takes them from.

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
import threading
from collections import deque
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

# How far audio may run ahead of the latest video frame when interleaving, seconds. Writers
# keep to one frame period when that is shorter, so that VideoWriter.end_audio_at(last frame's
# pts + one frame), called after the last frame, still finds all the audio past it unwritten.
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
    """Decodes one video file or http(s) URL into upright BGR frames, opening it once.

    Opening reads the headers and decodes the first frame, so a file that cannot be read
    fails here with a :class:`LivematteError` naming it, before any work is done.
    ``info`` describes the video; :meth:`frames` yields every frame once, in order.

    ``audio=True``: the first audio stream is demuxed together with the video, and its
    packets go to ``self.audio`` (an :class:`AudioFeed`, None when the file has no audio) as
    they come, for a :class:`VideoWriter` to take.

    A file that ends before its container says it should (a partial download, a damaged
    middle) is noticed once decoding stops: ``strict`` raises :class:`LivematteError`
    then, otherwise a warning is logged and the frames decoded so far are kept.

    :meth:`frames` may run on another thread than :meth:`close`: closing waits for the
    packet being decoded, and the frames stop there.
    """

    def __init__(self, path: PathLike, *, strict: bool = False, audio: bool = False):
        self.path = str(path)
        self.strict = strict
        self.audio: AudioFeed | None = None
        self._stopped = False  # decoding failed part-way (already reported)
        self._closed = False
        # Held while FFmpeg uses the container: during each demux/decode step, and by close().
        self._lock = threading.Lock()
        self._container = _open_input(self.path)
        try:
            self._first, self.info = self._start(audio)
        except BaseException:
            self.close()
            raise

    def _start(self, audio: bool) -> tuple[av.VideoFrame, VideoInfo]:
        container, name = self._container, self.path
        if not container.streams.video:
            what = "audio only, " if container.streams.audio else ""
            raise LivematteError(f"{name} has no video stream ({what}nothing to matte)")
        stream = container.streams.video[0]
        if stream.codec_context is None:
            raise LivematteError(f"{name}: its video codec is not supported by this FFmpeg")
        codec = stream.codec_context.name
        stream.thread_type = "AUTO"
        self._declared = self._declared_end(stream)
        streams = [stream]
        if audio and container.streams.audio:
            streams.append(container.streams.audio[0])
            self.audio = AudioFeed(name, streams[1], container.format.name, self._lock)
        self._decoded = self._demux(streams)
        try:
            with self._lock:
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

    def _demux(self, streams: list[av.stream.Stream]) -> Iterator[av.VideoFrame]:
        """Frames of ``streams[0]`` (the video); packets of ``streams[1]``, the audio if any, go to the feed."""
        for packet in self._container.demux(streams):
            # By stream, not stream_index: the empty packets that end each stream leave the index at 0.
            if packet.stream is streams[0]:
                yield from packet.decode()
            else:
                self.audio._put(packet)

    def frames(self) -> Iterator[tuple[np.ndarray, float]]:
        """Yield ``(image, pts)``: ``uint8 [H, W, 3]`` BGR upright, pts in seconds.

        pts are the stream's own (variable frame rates are preserved). A damaged or truncated
        file stops early: see ``strict``. Single pass.
        """
        step = 1.0 / self.info.fps
        pts: float | None = None
        if self.audio is not None:
            self.audio.release_unless_claimed()  # no writer wants it: demux it, keep none
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
        if pts is not None and not self._stopped and not self._closed:
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
            with self._lock:
                if self._closed:
                    return
                try:
                    frame = next(self._decoded)
                except StopIteration:
                    return
                except av.error.FFmpegError as e:
                    self._stopped = True
                    error = e
                    frame = None
            if frame is None:
                self._ended_early(f"decoding stopped after {count} frames ({error.strerror or error})")
                return
            count += 1
            yield frame

    @staticmethod
    def _declared_end(stream: av.VideoStream) -> float | None:
        """Where the stream says it ends, seconds: its duration (MP4, AVI...) or Matroska's DURATION tag."""
        if stream.duration is not None and stream.time_base:
            return float((stream.duration + (stream.start_time or 0)) * stream.time_base)
        if _MKV_DURATION.match(stream.metadata.get("DURATION", "")):
            hours, minutes, seconds = stream.metadata["DURATION"].split(":")
            return int(hours) * 3600 + int(minutes) * 60 + float(seconds)
        return None

    def _missing(self, end: float) -> str | None:
        """How far short of its declared length decoding stopped (at ``end`` s), or None.

        FFmpeg reports no error when a file simply stops (a partial download), so the
        declared end is the reference. Frame counts are not: files cut without re-encoding
        hold pre-roll frames that are never shown. The margin leaves room for a long-lasting
        last frame.
        """
        declared = self._declared
        if declared and end < declared - max(0.5, declared / 10):
            return f"it ends at {end:.2f} s of its {declared:.2f} s"
        return None

    def _ended_early(self, what: str) -> None:
        if self.strict:
            raise LivematteError(f"{self.path} is damaged or truncated: {what}")
        log.warning("%s: %s; the file looks damaged or truncated, keeping what was decoded", self.path, what)

    def close(self) -> None:
        """Close the input (idempotent). The audio feed keeps what was demuxed until its writer is done."""
        with self._lock:
            self._first = None
            if self._closed:
                return
            self._closed = True
            if self.audio is not None:
                self.audio._input_closed()
            self._container.close()

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class AudioFeed:
    """The first audio stream of one input, as its compressed packets in demux order, for one writer.

    A :class:`VideoReader` opened with ``audio=True`` adds packets as it demuxes them along
    with the video (on the capture thread); the :class:`VideoWriter` given the feed takes them
    up to the video time it has written (on its own thread). Thread-safe. Demux order keeps
    the feed short (the frames in flight plus the file's audio/video interleaving: a fraction
    of a second); ``CAPACITY_BYTES`` bounds it anyway: beyond that the oldest packets are
    dropped, with a warning once a writer holds the feed.

    :meth:`from_file` makes one that reads a file's audio itself, as the writer asks for it.

    name: the input, for messages. format_name: its FFmpeg demuxer. codec: the audio codec's
    FFmpeg name, None when this FFmpeg cannot decode it (copying it may still work).
    decoder: the stream's decoder (None likewise), for the writer's thread only.
    input_lock: the lock held by whoever uses the input's container (the reader's).
    """

    CAPACITY_BYTES = 16 * 2**20

    def __init__(self, name: str, stream: av.audio.stream.AudioStream, format_name: str,
                 input_lock: threading.Lock):
        self.name = name
        self.format_name = format_name
        # PyAV allocates this apart from the container, so it stays usable after the input closes.
        self.decoder = stream.codec_context
        self.codec = self.decoder.name if self.decoder is not None else None
        self._stream: av.audio.stream.AudioStream | None = stream  # None once the input is closed
        self._input_lock = input_lock
        self._lock = threading.Lock()  # guards the fields below
        self._packets: deque[av.Packet] = deque()
        self._bytes = 0
        self._claimed = self._released = self._warned = False
        self._pull: Iterator[av.Packet] | None = None  # from_file: where packets come from
        self._owned: av.container.InputContainer | None = None

    @classmethod
    def from_file(cls, path: PathLike) -> AudioFeed | None:
        """The audio of the file or URL at ``path``, demuxed as the writer takes it; None if it has none.

        This opens ``path`` a second time; a :class:`VideoReader`'s own feed does not.
        """
        container = _open_input(path)
        if not container.streams.audio:
            container.close()
            return None
        stream = container.streams.audio[0]
        feed = cls(str(path), stream, container.format.name, threading.Lock())
        feed._owned = container
        feed._pull = container.demux(stream)
        return feed

    @property
    def held_bytes(self) -> int:
        """Bytes of packets waiting for the writer."""
        with self._lock:
            return self._bytes

    def claim(self) -> None:
        """Reserve the packets for one writer (a second claim is a ValueError: each packet goes once)."""
        with self._lock:
            if self._claimed:
                raise ValueError(f"the audio of {self.name} already goes to another writer")
            self._claimed = True

    def add_copy_to(self, output: av.container.OutputContainer) -> av.audio.stream.AudioStream:
        """A new stream in ``output`` for these packets as they are; ValueError if its format cannot hold them."""
        with self._input_lock:
            if self._stream is None:
                raise LivematteError(f"cannot copy the audio of {self.name}: it is already closed")
            return output.add_stream_from_template(self._stream)

    def take(self, before: float, *, whole: bool = False) -> list[av.Packet]:
        """Remove and return, in order, the packets that start before ``before`` seconds
        (``whole``: that also end by then)."""
        with self._lock:
            if self._pull is not None:
                self._read_until(before)
            taken = []
            while self._packets:
                start = _packet_start(self._packets[0])
                if start is not None and start >= before:
                    break
                if whole and start is not None and start + _packet_length(self._packets[0]) > before:
                    break
                packet = self._packets.popleft()
                self._bytes -= packet.size
                taken.append(packet)
            return taken

    def release_unless_claimed(self) -> None:
        """Frames start flowing: with no writer by now there will be none, so hold nothing."""
        with self._lock:
            claimed = self._claimed
        if not claimed:
            self.release()

    def release(self) -> None:
        """The writer is done: drop what is held, keep nothing more, close a file opened for it."""
        with self._lock:
            self._released = True
            self._packets.clear()
            self._bytes = 0
            self._pull = None
        if self._owned is not None:
            with self._input_lock:
                self._input_closed()
                self._owned.close()

    def _put(self, packet: av.Packet) -> None:
        """From the reader: one more packet, in demux order."""
        with self._lock:
            self._store(packet)

    def _input_closed(self) -> None:
        """From the reader, holding its lock: the container is closed (packets stay valid, the stream does not)."""
        self._stream = None

    def _store(self, packet: av.Packet) -> None:
        # The demuxer ends each stream with an empty packet, a flush marker for decoders.
        if self._released or packet.size == 0:
            return
        self._packets.append(packet)
        self._bytes += packet.size
        while self._bytes > self.CAPACITY_BYTES:
            self._bytes -= self._packets.popleft().size
            if self._claimed and not self._warned:
                self._warned = True
                log.warning("%s: the audio ran more than %d MiB ahead of the video written; "
                            "the oldest was dropped, so the output's audio has a gap",
                            self.name, self.CAPACITY_BYTES >> 20)

    def _read_until(self, before: float) -> None:
        """from_file: demux until a packet that starts at or after ``before`` is held, or the end."""
        while True:
            last = _packet_start(self._packets[-1]) if self._packets else None
            if last is not None and last >= before:
                return
            try:
                packet = next(self._pull)
            except StopIteration:
                self._pull = None
                return
            except av.error.FFmpegError as e:
                log.warning("%s: audio ends early (%s)", self.name, e.strerror or e)
                self._pull = None
                return
            self._store(packet)


def _packet_start(packet: av.Packet) -> float | None:
    """When a packet starts, seconds; None when it has no timestamp (it then goes with the one before)."""
    when = packet.pts if packet.pts is not None else packet.dts
    if when is None or not packet.time_base:
        return None
    return float(when * packet.time_base)


def _packet_length(packet: av.Packet) -> float:
    """How long a packet plays, seconds (0 when the demuxer does not say)."""
    return float(packet.duration * packet.time_base) if packet.duration and packet.time_base else 0.0


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

    @property
    def last_seconds(self) -> float | None:
        """The last time handed out, seconds; None before the first."""
        return None if self._last is None else float(self._last * self.tick)

    def next(self, pts: float | None, *, repeat: bool = False) -> int:
        """Ticks for ``pts`` seconds (None: one frame period on); ``repeat``: a frame shown
        again, one tick after the last, as expected rather than warned about."""
        if pts is None:
            ticks = 0 if self._last is None else self._last + max(1, round(self._step))
        else:
            ticks = round(pts / self.tick)
        if self._last is not None and ticks <= self._last:
            # Muxers reject repeated or backward timestamps; nudging keeps every frame.
            if not self._warned and not repeat:
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
    """Moves the packets of an :class:`AudioFeed` into an output container, alongside the video.

    Packets are copied untouched when the output container accepts the codec, otherwise
    decoded, resampled and encoded with the kind's audio encoder. :meth:`pump` advances
    up to a time so that audio is interleaved with the video as it is written. ``end``
    (seconds) cuts the audio there: copied packets that start at or after it are left out,
    re-encoded audio stops at that sample. Only whole packets that end by the pumped time
    go out, so an ``end`` set later, but not before that time, is still exact.
    """

    def __init__(self, feed: AudioFeed, output: av.container.OutputContainer, kind: _Kind, out_name: Path):
        feed.claim()
        self._feed = feed
        self._out = output
        self._out_name = out_name
        self.end = math.inf
        self.active = False
        try:
            self._setup(kind)
        except BaseException:
            feed.release()
            raise

    def _setup(self, kind: _Kind) -> None:
        feed = self._feed
        # ADTS (raw .aac, MPEG-TS) AAC needs a bitstream filter to go into MP4/MOV; re-encoding is simpler.
        adts = feed.format_name in ("aac", "mpegts") and kind.container in ("mp4", "mov")
        self._copy = feed.codec in kind.audio_copy and not adts
        if self._copy:
            try:
                self._dst = feed.add_copy_to(self._out)
            except ValueError:
                self._copy = False
        if not self._copy:
            if feed.decoder is None:
                log.warning("%s: its audio codec cannot be decoded; %s will be silent", feed.name, self._out_name)
                feed.release()
                return
            self._setup_encoder(kind.audio_codec, feed.decoder)
        self.active = True
        log.info("audio from %s: %s", feed.name,
                 f"{feed.codec} copied" if self._copy else f"{feed.codec} re-encoded as {kind.audio_codec}")

    def _setup_encoder(self, encoder: str, src: av.audio.codeccontext.AudioCodecContext) -> None:
        if encoder == "libopus":
            rate = 48000
        else:
            rate = src.sample_rate if src.sample_rate in _AAC_RATES else 48000
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
        """Mux the feed's packets that end by ``until`` seconds and start before ``end``."""
        if not self.active:
            return
        for packet in self._feed.take(min(until, self.end), whole=until < self.end):
            self._carry(packet)

    def _carry(self, packet: av.Packet | None) -> None:
        """Mux one packet; None flushes the decoder, resampler and encoder (re-encoding, once)."""
        if self._copy:
            packet.stream = self._dst
            self._out.mux(packet)
            return
        decoder = self._feed.decoder
        try:
            frames = decoder.decode(packet)
        except av.error.FFmpegError as e:
            log.warning("%s: skipped undecodable audio (%s)", self._feed.name, e.strerror or e)
            frames = []
        if packet is None:
            frames.append(None)  # flushes the resampler
            self.active = False
        for frame in frames:
            if frame is not None and self._next_sample is None:
                start = frame.time if frame.time is not None else 0.0
                self._next_sample = round(start * self._rate)
            for out in self._resampler.resample(frame):
                out = self._cut(out)
                if out is None:
                    continue
                out.pts = self._next_sample
                out.time_base = Fraction(1, self._rate)
                self._next_sample += out.samples
                self._out.mux(self._dst.encode(out))
        if packet is None:
            self._out.mux(self._dst.encode(None))

    def _cut(self, frame: av.AudioFrame) -> av.AudioFrame | None:
        """``frame`` (about to start at sample ``_next_sample``) without what lies at or after ``end``."""
        if self.end == math.inf:
            return frame
        keep = round(self.end * self._rate) - self._next_sample
        if keep >= frame.samples:
            return frame
        if keep <= 0:
            return None
        data = frame.to_ndarray()  # planar: [channels, samples]; packed: [1, samples * channels]
        per_sample = 1 if frame.format.is_planar else frame.layout.nb_channels
        cut = av.AudioFrame.from_ndarray(np.ascontiguousarray(data[:, :keep * per_sample]),
                                         format=frame.format.name, layout=frame.layout.name)
        cut.sample_rate = frame.sample_rate
        return cut

    def finish(self) -> None:
        """Mux what the feed still holds (up to ``end``), flush, and let the feed go."""
        if self.active:
            for packet in self._feed.take(self.end):
                self._carry(packet)
            if not self._copy:
                self._carry(None)
        self.close()

    def close(self) -> None:
        self.active = False
        self._feed.release()


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
    name, mapped onto libvpx's speed for VP9.

    Audio goes along from ``audio``, the :class:`AudioFeed` of the reader whose frames are
    written (``VideoReader(..., audio=True).audio``, ``FileSource.audio``), or from the file
    ``audio_from`` names (opened again, for callers without a feed). It is copied when the
    container allows its codec, else encoded as AAC (Opus for WebM), and interleaved with the
    video: each frame takes the audio up to its time + ``AUDIO_LEAD_S`` or one frame period,
    whichever is shorter. :meth:`close` adds what the feed still holds: all of it once the
    reader has reached the end, what it demuxed if it stopped early. :meth:`end_audio_at`
    cuts it at the video's end.
    """

    def __init__(self, path: PathLike, *, width: int, height: int, rate: Fraction, kind: str | None = None,
                 audio: AudioFeed | None = None, audio_from: PathLike | None = None, crf: int = 18,
                 preset: str = "veryfast"):
        if audio is not None and audio_from is not None:
            raise ValueError("give audio (a feed) or audio_from (a file), not both")
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
            self._open(audio, audio_from, crf, preset)
        except BaseException:
            self.abort()
            raise

    def _open(self, audio: AudioFeed | None, audio_from: PathLike | None, crf: int, preset: str) -> None:
        if self.kind == "png":
            self._png = _PngFolder(self._partial, self.path)
            self._clock = _Clock(Fraction(1, 90000), self.rate, str(self.path))
            if audio is not None or audio_from is not None:
                log.warning("PNG sequences have no audio; the audio of %s is dropped",
                            audio.name if audio is not None else audio_from)
            if audio is not None:
                audio.release()
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
            audio = AudioFeed.from_file(audio_from)
            if audio is None:
                log.info("%s has no audio; %s will be silent", audio_from, self.path)
        if audio is not None:
            self._audio = _AudioCarrier(audio, self._container, spec, self.path)

    @property
    def last_pts(self) -> float | None:
        """The time of the last frame written, seconds (as stamped, after any nudge); None before the first."""
        return self._clock.last_seconds

    def end_audio_at(self, seconds: float) -> None:
        """End the audio at ``seconds``, on the timeline of the pts given to :meth:`write`.

        For a video that stops before its source's end (a frame limit, a stopped run): call it
        before :meth:`close` with the last frame's pts + one frame duration (1 / ``rate``); the
        audio already written runs at most that far past the last frame, so a time before that
        cannot take it back. Copied audio loses the packets that start at or after ``seconds``
        (so it may run up to one packet longer, e.g. 1024 samples for AAC); re-encoded audio
        ends at that sample. No effect without audio.
        """
        if self._state != "open":
            raise ValueError(f"{self.path} is already closed")
        if math.isnan(seconds):
            raise ValueError("end_audio_at needs a time in seconds, got NaN")
        if self._audio is not None:
            self._audio.end = float(seconds)

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
                self._audio.pump(float(ticks * self._clock.tick) + min(AUDIO_LEAD_S, 1 / self.rate))
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

    def write(self, alpha: np.ndarray, pts: float | None = None, *, repeat: bool = False) -> None:
        """Add one matte: ``uint8 [H, W]``, 255 where the person is; pts in seconds or None.

        ``repeat``: the matte of a frame sent again (live output falling behind), with that
        frame's pts; it is stamped one tick (1 ms) after the matte before it.
        """
        if self._state != "open":
            raise ValueError(f"{self.path} is already closed")
        _check_image(alpha, self.width, self.height, (0,))
        ticks = self._clock.next(pts, repeat=repeat)
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
