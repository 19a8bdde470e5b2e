"""``livematte video --cluster`` on a real local Ray (2 CPUs, one instance for the session): the
same frames, timestamps and audio as one pass, faults survived, a bad video failing alone, and
nothing left behind on Ctrl-C. Skipped only when the ``ray`` extra is not installed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from media import audio_seconds, make_video
from livematte.cli import main
from livematte.media.readback import read_alpha_with_pts
from livematte.media.reading import VideoReader

ray = pytest.importorskip("ray")

RVM = ["--model", "rvm", "--threads", "1", "--quiet"]


def frame_times(path: Path) -> list[float]:
    with VideoReader(path) as reader:
        return [pts for _, pts in reader.frames()]


def both(clip: Path, tmp_path: Path, name: str, *extra: str) -> tuple[Path, Path]:
    """One pass and the cluster (1 s segments) on ``clip``: -> (one pass's folder, the cluster's)."""
    one, cluster = tmp_path / "one", tmp_path / "cluster"
    for folder, flags in ((one, []), (cluster, ["--cluster", "ray", "--segment-seconds", "1"])):
        folder.mkdir()
        assert main(["video", str(clip), "-o", str(folder / name), "--alpha-out", str(folder / "alpha.mkv"),
                     *RVM, *extra, *flags]) == 0
    return one, cluster


def test_same_frames_times_audio_and_mattes_as_one_pass(tmp_path, local_ray, rvm_weights):
    # Variable frame rate, a keyframe every 20 frames, 3.7 s with audio: 4 segments.
    stamps = list(np.cumsum([0.0] + [1 / 30 if i % 5 else 1 / 15 for i in range(1, 100)]))
    clip = make_video(tmp_path / "talk.mp4", n=100, pts=stamps, gop=20)
    one, cluster = both(clip, tmp_path, "out.mp4", "--background", "color:#00ff00")
    assert frame_times(cluster / "out.mp4") == frame_times(one / "out.mp4")
    assert len(frame_times(cluster / "out.mp4")) == 100
    assert audio_seconds(cluster / "out.mp4") == audio_seconds(one / "out.mp4")
    mattes_one, mattes_cluster = read_alpha_with_pts(one / "alpha.mkv"), read_alpha_with_pts(cluster / "alpha.mkv")
    assert [t for _, t in mattes_one] == [t for _, t in mattes_cluster]
    mad = [np.abs(a.astype(float) - b).mean() / 255 * 1e3 for (a, _), (b, _) in zip(mattes_one, mattes_cluster)]
    assert mad[:30] == [0.0] * 30 and max(mad) < 5, mad  # the first segment is the one pass's own start
    assert not [p for p in tmp_path.rglob(".*") if "partial" in p.name or "segments" in p.name]


def test_frames_limit_transparency_rotation_and_odd_size(tmp_path, local_ray, rvm_weights):
    clip = make_video(tmp_path / "odd.mkv", n=80, width=63, height=47, codec="ffv1", rotation=90)
    one, cluster = both(clip, tmp_path, "out.webm", "--background", "transparent", "--frames", "70")
    assert frame_times(cluster / "out.webm") == frame_times(one / "out.webm")
    assert len(frame_times(cluster / "out.webm")) == 70
    assert audio_seconds(cluster / "out.webm") == audio_seconds(one / "out.webm")  # cut at the last frame
    with VideoReader(cluster / "out.webm") as reader:
        assert (reader.info.width, reader.info.height) == (47, 63)


def test_a_long_output_name_works_on_the_cluster(tmp_path, local_ray, rvm_weights):
    """The segments' folder beside the output is named within the filesystem's 255 bytes."""
    clip = make_video(tmp_path / "talk.mp4", n=40, gop=10)
    name = "\u00e9" * 125 + ".mp4"  # 254 bytes
    one, cluster = both(clip, tmp_path, name)
    assert frame_times(cluster / name) == frame_times(one / name)
    assert not [p for p in tmp_path.rglob(".*") if "partial" in p.name or "segments" in p.name]


def board():
    """The running job's progress board (the driver names it)."""
    from livematte.cluster.scheduler import BOARD_PREFIX

    for _ in range(400):
        names = [a for a in ray.util.list_named_actors(all_namespaces=True) if a["name"].startswith(BOARD_PREFIX)]
        if names:
            return ray.get_actor(names[0]["name"], namespace=names[0]["namespace"])
        time.sleep(0.05)
    raise AssertionError("no progress board appeared")


def test_a_worker_killed_mid_segment_costs_that_segment_only(tmp_path, local_ray, rvm_weights):
    from livematte.cluster.driver import run_cluster_job
    from livematte.cluster.job import ClusterJob
    from livematte.cli import build_parser
    from livematte.commands.video import video_job

    clip = make_video(tmp_path / "long.mp4", n=180, width=320, height=240)
    args = build_parser().parse_args(["video", str(clip), "-o", str(tmp_path / "out.mp4"), *RVM])
    job = ClusterJob(video=video_job(args), segment_seconds=2.0)
    outcome = {}
    runner = threading.Thread(target=lambda: outcome.update(result=run_cluster_job(job)))
    runner.start()
    progress = board()
    killed = None
    while killed is None and runner.is_alive():
        for key, (pid, frames) in ray.get(progress.running.remote()).items():
            if 0 < frames < 40:  # under way, not nearly done (reported every 0.5 s)
                os.kill(pid, signal.SIGKILL)
                killed = key
                break
        time.sleep(0.02)
    runner.join(timeout=300)
    assert killed is not None, "no segment was caught under way"
    result = outcome["result"]
    assert result.retries == 1 and not result.failed
    assert frame_times(tmp_path / "out.mp4") == frame_times(clip)


def test_a_bad_video_fails_alone_with_its_reason(tmp_path, local_ray, rvm_weights, capsys):
    library = tmp_path / "library"
    library.mkdir()
    make_video(library / "a.mp4", n=40)
    make_video(library / "c.mp4", n=40)
    whole = make_video(tmp_path / "b.mp4", n=40).read_bytes()
    (library / "b.mp4").write_bytes(whole[:len(whole) * 2 // 3])  # a partial download: no index (moov) yet
    out = tmp_path / "out"
    assert main(["video", str(library), "-o", str(out), *RVM, "--cluster", "ray", "--segment-seconds", "0.5"]) == 1
    assert sorted(p.name for p in out.iterdir()) == ["a.mp4", "c.mp4"]
    assert len(frame_times(out / "a.mp4")) == len(frame_times(out / "c.mp4")) == 40
    failed = [line for line in capsys.readouterr().err.splitlines() if line.startswith("livematte: failed: ")]
    assert failed == [f"livematte: failed: {library / 'b.mp4'}: {library / 'b.mp4'} is not a video file FFmpeg "
                      "can read, or it is damaged or truncated"]


def test_ctrl_c_leaves_no_output_and_no_segments(tmp_path, local_ray, rvm_weights):
    """The command line in a process of its own, with a local Ray of its own (as a user runs it)."""
    clip = make_video(tmp_path / "long.mp4", n=240, width=320, height=240)
    out = tmp_path / "out" / "o.mp4"
    process = subprocess.Popen([sys.executable, "-m", "livematte", "video", str(clip), "-o", str(out),
                                "--alpha-out", str(out.with_name("a.mkv")), *RVM, "--cluster", "ray",
                                "--segment-seconds", "1"], stderr=subprocess.PIPE, text=True,
                               # Ctrl-C reaches it even when this run was started as a background job
                               # (SIGINT ignored, and inherited so).
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    # Once a segment is back beside the output, the run is well under way.
    deadline = time.time() + 120
    while time.time() < deadline and not any(p.is_file() for p in out.parent.glob(".o.mp4.segments-*/*")):
        assert process.poll() is None, process.stderr.read()
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert "interrupted; unfinished output removed" in stderr
    assert list(out.parent.iterdir()) == []
