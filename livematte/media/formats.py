"""The output formats: which kind a path asks for, and what each kind is made of.

:func:`output_kind` maps a path to its kind (``OUTPUT_KINDS``); ``CONTAINER_KINDS`` holds each video
kind's container, codec, pixel format and audio rules; :func:`check_encoding` checks the encoder
settings a user gives and :func:`codec_options` turns them into the codec's options.

Neither PyAV nor OpenCV is imported here: the command line and the config read these tables
without loading either.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from ..errors import LivematteError
from . import PathLike

# Output kind by file extension; a path with no extension (or ending in "/") is a PNG folder.
OUTPUT_SUFFIXES = {".mp4": "mp4", ".m4v": "mp4", ".mkv": "mkv", ".webm": "webm", ".mov": "mov"}
OUTPUT_KINDS = ("mp4", "mkv", "webm", "mov", "png")
ALPHA_KINDS = ("mkv", "nut", "png")
ALPHA_FORMATS = ".mkv (FFV1), .nut (raw, uncompressed) or to a folder of PNGs"

WEBM_CRF_MAX = 63  # libvpx-vp9's crf scale, 0..63; None (the default) is lossless
# ProRes profiles that carry alpha -> prores_ks's profile number. Alpha is coded losslessly in both;
# the profile sets the colour planes' bit rate (Apple's targets: the README's measurements table).
PRORES_PROFILES = {"4444": "4", "4444xq": "5"}
# x264 preset names mapped onto libvpx's speed (cpu-used); above 5 libvpx wants the realtime deadline.
_VP9_SPEED = {"ultrafast": 8, "superfast": 8, "veryfast": 7, "faster": 6, "fast": 5,
              "medium": 4, "slow": 2, "slower": 1, "veryslow": 0, "placebo": 0}


@dataclass(frozen=True)
class ContainerKind:
    container: str  # FFmpeg muxer name
    codec: str
    pix_fmt: str
    alpha: bool
    even: bool  # the pixel format subsamples chroma 2x2 and the encoder rejects odd sizes
    tick: Fraction  # time base the muxer keeps anyway; finer ticks would only be rounded off
    audio_copy: frozenset[str]
    audio_codec: str


# audio_copy: the codecs each kind takes as they are, and that players play there (FFmpeg's MP4
# muxer takes Opus and FLAC too, which not all players do). Other audio is re-encoded, more than
# two channels mixed down to stereo: the surround codecs are copied wherever they fit.
CONTAINER_KINDS = {
    "mp4": ContainerKind("mp4", "libx264", "yuv420p", False, True, Fraction(1, 90000),
                         frozenset({"aac", "mp3", "ac3", "eac3"}), "aac"),
    "mkv": ContainerKind("matroska", "libx264", "yuv420p", False, True, Fraction(1, 1000),
                         frozenset({"aac", "opus", "vorbis", "mp3", "flac", "ac3", "eac3"}), "aac"),
    "webm": ContainerKind("webm", "libvpx-vp9", "yuva420p", True, False, Fraction(1, 1000),
                          frozenset({"opus", "vorbis"}), "libopus"),
    "mov": ContainerKind("mov", "prores_ks", "yuva444p10le", True, False, Fraction(1, 90000),
                         frozenset({"aac", "mp3", "alac", "ac3", "eac3"}), "aac"),
}


def output_kind(path: PathLike) -> str:
    """The output kind a path asks for: ``"mp4"``, ``"mkv"``, ``"webm"``, ``"mov"`` or ``"png"``.

    A path ending in ``/``, with no extension, or naming an existing folder is a PNG sequence.
    """
    text = os.fspath(path)
    suffix = Path(text).suffix.lower()
    if text.endswith(("/", os.sep)) or not suffix or Path(text).is_dir():
        return "png"
    if suffix in OUTPUT_SUFFIXES:
        return OUTPUT_SUFFIXES[suffix]
    choices = ", ".join(sorted(OUTPUT_SUFFIXES))
    raise LivematteError(f"{text}: unknown video extension {suffix!r}; use one of {choices}, "
                         "or a folder name for a PNG sequence")


def alpha_kind(path: PathLike) -> str:
    """The matte file a path asks for: ``"mkv"`` (FFV1), ``"nut"`` (raw 8-bit gray in FFmpeg's NUT:
    uncompressed, the cheapest to write) or ``"png"`` (a folder); a clear error for anything else."""
    if Path(os.fspath(path)).suffix.lower() == ".nut":
        return "nut"
    try:
        kind = output_kind(path)
    except LivematteError:
        kind = None
    if kind not in ALPHA_KINDS:
        raise LivematteError(f"{os.fspath(path)}: mattes are written as {ALPHA_FORMATS}")
    return kind


def check_encoding(crf: int, webm_crf: int | None, prores: str) -> None:
    """Raise a one-line ``ValueError`` for an H.264 ``crf`` outside 0..51, a ``webm_crf`` outside
    0..63 (None is lossless) or a ``prores`` profile other than those of :data:`PRORES_PROFILES`."""
    if isinstance(crf, bool) or not isinstance(crf, int) or not 0 <= crf <= 51:
        raise ValueError(f"crf got {crf!r}, expected 0..51 (H.264)")
    if webm_crf is not None and (isinstance(webm_crf, bool) or not isinstance(webm_crf, int)
                                 or not 0 <= webm_crf <= WEBM_CRF_MAX):
        raise ValueError(f"webm_crf got {webm_crf!r}, expected 0..{WEBM_CRF_MAX} (VP9); without it .webm is lossless")
    if prores not in PRORES_PROFILES:
        raise ValueError(f"prores got {prores!r}, expected one of {', '.join(PRORES_PROFILES)}")


def vp9_speed(preset: str) -> int:
    """libvpx's speed (cpu-used, 0..8) for an x264 preset name."""
    return _VP9_SPEED.get(preset, 6)


def codec_options(spec: ContainerKind, crf: int, preset: str, webm_crf: int | None, prores: str) -> dict[str, str]:
    """The codec options of ``spec``'s encoder for the settings :func:`check_encoding` took."""
    if spec.codec == "libx264":
        return {"crf": str(crf), "preset": preset}
    if spec.codec == "libvpx-vp9":
        # Lossless by default: libvpx codes alpha with the colour planes' settings, so a
        # constant-quality file moves sharp matte edges too (see the README's table).
        speed = vp9_speed(preset)
        quality = {"lossless": "1"} if webm_crf is None else {"crf": str(webm_crf), "b": "0"}
        return {**quality, "cpu-used": str(speed), "row-mt": "1", "deadline": "realtime" if speed > 5 else "good"}
    if spec.codec == "prores_ks":
        return {"profile": PRORES_PROFILES[prores], "vendor": "apl0"}
    return {}
