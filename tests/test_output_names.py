"""Output names: any name the filesystem takes works, runs writing the same output at once never
leave a broken file, and an output that exists is refused unless -y (--overwrite) is given.

Real files, real encoders, the real command line (in-process, or as real processes where two
runs meet); Selfie Segmentation, the fastest real model, on small real clips.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import cv2
import pytest

from media import make_video
from livematte.cli import main
from livematte.media.atomic import AtomicOutput, write_atomically


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    """A real 64x48 H.264 clip, 8 frames, with AAC audio."""
    return make_video(tmp_path_factory.mktemp("in") / "clip.mp4", n=8)


@pytest.fixture
def fast(selfie_weights) -> list[str]:
    return ["--model", "selfie", "--quiet"]


# A model that cannot load: a run refused with it says what it says before any model loads.
NO_MODEL = ["--model", "selfie", "--model-dir", "/nonexistent/selfie.tflite"]


def frames_in(path: Path) -> int:
    """Frames of the first video stream, decoded with PyAV (or PNGs in a folder)."""
    if path.is_dir():
        return len(list(path.glob("*.png")))
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(container.streams.video[0]))


def temporaries(folder: Path) -> list[str]:
    """The hidden temporaries in ``folder``: outputs being written (or left by a killed run)."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".") and "partial" in p.name)


def error_of(capfd) -> str:
    return capfd.readouterr().err


# --- any name the filesystem takes -----------------------------------------------------------------

@pytest.mark.parametrize("name", ["a" * 246 + ".mp4", "b" * 251 + ".mp4", "\u00e9" * 125 + ".mp4", "f" * 255],
                         ids=["250-byte-mp4", "255-byte-mp4", "254-byte-utf8-mp4", "255-byte-png-folder"])
def test_a_long_output_name_works(tmp_path, clip, fast, name):
    assert len(os.fsencode(name)) <= 255
    out = tmp_path / name
    assert main(["video", str(clip), "-o", str(out), *fast]) == 0
    assert frames_in(out) == 8
    assert temporaries(tmp_path) == []


def test_a_long_matte_name_works(tmp_path, clip, fast):
    out, matte = tmp_path / ("v" * 251 + ".mkv"), tmp_path / ("m" * 251 + ".mkv")
    assert main(["video", str(clip), "-o", str(out), "--alpha-out", str(matte), *fast]) == 0
    assert frames_in(out) == 8 and frames_in(matte) == 8
    assert temporaries(tmp_path) == []


def test_a_whole_file_under_a_255_byte_name(tmp_path):
    path = tmp_path / ("s" * 250 + ".json")
    write_atomically(path, b"{}\n")
    assert path.read_bytes() == b"{}\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]


@pytest.mark.parametrize("folder", [False, True], ids=["file", "folder"])
def test_temporaries_are_beside_the_target_within_the_limit_and_one_run_each(tmp_path, folder):
    target = tmp_path / ("t" * 255 if folder else "t" * 251 + ".mov")
    first, second = AtomicOutput(target, folder=folder), AtomicOutput(target, folder=folder)
    try:
        for output in (first, second):
            partial = output._partial
            assert partial.parent == tmp_path and partial.name.startswith(".")
            assert len(os.fsencode(partial.name)) <= 255
            if not folder:
                assert partial.suffix == ".mov"  # a muxer still guesses the format from it
        assert first._partial != second._partial
    finally:
        first.abort()
        second.abort()
    assert list(tmp_path.iterdir()) == []


# --- two runs writing the same output at once ------------------------------------------------------

def test_two_png_folders_for_the_same_target_are_each_their_own(tmp_path):
    """Two writers of one PNG folder, open at once: the first finished is installed, then replaced
    whole by the second; neither writes into the other's frames."""
    target = tmp_path / "frames"
    first, second = AtomicOutput(target, folder=True), AtomicOutput(target, folder=True)
    (first._partial / "000000.png").write_bytes(b"first")
    for index in range(2):
        (second._partial / f"{index:06d}.png").write_bytes(b"second")
    first.close()
    assert {p.name: p.read_bytes() for p in target.iterdir()} == {"000000.png": b"first"}
    second.close()
    assert {p.name: p.read_bytes() for p in target.iterdir()} == {"000000.png": b"second", "000001.png": b"second"}
    assert [p.name for p in tmp_path.iterdir()] == ["frames"]

def livematte(*args: str) -> list[str]:
    return [sys.executable, "-m", "livematte", *args]


def wait_for_temporary(process: subprocess.Popen, folder: Path) -> None:
    """Until ``process`` has its output open under a temporary name (it is then mid-run)."""
    deadline = time.time() + 60
    while time.time() < deadline and process.poll() is None and not temporaries(folder):
        time.sleep(0.005)
    assert process.poll() is None and temporaries(folder), process.communicate()[1]


def test_two_runs_writing_the_same_output_at_once(tmp_path, selfie_weights):
    """Run A opens its output, is held still (SIGSTOP: a slow disk, a busy machine) while run B
    writes the same -o from start to end, then goes on: both succeed, and the output is whole:
    B's, then A's, which finished last. Neither run deletes the other's file."""
    source = make_video(tmp_path / "in.mp4", n=60, width=320, height=240)
    out = tmp_path / "out" / "same.mp4"
    out.parent.mkdir()
    first = subprocess.Popen(livematte("video", str(source), "-o", str(out), "--model", "selfie", "-q"),
                             stderr=subprocess.PIPE, text=True)
    try:
        wait_for_temporary(first, out.parent)
        first.send_signal(signal.SIGSTOP)
        second = subprocess.run(livematte("video", str(source), "-o", str(out), "--frames", "10",
                                          "--model", "selfie", "-q"),
                                stderr=subprocess.PIPE, text=True, timeout=120)
        assert second.returncode == 0, second.stderr
        assert frames_in(out) == 10
    finally:
        first.send_signal(signal.SIGCONT)
    _, stderr = first.communicate(timeout=120)
    assert first.returncode == 0, stderr
    assert frames_in(out) == 60
    assert temporaries(out.parent) == []


def test_a_killed_runs_temporary_is_cleaned_by_the_next_run(tmp_path, selfie_weights):
    """SIGKILL leaves a temporary; the next run to the same output deletes it, and only the
    temporaries of that output whose process is gone."""
    source = make_video(tmp_path / "in.mp4", n=60, width=320, height=240)
    out = tmp_path / "out" / "rec.mp4"
    out.parent.mkdir()
    killed = subprocess.Popen(livematte("video", str(source), "-o", str(out), "--model", "selfie", "-q"),
                              stderr=subprocess.PIPE, text=True)
    wait_for_temporary(killed, out.parent)
    left = temporaries(out.parent)
    killed.kill()
    killed.communicate(timeout=60)
    assert temporaries(out.parent) == left and not out.exists()
    # A run still going (this test's process) and another output's leftover: neither is touched.
    alive = out.parent / f".rec.partial-{os.getpid()}-0123abcd.mp4"
    other = out.parent / f".other.partial-{killed.pid}-0123abcd.mp4"
    for path in (alive, other):
        path.write_bytes(b"not finished")
    after = subprocess.run(livematte("video", str(source), "-o", str(out), "--frames", "5", "--model", "selfie", "-q"),
                           stderr=subprocess.PIPE, text=True, timeout=120)
    assert after.returncode == 0, after.stderr
    assert frames_in(out) == 5
    assert temporaries(out.parent) == sorted([alive.name, other.name])


# --- an output that exists: refused unless -y --------------------------------------------------------

def test_video_refuses_an_output_that_exists_before_the_model_loads(tmp_path, clip, capfd):
    out = tmp_path / "out.mp4"
    out.write_bytes(b"yesterday's result")
    for flags in ([], ["-n"], ["--no-overwrite"]):
        assert main(["video", str(clip), "-o", str(out), *flags, *NO_MODEL]) == 1
        err = error_of(capfd)
        assert err == f"livematte: error: {out} exists; add -y (--overwrite) to replace it\n", flags
    assert out.read_bytes() == b"yesterday's result"


@pytest.mark.parametrize("flag", ["-y", "--overwrite"])
def test_video_replaces_an_output_with_y(tmp_path, clip, fast, flag):
    out = tmp_path / "out.mp4"
    out.write_bytes(b"yesterday's result")
    assert main(["video", str(clip), "-o", str(out), flag, *fast]) == 0
    assert frames_in(out) == 8


def test_a_png_folder_that_holds_frames_is_refused_an_empty_one_is_not(tmp_path, clip, fast, capfd):
    frames = tmp_path / "frames"
    frames.mkdir()
    assert main(["video", str(clip), "-o", str(frames), *fast]) == 0  # empty: nothing to lose
    assert frames_in(frames) == 8
    assert main(["video", str(clip), "-o", str(frames), "--frames", "3", *fast]) == 1
    assert f"{frames} exists; add -y" in error_of(capfd)
    assert main(["video", str(clip), "-o", str(frames), "--frames", "3", "-y", *fast]) == 0
    assert frames_in(frames) == 3


def test_an_existing_matte_file_is_refused(tmp_path, clip, capfd):
    matte = tmp_path / "matte.mkv"
    matte.write_bytes(b"old matte")
    assert main(["video", str(clip), "-o", str(tmp_path / "new.mp4"), "--alpha-out", str(matte), *NO_MODEL]) == 1
    assert error_of(capfd) == f"livematte: error: {matte} exists; add -y (--overwrite) to replace it\n"
    assert not (tmp_path / "new.mp4").exists()


def test_a_batch_names_every_output_that_exists_before_any_work(tmp_path, clip, fast, capfd):
    videos, out = tmp_path / "videos", tmp_path / "out"
    videos.mkdir()
    out.mkdir()
    for name in ("a.mp4", "b.mp4", "c.mp4"):
        (videos / name).write_bytes(clip.read_bytes())
    for name in ("a.mp4", "b.mp4"):
        (out / name).write_bytes(b"old")
    assert main(["video", str(videos), "-o", str(out), *NO_MODEL]) == 1
    assert error_of(capfd) == (f"livematte: error: 2 outputs exist: {out / 'a.mp4'}, {out / 'b.mp4'}; "
                               "add -y (--overwrite) to replace them\n")
    assert sorted(p.name for p in out.iterdir()) == ["a.mp4", "b.mp4"]  # c.mp4 not made either
    assert main(["video", str(videos), "-o", str(out), "-y", *fast]) == 0
    assert [frames_in(out / name) for name in ("a.mp4", "b.mp4", "c.mp4")] == [8, 8, 8]


def test_image_refuses_pngs_that_exist(tmp_path, portrait, selfie_weights, capfd):
    picture, results = tmp_path / "pic.png", tmp_path / "results"
    assert cv2.imwrite(str(picture), cv2.resize(portrait, (128, 150)))
    results.mkdir()
    (results / "pic_alpha.png").write_bytes(b"old")
    assert main(["image", "-i", str(picture), "-d", str(results), *NO_MODEL]) == 1
    assert error_of(capfd) == (f"livematte: error: {results / 'pic_alpha.png'} exists; "
                               "add -y (--overwrite) to replace it\n")
    assert main(["image", "-i", str(picture), "-d", str(results), "-y", "--model", "selfie"]) == 0
    assert cv2.imread(str(results / "pic_alpha.png")).shape[:2] == (150, 128)


@pytest.mark.parametrize("flag", ["-o", "--alpha-out", "--stats-json"])
def test_live_refuses_files_that_exist(tmp_path, clip, capfd, flag):
    existing = tmp_path / {"-o": "rec.mp4", "--alpha-out": "matte.mkv", "--stats-json": "stats.json"}[flag]
    existing.write_bytes(b"old")
    sink = [] if flag == "-o" else ["--sink", "null"]
    assert main(["live", "--source", str(clip), *sink, flag, str(existing), *NO_MODEL]) == 1
    assert error_of(capfd) == f"livematte: error: {existing} exists; add -y (--overwrite) to replace it\n"
    assert existing.read_bytes() == b"old"


def test_bench_refuses_a_json_that_exists(tmp_path, capfd):
    existing = tmp_path / "bench.json"
    existing.write_bytes(b"{}")
    assert main(["bench", "--json", str(existing), "--frames", "1", *NO_MODEL]) == 1
    assert error_of(capfd) == f"livematte: error: {existing} exists; add -y (--overwrite) to replace it\n"


def cache_with_weights(tmp_path: Path, *weights: Path) -> Path:
    """A fresh cache holding links to the backends' weights (rvm*.onnx, selfie*.tflite), nothing else."""
    cache = tmp_path / "cache"
    cache.mkdir()
    for path in weights:
        for file in path.parent.glob(f"{path.name.split('_')[0]}*{path.suffix}"):
            (cache / file.name).symlink_to(file)
    return cache


def test_demo_replaces_its_own_file_but_not_one_the_user_named(tmp_path, monkeypatch, rvm_weights, selfie_weights,
                                                               capfd):
    """`livematte demo`, the README's first command, works when run twice; `demo -o FILE` is guarded."""
    cache = cache_with_weights(tmp_path, rvm_weights, selfie_weights)
    monkeypatch.setenv("LIVEMATTE_CACHE", str(cache))
    monkeypatch.chdir(tmp_path)
    mine = tmp_path / "mine.mp4"
    mine.write_bytes(b"the user's own")
    assert main(["demo", "-o", str(mine), "--frames", "2", "--quiet"]) == 1
    assert error_of(capfd) == f"livematte: error: {mine} exists; add -y (--overwrite) to replace it\n"
    assert not (cache / "demo").exists()  # refused before the demo clip is made
    for _ in range(2):
        assert main(["demo", "--frames", "2", "--quiet", "--model", "selfie"]) == 0
        assert frames_in(tmp_path / "livematte-demo.mp4") == 2
    assert mine.read_bytes() == b"the user's own"
