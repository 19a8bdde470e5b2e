"""An encoded video file (or PNG sequence), written safely through ``media.writing.VideoWriter``."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

from .base import Sink


class FileSink(Sink):
    """``audio``: the source's audio feed (``FileSource.audio``) to carry along; ``encoding``: the
    encoder settings (``crf``, ``preset``, ``webm_crf``, ``prores``; ``OutputSettings.writer_options()``)
    and ``constant_rate`` (a live recording). See ``media.writing.VideoWriter``."""


    def __init__(self, path: Path, width: int, height: int, rate: Fraction, *, audio=None,
                 kind: str | None = None, **encoding):
        from ..media.writing import VideoWriter

        self.writer = VideoWriter(path, width=width, height=height, rate=rate, kind=kind, audio=audio, **encoding)
        self.accepts_alpha = self.writer.has_alpha

    @property
    def last_pts(self) -> float | None:
        """Seconds of the last frame written; None before the first."""
        return self.writer.last_pts

    def end_audio_at(self, seconds: float) -> None:
        """End the audio at ``seconds`` (source time); call before ``close``. See ``VideoWriter.end_audio_at``."""
        self.writer.end_audio_at(seconds)

    def send(self, image, pts, *, fill: bool = True):
        self.writer.write(image, pts, fill=fill)

    def hold(self, seconds: float) -> None:
        """A constant-rate recording: the last frame again at the ticks up to ``seconds``; see ``VideoWriter.hold``."""
        self.writer.hold(seconds)

    def close(self):
        self.writer.close()

    def abort(self):
        self.writer.abort()
