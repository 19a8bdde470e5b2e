"""A source that changes size mid-stream (concatenated segments, a camera back in another mode)
is fitted into the outputs' size, the model starts afresh, and the run goes on."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from media import gradient
from livematte.cli import main
from livematte.runtime.pipeline import fit_into
from test_live import vcam  # noqa: F401 (fixture)


def write_ts(path: Path, width: int, height: int, n: int, start: int) -> None:
    """An MPEG-TS segment whose timestamps continue from frame ``start``."""
    with av.open(str(path), "w", format="mpegts") as container:
        stream = container.add_stream("libx264", rate=30, options={"preset": "ultrafast", "crf": "12"})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.time_base = Fraction(1, 30)
        for i in range(n):
            frame = av.VideoFrame.from_ndarray(gradient(start + i, width, height), format="bgr24")
            frame.pts, frame.time_base = start + i, Fraction(1, 30)
            container.mux(stream.encode(frame))
        container.mux(stream.encode())


@pytest.fixture(scope="module")
def two_sizes(tmp_path_factory) -> Path:
    """20 frames of 64x48 then 20 of 96x64, as concatenated TS files are (``cat a.ts b.ts``)."""
    folder = tmp_path_factory.mktemp("ts")
    write_ts(folder / "a.ts", 64, 48, 20, 0)
    write_ts(folder / "b.ts", 96, 64, 20, 20)
    joined = folder / "joined.ts"
    joined.write_bytes((folder / "a.ts").read_bytes() + (folder / "b.ts").read_bytes())
    return joined


def test_video_whose_size_changes_mid_stream_is_processed_whole(two_sizes, tmp_path, capfd, rvm_weights):
    out = tmp_path / "out.mp4"
    assert main(["video", str(two_sizes), "-o", str(out), "--alpha-out", str(tmp_path / "a.mkv"), "--quiet"]) == 0
    with av.open(str(out)) as container:
        frames = [f.to_ndarray(format="bgr24") for f in container.decode(video=0)]
    assert len(frames) == 40
    assert {f.shape for f in frames} == {(48, 64, 3)}
    assert "changed size from 64x48 to 96x64; fitted into 64x48" in capfd.readouterr().err


def test_live_source_whose_size_changes_goes_on(two_sizes, tmp_path, rvm_weights):
    stats = tmp_path / "s.json"
    assert main(["live", "--source", str(two_sizes), "--sink", "null", "--stats-json", str(stats)]) == 0
    assert '"composited": 40' in stats.read_text()


def test_fit_into_keeps_the_aspect_on_black_bars():
    wide = np.full((64, 96, 3), 200, np.uint8)
    fitted = fit_into(wide, 64, 48)
    assert fitted.shape == (48, 64, 3)
    # 96x64 scaled by 2/3 -> 64x43 (rounded), centred: bars of 2 and 3 rows.
    rows = np.flatnonzero(fitted[:, 32, 0] > 100)
    assert (rows[0], rows[-1]) == (2, 44)
    assert fitted[0].max() == 0 and fitted[-1].max() == 0


def test_virtual_camera_gets_every_frame_at_the_size_it_was_opened_with(two_sizes, rvm_weights, vcam):  # noqa: F811
    from livematte import config as livematte_config
    from livematte.commands.live import LiveJob, run_live_job

    config = livematte_config.load("live", overrides={"model": {"name": "rvm"}})
    run_live_job(LiveJob(config=config, source=str(two_sizes), sink="vcam", vcam_backend=vcam.name))
    assert len(vcam.frames) == 40
    assert {frame.shape for frame in vcam.frames} == {(48, 64, 3)}
