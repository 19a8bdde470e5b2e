"""Bad input through the command line: ONE clear line, a non-zero exit, nothing left behind.

The rule under test: bad input gets ONE clear line (``livematte: error: ...`` naming the file or
value) and a non-zero exit, never a traceback; nothing is left half-written at the output path.
A truncated file is an error for ``video`` and a warning for a live source; a whole file is not
taken for a truncated one.

``BAD_INPUTS`` is the table the notes quote: each bad input, run through the real command line
in a subprocess.
"""

from __future__ import annotations

import logging
import re
import subprocess
import sys
from pathlib import Path

import pytest

from badfiles import error_line, faststart_mp4
from media import make_video
from livematte.cli import main
from livematte.media.reading import VideoReader


# (case, arguments after `livematte`, what the one error line must name). Fields in braces are
# filled in by `bad_files`: the files it writes, {url} its local HTTP server, {out} the output
# path, which must not exist afterwards. Every case runs with the tiny BSHM graph.
BAD_INPUTS = [
    ("missing file", "video {dir}/missing.mp4 -o {out}.mp4", "missing.mp4"),
    ("empty file", "video {empty.mp4} -o {out}.mp4", "empty.mp4"),
    ("text file named .mp4", "video {notes.mp4} -o {out}.mp4", "notes.mp4"),
    ("PNG image named .mp4", "video {photo.mp4} -o {out}.mp4", "photo.mp4"),
    ("first half of an mp4 (index at the front)", "video {cut.mp4} -o {out}.mp4", "cut.mp4"),
    ("audio only", "video {song.m4a} -o {out}.mp4", "song.m4a"),
    ("unknown video codec (AVI, fourcc QZQZ)", "video {qzqz.avi} -o {out}.mp4", "qzqz.avi"),
    ("URL answering 404", "video {url}/gone.mp4 -o {out}.mp4", "gone.mp4"),
    ("URL serving an HTML page", "video {url}/page.mp4 -o {out}.mp4", "page.mp4"),
    ("malformed URL", "video http://[::1/clip.mp4 -o {out}.mp4", "http://[::1/clip.mp4"),
    ("--background missing.png", "video {clip.mp4} -o {out}.mp4 --background {dir}/missing.png", "missing.png"),
    ("--background color:#zzz", "video {clip.mp4} -o {out}.mp4 --background color:#zzz", "#zzz"),
    ("--background blur:500", "video {clip.mp4} -o {out}.mp4 --background blur:500", "500"),
    ("--encoder-preset bogus", "video {clip.mp4} -o {out}.mp4 --encoder-preset bogus", "bogus"),
    ("config file with threads = -3", "video {clip.mp4} -o {out}.mp4 --config {threads.toml}", "threads"),
    ("image: first half of a PNG", "image -i {half.png} -d {out}", "half.png"),
    ("image: PNG declaring 100000x100000", "image -i {huge.png} -d {out}", "huge.png"),
    ("image: URL answering 404", "image -i {url}/gone.png -d {out}", "gone.png"),
    ("image: URL serving text/html", "image -i {url}/page.png -d {out}", "text/html"),
    ("image: file:// URL", "image -i file://{photo.png} -d {out}", "file"),
    ("image: --background color:#zzz", "image -i {photo.png} -d {out} --background color:#zzz", "#zzz"),
]


@pytest.fixture(scope="module")
def bad_files(bad_dir, server, bshm_dir):
    names = {p.name: str(p) for p in bad_dir.iterdir()}
    return {**names, "dir": str(bad_dir), "url": server, "bshm": str(bshm_dir)}


def run_bad_input(template: str, names: dict, out: Path) -> subprocess.CompletedProcess:
    names = {**names, "out": str(out)}
    args = [re.sub(r"\{([^{}]+)\}", lambda m: names[m.group(1)], token) for token in template.split()]
    command = [sys.executable, "-m", "livematte", *args, "--model", "bshm", "--model-dir", names["bshm"]]
    if args[0] == "video":
        command.append("--quiet")
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def leftovers(out: Path) -> list[str]:
    """Anything written at the output path or beside it under a temporary name."""
    found = [p.name for p in out.parent.iterdir() if p.name.startswith((out.name, f".{out.name}"))]
    return sorted(found)


@pytest.mark.parametrize("template, culprit", [case[1:] for case in BAD_INPUTS], ids=[c[0] for c in BAD_INPUTS])
def test_bad_input_is_one_clear_line(bad_files, tmp_path, template, culprit):
    out = tmp_path / "result"
    done = run_bad_input(template, bad_files, out)
    assert done.returncode == 1, done.stderr
    line = error_line(done.stderr)
    assert line.startswith("livematte: error: ") and culprit in line, line
    assert leftovers(out) == []


def test_truncated_mkv_fails_and_removes_the_output(tmp_path, bshm_dir, capfd):
    data = make_video(tmp_path / "whole.mkv", n=60, audio=False, codec="ffv1").read_bytes()
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(data[: len(data) // 2])
    out, matte = tmp_path / "out.mp4", tmp_path / "alpha.mkv"
    assert main(["video", str(cut), "-o", str(out), "--alpha-out", str(matte), "--model", "bshm",
                 "--model-dir", str(bshm_dir), "--quiet"]) == 1
    line = error_line(capfd.readouterr().err)
    assert "cut.mkv is damaged or truncated" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cut.mkv", "whole.mkv"]


def test_truncated_file_played_live_is_a_warning_not_an_error(tmp_path, caplog):
    """``live --source`` keeps VideoReader's lenient default: the frames decoded so far, a warning."""
    data = faststart_mp4(tmp_path / "whole.mp4", n=60).read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    with caplog.at_level(logging.WARNING), VideoReader(cut) as reader:
        count = sum(1 for _ in reader.frames())
    assert 0 < count < 60
    assert "cut.mp4" in caplog.text and "truncated" in caplog.text


def test_whole_files_are_not_taken_for_truncated(tmp_path, caplog):
    """Variable frame rate with a long pause before the last frame: whole, so no warning and no error."""
    stamps = [i / 30 for i in range(29)] + [1.6]
    for source in (make_video(tmp_path / "vfr.mp4", n=30, pts=stamps),
                   make_video(tmp_path / "vfr.mkv", n=30, pts=stamps, codec="ffv1", audio=False)):
        with caplog.at_level(logging.WARNING), VideoReader(source, strict=True) as reader:
            assert sum(1 for _ in reader.frames()) == 30
    assert "truncated" not in caplog.text
