"""A picture's width and height read from its header, and the pixel limit checked before decoding.

Decoding is where a picture costs memory, 3 bytes a pixel and more on the way, and a few KB of
PNG can say 20000x20000 (a decompression bomb). So every picture livematte opens is sized here
first and refused over the limit without being decoded. OpenCV has no header-only read; Pillow
has one, but it is outside the core install and sizing would be its only use there, while each
format's size is a few fixed fields. The formats are those OpenCV's decoders read (OpenEXR is off
in its wheels), told apart by the signatures they check: data that none matches, OpenCV cannot
decode either.

Pure Python on purpose: the command line imports it to set the limit without loading OpenCV.
"""

from __future__ import annotations

import re
import struct

from ..errors import LivematteError

# 12K (12288x6480) is 80 MP and a 100 MP camera's photo 102 MP: both fit. A 200 MP phone photo
# needs --max-pixels; decoded, it is 600 MB before any processing.
DEFAULT_MAX_PIXELS = 120_000_000
_limit = DEFAULT_MAX_PIXELS


class TooManyPixels(LivematteError):
    """A picture whose header gives more pixels than the limit (the web page answers 413)."""


def max_pixels() -> int:
    """The limit in force: pixels (width x height) of the largest picture livematte decodes."""
    return _limit


def set_max_pixels(limit: int) -> None:
    """Set the limit for this process (the command line's ``--max-pixels``); 1 or more."""
    global _limit
    if limit < 1:
        raise ValueError(f"got {limit}, expected 1 or more pixels")
    _limit = limit


def check(width: int, height: int, name: str) -> None:
    """TooManyPixels when ``width`` x ``height`` is over the limit; ``name`` leads the message."""
    if width * height > _limit:
        raise TooManyPixels(f"{name} is {width}x{height} pixels ({width * height:,}), over the limit of "
                            f"{_limit:,} (--max-pixels)")


def check_data(data: bytes, name: str) -> None:
    """Size encoded picture bytes from their header and :func:`check` them. LivematteError when the
    data is no format OpenCV decodes, or its header is cut short or damaged."""
    try:
        size = picture_size(data)
    except ValueError as e:
        raise LivematteError(f"{name} is {e}") from None
    if size is None:
        raise LivematteError(f"{name} is not an image OpenCV can read")
    check(*size, name)


def picture_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) as stored, before any EXIF rotation (which keeps the pixel count); None for
    data of no format OpenCV decodes; ValueError naming the format when its header is unreadable."""
    for name, matches, reader in _FORMATS:
        if matches(data):
            try:
                return reader(data)
            except (struct.error, ValueError, KeyError, IndexError, OverflowError) as e:
                raise ValueError(f"a damaged {name} (no size in its header)") from e
    return None


def _png(data: bytes) -> tuple[int, int]:
    kind, width, height = struct.unpack_from(">4sII", data, 12)  # IHDR is the first chunk
    if kind != b"IHDR":
        raise ValueError("no IHDR")
    return width, height


# Start of frame: C0..CF but for DHT (C4), JPG (C8) and DAC (CC).
_JPEG_FRAMES = set(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def _jpeg(data: bytes) -> tuple[int, int]:
    at = 2
    while True:  # segments up to the first start of frame (libjpeg takes the first)
        mark, marker = struct.unpack_from(">BB", data, at)
        if mark != 0xFF:
            raise ValueError("not a marker")
        if marker == 0xFF:  # fill byte
            at += 1
        elif marker == 0x01 or 0xD0 <= marker <= 0xD8:  # markers without a length
            at += 2
        elif marker in (0xD9, 0xDA):
            raise ValueError("image data before any frame header")
        elif marker in _JPEG_FRAMES:
            height, width = struct.unpack_from(">HH", data, at + 5)
            return width, height
        else:
            at += 2 + struct.unpack_from(">H", data, at + 2)[0]


def _webp(data: bytes) -> tuple[int, int]:
    kind = data[12:16]
    if kind == b"VP8X":  # extended: the canvas, 24-bit sizes minus one
        width, height = (int.from_bytes(struct.unpack_from("3s", data, at)[0], "little") + 1 for at in (24, 27))
        return width, height
    if kind == b"VP8L":  # lossless: 14-bit sizes minus one
        bits = struct.unpack_from("<I", data, 21)[0]
        return (bits & 0x3FFF) + 1, (bits >> 14 & 0x3FFF) + 1
    if kind == b"VP8 ":  # lossy: 14-bit sizes (the top 2 bits are a scale hint) after the frame tag
        width, height = struct.unpack_from("<HH", data, 26)
        return width & 0x3FFF, height & 0x3FFF
    raise ValueError(f"unknown chunk {kind!r}")


def _bmp(data: bytes) -> tuple[int, int]:
    if struct.unpack_from("<I", data, 14)[0] == 12:  # OS/2 core header: 16-bit sizes
        return struct.unpack_from("<HH", data, 18)
    width, height = struct.unpack_from("<ii", data, 18)
    return abs(width), abs(height)  # a negative height is a top-down picture


def _tiff(data: bytes) -> tuple[int, int]:
    order = "<" if data[:2] == b"II" else ">"
    big = data[2:4] in (b"\x2b\x00", b"\x00\x2b")  # BigTIFF: 64-bit offsets and counts
    if big:
        directory = struct.unpack_from(order + "Q", data, 8)[0]
        count, entries, size, value = struct.unpack_from(order + "Q", data, directory)[0], directory + 8, 20, 12
    else:
        directory = struct.unpack_from(order + "I", data, 4)[0]
        count, entries, size, value = struct.unpack_from(order + "H", data, directory)[0], directory + 2, 12, 8
    found = {}
    # The first page's directory (the page OpenCV decodes); tags come sorted, width and length first.
    for at in range(entries, entries + size * min(count, 4096), size):
        tag, kind = struct.unpack_from(order + "HH", data, at)
        if tag in (256, 257):  # ImageWidth, ImageLength: SHORT, LONG or (BigTIFF) LONG8
            found[tag] = struct.unpack_from(order + {3: "H", 4: "I", 16: "Q"}[kind], data, at + value)[0]
    return found[256], found[257]


def _gif(data: bytes) -> tuple[int, int]:
    return struct.unpack_from("<HH", data, 6)  # the logical screen, the frames' canvas


def _netpbm(data: bytes) -> tuple[int, int]:
    header = data[:4096]
    if header[1:2] == b"7":  # PAM: KEY value lines up to ENDHDR
        fields = dict(re.findall(rb"^(WIDTH|HEIGHT)[ \t]+(\d+)", header.split(b"ENDHDR")[0], re.MULTILINE))
        return int(fields[b"WIDTH"]), int(fields[b"HEIGHT"])
    width, height = re.sub(rb"#[^\r\n]*", b" ", header[2:]).split()[:2]  # P1..P6, PF, Pf: "W H"
    return int(width), int(height)


def _sun_raster(data: bytes) -> tuple[int, int]:
    return struct.unpack_from(">II", data, 4)


def _radiance(data: bytes) -> tuple[int, int]:
    header, blank, rest = data[:65536].partition(b"\n\n")  # a blank line ends the header
    found = re.match(rb"([-+][XY]) (\d+) ([-+][XY]) (\d+)\s", rest) if blank else None
    if not found:
        raise ValueError("no resolution line")
    first, second = int(found[2]), int(found[4])
    return (second, first) if found[1].endswith(b"Y") else (first, second)


def _boxes(data: bytes, start: int, end: int):
    """The ISO base media boxes in ``data[start:end]`` -> (type, body start, body end)."""
    at = start
    while at + 8 <= end:
        length, kind = struct.unpack_from(">I4s", data, at)
        body = at + 8
        if length == 1:
            length, body = struct.unpack_from(">Q", data, body)[0], body + 8
        elif length == 0:
            length = end - at
        if length < body - at:
            raise ValueError(f"a {kind!r} box shorter than its header")
        yield kind, body, min(at + length, end)
        at += length


def _jpeg2000(data: bytes) -> tuple[int, int]:
    at = 0
    if not data.startswith(b"\xff\x4f\xff\x51"):  # a JP2 file: the codestream is in its jp2c box
        at = next((body for kind, body, _ in _boxes(data, 0, len(data)) if kind == b"jp2c"), len(data))
    if data[at:at + 4] != b"\xff\x4f\xff\x51":
        raise ValueError("no SIZ marker")
    width, height, left, top = struct.unpack_from(">IIII", data, at + 8)  # the SIZ segment
    if left > width or top > height:  # the image area starts past the grid's end: a damaged SIZ
        raise ValueError(f"SIZ offset {left}x{top} past the grid's {width}x{height}")
    return width - left, height - top


# Boxes holding the sizes (a still's ``ispe`` properties, a sequence's ``tkhd`` tracks), with the
# bytes of full-box header before their children.
_AVIF_CONTAINERS = {b"meta": 4, b"iprp": 0, b"ipco": 0, b"moov": 0, b"trak": 0}


def _avif(data: bytes) -> tuple[int, int]:
    sizes = []

    def walk(start: int, end: int, depth: int) -> None:
        for kind, body, stop in _boxes(data, start, end):
            if kind in _AVIF_CONTAINERS and depth < 4:
                walk(body + _AVIF_CONTAINERS[kind], stop, depth + 1)
            elif kind == b"ispe":
                sizes.append(struct.unpack_from(">II", data, body + 4))
            elif kind == b"tkhd":  # 16.16 fixed point, after version 0's or version 1's fields
                width, height = struct.unpack_from(">II", data, body + (88 if data[body] == 1 else 76))
                sizes.append((width >> 16, height >> 16))

    walk(0, len(data), 0)
    if not sizes:
        raise ValueError("no ispe nor tkhd box")
    # Every picture in the file (primary, alpha, grid, thumbnail) is sized; the largest counts.
    return max(sizes, key=lambda size: size[0] * size[1])


def _is_avif(data: bytes) -> bool:
    if data[4:8] != b"ftyp":
        return False
    end = min(int.from_bytes(data[:4], "big"), len(data), 1024)
    return any(data[at:at + 4] in (b"avif", b"avis") for at in (8, *range(16, end, 4)))


_FORMATS = (
    ("PNG", lambda d: d.startswith(b"\x89PNG\r\n\x1a\n"), _png),
    ("JPEG", lambda d: d.startswith(b"\xff\xd8\xff"), _jpeg),
    ("WebP", lambda d: d[:4] == b"RIFF" and d[8:12] == b"WEBP", _webp),
    ("BMP", lambda d: d.startswith(b"BM"), _bmp),
    ("TIFF", lambda d: d[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"), _tiff),
    ("GIF", lambda d: d[:6] in (b"GIF87a", b"GIF89a"), _gif),
    ("Netpbm", lambda d: re.match(rb"P[1-7]\s|P[Ff]\s", d[:3]) is not None, _netpbm),
    ("Sun raster", lambda d: d.startswith(b"\x59\xa6\x6a\x95"), _sun_raster),
    ("Radiance HDR", lambda d: d.startswith((b"#?RADIANCE", b"#?RGBE")), _radiance),
    ("JPEG 2000", lambda d: d.startswith((b"\x00\x00\x00\x0cjP  \r\n\x87\n", b"\xff\x4f\xff\x51")), _jpeg2000),
    ("AVIF", _is_avif, _avif),
)
