"""Audio passthrough: an input's audio carried into an output alongside the video.

:class:`AudioFeed` holds every audio stream of one input as compressed packets in demux order:
a :class:`~livematte.media.reading.VideoReader` opened with ``audio=True`` adds them as it
demuxes the video, so the input is opened and read once. :class:`AudioCarrier`, used by
:class:`~livematte.media.writing.VideoWriter`, takes the packets up to the video time written
and muxes each stream into a stream of the output: copied untouched when the output's container
accepts the codec, else decoded, resampled and encoded (AAC, or Opus for WebM). Times are
seconds on the input's timeline, the one the writer's pts follow.
"""

from __future__ import annotations

import logging
import math
import threading
from collections import deque
from collections.abc import Sequence
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
_KEPT_METADATA = ("language", "title")  # what tells a stream from its siblings in a player's menu


class AudioTrack:
    """One audio stream of an input, as an :class:`AudioFeed` knows it.

    index: the stream's index in the input (its packets' ``stream_index``); number: its place
    among the input's audio streams, from 1, for messages. codec: the codec's FFmpeg name (e.g.
    ``"mp3"``, whichever decoder reads it), None when this FFmpeg cannot decode it (copying it
    may still work). decoder: the stream's decoder (None likewise), for the writer's thread only.
    metadata: its language and title, when the input names them.
    """

    def __init__(self, stream: av.audio.stream.AudioStream, number: int):
        self.index = stream.index
        self.number = number
        # PyAV allocates this apart from the container, so it stays usable after the input closes.
        self.decoder = stream.codec_context
        self.codec = self.decoder.codec.canonical_name if self.decoder is not None else None
        self.metadata = {key: stream.metadata[key] for key in _KEPT_METADATA if stream.metadata.get(key)}
        self.stream: av.audio.stream.AudioStream | None = stream  # None once the input is closed

    def describe(self) -> str:
        """``#2 (mp3, fre)``: how messages name it."""
        language = self.metadata.get("language")
        return f"#{self.number} ({self.codec or 'unknown codec'}{f', {language}' if language else ''})"


class AudioFeed:
    """The audio streams of one input, as their compressed packets in demux order, for one writer.

    A :class:`VideoReader` opened with ``audio=True`` adds packets as it demuxes them along
    with the video (on the capture thread); the :class:`VideoWriter` given the feed takes them
    up to the video time it has written (on its own thread). Thread-safe. Demux order keeps
    the feed short (the frames in flight plus the file's audio/video interleaving: a fraction
    of a second); ``CAPACITY_BYTES`` bounds it anyway: beyond that the oldest packets are
    dropped, with a warning once a writer holds the feed.

    name: the input, for messages. streams: its audio streams (one, or several: each is a
    :class:`AudioTrack` of ``tracks``, in order). format_name: its FFmpeg demuxer.
    input_lock: the lock held by whoever uses the input's container (the reader's).
    """

    CAPACITY_BYTES = 16 * 2**20

    def __init__(self, name: str, streams: av.audio.stream.AudioStream | Sequence[av.audio.stream.AudioStream],
                 format_name: str, input_lock: threading.Lock):
        self.name = name
        self.format_name = format_name
        streams = [streams] if isinstance(streams, av.stream.Stream) else list(streams)
        self.tracks = [AudioTrack(stream, number) for number, stream in enumerate(streams, 1)]
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

    def add_copy_to(self, output: av.container.OutputContainer, track: AudioTrack) -> av.audio.stream.AudioStream:
        """A new stream in ``output`` for ``track``'s packets as they are; ValueError if its format cannot hold them."""
        with self._input_lock:
            if track.stream is None:
                raise LivematteError(f"cannot copy the audio of {self.name}: it is already closed")
            return output.add_stream_from_template(track.stream)

    def take(self, before: float, *, whole: bool = False) -> list[av.Packet]:
        """Remove and return, in demux order, the packets that start before ``before`` seconds
        (``whole``: that also end by then); each stream stops at its first packet that does not,
        so that its packets still go out in their order."""
        with self._lock:
            taken, kept, waiting = [], [], set()
            while self._packets and len(waiting) < len(self.tracks):
                packet = self._packets.popleft()
                start = _packet_start(packet)
                late = start is not None and (start >= before or whole and start + _packet_length(packet) > before)
                if packet.stream_index in waiting or late:
                    waiting.add(packet.stream_index)
                    kept.append(packet)
                else:
                    self._bytes -= packet.size
                    taken.append(packet)
            self._packets.extendleft(reversed(kept))
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
        """From the reader, holding its lock: the container is closed (packets stay valid, the streams do not)."""
        for track in self.tracks:
            track.stream = None

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

    ``muxer``: the output's FFmpeg muxer name. Each of the feed's streams becomes a stream of the
    output, in order, with its language and title: its packets copied untouched when their codec
    is one of ``copies`` (codecs the output kind takes as they are), otherwise decoded,
    resampled and encoded with ``encoder`` (``"aac"`` or ``"libopus"``). A stream that can be
    neither (its codec is not in ``copies`` and this FFmpeg cannot decode it) is left out, and
    one warning names the streams kept and the ones left out. :meth:`pump` advances up to a
    time so that audio is interleaved with the video as it is written. ``end`` (seconds) cuts
    the audio there: copied packets that start at or after it are left out, re-encoded audio
    stops at that sample. Only whole packets that end by the pumped time go out, so an
    ``end`` set later, but not before that time, is still exact.
    """

    def __init__(self, feed: AudioFeed, output: av.container.OutputContainer, out_name: Path, *,
                 muxer: str, copies: frozenset[str], encoder: str):
        feed.claim()
        self._feed = feed
        self._out = output
        self._out_name = out_name
        self.end = math.inf
        self.active = False
        self._outputs: dict[int, _Output] = {}  # by the input stream's index
        try:
            self._setup(muxer, copies, encoder)
        except BaseException:
            feed.release()
            raise

    def _setup(self, muxer: str, copies: frozenset[str], encoder: str) -> None:
        feed = self._feed
        # ADTS (raw .aac, MPEG-TS) AAC needs a bitstream filter to go into MP4/MOV; re-encoding is simpler.
        adts = feed.format_name in ("aac", "mpegts") and muxer in ("mp4", "mov")
        done, left_out = [], []
        for track in feed.tracks:
            dst = None
            if track.codec in copies and not adts:
                try:
                    dst = feed.add_copy_to(self._out, track)
                except ValueError:
                    pass
            if dst is not None:
                out = _Output(track, dst, feed.name)
                done.append((track, "copied"))
            elif track.decoder is not None:
                out = _Output(track, _encoder_stream(self._out, encoder, track.decoder), feed.name,
                              frame_size=_AUDIO_FRAME_SIZE[encoder])
                done.append((track, f"re-encoded as {encoder}"))
            else:
                left_out.append(track)
                continue
            for key, value in track.metadata.items():
                out.dst.metadata[key] = value
            self._outputs[track.index] = out
        if left_out:
            kept = " and ".join(track.describe() for track, _ in done)
            log.warning("%s: audio %s can neither be decoded nor copied into %s; %s", feed.name,
                        " and ".join(track.describe() for track in left_out), self._out_name,
                        f"it keeps audio {kept} only" if kept else "it will be silent")
        if not self._outputs:
            feed.release()
            return
        self.active = True
        named = len(feed.tracks) > 1  # several: say which is which
        log.info("audio from %s: %s", feed.name,
                 ", ".join(f"{track.describe() if named else track.codec} {what}" for track, what in done))

    def pump(self, until: float) -> None:
        """Mux the feed's packets that end by ``until`` seconds and start before ``end``."""
        if not self.active:
            return
        for packet in self._feed.take(min(until, self.end), whole=until < self.end):
            self._carry(packet)

    def _carry(self, packet: av.Packet) -> None:
        out = self._outputs.get(packet.stream_index)
        if out is not None:  # None: a stream left out
            self._out.mux(out.carry(packet, self.end))

    def finish(self) -> None:
        """Mux what the feed still holds (up to ``end``), flush, and let the feed go."""
        if self.active:
            for packet in self._feed.take(self.end):
                self._carry(packet)
            for out in self._outputs.values():
                self._out.mux(out.flush(self.end))
        self.close()

    def close(self) -> None:
        self.active = False
        self._feed.release()


def _encoder_stream(output: av.container.OutputContainer, encoder: str,
                    src: av.audio.codeccontext.AudioCodecContext) -> av.audio.stream.AudioStream:
    """A new ``encoder`` stream in ``output`` for the audio that ``src`` decodes."""
    if encoder == "libopus":
        rate = 48000
    else:
        rate = src.sample_rate if src.sample_rate in _AAC_RATES else 48000
    dst = output.add_stream(encoder, rate=rate)
    dst.layout = src.layout.name if src.layout.nb_channels <= 2 else "stereo"
    dst.bit_rate = _AUDIO_BIT_RATE[encoder]
    dst.format = dst.codec_context.codec.audio_formats[0].name
    dst.codec_context.time_base = Fraction(1, rate)
    return dst


class _Output:
    """One input stream's way into an output stream, ``dst``: its packets copied, or (with
    ``frame_size``, the encoder's samples per frame) decoded, resampled and encoded.
    ``name``: the input, for messages. Each call returns the packets to mux."""

    def __init__(self, track: AudioTrack, dst: av.audio.stream.AudioStream, name: str, *,
                 frame_size: int | None = None):
        self.track, self.dst, self._name = track, dst, name
        self._encoding = frame_size is not None
        if self._encoding:
            self._rate = dst.codec_context.sample_rate
            self._resampler = av.AudioResampler(format=dst.format.name, layout=dst.layout.name, rate=self._rate,
                                                frame_size=frame_size)
            self._next_sample: int | None = None

    def carry(self, packet: av.Packet | None, end: float) -> list[av.Packet]:
        """One packet, audio at or after ``end`` seconds cut off (re-encoding); None flushes the
        decoder, resampler and encoder (re-encoding, once)."""
        if not self._encoding:
            packet.stream = self.dst
            return [packet]
        try:
            frames = self.track.decoder.decode(packet)
        except av.error.FFmpegError as e:
            log.warning("%s: skipped undecodable audio (%s)", self._name, e.strerror or e)
            frames = []
        if packet is None:
            frames.append(None)  # flushes the resampler
        encoded = []
        for frame in frames:
            if frame is not None and self._next_sample is None:
                start = frame.time if frame.time is not None else 0.0
                self._next_sample = round(start * self._rate)
            for out in self._resampler.resample(frame):
                out = self._cut(out, end)
                if out is None:
                    continue
                out.pts = self._next_sample
                out.time_base = Fraction(1, self._rate)
                self._next_sample += out.samples
                encoded += self.dst.encode(out)
        if packet is None:
            encoded += self.dst.encode(None)
        return encoded

    def flush(self, end: float) -> list[av.Packet]:
        """What re-encoding still holds (up to ``end`` seconds), and the encoder's end."""
        return self.carry(None, end) if self._encoding else []

    def _cut(self, frame: av.AudioFrame, end: float) -> av.AudioFrame | None:
        """``frame`` (about to start at sample ``_next_sample``) without what lies at or after ``end``."""
        if end == math.inf:
            return frame
        keep = round(end * self._rate) - self._next_sample
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
