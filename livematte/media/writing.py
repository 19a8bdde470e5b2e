"""Writing videos: composites and mattes, encoded safely.

:class:`VideoWriter` encodes composites (``uint8 [H, W, 3]`` BGR or ``[H, W, 4]`` BGRA, pts in
seconds) to H.264 (.mp4, .mkv), VP9 with alpha (.webm), ProRes 4444 with alpha (.mov) or a
folder of RGBA PNGs, with the source's audio (:mod:`livematte.media.audio`).
:class:`AlphaWriter` writes mattes (``uint8 [H, W]``) losslessly: FFV1 gray .mkv or gray PNGs.
Both subclass :class:`~livematte.media.atomic.AtomicOutput`: they write under a temporary name
beside the target and move the result into place only when :meth:`close` succeeds, so a crash
or an interrupted run never leaves a half-written file under the name the user asked for.

Which kind a path asks for, and each kind's container, codec and settings: :mod:`.formats`.
"""

from __future__ import annotations

import logging
import math
import operator
import os
from fractions import Fraction
from pathlib import Path

import av
import av.error
from av.packet import PacketSideData, packet_sidedata_type_from_literal
import cv2
import numpy as np

from ..errors import LivematteError
from . import PathLike
from .atomic import AtomicOutput
from .audio import AUDIO_LEAD_S, AudioCarrier, AudioFeed
from .clock import Clock
from .formats import CONTAINER_KINDS, OUTPUT_KINDS, alpha_kind, check_encoding, codec_options, output_kind
from .vp9 import show_existing, show_existing_alpha

log = logging.getLogger(__name__)

# Codecs whose every frame stands alone: a frame shown again can be its packet again.
_INTRA_CODECS = frozenset({"prores_ks"})
# Codecs that can show a frame again with a header of their own (:mod:`.vp9`).
_SHOW_AGAIN_CODECS = frozenset({"libvpx-vp9"})
_BLOCK_ADDITIONAL = "matroska_block_additional"  # the packet side data that carries libvpx's alpha frame


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


class _PngFolder:
    """Numbered PNGs (``000000.png``...) written into a folder in call order."""

    def __init__(self, folder: Path, name: Path):
        self._folder = folder
        self._name = name
        self.count = 0
        self._last: bytes | None = None

    def write(self, image: np.ndarray) -> None:
        ok, encoded = cv2.imencode(".png", image, [cv2.IMWRITE_PNG_COMPRESSION, 3])
        if not ok:
            raise LivematteError(f"cannot encode frame {self.count} for {self._name}")
        self._last = encoded.tobytes()
        self._store(self._last)

    def repeat(self) -> None:
        """The last picture again, under the next number, without encoding it again."""
        self._store(self._last)

    def _store(self, data: bytes) -> None:
        try:
            (self._folder / f"{self.count:06d}.png").write_bytes(data)
        except OSError as e:
            raise LivematteError(f"cannot write {self._name}: {e.strerror or e}") from e
        self.count += 1


class VideoWriter(AtomicOutput):
    """Encodes composites to a video file or an RGBA PNG sequence.

    Kinds (``kind``, or from ``path``'s extension):

    - ``mp4`` (.mp4, .m4v): H.264 (libx264) yuv420p in MP4, ``+faststart``.
    - ``mkv``: H.264 yuv420p in Matroska.
    - ``webm``: VP9 (libvpx-vp9) yuva420p in WebM, with alpha: lossless (the matte survives
      exactly) unless ``webm_crf`` (0..63, lower is better) asks for constant quality.
    - ``mov``: ProRes (prores_ks) yuva444p10le in QuickTime, with alpha: ``prores`` is the
      profile, ``"4444"`` (the default) or ``"4444xq"``.
    - ``png`` (a folder: path ending in ``/`` or without extension): RGBA PNGs ``000000.png``...

    yuv420p cannot hold an odd width or height: such frames are padded by one pixel, repeating
    the last row/column, so an H.264 file of a 63x47 input is 64x48. Alpha kinds keep the size.

    ``rate`` is the nominal frame rate (the encoder's hint, and the step for frames written
    without a pts); the file keeps the pts given to :meth:`write`, so variable rates survive.
    ``constant_rate`` (a live recording): the file has a frame at every tick of ``rate`` from the
    first frame's pts instead. Each frame goes on the tick nearest its pts; a tick that gets
    none shows the last frame again (counted in ``repeated``; re-encoded from the picture
    already converted, or where ``cheap_repeats``, at next to no cost: ProRes and PNGs copy
    its packet or file, VP9 writes a one-byte header that shows it again, :mod:`.vp9`);
    a frame whose tick already has one is left out (counted in ``skipped``). So the file holds
    duration x rate frames and each stays at its pts, within half a period, beside the audio.
    (:meth:`write`'s ``fill=False`` and :meth:`hold` let a live caller choose when to repeat.)
    ``crf`` (0..51, lower is better) applies to libx264; ``preset`` is an x264 preset
    name, mapped onto libvpx's speed for VP9. ``webm_crf`` and ``prores`` are the quality of
    the alpha kinds, as above; each setting is ignored by the kinds it is not for. A value out
    of range is a ``ValueError`` naming it, raised before any file is made.

    Audio goes along from ``audio``, the :class:`AudioFeed` of the reader whose frames are
    written (``VideoReader(..., audio=True).audio``, ``FileSource.audio``): every audio stream,
    each copied when the container allows its codec (``ContainerKind.audio_copy``), else encoded
    as AAC (Opus for WebM), with its language and title, and interleaved with the
    video: each frame takes the audio up to its time + ``AUDIO_LEAD_S`` or one frame period,
    whichever is shorter. :meth:`close` adds what the feed still holds: all of it once the
    reader has reached the end, what it demuxed if it stopped early. :meth:`end_audio_at`
    cuts it at the video's end.
    """

    def __init__(self, path: PathLike, *, width: int, height: int, rate: Fraction, kind: str | None = None,
                 audio: AudioFeed | None = None, crf: int = 18, preset: str = "veryfast",
                 webm_crf: int | None = None, prores: str = "4444", constant_rate: bool = False):
        width, height = _check_size(width, height)
        check_encoding(crf, webm_crf, prores)
        kind = kind or output_kind(path)
        if kind not in OUTPUT_KINDS:
            raise LivematteError(f"unknown output kind {kind!r} for {path}; use one of {', '.join(OUTPUT_KINDS)}")
        self.kind = kind
        self.has_alpha = kind == "png" or CONTAINER_KINDS[kind].alpha
        self.width, self.height = width, height
        self.rate = _check_rate(rate)
        self._audio: AudioCarrier | None = None
        self._container = None
        self.constant_rate = constant_rate
        self.repeated = 0  # constant_rate: frames written again on a tick that got none of its own
        self.skipped = 0  # constant_rate: frames left out, their tick already had one
        self._origin: float | None = None  # constant_rate: the first frame's pts, seconds
        self._index = -1  # constant_rate: the last tick written, counted from the first frame's
        self._last_frame: av.VideoFrame | None = None  # constant_rate: the last picture, converted, for repeats
        # constant_rate, where the codec allows: the packet that shows the last frame again, as
        # (data, alpha side data or None): its own packet for intra-only codecs, a VP9 show-existing header.
        self._repeat_packet: tuple[bytes, bytes | None] | None = None
        # Whether a repeat costs next to nothing (a copy, a header) rather than an encode.
        codec = None if kind == "png" else CONTAINER_KINDS[kind].codec
        self.cheap_repeats = kind == "png" or codec in _INTRA_CODECS or (constant_rate and codec in _SHOW_AGAIN_CODECS)
        super().__init__(path, folder=kind == "png")
        try:
            self._open(audio, crf, preset, webm_crf, prores)
        except BaseException:
            self.abort()
            raise

    def _open(self, audio: AudioFeed | None, crf: int, preset: str, webm_crf: int | None, prores: str) -> None:
        if self.kind == "png":
            self._png = _PngFolder(self._partial, self.path)
            self._clock = Clock(Fraction(1, 90000), self.rate, str(self.path))
            if audio is not None:
                log.warning("PNG sequences have no audio; the audio of %s is dropped", audio.name)
                audio.release()
            return
        spec = CONTAINER_KINDS[self.kind]
        self._spec = spec
        self._clock = Clock(spec.tick, self.rate, str(self.path))
        self._pad = (self.height % 2, self.width % 2) if spec.even else (0, 0)
        if any(self._pad):
            log.info("%s: H.264 yuv420p needs even sizes; encoding %dx%d with the edge repeated",
                     self.path, self.width + self._pad[1], self.height + self._pad[0])
        options = {"mp4": {"movflags": "+faststart"}, "mov": {"movflags": "+faststart"}}.get(self.kind, {})
        try:
            self._container = av.open(str(self._partial), "w", format=spec.container, options=options)
            options = codec_options(spec, crf, preset, webm_crf, prores)
            if self.constant_rate and spec.codec in _SHOW_AGAIN_CODECS:
                # Each frame out as it goes in (no look-ahead, no hidden frames), so a repeat can
                # show the frame just written; a live recording wants no look-ahead anyway.
                options["lag-in-frames"] = "0"
            stream = self._container.add_stream(spec.codec, rate=self.rate, options=options)
            stream.width = self.width + self._pad[1]
            stream.height = self.height + self._pad[0]
            stream.pix_fmt = spec.pix_fmt
            stream.codec_context.time_base = spec.tick
            if spec.codec == "libvpx-vp9":
                stream.codec_context.thread_count = os.cpu_count() or 1
            self._stream = stream
        except (av.error.FFmpegError, OSError, ValueError) as e:
            raise LivematteError(f"cannot write {self.path}: {getattr(e, 'strerror', None) or e}") from e
        if audio is not None:
            self._audio = AudioCarrier(audio, self._container, self.path, muxer=spec.container,
                                       copies=spec.audio_copy, encoder=spec.audio_codec)

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

    def write(self, image: np.ndarray, pts: float | None = None, *, fill: bool = True) -> None:
        """Add one frame.

        image: ``uint8 [H, W, 3]`` BGR or ``uint8 [H, W, 4]`` BGRA at the writer's size. Alpha
            kinds get alpha 255 for a BGR image; H.264 drops a BGRA image's alpha.
        pts: presentation time, seconds; None means one frame after the previous one.
        fill (constant_rate): the ticks since the last frame written show it again; False leaves
            them without a frame (the last one then holds until this one's time, as in a variable
            rate file): for an encoder that is behind, which a repeat would put further behind.
        """
        if self._state != "open":
            raise ValueError(f"{self.path} is already closed")
        _check_image(image, self.width, self.height, (3, 4))
        if not self.constant_rate:
            self._encode(image, self._clock.next(pts))
            return
        if self._origin is None:
            self._origin = 0.0 if pts is None else float(pts)
        index = self._index + 1 if pts is None else round((float(pts) - self._origin) * float(self.rate))
        if index <= self._index:
            self.skipped += 1
            return
        if fill:
            self._repeat_to(index - 1)
        self._encode(image, self._clock.next(self._tick_seconds(index)))
        self._index = index

    def hold(self, seconds: float) -> None:
        """constant_rate: the last frame written shown again at each tick after it up to ``seconds``
        (on the pts' timeline): a source that stalls, filled as its time passes. No effect
        before the first frame, or on ticks written already."""
        if self._state != "open":
            raise ValueError(f"{self.path} is already closed")
        if self.constant_rate and self._origin is not None:
            self._repeat_to(math.floor((seconds - self._origin) * float(self.rate) + 1e-9))

    def _tick_seconds(self, index: int) -> float:
        return self._origin + float(index / self.rate)

    def _repeat_to(self, index: int) -> None:
        for missing in range(self._index + 1, index + 1):
            self._repeat(self._clock.next(self._tick_seconds(missing)))
        self._index = max(self._index, index)

    def _encode(self, image: np.ndarray, ticks: int) -> None:
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
        if self.constant_rate:
            # Converted here, once, rather than by the encoder: a repeat sends the same converted frame.
            frame = frame.reformat(self._stream.width, self._stream.height, self._spec.pix_fmt)
            self._last_frame = frame
        self._send(frame, ticks)

    def _repeat(self, ticks: int) -> None:
        """The last frame written shown again at ``ticks``."""
        self.repeated += 1
        if self.kind == "png":
            self._png.repeat()
        elif self._repeat_packet is not None:
            # The same picture without encoding it again: an intra-only frame's packet copied, or
            # VP9's header that shows the frame the decoder holds.
            data, alpha = self._repeat_packet
            packet = av.Packet(data)
            if alpha is not None:
                side_data = PacketSideData(packet_sidedata_type_from_literal(_BLOCK_ADDITIONAL), len(alpha))
                side_data.update(alpha)
                side_data.to_packet(packet, move=True)
            packet.stream = self._stream
            packet.time_base = self._clock.tick
            packet.pts = packet.dts = ticks
            packet.is_keyframe = self._spec.codec in _INTRA_CODECS
            self._mux([packet], ticks)
        else:
            self._send(self._last_frame, ticks)

    def _send(self, frame: av.VideoFrame, ticks: int) -> None:
        frame.pts = ticks
        frame.time_base = self._clock.tick
        try:
            packets = self._stream.encode(frame)
        except av.error.FFmpegError as e:
            raise LivematteError(f"cannot write {self.path}: {e.strerror or e}") from e
        if self.constant_rate:
            self._repeat_packet = self._repeat_of(packets, ticks)
        self._mux(packets, ticks)

    def _repeat_of(self, packets: list, ticks: int) -> tuple[bytes, bytes | None] | None:
        """The packet that shows this frame (at ``ticks``) again, if the codec has one and the
        frame came out at once as one packet; None: a repeat is encoded."""
        if len(packets) != 1 or packets[0].pts != ticks:
            return None
        packet = packets[0]
        if self._spec.codec in _INTRA_CODECS:
            return bytes(packet), None
        if self._spec.codec not in _SHOW_AGAIN_CODECS:
            return None
        data = show_existing(bytes(packet))
        if not packet.has_sidedata(_BLOCK_ADDITIONAL):
            return None if data is None else (data, None)
        alpha = show_existing_alpha(bytes(packet.get_sidedata(_BLOCK_ADDITIONAL)))
        return None if data is None or alpha is None else (data, alpha)

    def _mux(self, packets: list, ticks: int) -> None:
        try:
            self._container.mux(packets)
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


class AlphaWriter(AtomicOutput):
    """Writes mattes losslessly: reading them back gives exactly the values written.

    ``.mkv``: FFV1 (level 3) gray in Matroska, keeping the pts given to :meth:`write`
    (millisecond ticks). ``.nut``: the same timestamps, the mattes raw (8-bit gray in FFmpeg's NUT,
    0.9 MB a 720p frame): about 1 ms a frame to write against FFV1's 4-12, for a busy live run that
    must keep every matte. A folder (path ending in ``/`` or without extension): 8-bit gray
    PNGs ``000000.png``... in write order (no timestamps).
    """

    def __init__(self, path: PathLike, *, width: int, height: int, rate: Fraction):
        width, height = _check_size(width, height)
        kind = alpha_kind(path)
        self.kind = kind
        self.width, self.height = width, height
        self.rate = _check_rate(rate)
        self._container = None
        super().__init__(path, folder=kind == "png")
        self._clock = Clock(Fraction(1, 1000), self.rate, str(self.path))
        if kind == "png":
            self._png = _PngFolder(self._partial, self.path)
            return
        try:
            if kind == "nut":
                self._container = av.open(str(self._partial), "w", format="nut")
                stream = self._container.add_stream("rawvideo", rate=self.rate)
            else:
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
