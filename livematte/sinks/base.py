"""What every sink is: a context manager with ``send(image, pts)`` and an idempotent ``close()``
(see :mod:`livematte.sinks`); and the null sink, which discards frames."""

from __future__ import annotations

import numpy as np


class Sink:
    accepts_alpha = False
    name = "sink"

    def send(self, image: np.ndarray, pts: float) -> None:
        raise NotImplementedError

    @property
    def wants_quit(self) -> bool:
        return False

    def close(self) -> None:
        pass

    def abort(self) -> None:
        """Close after a failure or interruption (a file sink removes its partial output)."""
        self.close()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.close()
        else:
            self.abort()
        return False


class NullSink(Sink):
    """Discards frames: for benchmarks and for runs that only want ``--alpha-out``."""

    accepts_alpha = True

    def __init__(self):
        self.frames = 0

    def send(self, image, pts):
        self.frames += 1
