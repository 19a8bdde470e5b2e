"""The live pipeline's model thread replayed on a schedule instead of a clock: for evaluation and tests.

Live (:mod:`livematte.runtime.pipeline`), the model thread takes the newest frame whenever it is
free and the governor's stride allows (or early after a frame the flow could not explain), and
every frame is finished from the newest result that has landed. :func:`on_schedule` does the same
with the time a call takes given in frames (``lag``): a call takes frame k and its result lands
for frame k + lag (or for frame k itself at a level whose keyframes wait). Every frame is
finished exactly as live finishes it; only the timing is fixed, so a level's quality can be
scored apart from a machine's speed, and a test is repeatable.
"""

from __future__ import annotations

from typing import Iterable, Iterator, Mapping

from ..frames import Frame, Matted
from .engine import Engine, ModelResult
from .governor import Level
from .pipeline import call_slot, model_takes


def on_schedule(engine: Engine, frames: Iterable[Frame], lag: int | Mapping[Level, int]) -> Iterator[Matted]:
    """``frames`` in order -> each one's Matted, the model's results landing ``lag`` frames (0 or
    more; or each level's, a mapping) after their input, at the level ``engine.governor`` holds
    at each call. A stream's first frame (the first, or one with ``restart``) waits for its own
    result, as live."""
    pending: tuple[int, ModelResult] | None = None  # (frame index it lands at, the result)
    result: ModelResult | None = None
    last: tuple[int, int] | None = None  # the last call's slot (frame index, epoch: call_slot)
    epoch, urgent = 0, False
    for frame in frames:
        if frame.restart:
            epoch += 1
            engine.tracker.reset()
        grey = engine.motion_grey(frame.image)
        if pending is not None and pending[0] <= frame.index:
            result, pending = pending[1], None
        level = engine.governor.level
        if pending is None and model_takes(last, frame.index, epoch, urgent, level):
            frames_late = lag if isinstance(lag, int) else lag[level]
            pending = (frame.index + frames_late, engine.model_call(frame, grey, level, epoch))
            last = call_slot(last, frame.index, epoch, level)
            if frames_late == 0 or level.waits or result is None or result.epoch != epoch:
                result, pending = pending[1], None
        matted, urgent = engine.finish_frame(frame, grey, result)
        yield matted
