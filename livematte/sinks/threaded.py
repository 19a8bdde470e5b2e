"""A live output's encoder on its own thread: the output loop hands a picture over and goes on.

    output loop --send(picture, pts)--> [a few frames, newest wins] --> encoder thread: sink.send
    output loop --write(alpha, pts)---> [a few frames, newest wins] --> encoder thread: writer.write

In ``live`` the recording, the virtual camera and ``--alpha-out`` each get one
(:class:`ThreadedSink`, :class:`ThreadedWriter`), so an encoder slower than the camera costs
that output frames of its own, never the output loop its rate. The offline ``video`` command
keeps its outputs inline: there every frame must go out, and back-pressure is right.

The thread takes the idle scheduling class (Linux's SCHED_IDLE; elsewhere niceness +10, as the
web page's encoder) before it opens the codec, so the encoder's own threads (x264's, libvpx's)
inherit it and run only on CPU the matte's threads leave: at nice 10 libvpx's threads still
took enough of two cores to drop the camera's frames (README: Live recordings). The matte file's
writer (:class:`ThreadedWriter`, FFV1: a few ms a frame) stays at nice 10: in the idle class it
was starved on a busy core. PyAV opens the codec at the first encode, which happens on this thread.

A constant-rate recording (``VideoWriter``'s ``constant_rate``) gets each fresh frame's source
time. The ticks a frame skips over show the last frame again when the encoder has no other frame
waiting; an H.264 encoder that is behind leaves them to the timestamps (the last frame holds), as
a repeat costs it about as much as a new frame and would put it further behind. ProRes and PNGs
copy theirs and VP9 writes a one-byte header for them, at next to no cost, so they always fill:
their files hold duration x rate frames even when the encoder keeps only some of the camera's. A
source that stalls is filled as its time passes: the output loop's repeats become
:meth:`ThreadedSink.hold`, up to ``HOLD_MARGIN_S`` ago.

An error on the thread is raised by the next ``send``/``write`` or by ``close``; the output is
then already aborted (a partial file removed). ``close()`` writes what is queued, finishes
the output on the thread and joins it; ``abort()`` drops what is queued. The first time an
output drops more than ``WARN_SHARE`` of its frames over ``WARN_WINDOW_S``, one warning says
what it keeps up with and what to change (``advice``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable

import numpy as np

from ..runtime.workers import idle_priority, lower_priority
from .base import Sink

log = logging.getLogger(__name__)

NICE = 10  # the encoder threads' niceness where the idle class is missing
QUEUE_FRAMES = 4  # a recording's queue: a few frames of slack for an encoder's uneven frame times
WARN_WINDOW_S = 2.0
WARN_SHARE = 0.02  # the share of frames dropped over a window that is worth a warning (and 3 frames at least)
# How far behind the time the last frame's source time has run on a held recording is filled: a
# frame that comes later than that, for a tick filled already, is left out.
HOLD_MARGIN_S = 0.5


class EncoderThread:
    """Calls ``deliver(item)`` for each item :meth:`put` hands over, in order, on its own thread.

    At most ``depth`` items wait; one more drops the oldest (an ``optional`` one is not counted,
    and is dropped itself rather than another when there is no room). ``finish()`` runs on the thread
    after the last item when :meth:`close` is called; ``discard()`` (must not raise) when the
    thread fails or :meth:`abort` is called. ``extra()`` -> (repeated, skipped): frames the
    output wrote again and left out of its own accord (a constant-rate file), read on the thread.

    ``name``: the output in the figures (``file out.webm``); ``label``: in the warning
    (``recording out.webm``); ``what``: its encoder (``VP9 lossless``); ``advice``: what to change.
    """

    def __init__(self, deliver: Callable, finish: Callable[[], None], discard: Callable[[], None], *,
                 name: str, label: str, what: str, advice: str, depth: int = QUEUE_FRAMES,
                 extra: Callable[[], tuple[int, int]] = lambda: (0, 0), idle: bool = True):
        self.name, self.label, self.what, self.advice = name, label, what, advice
        self._idle = idle
        self._deliver, self._finish, self._discard, self._extra = deliver, finish, discard, extra
        self._depth = depth
        self._items: deque = deque()
        self._ready = threading.Condition()
        self._state = "open"  # open, closing, aborting
        self.error: BaseException | None = None
        self._raised = False
        # Counts, under ``_ready``: frames handed over, delivered, dropped from the queue; repeated and
        # skipped by the output itself; the first and last delivery's time.
        self.taken = self.delivered = self.dropped = self.repeated = self.skipped = 0
        self._first: float | None = None
        self._last: float | None = None
        self._window = (time.perf_counter(), 0, 0, 0)  # (start, taken, dropped, delivered) for the warning
        self._warned = False
        self._thread = threading.Thread(target=self._run, name=f"livematte-encoder-{name}", daemon=True)
        self._thread.start()

    def put(self, item, *, optional: bool = False) -> None:
        """Hand ``item`` over without waiting; a full queue drops its oldest. Raises the thread's error."""
        if self.error is not None:
            self._raised = True
            raise self.error
        with self._ready:
            if self._state != "open":
                raise ValueError(f"{self.name} is already closed")
            if optional and len(self._items) >= self._depth:
                return
            if len(self._items) >= self._depth:
                _, counted = self._items.popleft()
                self.dropped += counted
            self._items.append((item, not optional))
            self.taken += not optional
            self._ready.notify()
        self._check_pace()

    @property
    def waiting(self) -> int:
        """Items handed over and not yet taken by the thread."""
        with self._ready:
            return len(self._items)

    def close(self) -> None:
        """Deliver what is queued, finish the output (on the thread) and join; raises the thread's error."""
        with self._ready:
            if self._state == "open":
                self._state = "closing"
                self._ready.notify()
        self._thread.join()
        self._raise_error()

    def abort(self) -> None:
        """Drop what is queued, discard the output (on the thread) and join; never raises."""
        with self._ready:
            if self._state != "aborting":
                self._state = "aborting"
                self._items.clear()
                self._ready.notify()
        self._thread.join()

    def figures(self) -> dict:
        """fps: frames delivered a second (each new, not the output's own repeats), first to last;
        written: frames in the output (its repeats included); dropped: frames handed over that are
        not in it (the queue's, and those the output skipped); repeated: the output's own repeats
        (a constant-rate file's ticks without a frame); taken: frames handed over."""
        with self._ready:
            span = (self._last - self._first) if self._first is not None else 0.0
            fps = (self.delivered - 1) / span if span > 0 else 0.0
            return {"fps": round(fps, 2), "written": self.delivered - self.skipped + self.repeated,
                    "dropped": self.dropped + self.skipped, "repeated": self.repeated, "taken": self.taken}

    def _raise_error(self) -> None:
        """The thread's error, unless a call raised it already."""
        if self.error is not None and not self._raised:
            self._raised = True
            raise self.error

    def _check_pace(self) -> None:
        """The first window with more than WARN_SHARE of its frames dropped from the queue (not those
        the output skipped of its own accord): one warning."""
        now = time.perf_counter()
        start, taken, dropped, delivered = self._window
        if self._warned or now - start < WARN_WINDOW_S:
            return
        with self._ready:
            self._window = (now, self.taken, self.dropped, self.delivered)
            lost, asked, kept = self.dropped - dropped, self.taken - taken, self.delivered - delivered
        if lost >= 3 and lost > WARN_SHARE * asked:
            self._warned = True
            span = now - start
            log.warning("%s: the encoder keeps %.1f of %.1f fps (%s), %d frames dropped; %s", self.label,
                        kept / span, asked / span, self.what, lost, self.advice)

    def _run(self) -> None:
        if self._idle:
            idle_priority(NICE)
        else:
            lower_priority(NICE)
        try:
            while True:
                with self._ready:
                    while not self._items and self._state == "open":
                        self._ready.wait()
                    if self._state == "aborting" or not self._items:
                        break
                    item, counted = self._items.popleft()
                self._deliver(item)
                repeated, skipped = self._extra()
                now = time.perf_counter()
                with self._ready:
                    self.delivered += counted
                    self.repeated, self.skipped = repeated, skipped
                    if self._first is None:
                        self._first = now
                    self._last = now
            if self._state == "closing":
                self._finish()
                return
        except BaseException as e:  # noqa: BLE001 -- raised on the caller's thread by the next call
            self.error = e
            with self._ready:
                self._items.clear()
        try:
            self._discard()
        except Exception:  # discarding must not hide the error that led here
            log.debug("%s: discarding after an error failed", self.name, exc_info=True)


class ThreadedSink(Sink):
    """``inner`` (an open sink) sending on an :class:`EncoderThread`; ``send`` only hands the
    picture over, which the caller must not change afterwards (the output loop makes a new one
    each frame). ``source_timed`` (a live recording): it wants each fresh frame at its source
    pts, and :meth:`hold` rather than repeats; ``constant_rate``: the inner is a constant-rate
    recording (``FileSink`` over :class:`~livematte.media.writing.VideoWriter`), which fills the
    ticks between frames itself. ``end_audio_at`` is there when the inner has it."""

    def __init__(self, inner: Sink, *, name: str, label: str, what: str, advice: str, depth: int = QUEUE_FRAMES,
                 source_timed: bool = False):
        self.inner = inner
        self.name = inner.name
        self.accepts_alpha = inner.accepts_alpha
        self.source_timed = source_timed
        writer = getattr(inner, "writer", None)
        self.constant_rate = source_timed and bool(getattr(writer, "constant_rate", False))
        self._cheap_repeats = self.constant_rate and writer.cheap_repeats
        self._last_fresh: tuple[float, float] | None = None  # (source pts, perf_counter) of the last frame sent
        self._audio_end: float | None = None
        if hasattr(inner, "end_audio_at"):
            self.end_audio_at = self._end_audio_at
        extra = (lambda: (writer.repeated, writer.skipped)) if self.constant_rate else (lambda: (0, 0))
        self.thread = EncoderThread(self._deliver, self._finish, inner.abort, name=name, label=label, what=what,
                                    advice=advice, depth=depth, extra=extra)

    def send(self, image: np.ndarray, pts: float) -> None:
        self._last_fresh = (pts, time.perf_counter())
        self.thread.put(("frame", image, pts))

    def hold(self) -> None:
        """No new frame came in time: a constant-rate recording shows the last one at the ticks its
        source time has run on since it was sent, less ``HOLD_MARGIN_S``; others need nothing."""
        if self.constant_rate and self._last_fresh is not None:
            pts, sent = self._last_fresh
            self.thread.put(("hold", pts + time.perf_counter() - sent - HOLD_MARGIN_S), optional=True)

    @property
    def wants_quit(self) -> bool:
        return self.inner.wants_quit

    def figures(self) -> dict:
        return self.thread.figures()

    def _end_audio_at(self, seconds: float) -> None:
        """Applied on the thread, after the frames queued before it (see ``VideoWriter.end_audio_at``)."""
        self._audio_end = seconds

    def _deliver(self, item) -> None:
        if item[0] == "hold":
            self.inner.hold(item[1])
        elif self.constant_rate:
            _, image, pts = item
            self.inner.send(image, pts, fill=self._cheap_repeats or not self.thread.waiting)
        else:
            self.inner.send(item[1], item[2])

    def _finish(self) -> None:
        if self._audio_end is not None:
            self.inner.end_audio_at(self._audio_end)
        self.inner.close()

    def close(self) -> None:
        self.thread.close()

    def abort(self) -> None:
        self.thread.abort()


class ThreadedWriter(Sink):  # a sink's close/abort and context protocol; it writes mattes, not pictures
    """The matte writer (``AlphaWriter``) writing on an :class:`EncoderThread`; a context manager
    (closed on success, aborted on an error) like the writer."""

    def __init__(self, inner, *, name: str, label: str, what: str, advice: str, depth: int = QUEUE_FRAMES):
        self.inner = inner
        # At nice 10, not idle: a matte costs a few ms (FFV1), and under SCHED_IDLE a matte file on
        # a busy core kept a third of its frames or fewer (README: Live recordings).
        self.thread = EncoderThread(self._deliver, inner.close, inner.abort, name=name, label=label, what=what,
                                    advice=advice, depth=depth, idle=False)

    def write(self, alpha: np.ndarray, pts: float | None = None, *, repeat: bool = False) -> None:
        self.thread.put((alpha, pts, repeat))

    def figures(self) -> dict:
        return self.thread.figures()

    def _deliver(self, item) -> None:
        alpha, pts, repeat = item
        self.inner.write(alpha, pts, repeat=repeat)

    def close(self) -> None:
        self.thread.close()

    def abort(self) -> None:
        self.thread.abort()
