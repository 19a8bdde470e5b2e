"""Segments joined into one output without re-encoding, with the source's audio copied once.

Every segment of a video was encoded alone, with the same settings, by
:class:`~livematte.media.writing.VideoWriter` (or :class:`~livematte.media.writing.AlphaWriter`),
so each starts on a keyframe and their packets can follow one another in one stream:
:class:`Join` copies them, in order, into the output's container. Two things about the
segment files are put right on the way:

- a container may move a file's start (MP4 and MOV keep it in an edit list counted in
  milliseconds: a segment starting at 3.700 s of a 1/90000 stream comes back 30 ticks early),
  so each segment's packets are moved back to the tick its first frame was written at: the
  output's muxer then gets the very timestamps that one pass of the ``video`` command gives it;
- Matroska stores no decode times, and its demuxer leaves the first packets' unknown; they get
  the earliest time still to be shown, which keeps decode times in order and never after a
  packet's own presentation.

The source's audio goes through the writers' own :class:`~livematte.media.audio.AudioCarrier`,
interleaved with the video by time, copied or re-encoded exactly as one pass would.
A PNG sequence's segments are folders: their frames are renumbered into the output folder.
Outputs are :class:`~livematte.media.atomic.AtomicOutput`: complete under their name, or absent.
"""

from __future__ import annotations

import math
import shutil
import threading
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av
import av.error

from ..errors import LivematteError
from ..media.atomic import AtomicOutput
from ..media.audio import AUDIO_LEAD_S, AudioCarrier, AudioFeed
from ..media.opening import open_input
# The writers' own table of kinds (container, codec, tick, audio rules): segments and the output
# they are joined into must agree with what VideoWriter wrote.
from ..media.formats import CONTAINER_KINDS

ALPHA_MUXER, ALPHA_TICK = "matroska", Fraction(1, 1000)  # AlphaWriter's .mkv


class _SourceAudio:
    """The audio streams of an input, fed packet by packet into an :class:`AudioFeed` as the
    output's video time advances (so that the feed holds a fraction of a second, not the film)."""

    def __init__(self, path: str):
        self._container = open_input(path)
        self.feed = None
        if not self._container.streams.audio:
            return
        streams = list(self._container.streams.audio)
        self.feed = AudioFeed(path, streams, self._container.format.name, threading.Lock())
        self._packets = self._container.demux(streams)
        self._pending: av.Packet | None = None

    def fill(self, until: float) -> None:
        """Put into the feed every packet that starts before ``until`` seconds (all: ``math.inf``)."""
        while True:
            packet = self._pending or next(self._packets, None)
            self._pending = None
            if packet is None:
                return
            start = packet.pts if packet.pts is not None else packet.dts
            if start is not None and packet.time_base and float(start * packet.time_base) >= until:
                self._pending = packet
                return
            self.feed.put(packet)

    def close(self) -> None:
        self._container.close()


class Join(AtomicOutput):
    """One video file made of segment files (same codec, size and settings), packets copied.

    muxer, tick: the output container and the time base its video was written in (the
    writer's clock tick); options: the muxer's. audio: the input whose audio goes along
    (None: none), copied when the container takes its codec (``copies``) else encoded with
    ``encoder``; ``audio_end`` (seconds) cuts it there, as a ``--frames`` run does.
    Add the parts in order with :meth:`add`, then :meth:`close`.
    """

    def __init__(self, path: Path, *, muxer: str, tick: Fraction, options: dict | None = None,
                 audio: str | None = None, copies: frozenset[str] = frozenset(), encoder: str = "aac",
                 audio_end: float | None = None):
        super().__init__(path, folder=False)
        self._muxer, self._tick, self._options = muxer, tick, options or {}
        self._audio_input, self._copies, self._encoder, self._audio_end = audio, copies, encoder, audio_end
        self._container = self._stream = self._codec = None
        self._audio: _SourceAudio | None = None
        self._carrier: AudioCarrier | None = None
        self._last_dts: int | None = None
        self._shown = -math.inf  # seconds: the latest video time muxed
        self.packets = 0

    def add(self, part: Path, at: float | None) -> None:
        """Append a segment file whose first frame was written at ``at`` seconds (None: as it is)."""
        try:
            with av.open(str(part)) as source:
                stream = source.streams.video[0]
                packets = [p for p in source.demux(stream) if p.size]
                if self._container is None:
                    self._open(stream)
                self._check(stream, part)
                self._copy(packets, stream.time_base, at)
        except av.error.FFmpegError as e:
            raise LivematteError(f"cannot join {part.name} into {self.path}: {e.strerror or e}") from e

    def _open(self, template: av.VideoStream) -> None:
        self._container = av.open(str(self._partial), "w", format=self._muxer, options=self._options)
        self._stream = self._container.add_stream_from_template(template)
        self._stream.time_base = template.time_base
        self._codec = _parameters(template)
        if self._audio_input is not None:
            self._audio = _SourceAudio(self._audio_input)
            if self._audio.feed is not None:
                self._carrier = AudioCarrier(self._audio.feed, self._container, self.path, muxer=self._muxer,
                                             copies=self._copies, encoder=self._encoder)
                if self._audio_end is not None:
                    self._carrier.end = self._audio_end

    def _check(self, stream: av.VideoStream, part: Path) -> None:
        if _parameters(stream) != self._codec:
            raise LivematteError(f"cannot join {part.name} into {self.path}: it was encoded with other settings "
                                 "than the first segment (different livematte or FFmpeg versions on the nodes?)")

    def _copy(self, packets: list[av.Packet], time_base: Fraction, at: float | None) -> None:
        shift = 0
        if at is not None and packets:
            # Where the writer's clock put the first frame, in this stream's ticks.
            written = Fraction(round(at / self._tick)) * self._tick
            shift = round(written / time_base) - min(p.pts for p in packets)
        for packet, dts in zip(packets, _decode_times(packets)):
            packet.pts += shift
            packet.dts = dts + shift
            if self._last_dts is not None and packet.dts < self._last_dts:
                raise LivematteError(f"cannot join the segments of {self.path}: their timestamps overlap")
            self._last_dts = packet.dts
            packet.stream = self._stream
            self._container.mux(packet)
            self.packets += 1
            self._shown = max(self._shown, float(packet.pts * time_base))
            if self._carrier is not None:
                # As VideoWriter interleaves: audio up to a little past the video written.
                until = self._shown + min(AUDIO_LEAD_S, 1 / float(self._stream.average_rate or 30))
                self._audio.fill(until)
                self._carrier.pump(until)

    def _finish(self) -> None:
        if self._container is None:
            raise LivematteError(f"cannot write {self.path}: no segments to join")
        try:
            if self._carrier is not None:
                self._audio.fill(math.inf)
                self._carrier.finish()
            self._container.close()
        except av.error.FFmpegError as e:
            raise LivematteError(f"cannot write {self.path}: {e.strerror or e}") from e
        finally:
            if self._audio is not None:
                self._audio.close()

    def _discard(self) -> None:
        if self._carrier is not None:
            self._carrier.close()
        if self._audio is not None:
            self._audio.close()
        if self._container is not None:
            try:
                self._container.close()
            except Exception:  # the file is deleted next
                pass


def _parameters(stream: av.VideoStream) -> tuple:
    """What must match for segments to share one stream: codec, size, pixel format, headers."""
    codec = stream.codec_context
    return codec.name, codec.width, codec.height, codec.pix_fmt, bytes(codec.extradata or b"")


def _decode_times(packets: list[av.Packet]) -> Iterator[int]:
    """Each packet's decode time, in its stream's ticks: its own when the demuxer gives one,
    else the earliest presentation time at or after it in decode order (Matroska stores none),
    never later than the next known decode time."""
    fill, known = [0] * len(packets), None
    earliest = math.inf
    for i in range(len(packets) - 1, -1, -1):
        earliest = min(earliest, packets[i].pts)
        if packets[i].dts is not None:
            known = packets[i].dts
        fill[i] = earliest if known is None else min(earliest, known)
    for packet, filled in zip(packets, fill):
        yield packet.dts if packet.dts is not None else filled


def join_video(parts: list[tuple[Path, float | None]], output: Path, kind: str, *, audio: str | None = None,
               audio_end: float | None = None) -> int:
    """The segment files ``(path, first frame's pts)`` of a video, in order, as one ``kind`` output
    (``mp4``, ``mkv``, ``webm``, ``mov``: as VideoWriter writes it, with ``audio``'s first audio
    stream; ``png``: folders of frames); -> frames written."""
    if kind == "png":
        return join_frames([path for path, _ in parts], output)
    spec = CONTAINER_KINDS[kind]
    options = {"movflags": "+faststart"} if kind in ("mp4", "mov") else {}  # as VideoWriter's
    with Join(output, muxer=spec.container, tick=spec.tick, options=options, audio=audio,
              copies=spec.audio_copy, encoder=spec.audio_codec, audio_end=audio_end) as joined:
        for path, at in parts:
            joined.add(path, at)
    return joined.packets


def join_alpha(parts: list[tuple[Path, float | None]], output: Path, kind: str) -> int:
    """The matte files of a video's segments (AlphaWriter's FFV1 ``mkv``, or ``png`` folders) as one."""
    if kind == "png":
        return join_frames([path for path, _ in parts], output)
    with Join(output, muxer=ALPHA_MUXER, tick=ALPHA_TICK) as joined:
        for path, at in parts:
            joined.add(path, at)
    return joined.packets


def join_frames(folders: list[Path], output: Path) -> int:
    """Folders of numbered PNGs, in order, renumbered into the folder ``output``; -> frames."""
    with AtomicOutput(output, folder=True) as joined:
        count = 0
        for folder in folders:
            for frame in sorted(folder.glob("*.png")):
                shutil.move(str(frame), str(joined._partial / f"{count:06d}.png"))
                count += 1
    return count
