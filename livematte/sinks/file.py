"""An encoded video file (or PNG sequence), written safely through ``videoio.VideoWriter``."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

from . import Sink


class FileSink(Sink):
    name = "file"

    def __init__(self, path: Path, width: int, height: int, rate: Fraction, *, audio_from: str | None = None,
                 crf: int = 18, preset: str = "veryfast", kind: str | None = None):
        from ..videoio import VideoWriter

        self.writer = VideoWriter(path, width=width, height=height, rate=rate, kind=kind,
                                  audio_from=audio_from, crf=crf, preset=preset)
        self.accepts_alpha = self.writer.has_alpha

    def send(self, image, pts):
        self.writer.write(image, pts)

    def close(self):
        self.writer.close()

    def abort(self):
        self.writer.abort()
