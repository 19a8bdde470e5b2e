"""The one helper that writes a whole file atomically (stats, stills, bench, weights, demo)."""

from __future__ import annotations

from pathlib import Path

import pytest

from livematte.errors import LivematteError
from livematte.media.atomic import write_atomically


def test_writes_the_file_and_its_folder(tmp_path):
    path = tmp_path / "new" / "stats.json"
    write_atomically(path, b"{}\n")
    assert path.read_bytes() == b"{}\n"
    assert sorted(p.name for p in path.parent.iterdir()) == ["stats.json"]


def test_replaces_an_existing_file(tmp_path):
    path = tmp_path / "plot.png"
    path.write_bytes(b"old")
    write_atomically(path, b"new")
    assert path.read_bytes() == b"new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plot.png"]


@pytest.mark.parametrize("failure", [OSError(28, "No space left on device"), KeyboardInterrupt()])
def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch, failure):
    path = tmp_path / "weights.onnx"
    path.write_bytes(b"old")

    def half_then_fail(self, data):
        with open(self, "wb") as f:
            f.write(data[: len(data) // 2])
        raise failure

    monkeypatch.setattr(Path, "write_bytes", half_then_fail)
    expected = LivematteError if isinstance(failure, OSError) else KeyboardInterrupt
    with pytest.raises(expected, match="No space left" if expected is LivematteError else None):
        write_atomically(path, b"0123456789")
    monkeypatch.undo()
    assert path.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["weights.onnx"]


def test_a_folder_in_the_way_is_one_clear_error(tmp_path):
    (tmp_path / "out.png").mkdir()
    with pytest.raises(LivematteError, match="is a folder"):
        write_atomically(tmp_path / "out.png", b"png")
