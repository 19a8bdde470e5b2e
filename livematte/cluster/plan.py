"""Splitting a video into segments that workers can matte apart and the driver can join.

:func:`plan_video` reads the video's packets (no decoding, so planning costs little beside the
work) and cuts its frames, in presentation order, into runs of about ``segment_seconds``.
A cut goes on a keyframe when one lies within a quarter segment of where it is wanted (the
worker then starts decoding right there), else on the frame at that time: cameras and
phones write a keyframe every one to ten seconds, and many files have one at the start only
(the clips in ``../shared/data`` do), so cutting on keyframes alone would leave them whole.

Each segment but the first has a **pre-roll**: the frames of the ``preroll_seconds`` before
its start go through the model first, so that RVM's recurrent state and the temporal
smoother arrive at its first frame warm, as in one pass; they are not written. Decoding
begins at the keyframe at or before the pre-roll (``seek``); the frames between that keyframe
and the pre-roll are decoded only (far cheaper than matting them; README: Many videos).

Every frame belongs to exactly one segment: segment ``i`` writes the frames whose pts are in
``[start, end)``, the bounds being the pts of real frames, as :class:`~livematte.media.reading.
VideoReader` computes them; the first segment has no lower bound and the last no upper one.
"""

from __future__ import annotations

import bisect
import contextlib
import math
from dataclasses import dataclass

import av.error

from ..errors import LivematteError
from ..media.opening import open_input
from ..media.reading import VideoInfo, VideoReader

# 30 s: the pre-roll (1 s) and a segment's fixed cost stay small beside its own work, one segment
# is a few minutes of one core's work at 720p (so a cluster's last segments finish close together),
# and an hour of video still makes 120 tasks to spread over the nodes. Figures: README, Many videos.
DEFAULT_SEGMENT_SECONDS = 30.0
# What RVM's state and the smoother need to forget a cold start: the first frame after a cut is
# then close to one pass's matte (README, Many videos: the pre-roll table).
DEFAULT_PREROLL_SECONDS = 1.0


@dataclass(frozen=True)
class Segment:
    """A run of a video's frames, matted and encoded on its own.

    index: 0-based, in the video's order. first: the index of its first frame in the video
    (presentation order); frames: how many frames it writes (None: not known before decoding,
    for a video without timestamps). at: seconds, its first frame's pts (None: not known).
    start, end: seconds; it writes the frames with ``start <= pts < end`` (None: unbounded).
    preroll_from: seconds, the first frame matted but not written (None: no pre-roll);
    preroll_frames: how many frames that is.
    seek: seconds, the keyframe where decoding begins (None: the file's start);
    decoded_only: frames decoded before the pre-roll and dropped unmatted.
    """

    index: int
    first: int
    frames: int | None
    at: float | None
    start: float | None
    end: float | None
    preroll_from: float | None = None
    preroll_frames: int = 0
    seek: float | None = None
    decoded_only: int = 0

    def writes(self, pts: float) -> bool:
        """Whether the frame at ``pts`` seconds is one this segment writes."""
        return (self.start is None or pts >= self.start) and (self.end is None or pts < self.end)

    def matters(self, pts: float) -> bool:
        """Whether the frame at ``pts`` goes through the model (pre-roll or written), not past the end."""
        first = self.preroll_from if self.preroll_from is not None else self.start
        return (first is None or pts >= first) and (self.end is None or pts < self.end)


@dataclass(frozen=True)
class VideoPlan:
    """A video and its segments. frames: how many the whole output holds (all segments').
    last: seconds, the pts of the last frame written (None: not known before decoding)."""

    input: str
    info: VideoInfo
    segments: tuple[Segment, ...]
    last: float | None = None

    @property
    def frames(self) -> int | None:
        counts = [s.frames for s in self.segments]
        return None if None in counts else sum(counts)


def scan(path: str) -> tuple[list[float], list[float] | None]:
    """The video's frame times and keyframe times, seconds, sorted; None for both when some packet
    has no timestamp (the video then goes as one segment). Reads packets only."""
    container = open_input(path)
    try:
        stream = container.streams.video[0]
        times, keys = [], []
        for packet in container.demux(stream):
            if packet.size == 0 or packet.is_discard:  # end-of-stream markers; edit-list cuts never shown
                continue
            if packet.pts is None:
                return None, None
            # The same expression as the reader's, so that the bounds compare exactly.
            when = float(packet.pts * stream.time_base)
            times.append(when)
            if packet.is_keyframe:
                keys.append(when)
    except av.error.FFmpegError as e:
        raise LivematteError(f"cannot read {path}: {e.strerror or e}") from e
    finally:
        container.close()
    return sorted(times), sorted(keys)


def plan_video(path: str, segment_seconds: float = DEFAULT_SEGMENT_SECONDS,
               preroll_seconds: float = DEFAULT_PREROLL_SECONDS, max_frames: int | None = None) -> VideoPlan:
    """Segments for the video at ``path`` (every frame in one of them; ``max_frames``: the first N
    only). :class:`LivematteError` (one line naming it) if it is not a readable video."""
    if not segment_seconds > 0:
        raise ValueError(f"segment_seconds got {segment_seconds}, expected more than 0")
    if not preroll_seconds >= 0:
        raise ValueError(f"preroll_seconds got {preroll_seconds}, expected 0 or more")
    with contextlib.closing(VideoReader(path, strict=True)) as reader:  # a bad file fails here, in one line
        info = reader.info
    times, keys = scan(path)
    if times is None or not times:
        # No timestamps to cut at: the whole video is one task, read from its start.
        return VideoPlan(path, info, (Segment(0, 0, None, None, None, None),))
    if max_frames is not None:
        times = times[:max_frames + 1]  # the one after the last bounds the last segment
    end = len(times) if max_frames is None or max_frames >= len(times) else max_frames
    cuts = cut_points(times[:end], keys, segment_seconds)
    segments = []
    for index, (first, stop) in enumerate(zip(cuts, [*cuts[1:], end])):
        start = times[first] if index else None
        bound = times[stop] if stop < len(times) else None
        preroll = _preroll(times, keys, first, preroll_seconds) if index else {}
        segments.append(Segment(index, first, stop - first, times[first], start, bound, **preroll))
    return VideoPlan(path, info, tuple(segments), times[end - 1])


def _key_at_or_before(keys: list[float], when: float) -> float | None:
    return keys[bisect.bisect_right(keys, when) - 1] if keys and keys[0] <= when else None


def _preroll(times: list[float], keys: list[float], first: int, seconds: float) -> dict:
    """The pre-roll of a segment starting at frame ``first``: from the first frame at or after
    ``seconds`` before it; decoding from the keyframe at or before that."""
    begin = bisect.bisect_left(times, times[first] - seconds, 0, first)
    seek = _key_at_or_before(keys, times[begin])
    decoded_from = bisect.bisect_left(times, seek) if seek is not None else 0
    return {"preroll_from": times[begin], "preroll_frames": first - begin, "seek": seek,
            "decoded_only": begin - decoded_from}


def cut_points(times: list[float], keys: list[float], segment_seconds: float) -> list[int]:
    """Indices into ``times`` (sorted frame times, seconds) where segments start; the first is 0.

    Wanted every ``segment_seconds`` from the first frame; each goes on the keyframe nearest
    that time within a quarter segment, else on the first frame at or after it. A cut needs a
    frame later than every frame before it (a repeated timestamp cannot be a bound), and a
    last piece shorter than half a segment stays with the one before.
    """
    if not times:
        return [0]
    cuts = [0]
    origin, last = times[0], times[-1]
    for k in range(1, math.ceil((last - origin) / segment_seconds) + 1):
        wanted = origin + k * segment_seconds
        if last - wanted < segment_seconds / 2:
            break
        near = [t for t in keys if abs(t - wanted) <= segment_seconds / 4]
        at = min(near, key=lambda t: abs(t - wanted)) if near else wanted
        index = bisect.bisect_left(times, at)
        while index < len(times) and times[index] <= times[index - 1]:
            index += 1
        if cuts[-1] < index < len(times):
            cuts.append(index)
    return cuts
