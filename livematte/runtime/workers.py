"""Thread plumbing: bounded hand-offs that respect a stop event, and workers that report errors.

Every blocking call here wakes up at least every ``POLL_S`` to check the stop
event, so no thread can sit forever on a full or empty queue after another
stage failed (the hang that bites reader threads joined after an exception).
"""

from __future__ import annotations

import ctypes
import logging
import os
import platform
import queue
import threading
import time
from collections import deque
from typing import Any, Callable

log = logging.getLogger(__name__)

POLL_S = 0.05
END = object()  # end of stream, passed down the stages


# glibc's mallopt parameters (malloc.h), and the sizes set by return_freed_pictures.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_OWN_MAPPING_BYTES, _TRIM_BYTES = 16 * 2**20, 64 * 2**20
_malloc_set = False


def return_freed_pictures() -> None:
    """Make glibc's malloc hand the memory of freed big pictures back to the system (once per
    process; elsewhere nothing).

    By default glibc serves blocks up to 32 MiB from its heaps once a block that big was freed
    (its threshold adapts), and the heap a block came from keeps it when freed; pictures made on
    one thread and freed on another pile up there, holding the process's memory at its peak.
    Fixed here: a block of 16 MiB or more (a 4K picture, not a 1080p one) gets a mapping of its
    own, unmapped when freed; the heaps' trim threshold stays where the adaptive one reaches, so
    smaller blocks are reused as before.
    """
    global _malloc_set
    if _malloc_set or platform.libc_ver()[0] != "glibc":
        return
    _malloc_set = True
    try:
        libc = ctypes.CDLL(None)
        libc.mallopt(_M_MMAP_THRESHOLD, _OWN_MAPPING_BYTES)
        libc.mallopt(_M_TRIM_THRESHOLD, _TRIM_BYTES)
    except (OSError, AttributeError):  # not glibc after all: its defaults stay
        pass


class Stopped(Exception):
    """The pipeline is stopping; the current stage should return."""


def _deadline(timeout: float | None) -> float | None:
    return None if timeout is None else time.perf_counter() + timeout


def _next_wait(stop: threading.Event, deadline: float | None) -> float:
    """How long the next wait may last: at most ``POLL_S``, so ``stop`` is seen promptly.

    Raises ``Stopped`` once stopping, ``queue.Empty`` once ``deadline`` has passed.
    """
    if stop.is_set():
        raise Stopped
    left = POLL_S if deadline is None else min(POLL_S, deadline - time.perf_counter())
    if left <= 0:
        raise queue.Empty
    return left


class Channel:
    """A bounded FIFO: ``put`` blocks while full (back-pressure), nothing is dropped.

    Full is ``maxsize`` items or, with ``max_bytes``, that many bytes of waiting items as
    ``weigh(item)`` counts them, whichever comes first; an item heavier than ``max_bytes``
    still goes in alone, so big frames flow one at a time instead of blocking forever.
    """

    def __init__(self, stop: threading.Event, maxsize: int, max_bytes: int | None = None,
                 weigh: Callable[[Any], int] | None = None):
        self._queue: queue.Queue = queue.Queue(maxsize)
        self._stop = stop
        self.max_bytes = max_bytes
        self._weigh = weigh if max_bytes is not None and weigh is not None else None
        self._room = threading.Condition()
        self.held_bytes = 0  # weighed bytes put and not yet taken

    def put(self, item: Any) -> None:
        if self._weigh is not None:
            self._reserve(self._weigh(item))
        while True:
            if self._stop.is_set():
                raise Stopped
            try:
                self._queue.put(item, timeout=POLL_S)
                return
            except queue.Full:
                continue

    def _reserve(self, size: int) -> None:
        with self._room:
            while self.held_bytes and self.held_bytes + size > self.max_bytes:
                if self._stop.is_set():
                    raise Stopped
                self._room.wait(POLL_S)
            self.held_bytes += size

    def _release(self, item: Any) -> None:
        if self._weigh is not None:
            with self._room:
                self.held_bytes -= self._weigh(item)
                self._room.notify_all()

    def get(self, timeout: float | None = None) -> Any:
        """The next item; raises ``queue.Empty`` after ``timeout`` s, ``Stopped`` on stop."""
        deadline = _deadline(timeout)
        while True:
            # Outside the ``try``: its ``queue.Empty`` means the caller's time is up, not
            # that this short wait ended empty.
            wait = _next_wait(self._stop, deadline)
            try:
                item = self._queue.get(timeout=wait)
            except queue.Empty:
                continue
            self._release(item)
            return item

    def drain(self) -> int:
        """Empty the queue without blocking (after stop), so no producer stays blocked."""
        dropped = 0
        while True:
            try:
                self._release(self._queue.get_nowait())
                dropped += 1
            except queue.Empty:
                return dropped


class FreshBuffer:
    """A small live buffer: nothing older than ``max_lag`` seconds is handed out if a newer item waits.

    With ``depth`` 1 the newest item always wins. With ``depth`` 2 (the live
    pipelines' choice) a frame may wait behind one other, so a single slow model
    call does not cost a frame, but an item that has aged past ``max_lag`` while a
    newer one waits is dropped: a stale frame is never processed. Items need an
    ``age()`` method when ``max_lag`` is set. ``END`` is kept apart from the
    buffer, so the last frame before it is still delivered.
    """

    def __init__(self, stop: threading.Event, depth: int = 1, max_lag: float | None = None):
        self._stop = stop
        self._cond = threading.Condition()
        self._items: deque = deque()
        self._depth = depth
        self._max_lag = max_lag
        self._ended = False
        self.replaced = 0  # items dropped before anyone took them (dropped frames)

    def put(self, item: Any) -> None:
        with self._cond:
            if item is END:
                self._ended = True
            else:
                if len(self._items) >= self._depth:
                    self._items.popleft()
                    self.replaced += 1
                self._items.append(item)
            self._cond.notify_all()

    def get(self, timeout: float | None = None) -> Any:
        """The oldest item still fresh, then ``END`` once ended; ``queue.Empty`` after ``timeout`` s."""
        deadline = _deadline(timeout)
        with self._cond:
            while not self._items:
                if self._ended:
                    return END
                self._cond.wait(_next_wait(self._stop, deadline))
            while len(self._items) > 1 and self._max_lag is not None and self._items[0].age() > self._max_lag:
                self._items.popleft()
                self.replaced += 1
            return self._items.popleft()

    def drain(self) -> int:
        with self._cond:
            had = len(self._items)
            self._items.clear()
            return had


class Latest:
    """The newest of a stream of items, for threads that only ever want the newest.

    ``put`` replaces whatever is there; ``get(accept)``
    waits until the item there satisfies ``accept(item)`` and returns it, removing it with
    ``take=True``; after :meth:`close`, a get that finds nothing acceptable returns ``END``.
    """

    def __init__(self, stop: threading.Event):
        self._stop = stop
        self._cond = threading.Condition()
        self._item: Any = None
        self._closed = False

    def put(self, item: Any) -> None:
        with self._cond:
            self._item = item
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def get(self, accept: Callable[[Any], bool] = lambda item: True, *, take: bool = False,
            until: float | None = None) -> Any:
        """The item there once ``accept`` takes it; ``END`` once closed; None once ``perf_counter()``
        passes ``until``; raises ``Stopped`` on stop."""
        with self._cond:
            while self._item is None or not accept(self._item):
                if self._closed:
                    return END
                try:
                    self._cond.wait(_next_wait(self._stop, until))
                except queue.Empty:
                    return None
            item = self._item
            if take:
                self._item = None
            return item

    def peek(self, accept: Callable[[Any], bool] = lambda item: True) -> Any:
        """The item there if ``accept`` takes it, else None; never waits."""
        with self._cond:
            return self._item if self._item is not None and accept(self._item) else None

    def drain(self) -> int:
        with self._cond:
            had, self._item = self._item is not None, None
            return int(had)


def lower_priority(niceness: int) -> None:
    """The calling thread yields to the process's other threads when they compete for a core
    (Linux: threads have a niceness of their own, and threads it starts inherit it); elsewhere nothing."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), niceness)
    except (AttributeError, OSError):
        pass


def idle_priority(niceness: int) -> None:
    """The calling thread, and the threads it starts, run only on CPU the process's other threads
    leave idle (Linux's SCHED_IDLE); where that policy is missing, :func:`lower_priority`."""
    try:
        os.sched_setscheduler(threading.get_native_id(), os.SCHED_IDLE, os.sched_param(0))
    except (AttributeError, OSError):
        lower_priority(niceness)


def name_os_thread(name: str) -> None:
    """The calling thread's name as ``top -H``, ``ps -L`` and ``/proc`` show it (Linux: at most 15
    bytes), so that a run's CPU can be told apart by thread from outside; elsewhere nothing."""
    try:
        ctypes.CDLL(None).prctl(15, name.encode()[:15], 0, 0, 0)  # PR_SET_NAME
    except (AttributeError, OSError):
        pass


def thread_cpu_s(thread: threading.Thread) -> float | None:
    """CPU seconds ``thread`` has used (a :class:`Worker` that has ended: all of its own); None
    where the platform cannot tell."""
    if getattr(thread, "cpu_s", None) is not None:
        return thread.cpu_s
    try:
        return time.clock_gettime(time.pthread_getcpuclockid(thread.ident))
    except (AttributeError, OSError, TypeError):
        return None


class Worker(threading.Thread):
    """A named daemon thread running ``target``; any exception is kept and the pipeline stopped."""

    def __init__(self, name: str, target: Callable[[], None], stop: threading.Event):
        super().__init__(name=f"livematte-{name}", daemon=True)
        self.role = name  # "capture", "frames", ...: the stats' and the system's short name for it
        self._target_fn = target
        self._stop_event = stop
        self.error: BaseException | None = None
        self.cpu_s: float | None = None  # the thread's CPU seconds, once it has ended

    def run(self) -> None:
        name_os_thread(f"lm-{self.role}")
        try:
            self._target_fn()
        except Stopped:
            pass
        except BaseException as e:  # kept for the caller to re-raise
            self.error = e
            self._stop_event.set()
        finally:
            # Read here: an ended thread's CPU clock cannot be asked for from another one.
            self.cpu_s = time.thread_time()


def join_all(workers: list[Worker], channels: list, timeout: float = 10.0) -> None:
    """Stop-aware shutdown: drain every hand-off first so no producer is left blocked, then join."""
    for channel in channels:
        channel.drain()
    for worker in workers:
        worker.join(timeout)
        if worker.is_alive():
            log.warning("thread %s did not stop within %.0f s", worker.name, timeout)


def first_error(workers: list[Worker]) -> BaseException | None:
    for worker in workers:
        if worker.error is not None:
            return worker.error
    return None
