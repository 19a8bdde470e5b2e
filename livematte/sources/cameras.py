"""The cameras this machine has, for ``livematte cameras`` and for the error when one cannot be opened.

On Linux each V4L2 device is asked, with the driver's own ioctls (no v4l2-ctl needed), for its
name, pixel formats and frame sizes; devices that capture no video (the metadata node a UVC camera
adds beside its picture) are left out. Elsewhere OpenCV is all there is: the first
:data:`PROBED_INDICES` indices are opened in turn, and each that opens is one camera, with the size
it opens at.

The struct decoding (:func:`decode_capability`, :func:`decode_format`, :func:`decode_frame_size`)
is kept apart from the ioctls so that it can be checked against the kernel's own header.
"""

from __future__ import annotations

import contextlib
import errno
import os
import struct
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import cv2

SYSFS = Path("/sys/class/video4linux")
PROBED_INDICES = 10

# struct v4l2_capability, v4l2_fmtdesc, v4l2_frmsizeenum (linux/videodev2.h); all members are
# __u8 arrays and __u32, so native byte order without padding.
CAPABILITY = struct.Struct("=16s32s32sIII12x")
FORMAT = struct.Struct("=III32sII12x")
FRAME_SIZE = struct.Struct("=III6I8x")
CAP_VIDEO_CAPTURE, CAP_VIDEO_CAPTURE_MPLANE, CAP_DEVICE_CAPS = 0x1, 0x1000, 0x80000000
BUF_TYPE_VIDEO_CAPTURE, BUF_TYPE_VIDEO_CAPTURE_MPLANE = 1, 9
FRAME_SIZE_DISCRETE, FRAME_SIZE_CONTINUOUS, FRAME_SIZE_STEPWISE = 1, 2, 3


def _ioc(direction: int, number: int, size: int) -> int:
    """An ioctl request as asm-generic/ioctl.h encodes it (x86, Arm, RISC-V): dir, size, type 'V', nr."""
    return direction << 30 | size << 16 | ord("V") << 8 | number


VIDIOC_QUERYCAP = _ioc(2, 0, CAPABILITY.size)  # _IOR
VIDIOC_ENUM_FMT = _ioc(3, 2, FORMAT.size)  # _IOWR
VIDIOC_ENUM_FRAMESIZES = _ioc(3, 74, FRAME_SIZE.size)  # _IOWR


@dataclass(frozen=True)
class Format:
    """A pixel format: ``fourcc`` (``"MJPG"``), the driver's description, and the frame sizes it
    offers (``"1280x720"``, or a range ``"16x16..1920x1080 step 2x2"``)."""

    fourcc: str
    description: str
    sizes: tuple[str, ...]


@dataclass(frozen=True)
class Camera:
    """``device``: what ``--camera`` takes (``/dev/video0``, or an OpenCV index); ``index``: its number
    (``--camera N``); ``problem``: why it could not be asked (then ``formats`` is empty)."""

    device: str
    index: int
    name: str
    formats: tuple[Format, ...] = ()
    problem: str = ""

    def label(self) -> str:
        """``"0 (/dev/video0, Integrated Camera)"``: how the error lines name it."""
        where = f"{self.device}, " if self.device != str(self.index) else ""
        return f"{self.index} ({where}{self.name})"


def list_cameras() -> list[Camera]:
    """Every camera found, in index order (none: an empty list)."""
    return v4l2_cameras() if sys.platform.startswith("linux") else opencv_cameras()


def v4l2_cameras(sysfs: Path = SYSFS) -> list[Camera]:
    """The V4L2 video capture devices named in ``sysfs``."""
    nodes = sorted((p for p in sysfs.glob("video*") if p.name[5:].isdigit()), key=lambda p: int(p.name[5:]))
    cameras = []
    for node in nodes:
        camera = _v4l2_camera(Path("/dev") / node.name, int(node.name[5:]), _read_name(node))
        if camera is not None:
            cameras.append(camera)
    return cameras


def _read_name(node: Path) -> str:
    try:
        return (node / "name").read_text(encoding="utf-8", errors="replace").strip() or node.name
    except OSError:
        return node.name


def _v4l2_camera(device: Path, index: int, name: str) -> Camera | None:
    """The camera at ``device``, None when it captures no video."""
    import fcntl

    try:
        fd = os.open(device, os.O_RDWR | os.O_NONBLOCK)
    except OSError as e:
        return Camera(str(device), index, name, problem=f"cannot open it: {e.strerror}")
    try:
        raw = bytearray(CAPABILITY.size)
        fcntl.ioctl(fd, VIDIOC_QUERYCAP, raw)
        card, caps = decode_capability(bytes(raw))
        if caps & CAP_VIDEO_CAPTURE:
            kind = BUF_TYPE_VIDEO_CAPTURE
        elif caps & CAP_VIDEO_CAPTURE_MPLANE:
            kind = BUF_TYPE_VIDEO_CAPTURE_MPLANE
        else:
            return None
        formats = tuple(Format(fourcc, description, tuple(_sizes(fd, pixel_format)))
                        for fourcc, description, pixel_format in _formats(fd, kind))
        return Camera(str(device), index, card or name, formats)
    except OSError as e:
        return Camera(str(device), index, name, problem=f"cannot query it: {e.strerror}")
    finally:
        os.close(fd)


def _enumerate(fd: int, request: int, layout: struct.Struct, *fields: int) -> Iterator[bytes]:
    """Each answer to ``request`` for index 0, 1, ... until the driver says EINVAL (no more)."""
    import fcntl

    for index in range(1024):
        raw = bytearray(layout.size)
        struct.pack_into(f"={1 + len(fields)}I", raw, 0, index, *fields)
        try:
            fcntl.ioctl(fd, request, raw)
        except OSError as e:
            if e.errno == errno.EINVAL:
                return
            raise
        yield bytes(raw)


def _formats(fd: int, kind: int) -> Iterator[tuple[str, str, int]]:
    for raw in _enumerate(fd, VIDIOC_ENUM_FMT, FORMAT, kind):
        yield decode_format(raw)


def _sizes(fd: int, pixel_format: int) -> Iterator[str]:
    for raw in _enumerate(fd, VIDIOC_ENUM_FRAMESIZES, FRAME_SIZE, pixel_format):
        yield decode_frame_size(raw)


def _text(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("utf-8", "replace").strip()


def decode_capability(raw: bytes) -> tuple[str, int]:
    """A ``struct v4l2_capability`` -> (card name, the capabilities of this device node)."""
    _driver, card, _bus, _version, capabilities, device_caps = CAPABILITY.unpack(raw)
    return _text(card), device_caps if capabilities & CAP_DEVICE_CAPS else capabilities


def decode_format(raw: bytes) -> tuple[str, str, int]:
    """A ``struct v4l2_fmtdesc`` -> (fourcc, description, the pixel format as the driver numbers it)."""
    _index, _type, _flags, description, pixel_format, _mbus = FORMAT.unpack(raw)
    fourcc = pixel_format.to_bytes(4, "little").decode("latin-1").rstrip(" \0")
    return fourcc, _text(description), pixel_format


def decode_frame_size(raw: bytes) -> str:
    """A ``struct v4l2_frmsizeenum`` -> ``"WxH"``, or ``"WxH..WxH"`` (continuous) with ``" step WxH"`` (stepwise)."""
    _index, _format, kind, *size = FRAME_SIZE.unpack(raw)
    if kind == FRAME_SIZE_DISCRETE:
        return f"{size[0]}x{size[1]}"
    min_w, max_w, step_w, min_h, max_h, step_h = size
    span = f"{min_w}x{min_h}..{max_w}x{max_h}"
    return span if kind == FRAME_SIZE_CONTINUOUS else f"{span} step {step_w}x{step_h}"


def opencv_cameras(count: int = PROBED_INDICES) -> list[Camera]:
    """Indices 0..count-1 that OpenCV opens, each with the size and format it opens at."""
    cameras = []
    for index in range(count):
        with quiet_opencv():
            capture = cv2.VideoCapture(index)
            try:
                if not capture.isOpened():
                    continue
                width, height = (int(capture.get(p)) for p in (cv2.CAP_PROP_FRAME_WIDTH, cv2.CAP_PROP_FRAME_HEIGHT))
                code = int(capture.get(cv2.CAP_PROP_FOURCC))
                fourcc = code.to_bytes(4, "little").decode("latin-1").strip("\0 ") if code > 0 else "?"
            finally:
                capture.release()
        cameras.append(Camera(str(index), index, f"camera {index}", (Format(fourcc, "as opened", (f"{width}x{height}",)),)))
    return cameras


@contextlib.contextmanager
def quiet_opencv() -> Iterator[None]:
    """OpenCV's own log off meanwhile: opening a camera that is not there logs the failure of each
    backend tried, lines of WARN and ERROR before livematte can say what is wrong in one."""
    # The FFmpeg backend's own log has its own level, read once, at its first use; livematte
    # reads files with PyAV, so OpenCV's FFmpeg serves cameras only.
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET
    previous = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    try:
        yield
    finally:
        cv2.utils.logging.setLogLevel(previous)


def describe(cameras: list[Camera]) -> list[str]:
    """``livematte cameras``' lines: one per camera, then one per format."""
    lines = []
    for camera in cameras:
        lines.append(f"--camera {camera.label()}" + (f": {camera.problem}" if camera.problem else ""))
        lines += [f"    {f.fourcc:4}  {f.description}: {', '.join(f.sizes) or 'no sizes listed'}" for f in camera.formats]
    return lines


def why_not_opened(device: int | str, cameras: list[Camera]) -> str:
    """What follows "cannot open camera N" in the error line, naming the cameras there are."""
    if not cameras:
        return "no camera found on this machine (--source PATH plays a video file instead)"
    asked = next((c for c in cameras if str(device) in (c.device, str(c.index))), None)
    if asked is not None:
        return f"{asked.name}: {asked.problem or 'is it used by another program?'}"
    return f"it is not one of the cameras here: {'; '.join(c.label() for c in cameras)}"
