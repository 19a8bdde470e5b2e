"""Outputs read back: mattes and transparent frames, for tests and scripts (not the pipeline).

- :func:`read_alpha_with_pts`: mattes -> ``[(uint8 [H, W], pts in seconds)]``.
- :func:`read_alpha`: mattes -> ``[uint8 [H, W]]``.
- :func:`read_rgba`: frames of a (transparent) output -> ``[uint8 [H, W, 4]]`` BGRA.

Each takes a video file or a folder of PNGs, as :mod:`livematte.media.writing` writes them;
a failure raises :class:`LivematteError` naming the path.
"""

from __future__ import annotations

from pathlib import Path

import av
import av.error
import cv2
import numpy as np

from ..errors import LivematteError
from . import PathLike
from .opening import open_input


def _png_files(folder: Path) -> list[Path]:
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() == ".png")
    if not files:
        raise LivematteError(f"{folder} holds no PNG files")
    return files


def _read_png(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise LivematteError(f"{path} is not a PNG OpenCV can read")
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    return image


def read_alpha_with_pts(path: PathLike, fps: float | None = None) -> list[tuple[np.ndarray, float]]:
    """Mattes from an FFV1 gray ``.mkv`` (or any video) or a PNG folder -> ``[(uint8 [H, W], pts s)]``.

    PNG folders carry no timestamps: pass ``fps`` to number them ``i / fps``.
    """
    path = Path(path)
    if path.is_dir():
        if fps is None:
            raise LivematteError(f"{path} is a PNG folder and has no timestamps; give a frame rate")
        return [(alpha, i / fps) for i, alpha in enumerate(read_alpha(path))]
    container = open_input(path)
    try:
        if not container.streams.video:
            raise LivematteError(f"{path} has no video stream")
        out = []
        for frame in container.decode(container.streams.video[0]):
            out.append((frame.to_ndarray(format="gray"), float(frame.time or 0.0)))
        return out
    except av.error.FFmpegError as e:
        raise LivematteError(f"cannot decode {path}: {e.strerror or e}") from e
    finally:
        container.close()


def read_alpha(path: PathLike) -> list[np.ndarray]:
    """Mattes from an FFV1 gray ``.mkv`` or a PNG folder -> list of ``uint8 [H, W]``.

    Colour PNGs give their alpha channel (BGRA) or their luma (BGR).
    """
    path = Path(path)
    if not path.is_dir():
        return [alpha for alpha, _ in read_alpha_with_pts(path)]
    out = []
    for file in _png_files(path):
        image = _read_png(file)
        if image.ndim == 3:
            image = image[:, :, 3].copy() if image.shape[2] == 4 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        out.append(image)
    return out


def read_rgba(path: PathLike) -> list[np.ndarray]:
    """Every frame of a (transparent) output -> list of ``uint8 [H, W, 4]`` BGRA.

    VP9 (.webm) is decoded with libvpx, since FFmpeg's own vp9 decoder drops the alpha plane;
    ProRes 4444 and PNG keep alpha with the defaults. Videos without alpha read as alpha 255.
    """
    path = Path(path)
    if path.is_dir():
        out = []
        for file in _png_files(path):
            image = _read_png(file)
            if image.ndim == 2:
                image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGRA)
            elif image.shape[2] == 3:
                image = cv2.cvtColor(image, cv2.COLOR_BGR2BGRA)
            out.append(image)
        return out
    container = open_input(path)
    try:
        if not container.streams.video:
            raise LivematteError(f"{path} has no video stream")
        stream = container.streams.video[0]
        codec = stream.codec_context.name if stream.codec_context is not None else None
        alpha_decoder = {"vp9": "libvpx-vp9", "vp8": "libvpx"}.get(codec)
        if alpha_decoder in av.codecs_available:
            decoder = av.CodecContext.create(alpha_decoder, "r")
            frames = []
            for packet in container.demux(stream):
                frames.extend(decoder.decode(packet if packet.size else None))
        else:
            frames = container.decode(stream)
        return [frame.to_ndarray(format="bgra") for frame in frames]
    except av.error.FFmpegError as e:
        raise LivematteError(f"cannot decode {path}: {e.strerror or e}") from e
    finally:
        container.close()
