"""Small real media files for tests, written with PyAV directly (not with livematte's own I/O)."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np

W, H, N, FPS = 64, 48, 30, 30
AUDIO_RATE = 48000


def gradient(i: int, width: int = W, height: int = H) -> np.ndarray:
    """A smooth moving colour gradient, ``uint8 [height, width, 3]`` BGR."""
    x = np.arange(width, dtype=np.float32)[None, :]
    y = np.arange(height, dtype=np.float32)[:, None]
    b = 60 + 2.0 * x + 2.0 * i + 0 * y
    g = 40 + 3.0 * y + 0 * x
    r = 200 - 1.5 * x - 1.0 * y
    return np.clip(np.dstack([b, g, r]), 0, 255).astype(np.uint8)


def make_video(path: Path, *, n: int = N, width: int = W, height: int = H, pts: list[float] | None = None,
               audio: bool = True, video: bool = True, rotation: float | None = None,
               codec: str = "libx264", picture=gradient, gop: int | None = None) -> Path:
    """A real file (H.264, or ``codec`` e.g. ffv1 for odd sizes, plus a 440 Hz AAC track) written
    with PyAV directly, not with livematte.media. ``picture(i, width, height)``: frame i, ``uint8`` BGR.
    ``gop``: a keyframe every ``gop`` frames (H.264; default x264's own: the first frame only, here)."""
    container = av.open(str(path), "w")
    if video:
        options = {"preset": "ultrafast", "crf": "12", "threads": "1"} if codec == "libx264" else {}
        if gop is not None:
            options.update({"g": str(gop), "keyint_min": str(gop), "sc_threshold": "0"})
        stream = container.add_stream(codec, rate=FPS, options=options)
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuv420p" if codec == "libx264" else "yuv444p"
        stream.codec_context.time_base = Fraction(1, 1000)
        if rotation is not None:
            stream.set_display_rotation(rotation)
    if audio:
        sound = container.add_stream("aac", rate=AUDIO_RATE)
        sound.layout = "mono"
    if video:
        for i in range(n):
            frame = av.VideoFrame.from_ndarray(picture(i, width, height), format="bgr24")
            frame.pts = round((pts[i] if pts is not None else i / FPS) * 1000)
            frame.time_base = Fraction(1, 1000)
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    if audio:
        mux_tone(container, sound, 440, AUDIO_RATE * n // FPS)
    container.close()
    return path


def mux_tone(container, sound, hz: float, total: int, frame_size: int = 1024) -> None:
    """``total`` samples of a ``hz`` sine (0.3 of full scale) on every channel of the audio stream
    ``sound`` (fltp, its own rate), encoded ``frame_size`` samples a frame (the last may be short),
    muxed into ``container`` and flushed."""
    rate = sound.codec_context.sample_rate
    samples = (0.3 * np.sin(2 * np.pi * hz * np.arange(total) / rate)).astype(np.float32)
    planes = sound.layout.nb_channels
    for start in range(0, total, frame_size):
        data = np.repeat(samples[None, start:start + frame_size], planes, axis=0)
        frame = av.AudioFrame.from_ndarray(data, format="fltp", layout=sound.layout.name)
        frame.sample_rate, frame.pts, frame.time_base = rate, start, Fraction(1, rate)
        container.mux(sound.encode(frame))
    container.mux(sound.encode())


def audio_seconds(path: Path) -> tuple[str, float]:
    """(codec, seconds of decoded audio) of the first audio stream."""
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        samples = sum(f.samples for f in container.decode(stream))
        return stream.codec_context.name, samples / stream.codec_context.sample_rate
