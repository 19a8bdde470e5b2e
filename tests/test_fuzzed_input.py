"""Fuzzed input (hypothesis): background specs and colours, config files, command-line values, and
frames and mattes of any size through the compositor and the smoother.

Any value either works or is ONE clear error (a :class:`LivematteError`, or argparse's exit 2
naming the flag), never a traceback; valid values always parse to what they say.
"""

from __future__ import annotations

import contextlib
import io
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings, strategies as st

from media import gradient
from livematte import config
from livematte.cli import build_parser
from livematte.compose.backgrounds import Blur, SolidColor, Transparent, parse_background
from livematte.compose.compositor import Compositor
from livematte.errors import LivematteError
from livematte.frames import alpha_to_u8
from livematte.matte.smoothing import SmoothingSettings, TemporalSmoother

FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
HEX = "0123456789abcdefABCDEF"


@contextlib.contextmanager
def offline():
    """URL backgrounds are fetched for real; here the connection fails the way an offline one does."""
    import urllib.error
    import urllib.request

    def refuse(*args, **kwargs):
        raise urllib.error.URLError("offline in tests")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(urllib.request, "urlopen", refuse)
        yield


@FUZZ
@given(st.text(max_size=40) | st.from_regex(r"(color|colour|key|blur|transparent|none|http|ftp)[:/]?.{0,12}",
                                             fullmatch=True))
@example("http://[::1/photo.png")
@example("https://127.0.0.1:port/photo.png")
@example("blur:\u0663")
@example("color:#12345\u0663")
def test_any_background_spec_parses_or_is_a_clear_error(spec):
    with offline():
        try:
            background = parse_background(spec)
        except LivematteError as e:
            assert str(e)
        else:
            background.close()


@FUZZ
@given(st.sampled_from(["color:#", "colour:", "key:#", "key:"]), st.text(HEX, min_size=6, max_size=6),
       st.sampled_from(["", " ", "\t"]))
def test_valid_colour_specs_always_parse(kind, digits, space):
    background = parse_background(f"{space}{kind.upper() if space else kind}{digits}{space}")
    r, g, b = (int(digits[i:i + 2], 16) for i in (0, 2, 4))
    assert isinstance(background, SolidColor) and background.bgr == (b, g, r)


@FUZZ
@given(st.one_of(st.integers(1, 100).map(lambda n: (f"blur:{n}", n)), st.just(("blur", 25)),
                 st.sampled_from([("transparent", None), ("TRANSPARENT", None), ("none", None), ("key", None)])))
def test_valid_keyword_specs_always_parse(case):
    spec, strength = case
    background = parse_background(spec)
    if spec.startswith("blur"):
        assert isinstance(background, Blur) and background.strength == strength
    elif spec == "key":
        assert isinstance(background, SolidColor) and background.bgr == (0, 255, 0)
    else:
        assert isinstance(background, Transparent)


KNOWN_KEYS = {"model": ["name", "model_dir", "size", "threads", "runtime", "download_timeout"],
              "smoothing": ["enabled", "strength", "sigma", "cut_threshold"],
              "capture": ["width", "height", "fps"],
              "output": ["background", "fps", "crf", "encoder_preset", "webm_crf", "prores"],
              "refine": ["mode"]}
SCALARS = (st.integers(-2 ** 63, 2 ** 63 - 1) | st.floats(allow_nan=True, allow_infinity=True) | st.booleans()
           | st.text(max_size=12) | st.sampled_from(["bilinear", "guided", "veryfast", "bshm", "rvm", "auto"]))
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3)
                      | st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=6)

def mostly(known: list[str]):
    """Names that are mostly the known ones, so that examples get past the first check."""
    return st.one_of(*[st.sampled_from(known)] * 4, st.text(max_size=8))


@st.composite
def config_tables(draw):
    table = {}
    sections = draw(st.lists(st.sampled_from(list(KNOWN_KEYS)), max_size=3, unique=True))
    for section in sections + draw(st.lists(st.text(max_size=8), max_size=1)):
        table[section] = draw(st.dictionaries(mostly(KNOWN_KEYS.get(section, ["x"])), VALUES, max_size=2))
    return table


def toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf") if math.isinf(value) else repr(value)
    if isinstance(value, str):
        return '"' + "".join(f"\\u{ord(c):04x}" if ord(c) < 0x20 or c in '"\\\x7f' else c for c in value) + '"'
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return "{" + ", ".join(f"{toml_value(str(k))} = {toml_value(v)}" for k, v in value.items()) + "}"


def toml_dump(table: dict) -> str:
    top = [f"{toml_value(k)} = {toml_value(v)}" for k, v in table.items() if not isinstance(v, dict)]
    sections = [f"[{toml_value(name)}]\n" + "".join(f"{toml_value(k)} = {toml_value(v)}\n" for k, v in values.items())
                for name, values in table.items() if isinstance(values, dict)]
    return "\n".join(top) + "\n" + "\n".join(sections)


@pytest.fixture(scope="module")
def config_file(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("config") / "settings.toml"


def load_or_error(path: Path) -> config.Config | None:
    try:
        loaded = config.load("offline", path)
    except LivematteError as e:
        assert str(e)
        return None
    assert isinstance(loaded, config.Config)
    assert loaded.model.model_dir is None or isinstance(loaded.model.model_dir, Path)
    for section in ("model", "smoothing", "capture", "output"):
        part = getattr(loaded, section)
        for key in KNOWN_KEYS[section]:
            default = getattr(type(part)(), key)
            if default is not None:
                assert type(getattr(part, key)) is type(default), (section, key)
    return loaded


@FUZZ
@given(st.text(max_size=200) | st.binary(max_size=100).map(lambda b: b.decode("latin-1")))
def test_arbitrary_config_text_loads_or_is_a_clear_error(config_file, text):
    config_file.write_text(text, encoding="utf-8")
    load_or_error(config_file)


@FUZZ
@given(st.binary(max_size=60))
def test_config_that_is_not_utf8_is_a_clear_error(config_file, data):
    config_file.write_bytes(data)
    load_or_error(config_file)


@FUZZ
@given(config_tables())
def test_arbitrary_config_tables_load_or_are_a_clear_error(config_file, table):
    config_file.write_text(toml_dump(table), encoding="utf-8")
    load_or_error(config_file)


# (flag, subcommand, check on the parsed value)
FLAGS = [
    ("--smoothing", "video", lambda v: isinstance(v, float) and 0 <= v <= 0.95),
    ("--model-size", "video", lambda v: isinstance(v, int) and v >= 0),
    ("--frames", "video", lambda v: isinstance(v, int) and v >= 0),
    ("--fps", "live", lambda v: isinstance(v, float) and config.MIN_FPS <= v <= config.MAX_FPS),
]


@FUZZ
@given(st.sampled_from(FLAGS), st.text(max_size=12) | st.from_regex(r"-?[0-9٠-٩]{0,4}(\.[0-9]{0,3})?(e-?[0-9]{1,3})?",
                                                                    fullmatch=True)
       | st.sampled_from(["nan", "inf", "-inf", "1e309", "0x10", "1_000", " 5 ", "", "-0"]))
def test_command_line_values_parse_or_exit_2(flag_case, value):
    flag, command, valid = flag_case
    argv = [command, "in.mp4"] if command == "video" else [command]
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        try:
            args = build_parser().parse_args([*argv, f"{flag}={value}"])
        except SystemExit as e:
            assert e.code == 2
            assert f"argument {flag}" in stderr.getvalue()
            return
    parsed = getattr(args, flag.lstrip("-").replace("-", "_"))
    assert valid(parsed), (flag, value, parsed)


BACKDROP = cv2.resize(gradient(5), (90, 50))


@pytest.fixture(scope="module")
def backdrop_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("backdrop") / "backdrop.png"
    assert cv2.imwrite(str(path), BACKDROP)
    return path


@st.composite
def frames_and_mattes(draw):
    h, w = draw(st.integers(1, 300)), draw(st.integers(1, 300))
    seed = draw(st.integers(0, 2 ** 32 - 1))
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    alpha = rng.random((h, w), dtype=np.float32)
    alpha[rng.random((h, w)) < 0.25] = 0.0
    alpha[rng.random((h, w)) < 0.25] = 1.0
    return image, alpha


@FUZZ
@given(frames_and_mattes(), st.sampled_from(["color", "blur", "transparent", "image"]), st.integers(1, 100),
       st.floats(0, 100))
def test_composite_of_any_size(backdrop_file, case, kind, strength, pts):
    image, alpha = case
    spec = {"color": "color:#3366cc", "blur": f"blur:{strength}", "transparent": "transparent",
            "image": str(backdrop_file)}[kind]
    compositor = Compositor(parse_background(spec))
    out = compositor.composite(image, alpha, pts)
    h, w = image.shape[:2]
    assert out.dtype == np.uint8
    if kind == "transparent":
        assert out.shape == (h, w, 4)
        assert np.array_equal(out[:, :, :3], image) and np.array_equal(out[:, :, 3], alpha_to_u8(alpha))
        return
    assert out.shape == (h, w, 3)
    behind = compositor.background.render(image, pts, alpha)
    clear, solid = alpha == 0.0, alpha == 1.0
    assert np.abs(out[clear].astype(int) - behind[clear]).max(initial=0) <= 1
    assert np.abs(out[solid].astype(int) - image[solid]).max(initial=0) <= 1


@FUZZ
@given(st.lists(st.tuples(st.integers(1, 120), st.integers(1, 120)), min_size=2, max_size=6),
       st.floats(0.0, 0.95), st.floats(0.01, 2.0), st.integers(0, 2 ** 32 - 1))
def test_smoother_with_any_sizes(sizes, strength, sigma, seed):
    rng = np.random.default_rng(seed)
    smoother = TemporalSmoother(SmoothingSettings(strength=strength, sigma=sigma))
    for h, w in sizes + sizes[:1]:  # ... and back to the first size
        for _ in range(2):
            alpha = rng.random((h, w), dtype=np.float32)
            given_alpha = alpha.copy()
            out = smoother.apply(alpha)
            assert out.shape == (h, w) and out.dtype == np.float32
            assert np.isfinite(out).all() and out.min() >= 0.0 and out.max() <= 1.0
            assert np.array_equal(alpha, given_alpha)  # the caller's array is left alone
