"""Audio passthrough: an input's audio carried into an output alongside the video.

:class:`AudioFeed` holds the first audio stream of one input as compressed packets in demux
order: a :class:`~livematte.media.reading.VideoReader` opened with ``audio=True`` adds them as
it demuxes the video, so the input is opened and read once. :class:`AudioCarrier`, used by
:class:`~livematte.media.writing.VideoWriter`, takes the packets up to the video time written
and muxes them into the output: copied untouched when the output's container accepts the
codec, else decoded, resampled and encoded (AAC, or Opus for WebM). Times are seconds on the
input's timeline, the one the writer's pts follow.
"""

from __future__ import annotations

import logging
import math
import threading
from collections import deque
from fractions import Fraction
from pathlib import Path

import av
import av.error
import numpy as np

from ..errors import LivematteError

log = logging.getLogger(__name__)

# How far audio may run ahead of the latest video frame when interleaving, seconds. Writers
# keep to one frame period when that is shorter, so that VideoWriter.end_audio_at(last frame's
# pts + one frame), called after the last frame, still finds all the audio past it unwritten.
AUDIO_LEAD_S = 0.1

_AUDIO_FRAME_SIZE = {"aac": 1024, "libopus": 960}
_AUDIO_BIT_RATE = {"aac": 192_000, "libopus": 128_000}
_AAC_RATES = {96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000}


class AudioFeed:
    """The first audio stream of one input, as its compressed packets in demux order, for one writer.

    A :class:`VideoReader` opened with ``audio=True`` adds packets as it demuxes them along
    with the video (on the capture thread); the :class:`VideoWriter` given the feed takes them
    up to the video time it has written (on its own thread). Thread-safe. Demux order keeps
    the feed short (the frames in flight plus the file's audio/video interleaving: a fraction
    of a second); ``CAPACITY_BYTES`` bounds it anyway: beyond that the oldest packets are
    dropped, with a warning once a writer holds the feed.

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
        """The writer is done: drop what is held and keep nothing more."""
        with self._lock:
            self._released = True
            self._packets.clear()
            self._bytes = 0

    def put(self, packet: av.Packet) -> None:
        """From whoever reads the packets (the source, or the segments' joiner): one more, in demux order."""
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


def _packet_start(packet: av.Packet) -> float | None:
    """When a packet starts, seconds; None when it has no timestamp (it then goes with the one before)."""
    when = packet.pts if packet.pts is not None else packet.dts
    if when is None or not packet.time_base:
        return None
    return float(when * packet.time_base)


def _packet_length(packet: av.Packet) -> float:
    """How long a packet plays, seconds (0 when the demuxer does not say)."""
    return float(packet.duration * packet.time_base) if packet.duration and packet.time_base else 0.0



class AudioCarrier:
    """Moves the packets of an :class:`AudioFeed` into an output container, alongside the video.

    ``muxer``: the output's FFmpeg muxer name. Packets are copied untouched when their codec
    is one of ``copies`` (codecs the output kind takes as they are), otherwise decoded,
    resampled and encoded with ``encoder`` (``"aac"`` or ``"libopus"``). :meth:`pump` advances
    up to a time so that audio is interleaved with the video as it is written. ``end``
    (seconds) cuts the audio there: copied packets that start at or after it are left out,
    re-encoded audio stops at that sample. Only whole packets that end by the pumped time
    go out, so an ``end`` set later, but not before that time, is still exact.
    """

    def __init__(self, feed: AudioFeed, output: av.container.OutputContainer, out_name: Path, *,
                 muxer: str, copies: frozenset[str], encoder: str):
        feed.claim()
        self._feed = feed
        self._out = output
        self._out_name = out_name
        self.end = math.inf
        self.active = False
        try:
            self._setup(muxer, copies, encoder)
        except BaseException:
            feed.release()
            raise

    def _setup(self, muxer: str, copies: frozenset[str], encoder: str) -> None:
        feed = self._feed
        # ADTS (raw .aac, MPEG-TS) AAC needs a bitstream filter to go into MP4/MOV; re-encoding is simpler.
        adts = feed.format_name in ("aac", "mpegts") and muxer in ("mp4", "mov")
        self._copy = feed.codec in copies and not adts
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
            self._setup_encoder(encoder, feed.decoder)
        self.active = True
        log.info("audio from %s: %s", feed.name,
                 f"{feed.codec} copied" if self._copy else f"{feed.codec} re-encoded as {encoder}")

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
