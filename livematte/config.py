"""Typed, frozen settings built once from a preset, a config file and flags.

Presets are TOML files inside the package, ``livematte/presets/``. A ``--config FILE`` has the
same layout (the repository's ``configs/`` holds examples); its keys
override the preset's, and command-line flags override both. Unknown sections
or keys are an error, never silently ignored.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import tomllib
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from .errors import LivematteError
from .matte.finishing import CompositeSettings
from .media.formats import check_encoding
from .models.base import ModelSettings
from .matte.refine import RefineSettings
from .matte.smoothing import SmoothingSettings

MAX_SIDE = 16384  # pixels
MIN_FPS, MAX_FPS = 0.01, 1000.0  # writers hold rates as fractions over at most 1001: far below, they round to 0
X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow",
                "placebo")


@dataclass(frozen=True)
class CaptureSettings:
    """What to ask a camera for (it may give something else; the output follows what it gives).

    fourcc: the pixel format asked for, four characters; "MJPG" because most USB cameras give
    720p30 only compressed (their raw YUYV is limited by USB bandwidth). "" keeps the camera's default.
    mirror: flip every frame left to right as it is read (the selfie view of call apps), camera or file.
    """

    width: int = 1280
    height: int = 720
    fps: float = 30.0
    fourcc: str = "MJPG"
    mirror: bool = False

    def __post_init__(self):
        for name in ("width", "height"):
            if not 1 <= getattr(self, name) <= MAX_SIDE:
                raise ValueError(f"{name} got {getattr(self, name)!r}, expected 1..{MAX_SIDE} pixels")
        if not MIN_FPS <= self.fps <= MAX_FPS:
            raise ValueError(f"fps got {self.fps!r}, expected {MIN_FPS}..{MAX_FPS}")
        if self.fourcc and not (len(self.fourcc) == 4 and self.fourcc.isascii() and self.fourcc.isprintable()):
            raise ValueError(f"fourcc got {self.fourcc!r}, expected four characters (e.g. MJPG, YUYV) or \"\"")


@dataclass(frozen=True)
class OutputSettings:
    """background: a compositor SPEC. fps: 0 follows the source. crf/encoder_preset: H.264 quality and speed
    (encoder_preset, one of :data:`X264_PRESETS`, is also VP9's speed). webm_crf: VP9's quality for
    .webm, 0..63 (lower is better); None (the default, no key) is lossless. prores: the ProRes
    profile of .mov, ``"4444"`` or ``"4444xq"`` (both keep alpha losslessly)."""

    background: str = "blur:25"
    fps: float = 0.0
    crf: int = 18
    encoder_preset: str = "veryfast"
    webm_crf: int | None = None
    prores: str = "4444"

    def __post_init__(self):
        if not (self.fps == 0 or MIN_FPS <= self.fps <= MAX_FPS):
            raise ValueError(f"fps got {self.fps!r}, expected 0 (the source's) or {MIN_FPS}..{MAX_FPS}")
        check_encoding(self.crf, self.webm_crf, self.prores)
        if self.encoder_preset not in X264_PRESETS:
            raise ValueError(f"encoder_preset got {self.encoder_preset!r}, expected one of {', '.join(X264_PRESETS)}")

    def writer_options(self) -> dict[str, Any]:
        """The encoder settings as :class:`~livematte.media.writing.VideoWriter`'s keyword arguments."""
        return {"crf": self.crf, "preset": self.encoder_preset, "webm_crf": self.webm_crf, "prores": self.prores}


@dataclass(frozen=True)
class LiveSettings:
    """The live governor (``livematte live``; offline ``video`` runs the model on every frame).

    adapt: the governor chooses the network's size and how often the model runs, to hold the
        source's frame rate within ``latency_ms``; False keeps the preset's size on every frame.
    max_cpu: the process's CPU budget, percent of one core (100 = one core); None leaves one
        core to other programs (the call app) where there are two or more; 0: no budget.
    latency_ms: the latency target, capture to output, p95.
    fallback: a faster model the governor steps down to when the configured one cannot hold
        the rate at its lowest level ("" for none): Selfie Segmentation, the fast tier.
    """

    adapt: bool = True
    max_cpu: float | None = None
    latency_ms: float = 100.0
    fallback: str = "selfie"

    def __post_init__(self):
        if self.max_cpu is not None and not 0 <= self.max_cpu <= 100 * 1024:
            raise ValueError(f"max_cpu got {self.max_cpu!r}, expected 0 (no budget) or a percentage of one core")
        if not 10 <= self.latency_ms <= 10_000:
            raise ValueError(f"latency_ms got {self.latency_ms!r}, expected 10..10000")
        from .models import BACKENDS

        if self.fallback and self.fallback not in BACKENDS:
            raise ValueError(f"fallback got {self.fallback!r}, expected \"\" or one of {', '.join(BACKENDS)}")

    def cpu_budget(self, cores: int) -> float:
        """The budget in percent of one core on ``cores`` cores; 0 for none."""
        if self.max_cpu is not None:
            return self.max_cpu
        return 100.0 * (cores - 1) if cores > 1 else 0.0


@dataclass(frozen=True)
class Config:
    """preset: the name of the preset these settings started from; every other field is a TOML section."""

    preset: str = "live"
    model: ModelSettings = field(default_factory=ModelSettings)
    smoothing: SmoothingSettings = field(default_factory=SmoothingSettings)
    refine: RefineSettings = field(default_factory=RefineSettings)
    capture: CaptureSettings = field(default_factory=CaptureSettings)
    live: LiveSettings = field(default_factory=LiveSettings)
    output: OutputSettings = field(default_factory=OutputSettings)
    composite: CompositeSettings = field(default_factory=CompositeSettings)


SECTIONS = tuple(f.name for f in dataclasses.fields(Config) if f.name != "preset")  # the TOML's [sections]


def _preset_folder():
    """``livematte/presets/``, wherever the package is installed."""
    return resources.files("livematte") / "presets"


def presets() -> dict[str, str]:
    """Preset name -> its one-line description (the TOML's first comment)."""
    found = {}
    for entry in _preset_folder().iterdir():
        if entry.name.endswith(".toml"):
            first = entry.read_text(encoding="utf-8").splitlines()[:1]
            found[entry.name[:-5]] = first[0].lstrip("# ").strip() if first else ""
    return dict(sorted(found.items()))


def _read_toml(text: str, where: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise LivematteError(f"{where} is not valid TOML: {e}") from e


def _apply(config: Config, table: dict[str, Any], where: str) -> Config:
    changes: dict[str, Any] = {}
    for section, values in table.items():
        if section not in SECTIONS or not isinstance(values, dict):
            raise LivematteError(f"{where}: unknown section [{section}], expected one of {', '.join(SECTIONS)}")
        changes[section] = merge(getattr(config, section), values, f"{where} [{section}]")
    return dataclasses.replace(config, **changes)


@functools.cache
def _field_types(kind: type) -> dict[str, Any]:
    """A settings dataclass's field name -> its annotation, resolved (``Path | None``, ``float``, ...)."""
    hints = typing.get_type_hints(kind)
    return {f.name: hints[f.name] for f in dataclasses.fields(kind)}


def merge(current: Any, values: dict[str, Any], where: str = "command line") -> Any:
    """A copy of the settings dataclass ``current`` with ``values`` (key -> value; None values skipped),
    each coerced by its field's annotation and checked by the class; any fault is a LivematteError.

    A class's ``RESETS`` (key -> key) names keys whose setting puts another back to its default
    unless ``values`` sets that one too: ``ModelSettings``' ``size`` clears the per-model ``sizes``.
    """
    fields = _field_types(type(current))
    typed = {}
    for key, value in values.items():
        if key not in fields:
            raise LivematteError(f"{where}: unknown key {key!r}, expected one of {', '.join(fields)}")
        if value is not None:
            typed[key] = _coerce(value, fields[key], f"{where} {key}")
    for key, cleared in getattr(type(current), "RESETS", {}).items():
        if key in typed and cleared not in typed:
            typed[cleared] = getattr(type(current)(), cleared)
    try:
        return dataclasses.replace(current, **typed)
    except ValueError as e:
        raise LivematteError(f"{where}: {e}") from e


def _coerce(value: Any, kind: Any, where: str) -> Any:
    """``value`` as the annotation ``kind``: a str, int, float (ints taken), bool (bools only), Path
    (from a str), a union such as ``Path | None``, or ``dict[str, V]`` (a TOML table, each value a V)."""
    if typing.get_origin(kind) is dict:
        if not isinstance(value, dict):
            raise LivematteError(f"{where} got {value!r}, expected a table (name = value, ...)")
        key_kind, value_kind = typing.get_args(kind)
        return {_coerce(k, key_kind, where): _coerce(v, value_kind, f"{where}.{k}") for k, v in value.items()}
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        members = typing.get_args(kind)
        if value is None and type(None) in members:
            return None
        faults = []
        for member in members:
            if member is not type(None):
                try:
                    return _coerce(value, member, where)
                except LivematteError as e:
                    faults.append(e)
        raise faults[0] if len(faults) == 1 else LivematteError(f"{where} got {value!r}, expected {_name(kind)}")
    if kind is Path:
        if isinstance(value, (str, Path)):
            return Path(value)
        raise LivematteError(f"{where} got {value!r}, expected a path")
    if kind is bool:
        if isinstance(value, bool):
            return value
    elif kind is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif kind is str:
        if isinstance(value, str):
            return value
    else:
        raise TypeError(f"{where}: no coercion to {kind!r}")  # a new field type: teach _coerce about it
    raise LivematteError(f"{where} got {value!r}, expected {_name(kind)}")


def _name(kind: Any) -> str:
    """``Path | None`` -> "Path or None"."""
    if typing.get_args(kind):
        return " or ".join(_name(k) for k in typing.get_args(kind))
    return "None" if kind is type(None) else kind.__name__


def load(preset: str, config_file: Path | None = None, overrides: dict[str, dict[str, Any]] | None = None) -> Config:
    """Preset, then ``config_file``, then ``overrides`` (section -> key -> value; None values skipped)."""
    available = presets()
    if preset not in available:
        raise LivematteError(f"unknown preset {preset!r}, expected one of {', '.join(available)}")
    text = _preset_folder().joinpath(f"{preset}.toml").read_text(encoding="utf-8")
    config = _apply(Config(preset=preset), _read_toml(text, f"preset {preset}"), f"preset {preset}")
    if config_file is not None:
        try:
            text = Path(config_file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise LivematteError(f"cannot read config file {config_file}: {e}") from e
        config = _apply(config, _read_toml(text, str(config_file)), str(config_file))
    return _apply(config, overrides or {}, "command line")
