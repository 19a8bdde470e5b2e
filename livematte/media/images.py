"""Reading still images from files and URLs into livematte's BGR uint8 convention."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from . import image_header, net
from .atomic import write_atomically
from ..errors import LivematteError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"}


def to_bgr8(image: np.ndarray) -> np.ndarray:
    """Any decoded image (gray, BGR, BGRA; 8 or 16 bit; float) -> ``uint8 [H, W, 3]`` BGR."""
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    elif image.dtype != np.uint8:
        image = np.clip(image.astype(np.float32) * (255.0 if image.max() <= 1.0 else 1.0), 0, 255).astype(np.uint8)
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    if image.shape[2] == 1:
        return cv2.cvtColor(image[:, :, 0], cv2.COLOR_GRAY2BGR)
    return image


def decode(data: bytes, name: str) -> np.ndarray:
    """Encoded image bytes -> ``uint8 [H, W, 3]`` BGR, upright (EXIF orientation applied),
    or a clear error naming ``name``: TooManyPixels, before decoding, for a picture over the limit
    (:mod:`livematte.media.image_header`)."""
    if not data:
        raise LivematteError(f"{name} is empty")
    # libpng prints its own "libpng error" line for a cut-off file; a PNG always ends in IEND.
    if data.startswith(b"\x89PNG\r\n\x1a\n") and b"IEND" not in data:
        raise LivematteError(f"{name} is a truncated PNG (no IEND chunk)")
    image_header.check_data(data, name)
    try:
        # Not IMREAD_UNCHANGED: that one ignores EXIF orientation, and phone photos would
        # come out sideways. ANYDEPTH keeps 16-bit precision for to_bgr8; alpha is dropped anyway.
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_ANYCOLOR | cv2.IMREAD_ANYDEPTH)
    except cv2.error as e:  # OpenCV refuses pictures over CV_IO_MAX_IMAGE_PIXELS (2**30) by assertion
        reason = "too large (over 2^30 pixels)" if "MAX_IMAGE_PIXELS" in str(e) else "not an image OpenCV can read"
        raise LivematteError(f"{name} is {reason}") from e
    if image is None or image.size == 0:
        raise LivematteError(f"{name} is not an image OpenCV can read")
    return to_bgr8(image)


def read(source: str | Path) -> np.ndarray:
    """An image file or http(s) URL -> ``uint8 [H, W, 3]`` BGR."""
    source = str(source)
    if net.is_url(source):
        return decode(net.fetch(source, expect=("image/",)), source)
    path = Path(source)
    if not path.exists():
        raise LivematteError(f"{path}: no such file")
    if path.is_dir():
        raise LivematteError(f"{path} is a folder, expected an image file")
    try:
        data = path.read_bytes()
    except OSError as e:
        raise LivematteError(f"cannot read {path}: {e.strerror}") from e
    return decode(data, str(path))


def list_inputs(source: str | Path) -> list[str]:
    """The images ``source`` names: itself (file or URL), or every image in a folder, sorted."""
    source = str(source)
    if net.is_url(source):
        return [source]
    path = Path(source)
    if path.is_dir():
        found = sorted(str(p) for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        if not found:
            raise LivematteError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in folder {path}")
        return found
    return [source]


def stem_of(source: str) -> str:
    """Output name stem for an input path or URL (``.../photo.jpg?x=1`` -> ``photo``)."""
    name = source.split("?")[0].rstrip("/").rsplit("/", 1)[-1] if net.is_url(source) else Path(source).name
    return Path(name).stem or "image"


def write_png(path: Path, image: np.ndarray) -> None:
    """Write a PNG atomically: a crash never leaves a truncated file under ``path``."""
    ok, encoded = cv2.imencode(".png", image)
    if not ok:
        raise LivematteError(f"cannot encode {path}")
    write_atomically(path, encoded.tobytes())
