"""The command line says what it does: bad or contradictory flags are refused before a model
loads, ignored ones are named, options work wherever they are written, and the README's
figures match the presets."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from media import make_video
from livematte import config as livematte_config
from livematte.cli import main
from livematte.errors import LivematteError

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return make_video(tmp_path_factory.mktemp("in") / "clip.mp4", n=10)


def run_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "livematte", *args], capture_output=True, text=True,
                          timeout=120, env=env)


# --- refused before the model loads (the log's "model:" line never comes) ------------------------------

@pytest.mark.parametrize("args, message", [
    (["--sink", "file"], "--sink file needs -o FILE"),
    (["-o", "out.xyz"], "unknown video extension '.xyz'"),
    (["-o", "out.mp4", "--sink", "null"], "-o is the file for --sink file, but the sink is null"),
    (["--sink", "null", "--fps", "15"], "--fps sets the rate of a virtual camera or preview"),
    (["--sink", "null", "--alpha-out", "m.mp4"], "mattes are written as .mkv (FFV1), .nut (raw, uncompressed) or to a folder of PNGs"),
    (["--sink", "vcam"], "no virtual camera device (v4l2loopback)"),
])
def test_live_checks_that_need_no_model_come_first(clip, tmp_path, args, message):
    result = subprocess.run([sys.executable, "-m", "livematte", "live", "--source", str(clip), *args],
                            capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    assert message in result.stderr
    assert "model:" not in result.stderr and "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_preview_without_a_display_is_a_clear_error_not_an_abort(clip):
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    result = run_cli("live", "--source", str(clip), "--sink", "preview", env=env)
    assert result.returncode == 1, result.stderr  # not 134 (SIGABRT from Qt)
    assert "cannot open a preview window" in result.stderr
    assert "model:" not in result.stderr


@pytest.mark.parametrize("args, message", [
    (["--format", "webm", "-o", "x.mp4"], "--format webm contradicts -o x.mp4 (mp4)"),
    (["-o", "x.avi"], "unknown video extension '.avi'"),
    (["-o", "x.mkv", "--alpha-out", "x.mkv"], "two outputs would both be written to x.mkv"),
])
def test_video_checks_that_need_no_model_come_first(clip, tmp_path, args, message):
    result = subprocess.run([sys.executable, "-m", "livematte", "video", str(clip), *args],
                            capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    assert message in result.stderr
    assert "model:" not in result.stderr
    assert list(tmp_path.iterdir()) == []


# --- ranges say one thing ------------------------------------------------------------------------------

@pytest.mark.parametrize("value", ["1.5", "0.97", "-0.1"])
def test_smoothing_range_is_the_same_everywhere(value, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["video", "x.mp4", "--smoothing", value])
    assert exit_info.value.code == 2
    assert "expected 0..0.95 (0 = off)" in capsys.readouterr().err
    config_file = tmp_path / "c.toml"
    config_file.write_text(f"[smoothing]\nstrength = {abs(float(value))}\n")
    if abs(float(value)) > 0.95:
        with pytest.raises(LivematteError, match=r"expected 0\.\.0\.95 \(0 = off\)"):
            livematte_config.load("offline", config_file)


@pytest.mark.parametrize("command", [["video", "x.mp4"], ["live", "--source", "x.mp4"], ["demo"]])
def test_frames_zero_is_refused_at_once(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([*command, "--frames", "0"])
    assert exit_info.value.code == 2
    assert "--frames: got 0, expected 1 or more" in capsys.readouterr().err


# --- every setting through the typed config -------------------------------------------------------------

def test_refine_is_an_ordinary_section(tmp_path):
    from livematte.matte.refine import RefineSettings

    assert livematte_config.load("offline").refine == RefineSettings("bilinear")
    config_file = tmp_path / "c.toml"
    config_file.write_text('refine = {mode = "guided"}\n')
    assert livematte_config.load("offline", config_file).refine == RefineSettings(mode="guided")
    assert livematte_config.load("live", overrides={"refine": {"mode": "guided"}}).refine.mode == "guided"
    config_file.write_text('[refine]\nmode = "sharp"\n')
    with pytest.raises(LivematteError, match=r"\[refine\]: refine mode got 'sharp', expected one of bilinear, guided"):
        livematte_config.load("offline", config_file)
    config_file.write_text('[refine]\nstrength = 2\n')
    with pytest.raises(LivematteError, match=r"unknown key 'strength', expected one of mode"):
        livematte_config.load("offline", config_file)


def test_values_are_coerced_by_the_field_annotation():
    from dataclasses import dataclass

    @dataclass(frozen=True)
    class Probe:
        ratio: float = 1  # an int default: the annotation, not the default's type, decides
        label: str | None = None
        folder: Path | None = None
        on: bool = False

    merged = livematte_config.merge(Probe(), {"ratio": 2, "label": "x", "folder": "/tmp/a", "on": True})
    assert merged == Probe(ratio=2.0, label="x", folder=Path("/tmp/a"), on=True)
    assert type(merged.ratio) is float and type(merged.label) is str
    assert livematte_config.merge(Probe(), {"ratio": 0.5}).ratio == 0.5
    for key, value in (("on", 1), ("ratio", True), ("folder", 3), ("label", 3)):
        with pytest.raises(LivematteError, match=f"{key} got {value!r}"):
            livematte_config.merge(Probe(), {key: value})
    loaded = livematte_config.load("offline", overrides={"model": {"model_dir": "/tmp/weights", "download_timeout": 5},
                                                         "capture": {"fps": 25}})
    assert loaded.model.model_dir == Path("/tmp/weights") and loaded.model.download_timeout == 5.0
    assert type(loaded.capture.fps) is float


def test_per_model_sizes_are_a_table_that_a_later_size_clears(tmp_path):
    offline = livematte_config.load("offline").model
    assert offline.sizes == {"modnet": 512}
    assert (offline.size_for("rvm"), offline.size_for("modnet"), offline.size_for("selfie")) == (416, 512, 416)
    # --model-size (or a config file's size alone) is the size asked for last: every model gets it.
    flag = livematte_config.load("offline", overrides={"model": {"size": 300}}).model
    assert flag.sizes == {} and flag.size_for("modnet") == 300
    config_file = tmp_path / "c.toml"
    config_file.write_text("[model]\nsize = 320\n")
    assert livematte_config.load("offline", config_file).model.size_for("modnet") == 320
    config_file.write_text("[model]\nsize = 320\n[model.sizes]\nmodnet = 448\n")
    both = livematte_config.load("offline", config_file).model
    assert (both.size_for("rvm"), both.size_for("modnet")) == (320, 448)
    for text, message in (("sizes = 5", r"\[model\] sizes got 5, expected a table"),
                          ("sizes = {modnet = 7}", r"sizes\.modnet got 7, expected 0 \(the backend's default\) or 32"),
                          ('sizes = {modnet = "big"}', r"sizes\.modnet got 'big', expected int")):
        config_file.write_text(f"[model]\n{text}\n")
        with pytest.raises(LivematteError, match=message):
            livematte_config.load("offline", config_file)


def test_per_model_sizes_name_real_models(tmp_path):
    from livematte import models

    config_file = tmp_path / "c.toml"
    config_file.write_text("[model]\nsizes = {modnett = 512}\n")
    settings = livematte_config.load("offline", config_file).model
    with pytest.raises(LivematteError, match=r"\[model\] sizes names 'modnett', expected models among bshm, rvm"):
        models.load(settings)


def test_width_and_height_go_through_config_load(monkeypatch):
    import livematte.commands.live

    calls, jobs = [], []
    real_load = livematte_config.load
    monkeypatch.setattr(livematte_config, "load", lambda *a, **k: calls.append(a) or real_load(*a, **k))
    monkeypatch.setattr(livematte.commands.live, "run_live_job", lambda job, stop: jobs.append(job))
    assert main(["live", "--source", "x.mp4", "--sink", "null", "--width", "640"]) == 0
    assert calls[0][2]["capture"] == {"width": 640, "height": None, "mirror": None}
    assert jobs[0].config.capture.width == 640 and jobs[0].config.capture.height == 720
    with pytest.raises(LivematteError, match=r"command line \[capture\]: width got 0, expected 1\.\.16384"):
        main(["--debug", "live", "--source", "x.mp4", "--sink", "null", "--width", "0"])


def test_image_model_flags_go_through_the_typed_merge():
    from livematte.cli import build_parser
    from livematte.commands.options import model_settings

    args = build_parser().parse_args(["image", "-i", "x.png", "--model-dir", "w", "--threads", "2000"])
    with pytest.raises(LivematteError, match=r"command line \[model\]: threads got 2000"):
        model_settings(args)


def test_old_output_preset_key_names_encoder_preset(tmp_path):
    config_file = tmp_path / "old.toml"
    config_file.write_text('[output]\npreset = "slow"\n')
    with pytest.raises(LivematteError, match=r"\[output\]: unknown key 'preset', expected one of .*encoder_preset"):
        livematte_config.load("offline", config_file)
    config_file.write_text('[output]\nencoder_preset = "slow"\n')
    loaded = livematte_config.load("offline", config_file)
    assert loaded.output.encoder_preset == "slow" and loaded.preset == "offline"


def test_cli_choices_come_from_the_modules():
    import argparse

    from livematte.cli import build_parser
    from livematte.media.formats import OUTPUT_KINDS
    from livematte.matte.refine import MODES

    def option(command, flag):
        sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)).choices[command]
        return next(a for a in sub._actions if flag in a.option_strings)

    assert option("video", "--format").choices is OUTPUT_KINDS
    assert option("live", "--refine").choices is MODES
    assert all(name in option("video", "--encoder-preset").help for name in livematte_config.X264_PRESETS)


# --- options after the command ------------------------------------------------------------------------

def test_debug_and_verbose_work_after_the_command_too(tmp_path):
    missing = str(tmp_path / "missing.mp4")
    for args in (["--debug", "video", missing], ["video", missing, "--debug"]):
        with pytest.raises(LivematteError, match="no such file"):  # --debug: the error is raised, not printed
            main(args)
    assert main(["video", missing]) == 1
    result = run_cli("models", "-v")
    assert result.returncode == 0 and "rvm" in result.stdout


# --- ignored flags are named ---------------------------------------------------------------------------

def test_crf_for_prores_is_named(clip, tmp_path, capfd, rvm_weights):
    out = tmp_path / "x.mov"
    assert main(["video", str(clip), "-o", str(out), "--crf", "30", "--background", "transparent", "--quiet"]) == 0
    assert "--crf is for H.264 (.mp4, .mkv) and VP9 (.webm); ignored for mov" in capfd.readouterr().err


def test_guided_refine_with_rvm_is_named(clip, tmp_path, capfd, rvm_weights):
    assert main(["video", str(clip), "-o", str(tmp_path / "x.mp4"), "--refine", "guided", "--model", "rvm",
                 "--quiet"]) == 0
    assert "--refine guided is for models that return a plain matte" in capfd.readouterr().err


# --- packaging and documentation -----------------------------------------------------------------------

def test_python_requires_covers_what_the_package_imports():
    # tomllib (config files) is in the standard library from Python 3.11.
    assert 'python_requires=">=3.11"' in (REPO / "setup.py").read_text()


def test_readme_preset_table_matches_the_presets():
    # The network's input at 720p: "416x234", then each model with its own size: "; modnet 512x288".
    readme = (REPO / "README.md").read_text()
    rows = dict(re.findall(r"^\| `([\w-]+)` \| [^|]+\| (\d+x\d+(?:; \w+ \d+x\d+)*) \|", readme, re.MULTILINE))
    presets = livematte_config.presets()
    assert set(rows) == set(presets)
    for name in presets:
        model = livematte_config.load(name).model
        said = {backend or "": int(width) for backend, width in re.findall(r"(?:(\w+) )?(\d+)x\d+", rows[name])}
        assert said == {"": model.size, **model.sizes}, f"README says {rows[name]} for {name}, the preset {model}"


@pytest.mark.parametrize("example", sorted((REPO / "configs").glob("*.toml")), ids=lambda p: p.name)
def test_example_configs_load_over_every_preset(example):
    for preset in livematte_config.presets():
        livematte_config.load(preset, example)


def test_the_wheel_carries_the_presets_and_the_demo_portrait(tmp_path):
    # A non-editable install finds its presets inside the package: no package_dir mapping, no fallback.
    import shutil
    import zipfile

    # Built from a copy: setuptools builds in the source tree, and a stale build/ would leak into the wheel.
    source = tmp_path / "source"
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(".*", "build", "*.egg-info", "__pycache__", "tests",
                                                                "results", "shared"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet",
                    "-w", str(tmp_path), str(source)], check=True, capture_output=True)
    (wheel,) = tmp_path.glob("livematte-*.whl")
    members = set(zipfile.ZipFile(wheel).namelist())
    presets = {f"livematte/presets/{name}.toml" for name in livematte_config.presets()}
    assert presets and presets <= members
    assert "livematte/data/grace_hopper.jpg" in members
    assert not any(m.startswith("configs/") for m in members)  # the examples stay in the repository
