"""Segments without Ray: where a video is cut, what a segment decodes, and the join of segments
matted apart, against one pass of the ``video`` command (the real RVM, real files)."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

import av
import numpy as np
import pytest

from media import FPS, audio_seconds, make_video
from livematte import config as config_module
from livematte import models
from livematte.cli import main
from livematte.cluster import NO_RAY
from livematte.cluster.plan import Segment, cut_points, plan_video
from livematte.cluster.segment import SegmentOutput, SegmentSource, SegmentTask, process_segment
from livematte.cluster.stitch import join_alpha, join_video
from livematte.compose.backgrounds import parse_background
from livematte.compose.compositor import Compositor
from livematte.media.readback import read_alpha_with_pts, read_rgba
from livematte.media.reading import VideoReader


def frame_times(path: Path) -> list[float]:
    with VideoReader(path) as reader:
        return [pts for _, pts in reader.frames()]


# --- where a video is cut ----------------------------------------------------------------------------

def test_cuts_go_on_near_keyframes_else_on_the_frame():
    times = [i / 10 for i in range(100)]  # 10 s at 10 fps
    assert cut_points(times, [0.0, 2.1, 5.0, 9.0], 2.0) == [0, 21, 40, 60, 80]  # 2.1 is near 2, 5.0 is not near 4
    assert cut_points(times, [0.0], 4.0) == [0, 40]  # 8 s would leave 1.9 s, less than half a segment: kept
    assert cut_points(times, [0.0], 20.0) == [0]


def test_a_repeated_timestamp_is_never_a_bound():
    times = [0.0, 0.5, 1.0, 1.0, 1.0, 1.5, 2.0, 2.5, 3.0]
    assert cut_points(times, [], 1.0) == [0, 2, 6]  # 1.0 starts at index 2; 2.0 at 6


def test_every_frame_in_exactly_one_segment_with_its_preroll(tmp_path):
    # Variable frame rate, a keyframe every 12 frames.
    stamps = list(np.cumsum([0.0] + [1 / 30 if i % 4 else 1 / 10 for i in range(1, 120)]))
    clip = make_video(tmp_path / "vfr.mp4", n=120, pts=stamps, gop=12)
    plan = plan_video(str(clip), segment_seconds=1.0, preroll_seconds=0.5)
    times = frame_times(clip)
    assert plan.frames == len(times) == 120 and plan.last == times[-1]
    owners = [[s.index for s in plan.segments if s.writes(t)] for t in times]
    assert all(len(o) == 1 for o in owners)  # every frame once
    assert [o[0] for o in owners] == sorted(o[0] for o in owners)  # in order
    with av.open(str(clip)) as container:
        keys = sorted(float(p.pts * p.time_base) for p in container.demux(video=0) if p.is_keyframe and p.size)
    for segment in plan.segments[1:]:
        assert segment.frames == sum(segment.writes(t) for t in times)
        assert segment.at == segment.start and segment.start - 0.5 <= segment.preroll_from < segment.start
        assert segment.seek in keys and segment.seek <= segment.preroll_from
        assert segment.preroll_frames == sum(segment.preroll_from <= t < segment.start for t in times)
    # Cuts on keyframes where one is near (within a quarter segment).
    assert sum(s.start in keys for s in plan.segments[1:]) >= len(plan.segments) - 2


def test_frames_limit_plans_the_first_n(tmp_path):
    clip = make_video(tmp_path / "c.mp4", n=90)
    plan = plan_video(str(clip), segment_seconds=1.0, max_frames=50)
    assert plan.frames == 50 and plan.segments[-1].end == pytest.approx(50 / FPS, abs=1e-3)


def test_a_source_decodes_its_preroll_then_its_frames(tmp_path):
    clip = make_video(tmp_path / "c.mp4", n=90, gop=20)
    times = frame_times(clip)
    segment = plan_video(str(clip), segment_seconds=1.0, preroll_seconds=0.5).segments[1]
    with contextlib.closing(SegmentSource(str(clip), segment)) as source:
        got = [pts for _, pts in source.frames()]
    assert got == [t for t in times if segment.preroll_from <= t < segment.end]
    assert (source.preroll, source.written) == (segment.preroll_frames, segment.frames)


def test_a_seek_past_the_preroll_reads_from_the_start(tmp_path):
    """A keyframe the plan did not know of: the seek lands past the pre-roll; no frame is missed."""
    clip = make_video(tmp_path / "c.mp4", n=60, gop=10)
    times = frame_times(clip)
    segment = Segment(1, 30, 30, times[30], times[30], None, preroll_from=times[15], preroll_frames=15,
                      seek=times[25])
    with contextlib.closing(SegmentSource(str(clip), segment)) as source:
        assert [pts for _, pts in source.frames()] == times[15:]


def test_a_segments_files_are_saved_under_their_own_names(tmp_path):
    output = SegmentOutput({"video.mp4": b"v"}, {"000000.png": b"a", "000001.png": b"b"}, frames=2, matted=2)
    video, alpha = output.save(tmp_path / "clip_0.5_1")  # a stem with dots keeps them
    assert video == tmp_path / "clip_0.5_1-video.mp4" and video.read_bytes() == b"v"
    assert sorted(p.name for p in alpha.iterdir()) == ["000000.png", "000001.png"]


# --- segments matted apart and joined ------------------------------------------------------------------

def offline(background: str):
    """The settings of ``livematte video --model rvm --threads 1 --background BACKGROUND``."""
    return config_module.load("offline", None, {"model": {"name": "rvm", "threads": 1},
                                                "output": {"background": background}})


@pytest.fixture(scope="module")
def rvm(rvm_weights):
    matter = models.load(offline("blur").model)
    yield matter
    matter.close()


def matte_apart(clip: Path, out: Path, alpha: Path | None, rvm, background: str, seconds: float = 1.0) -> int:
    """The cluster's path without Ray: each segment matted by process_segment, then joined."""
    from livematte.media.formats import output_kind

    config = offline(background)
    plan = plan_video(str(clip), segment_seconds=seconds)
    kind, alpha_kind = output_kind(out), alpha and output_kind(alpha)
    compositor = Compositor(parse_background(background))
    parts = []
    for segment in plan.segments:
        done = process_segment(SegmentTask(str(clip), segment, kind, alpha_kind, config), rvm, compositor)
        parts.append((done.save(out.parent / f"part{segment.index}"), segment.at))
    compositor.close()
    frames = join_video([(f[0], at) for f, at in parts], out, kind, audio=str(clip))
    if alpha is not None:
        join_alpha([(f[1], at) for f, at in parts], alpha, alpha_kind)
    return frames


def one_pass(clip: Path, out: Path, alpha: Path | None, background: str) -> None:
    args = ["video", str(clip), "-o", str(out), "--background", background, "--model", "rvm", "--threads", "1",
            "--quiet"]
    assert main(args + (["--alpha-out", str(alpha)] if alpha else [])) == 0


def test_joined_segments_have_every_frame_time_and_the_audio_of_one_pass(tmp_path, rvm):
    clip = make_video(tmp_path / "talk.mp4", n=75)
    (tmp_path / "one").mkdir(), (tmp_path / "apart").mkdir()
    one_pass(clip, tmp_path / "one" / "o.mp4", tmp_path / "one" / "a.mkv", "color:#00ff00")
    frames = matte_apart(clip, tmp_path / "apart" / "o.mp4", tmp_path / "apart" / "a.mkv", rvm, "color:#00ff00")
    assert frames == 75
    assert frame_times(tmp_path / "apart" / "o.mp4") == frame_times(tmp_path / "one" / "o.mp4")
    assert audio_seconds(tmp_path / "apart" / "o.mp4") == audio_seconds(tmp_path / "one" / "o.mp4")
    one = read_alpha_with_pts(tmp_path / "one" / "a.mkv")
    apart = read_alpha_with_pts(tmp_path / "apart" / "a.mkv")
    assert [t for _, t in one] == [t for _, t in apart]
    # The first segment is the one pass's own start; later ones were warmed by their pre-roll.
    assert all(np.array_equal(a, b) for (a, _), (b, _) in list(zip(one, apart))[:30])
    mad = [np.abs(a.astype(float) - b).mean() / 255 * 1e3 for (a, _), (b, _) in zip(one, apart)]
    assert max(mad) < 5, mad  # MAD x1e3; the mattes themselves are off the truth by 3-4 on real clips
    assert not list(tmp_path.rglob(".*partial*"))


@pytest.mark.parametrize("name", ["o.webm", "frames"])
def test_transparent_joins_keep_the_matte(tmp_path, rvm, name):
    clip = make_video(tmp_path / "odd.mkv", n=45, width=63, height=47, codec="ffv1", rotation=90)
    out, alpha = tmp_path / name, tmp_path / "alpha.mkv"
    assert matte_apart(clip, out, alpha, rvm, "transparent") == 45
    rgba, mattes = read_rgba(out), read_alpha_with_pts(alpha)
    assert len(rgba) == len(mattes) == 45 and rgba[0].shape == (63, 47, 4)  # turned upright, odd size kept
    assert max(np.abs(r[:, :, 3].astype(int) - m).max() for r, (m, _) in zip(rgba, mattes)) <= 3
    assert [t for _, t in mattes] == pytest.approx(frame_times(clip), abs=1e-3)


# --- the command line without the extra -------------------------------------------------------------------

def test_cluster_without_ray_is_one_line(tmp_path, monkeypatch, capsys):
    clip = make_video(tmp_path / "c.mp4", n=3)
    monkeypatch.setitem(sys.modules, "ray", None)  # as if the extra were not installed
    assert main(["video", str(clip), "-o", str(tmp_path / "o.mp4"), "--cluster", "ray"]) == 1
    assert capsys.readouterr().err.strip() == f"livematte: error: {NO_RAY}"
    assert NO_RAY == '--cluster runs on Ray: pip install "livematte[ray]"'
    assert not (tmp_path / "o.mp4").exists()


def test_segment_seconds_needs_cluster(tmp_path, capsys):
    clip = make_video(tmp_path / "c.mp4", n=3)
    assert main(["video", str(clip), "-o", str(tmp_path / "o.mp4"), "--segment-seconds", "2"]) == 1
    assert "--segment-seconds cuts videos for --cluster" in capsys.readouterr().err
