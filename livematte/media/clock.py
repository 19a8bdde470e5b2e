"""The writers' timestamp clock: presentation times in seconds -> strictly increasing ticks.

A muxer keeps time in integer ticks of its time base (``tick`` seconds, e.g. 1/90000 for MP4,
1/1000 for Matroska) and rejects a timestamp equal to or before the previous one. The clock
rounds each pts to the nearest tick and nudges a repeated or backward one to one tick after
the last, so every frame is kept (warning once, unless the caller says it is a repeat).
"""

from __future__ import annotations

import logging
from fractions import Fraction

log = logging.getLogger(__name__)


class Clock:
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

