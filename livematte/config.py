"""Typed, frozen settings built once from a preset, a config file and flags.

Presets are TOML files in the repository's ``configs/`` folder (installed as
``livematte.presets``). A ``--config FILE`` has the same layout; its keys
override the preset's, and command-line flags override both. Unknown sections
or keys are an error, never silently ignored.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from .errors import LivematteError
from .models.base import ModelSettings
from .refine import MODES as REFINE_MODES
from .smoothing import SmoothingSettings

MAX_SIDE = 16384  # pixels
MIN_FPS, MAX_FPS = 0.01, 1000.0  # writers hold rates as fractions over at most 1001: far below, they round to 0
X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow",
                "placebo")


@dataclass(frozen=True)
class CaptureSettings:
    """What to ask a camera for (it may give something else; the output follows what it gives).

    fourcc: the pixel format asked for, four characters; "MJPG" because most USB cameras give
    720p30 only compressed (their raw YUYV is limited by USB bandwidth). "" keeps the camera's default.
    """

    width: int = 1280
    height: int = 720
    fps: float = 30.0
    fourcc: str = "MJPG"

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
    """background: a compositor SPEC. fps: 0 follows the source. crf/preset: H.264 quality and speed."""

    background: str = "blur:25"
    fps: float = 0.0
    crf: int = 18
    preset: str = "veryfast"

    def __post_init__(self):
        if not (self.fps == 0 or MIN_FPS <= self.fps <= MAX_FPS):
            raise ValueError(f"fps got {self.fps!r}, expected 0 (the source's) or {MIN_FPS}..{MAX_FPS}")
        if not 0 <= self.crf <= 51:
            raise ValueError(f"crf got {self.crf!r}, expected 0..51")
        if self.preset not in X264_PRESETS:
            raise ValueError(f"preset got {self.preset!r}, expected one of {', '.join(X264_PRESETS)}")


@dataclass(frozen=True)
class Config:
    preset: str = "live"
    model: ModelSettings = field(default_factory=ModelSettings)
    smoothing: SmoothingSettings = field(default_factory=SmoothingSettings)
    refine: str = "bilinear"
    capture: CaptureSettings = field(default_factory=CaptureSettings)
    output: OutputSettings = field(default_factory=OutputSettings)


_SECTIONS = {"model": ModelSettings, "smoothing": SmoothingSettings,
             "capture": CaptureSettings, "output": OutputSettings}


def _preset_folder():
    """``configs/`` as installed (``livematte.presets``), or beside the package in a source tree."""
    try:
        return resources.files("livematte.presets")
    except ModuleNotFoundError:  # editable installs do not map package_dir for data folders
        return Path(__file__).resolve().parents[1] / "configs"


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
        if section == "refine" and isinstance(values, dict):
            values = dict(values)
            mode = values.pop("mode", config.refine)
            if values:
                raise LivematteError(f"{where}: unknown key(s) {', '.join(values)} in [refine], expected mode")
            if mode not in REFINE_MODES:
                raise LivematteError(f"{where}: refine mode got {mode!r}, expected one of {', '.join(REFINE_MODES)}")
            changes["refine"] = mode
            continue
        kind = _SECTIONS.get(section)
        if kind is None or not isinstance(values, dict):
            known = ", ".join(["refine", *_SECTIONS])
            raise LivematteError(f"{where}: unknown section [{section}], expected one of {known}")
        changes[section] = _merge(getattr(config, section), values, f"{where} [{section}]")
    return dataclasses.replace(config, **changes)


def _merge(current: Any, values: dict[str, Any], where: str) -> Any:
    fields = {f.name: f for f in dataclasses.fields(current)}
    typed = {}
    for key, value in values.items():
        if key not in fields:
            raise LivematteError(f"{where}: unknown key {key!r}, expected one of {', '.join(fields)}")
        typed[key] = _coerce(value, type(getattr(current, key)), f"{where} {key}")
    try:
        return dataclasses.replace(current, **typed)
    except ValueError as e:
        raise LivematteError(f"{where}: {e}") from e


def _coerce(value: Any, kind: type, where: str) -> Any:
    if kind is type(None) or value is None or issubclass(kind, Path):  # Path-or-None fields such as model_dir
        if value is None or isinstance(value, Path):
            return value
        if isinstance(value, str):
            return Path(value)
        raise LivematteError(f"{where} got {value!r}, expected a path")
    if kind is bool:
        if isinstance(value, bool):
            return value
    elif kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    elif kind is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    elif kind is str and isinstance(value, str):
        return value
    raise LivematteError(f"{where} got {value!r}, expected {kind.__name__}")


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
    for section, values in (overrides or {}).items():
        values = {k: v for k, v in values.items() if v is not None}
        if section == "refine":
            if values.get("mode") is not None:
                config = _apply(config, {"refine": values}, "command line")
        elif values:
            config = dataclasses.replace(config, **{section: _merge(getattr(config, section), values, "command line")})
    return config
