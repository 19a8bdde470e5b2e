"""The core install runs without TensorFlow and ModelScope (the ``bshm`` extra) and matplotlib
(the ``plot`` extra).

The commands run in a subprocess where those cannot be imported (``sys.modules[name] = None``,
what Python itself does for a module it must not load), and where every ``import`` statement
naming them is recorded: a run that even tried to import one says so on its last stderr line.
"""

from __future__ import annotations

import os
import re
import runpy
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from media import make_video
import livematte
from livematte import models
from livematte.errors import LivematteError
from livematte.models.base import ModelSettings

REPO = Path(__file__).resolve().parents[1]
INSTALL = 'pip install "livematte[bshm]"'
NO_TENSORFLOW = f"livematte: error: BSHM runs on TensorFlow: {INSTALL}"
BLOCKED = ("tensorflow", "modelscope", "matplotlib")

# ``python -c CORE_ONLY ARGS...``: livematte's command line, in a Python with the core install only.
CORE_ONLY = f"""
import builtins, sys
blocked = {BLOCKED!r}
for name in blocked:
    sys.modules[name] = None  # import raises ImportError; importlib.util.find_spec answers None
tried = []
real_import = builtins.__import__
def watching_import(name, *args, **kwargs):
    if name.split(".")[0] in blocked:
        tried.append(name)
    return real_import(name, *args, **kwargs)
builtins.__import__ = watching_import
from livematte.cli import main
try:
    code = main(sys.argv[1:])
finally:
    loaded = sorted(n for n, m in sys.modules.items() if n.split(".")[0] in blocked and m is not None)
    print(f"tried {{sorted(set(tried))}} loaded {{loaded}}", file=sys.stderr)
sys.exit(code)
"""
NOTHING_IMPORTED = "tried [] loaded []"


def run_core_only(*args: str, cwd: Path, modelscope_cache: Path) -> tuple[int, str, list[str]]:
    """-> (exit status, stdout, stderr's lines without the import report); asserts nothing was imported."""
    env = {**os.environ, "MODELSCOPE_CACHE": str(modelscope_cache)}
    result = subprocess.run([sys.executable, "-c", CORE_ONLY, *args], capture_output=True, text=True,
                            timeout=180, cwd=cwd, env=env)
    lines = result.stderr.strip().splitlines()
    assert lines and lines[-1] == NOTHING_IMPORTED, result.stderr
    return result.returncode, result.stdout, lines[:-1]


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return make_video(tmp_path_factory.mktemp("in") / "clip.mp4", n=6)


@pytest.fixture
def empty_cache(tmp_path) -> Path:
    (tmp_path / "modelscope").mkdir(exist_ok=True)
    return tmp_path / "modelscope"


@pytest.fixture
def cache_with_bshm(tmp_path) -> Path:
    """A ModelScope cache holding BSHM's snapshot (its files only: without TensorFlow nothing reads them)."""
    snapshot = tmp_path / "modelscope" / "hub" / "damo" / "cv_unet_image-matting"
    snapshot.mkdir(parents=True)
    (snapshot / "tf_graph.pb").write_bytes(b"\0" * 64)
    (snapshot / "configuration.json").write_text("{}")
    return tmp_path / "modelscope"


# --- the package's metadata ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def setup_kwargs() -> dict:
    """What setup.py hands to ``setuptools.setup``: it is run with that call recorded, not made."""
    import setuptools

    recorded = {}
    real_setup = setuptools.setup
    setuptools.setup = lambda **kwargs: recorded.update(kwargs)
    cwd = os.getcwd()
    try:
        os.chdir(REPO)
        runpy.run_path(str(REPO / "setup.py"), run_name="__main__")
    finally:
        os.chdir(cwd)
        setuptools.setup = real_setup
    return recorded


def names(requirements: list[str]) -> set[str]:
    """``["tensorflow[and-cuda]>=2.21; ...", ...]`` -> ``{"tensorflow", ...}``."""
    return {re.match(r"[A-Za-z0-9._-]+", r.strip()).group().lower().replace("_", "-") for r in requirements}


def test_core_install_has_no_tensorflow_or_modelscope(setup_kwargs):
    core = names(setup_kwargs["install_requires"])
    assert not core & {"tensorflow", "tensorflow-cpu", "modelscope"}
    # What the core commands (demo, video, live, image, bench on RVM) import.
    assert {"numpy", "opencv-python", "av", "onnx", "onnxruntime", "openvino", "pyvirtualcam", "psutil"} <= core
    assert "matplotlib" not in core  # `bench --plot` only: the plot extra


def test_bshm_extra_has_them_and_the_test_extra_pulls_it(setup_kwargs):
    extras = setup_kwargs["extras_require"]
    assert {"tensorflow", "modelscope"} <= names(extras["bshm"])
    # The tests build BSHM stand-in graphs with TensorFlow: `pip install ".[test]"` must bring it.
    assert names(extras["bshm"]) <= names(extras["test"])
    assert names(extras["plot"]) == {"matplotlib"} and "matplotlib" in names(extras["test"])
    assert {"pytest", "hypothesis"} <= names(extras["test"])


def test_one_version_read_from_the_package(setup_kwargs):
    assert setup_kwargs["version"] == livematte.__version__
    assert not re.search(r"""version\s*=\s*["']""", (REPO / "setup.py").read_text())  # no second copy


# --- in this process, with the imports blocked ----------------------------------------------------------

@pytest.fixture
def without_bshm(monkeypatch, empty_cache):
    for name in BLOCKED:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setenv("MODELSCOPE_CACHE", str(empty_cache))


def test_auto_is_rvm_and_says_what_bshm_needs(without_bshm):
    assert models.choose(ModelSettings(name="auto")) == ("rvm", f"BSHM is not installed: {INSTALL}")


def test_bshm_asked_for_is_one_line_naming_the_extra(without_bshm):
    with pytest.raises(LivematteError) as raised:
        models.load(ModelSettings(name="bshm"))
    assert str(raised.value) == f"BSHM runs on TensorFlow: {INSTALL}"


def test_auto_with_bshm_weights_named_on_the_command_line_is_refused(without_bshm, cache_with_bshm):
    snapshot = next(cache_with_bshm.rglob("cv_unet_image-matting"))
    with pytest.raises(LivematteError, match=re.escape(f"holds BSHM weights, but BSHM runs on TensorFlow: {INSTALL}")):
        models.choose(ModelSettings(name="auto", model_dir=snapshot))


def test_bench_of_bshm_stops_before_making_its_clip(without_bshm, tmp_path, monkeypatch, capsys):
    from livematte.cli import main

    monkeypatch.setenv("LIVEMATTE_CACHE", str(tmp_path / "cache"))
    assert main(["bench", "--model", "bshm", "--frames", "3"]) == 1
    assert capsys.readouterr().err.strip() == NO_TENSORFLOW
    assert not (tmp_path / "cache").exists()


def test_listed_as_needing_the_extra(without_bshm):
    bshm = models.status()[0]
    assert (bshm.name, bshm.ready, bshm.install) == ("bshm", False, INSTALL)


def test_the_demos_portrait_needs_no_matplotlib(monkeypatch):
    from livematte import assets

    monkeypatch.setitem(sys.modules, "matplotlib", None)
    portrait = assets.sample_portrait()
    assert (portrait.shape, portrait.dtype) == ((600, 512, 3), np.uint8)
    assert 60 < portrait.mean() < 200


def test_with_the_extra_nothing_asks_for_it():
    """The test environment has the extra: the same calls say nothing about installing it."""
    assert models.status()[0].install is None
    assert models.choose(ModelSettings(name="bshm")) == ("bshm", "asked for")


# --- the command line, in a Python without them ---------------------------------------------------------

@pytest.mark.parametrize("command", ["video", "image", "fetch"])
def test_bshm_without_the_extra_is_one_line_and_exit_1(command, clip, tmp_path, empty_cache):
    if command == "video":
        args = ["video", str(clip), "-o", "out.mp4", "--model", "bshm"]
    elif command == "image":
        cv2.imwrite(str(tmp_path / "in.png"), np.full((48, 64, 3), 128, np.uint8))
        args = ["image", "-i", "in.png", "-d", "results", "--model", "bshm"]
    else:
        args = ["models", "fetch", "bshm"]
    before = set(tmp_path.iterdir())
    code, stdout, stderr = run_core_only(*args, cwd=tmp_path, modelscope_cache=empty_cache)
    assert (code, stderr) == (1, [NO_TENSORFLOW])
    assert stdout == ""
    # Nothing written (`image` makes its output folder before the model loads: left empty).
    assert set(tmp_path.iterdir()) - before <= {tmp_path / "results"}
    assert not (tmp_path / "results").exists() or not any((tmp_path / "results").iterdir())
    assert list(empty_cache.iterdir()) == []  # and nothing downloaded


def test_auto_without_the_extra_runs_rvm_importing_neither(clip, tmp_path, empty_cache, rvm_weights):
    code, _, stderr = run_core_only("-v", "video", str(clip), "-o", "out.mp4", "--frames", "2", "--quiet",
                                       cwd=tmp_path, modelscope_cache=empty_cache)
    assert code == 0, stderr
    assert (tmp_path / "out.mp4").is_file()
    # One line for the model that runs; why auto chose it only under -v
    model_lines = [line for line in stderr if line.startswith("livematte: model:")]
    assert len(model_lines) == 2 and model_lines[0].startswith("livematte: model: rvm on ")
    assert model_lines[1] == f"livematte: model: auto chose rvm: BSHM is not installed: {INSTALL}"


def test_auto_with_bshm_weights_but_no_tensorflow_says_so_in_one_line(clip, tmp_path, cache_with_bshm, rvm_weights):
    code, _, stderr = run_core_only("-v", "video", str(clip), "-o", "out.mp4", "--frames", "2", "--quiet",
                                       cwd=tmp_path, modelscope_cache=cache_with_bshm)
    assert code == 0, stderr
    said = [line for line in stderr if "BSHM" in line]
    assert said == ["livematte: model: auto chose rvm: BSHM weights are in ModelScope's cache, but BSHM runs on "
                    f"TensorFlow: {INSTALL}"]


def test_models_lists_bshm_as_needing_the_extra(tmp_path, cache_with_bshm):
    code, stdout, stderr = run_core_only("models", cwd=tmp_path, modelscope_cache=cache_with_bshm)
    assert (code, stderr) == (0, [])
    lines = stdout.splitlines()
    bshm = lines.index(next(line for line in lines if line.startswith("bshm ")))
    assert lines[bshm].split()[1:4] == ["needs", "an", "extra"]
    assert lines[bshm + 1].split(None, 1) == ["install:", INSTALL]
    assert lines[bshm + 2].split(None, 1) == ["weights:", str(next(cache_with_bshm.rglob("tf_graph.pb")))]
    assert any(line.startswith("rvm ") for line in lines)
