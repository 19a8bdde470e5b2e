"""Reading videos: any file (or http(s) URL) FFmpeg can demux -> upright BGR frames with their times.

:func:`probe` describes a video (:class:`VideoInfo`); :class:`VideoReader` decodes it into
``uint8 [H, W, 3]`` BGR pictures, turned upright by the stream's display matrix, each with
its presentation time in seconds (the stream's own: variable frame rates are kept). Every
failure to open, or to decode anything at all, is a one-line :class:`LivematteError` naming the
input; damaged stretches inside a file are skipped, as FFmpeg does. A reader opened with
``audio=True`` also hands the file's audio packets (every audio stream), demuxed along with
the video from the same container, to an :class:`~livematte.media.audio.AudioFeed` that a
writer takes them from.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction

import av
import av.error
import cv2
import numpy as np

from ..errors import LivematteError
from . import PathLike
from .audio import AudioFeed
from .opening import open_input

log = logging.getLogger(__name__)

# File names taken for videos: batch folders, and backgrounds that play rather than stand still.
VIDEO_SUFFIXES = frozenset({".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v", ".mpg", ".mpeg", ".ts", ".flv",
                            ".wmv", ".gif"})

_MKV_DURATION = re.compile(r"^\d+:\d\d:\d\d(\.\d+)?$")  # the per-track DURATION tag
_CLOCKWISE = {90: cv2.ROTATE_90_CLOCKWISE, 180: cv2.ROTATE_180, 270: cv2.ROTATE_90_COUNTERCLOCKWISE}


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


def probe(path: PathLike) -> VideoInfo:
    """Describe a video file or http(s) URL; :class:`LivematteError` if it is not a readable video."""
    with VideoReader(path) as reader:
        return reader.info


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

    ``audio=True``: every audio stream is demuxed together with the video, and their
    packets go to ``self.audio`` (an :class:`AudioFeed`, None when the file has no audio) as
    they come, for a :class:`VideoWriter` to take.

    A packet the decoder rejects (a damaged stretch) is skipped and decoding goes on, as
    FFmpeg does: the frames after it keep their own times, and once the file is read one
    warning says how many frames were lost (``lost_frames``). Only a file of which no frame
    decodes is an error, raised on opening.

    A file that ends before its container says it should (a partial download, a demuxer
    that gives up) is noticed once reading stops: ``strict`` raises :class:`LivematteError`
    then, otherwise a warning is logged and the frames decoded so far are kept.

    :meth:`frames` may run on another thread than :meth:`close`: closing waits for the
    packet being decoded, and the frames stop there.

    ``start`` (seconds, on the stream's timeline): decoding begins at the keyframe at or before
    it (a seek), not at the file's start; the frames before ``start`` from that keyframe on are
    decoded and yielded too. A demuxer without an index may land later: compare the first pts.

    ``threads``: the decoder's threads (1: all decoding on the thread that reads the frames);
    None: FFmpeg's own choice (frame and slice threads, for throughput).
    """

    def __init__(self, path: PathLike, *, strict: bool = False, audio: bool = False, start: float | None = None,
                 threads: int | None = None):
        self.path = str(path)
        self._threads = threads
        self.strict = strict
        self.audio: AudioFeed | None = None
        self._stopped = False  # demuxing failed part-way (already reported)
        # Video packets demuxed (with data), frames they gave, packets the decoder rejected, the last
        # decoder error, and where the packets end (seconds): packets that give no frame are lost.
        self._packets = self._decoded_frames = self._rejected = 0
        self._decode_error: av.error.FFmpegError | None = None
        self._packet_end: float | None = None
        self.lost_frames = 0  # known once frames() has run to the end
        self._closed = False
        # Held while FFmpeg uses the container: during each demux/decode step, and by close().
        self._lock = threading.Lock()
        self._container = open_input(self.path)
        try:
            self._first, self.info = self._start(audio, start)
        except BaseException:
            self.close()
            raise

    def _start(self, audio: bool, start: float | None) -> tuple[av.VideoFrame, VideoInfo]:
        container, name = self._container, self.path
        if not container.streams.video:
            what = "audio only, " if container.streams.audio else ""
            raise LivematteError(f"{name} has no video stream ({what}nothing to matte)")
        stream = container.streams.video[0]
        if stream.codec_context is None:
            raise LivematteError(f"{name}: its video codec is not supported by this FFmpeg")
        codec = stream.codec_context.name
        if self._threads:
            stream.thread_count = self._threads
        else:
            stream.thread_type = "AUTO"
        self._declared = self._declared_end(stream)
        streams = [stream]
        if audio and container.streams.audio:
            streams += container.streams.audio
            self.audio = AudioFeed(name, list(container.streams.audio), container.format.name, self._lock)
        if start is not None and stream.time_base:
            try:
                container.seek(round(start / stream.time_base), stream=stream, backward=True)
            except av.error.FFmpegError as e:
                raise LivematteError(f"cannot seek to {start:.3f} s in {name}: {e.strerror or e}") from e
        self._decoded = self._demux(streams)
        try:
            with self._lock:
                first = next(self._decoded)
        except StopIteration:
            error = self._decode_error
            if error is not None:
                raise LivematteError(f"cannot decode {name} ({codec} video): not one of its {self._packets} "
                                     f"frames decodes ({error.strerror or error})") from error
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
        """Frames of ``streams[0]`` (the video); packets of the others, the audio if any, go to the feed.

        A packet the decoder rejects is skipped, as FFmpeg does: decoding resumes with the next
        one it can use (a keyframe at worst). Demuxer errors are raised.
        """
        video = streams[0]
        for packet in self._container.demux(streams):
            # By stream, not stream_index: the empty packets that end each stream leave the index at 0.
            if packet.stream is not video:
                self.audio.put(packet)
                continue
            if packet.size:
                self._packets += 1
                start = packet.pts if packet.pts is not None else packet.dts
                if start is not None and packet.time_base:
                    end = float((start + (packet.duration or 0)) * packet.time_base)
                    self._packet_end = max(end, self._packet_end or end)
            try:
                frames = packet.decode()
            except av.error.FFmpegError as e:  # as FFmpeg: a decoder error costs that packet only
                self._decode_error = e
                self._rejected += 1
                continue
            self._decoded_frames += len(frames)
            yield from frames

    def frames(self) -> Iterator[tuple[np.ndarray, float]]:
        """Yield ``(image, pts)``: ``uint8 [H, W, 3]`` BGR upright, pts in seconds.

        pts are the stream's own (variable frame rates are preserved). Frames that do not decode
        are left out, and counted in one warning once the frames stop (read to the end, or left
        early). A truncated file stops early: see ``strict``. Single pass.
        """
        step = 1.0 / self.info.fps
        pts: float | None = None
        if self.audio is not None:
            self.audio.release_unless_claimed()  # no writer wants it: demux it, keep none
        whole = False
        try:
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
            whole = not self._stopped and not self._closed
        finally:
            self._report_lost(whole)
        if pts is not None and whole:
            # The packets' end, not the frames': a damaged tail was read, so it is no truncation.
            missing = self._missing(max(pts + step, self._packet_end or 0.0))
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
                self._ended_early(f"reading stopped after {count} frames ({error.strerror or error})")
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

    def _report_lost(self, whole: bool) -> None:
        """One warning for the frames that could not be decoded: read to its end (``whole``), the
        file's packets that gave no frame; else the packets the decoder rejected so far (the
        packets not yet decoded are still in the decoder)."""
        self.lost_frames = max(0, self._packets - self._decoded_frames) if whole else self._rejected
        if self.lost_frames:
            error = self._decode_error
            why = f" ({error.strerror or error})" if error is not None else ""
            log.warning("%s: %d of %d frames could not be decoded%s: left out, the others keep their times",
                        self.path, self.lost_frames, self._packets, why)

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
