"""VP9's own repeat: a one-byte frame that shows a picture the decoder already holds.

A constant-rate recording shows the last frame again on each tick that got none of its own. Encoded
anew, a repeat costs libvpx most of a new frame (720p with alpha at speed 8: 31 ms lossless, 14 ms
at crf 30), so an encoder that is behind falls further behind. VP9 has a cheaper way: a frame
header with ``show_existing_frame`` set names one of the decoder's eight reference slots and shows
it again, with no picture data (VP9 bitstream specification, 6.2 and 7.2). This module reads, from
an encoded frame, which slots it was stored in (``refresh_frame_flags``), and writes the header
that shows that slot.

It needs the encoder to emit each frame as it is given (libvpx's ``lag-in-frames`` 0, so no hidden
alt-ref frames and no superframes); a packet it cannot read gives None, and the caller encodes the
repeat instead. libvpx's alpha is a second VP9 stream (FFmpeg carries it as Matroska
BlockAdditional side data: an 8-byte big-endian id, 1, then the frame): it gets its own header.
"""

from __future__ import annotations

ALPHA_ID = (1).to_bytes(8, "big")  # the BlockAdditional id FFmpeg's libvpx wrapper gives the alpha frame


def show_existing(frame: bytes) -> bytes | None:
    """The header that shows the picture ``frame`` (one VP9 frame, as libvpx emits it) decoded to,
    one byte; None when ``frame`` is not a plain shown frame stored in any slot (a superframe, a
    hidden or show-existing frame, one that refreshes no slot, or not VP9)."""
    if len(frame) < 3 or frame[-1] & 0xE0 == 0xC0:  # too short, or ends in a superframe index
        return None
    bits = _Bits(frame)
    if bits.read(2) != 2:  # frame_marker
        return None
    profile = bits.read(1) | bits.read(1) << 1
    if profile == 3 and bits.read(1):  # reserved_zero
        return None
    if bits.read(1):  # show_existing_frame: shows nothing new
        return None
    key_frame = bits.read(1) == 0
    if not bits.read(1):  # show_frame: a hidden frame is not the one on screen
        return None
    error_resilient = bits.read(1)
    if key_frame:
        slots = 0xFF  # a key frame refreshes every slot
    else:
        if not error_resilient:
            bits.read(2)  # reset_frame_context
        slots = bits.read(8)  # refresh_frame_flags (intra_only is 0 for a shown frame)
    if not slots:
        return None
    slot = (slots & -slots).bit_length() - 1  # the lowest slot holding it
    # frame_marker 10, the profile's two bits (low first), reserved_zero for profile 3,
    # show_existing_frame 1, frame_to_show_map_idx; padded with zeros to whole bytes.
    fields = [(2, 2), (profile & 1, 1), (profile >> 1, 1), *([(0, 1)] if profile == 3 else []), (1, 1), (slot, 3)]
    value, count = 0, 0
    for field, width in fields:
        value, count = value << width | field, count + width
    padding = -count % 8
    return (value << padding).to_bytes((count + padding) // 8, "big")


def show_existing_alpha(additional: bytes) -> bytes | None:
    """The BlockAdditional side data (id, then the alpha frame) that shows the alpha frame in
    ``additional`` again, or None where it is not libvpx's alpha or :func:`show_existing` cannot tell."""
    if not additional.startswith(ALPHA_ID):
        return None
    header = show_existing(additional[len(ALPHA_ID):])
    return None if header is None else ALPHA_ID + header


class _Bits:
    """Reads big-endian bit fields from the start of ``data``."""

    def __init__(self, data: bytes):
        self.data, self.position = data, 0

    def read(self, count: int) -> int:
        value = 0
        for _ in range(count):
            byte = self.data[self.position >> 3]
            value = value << 1 | (byte >> (7 - (self.position & 7)) & 1)
            self.position += 1
        return value
