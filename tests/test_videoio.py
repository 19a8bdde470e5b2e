"""Video I/O on small real files made here with PyAV (and one real clip from ../shared when present)."""

from __future__ import annotations

import logging
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from livematte.errors import LivematteError
from media import AUDIO_RATE, FPS, H, N, W, audio_seconds, gradient, make_video
from livematte.media.reading import VideoReader, probe
from livematte.media.readback import read_alpha, read_alpha_with_pts, read_rgba
from livematte.media.formats import output_kind
from livematte.media.writing import AlphaWriter, VideoWriter

@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return make_video(tmp_path_factory.mktemp("clip") / "clip.mp4")


def audio_packets(path: Path) -> list[bytes]:
    with av.open(str(path)) as container:
        return [bytes(p) for p in container.demux(container.streams.audio[0]) if p.size]


def copy_through(source: Path, target: Path, *, audio: bool = False, **kwargs) -> None:
    """Every frame of ``source`` into ``target``, with its audio (demuxed along) when ``audio``."""
    with VideoReader(source, audio=audio) as reader, VideoWriter(
            target, width=reader.info.width, height=reader.info.height, rate=reader.info.rate, audio=reader.audio,
            **kwargs) as writer:
        for image, pts in reader.frames():
            writer.write(image, pts)


def test_probe_and_frames(clip):
    info = probe(clip)
    assert (info.width, info.height, info.fps, info.rate) == (W, H, 30.0, Fraction(30))
    assert info.frame_count == N and info.duration == pytest.approx(1.0, abs=0.04)
    assert (info.rotation, info.has_audio, info.codec) == (0, True, "h264")
    with VideoReader(clip) as reader:
        frames = list(reader.frames())
    assert len(frames) == N
    assert [p for _, p in frames] == pytest.approx([i / FPS for i in range(N)], abs=1e-3)
    image = frames[7][0]
    assert image.dtype == np.uint8 and image.shape == (H, W, 3)
    assert np.abs(image.astype(int) - gradient(7)).mean() < 3


def test_audio_copied_into_mp4(clip, tmp_path):
    out = tmp_path / "out.mp4"
    copy_through(clip, out, audio=True)
    assert probe(out).frame_count == N
    codec, seconds = audio_seconds(out)
    assert codec == "aac"
    assert seconds == pytest.approx(audio_seconds(clip)[1], abs=1 / FPS)
    assert audio_packets(out) == audio_packets(clip)  # copied, not re-encoded


def test_audio_reencoded_into_webm(clip, tmp_path):
    out = tmp_path / "out.webm"
    copy_through(clip, out, audio=True)
    codec, seconds = audio_seconds(out)
    assert codec == "opus"
    assert seconds == pytest.approx(audio_seconds(clip)[1], abs=1 / FPS)


@pytest.fixture(scope="module")
def two_seconds(tmp_path_factory) -> Path:
    """60 frames at 30 fps with 2 s of AAC."""
    return make_video(tmp_path_factory.mktemp("two") / "two.mp4", n=60)


def write_with_feed(source: Path, out: Path, *, write: int | None = None, read: int | None = None,
                    end_audio: float | None = None) -> None:
    """Decode ``source`` with its audio feed and write the first ``write`` frames (all: None) to ``out``,
    reading ``read`` frames (all: None) as a pipeline reads ahead of its writer."""
    with VideoReader(source, audio=True) as reader, \
            VideoWriter(out, width=W, height=H, rate=reader.info.rate, audio=reader.audio) as writer:
        for i, (image, pts) in enumerate(reader.frames()):
            if read is not None and i >= read:
                break
            if write is None or i < write:
                writer.write(image, pts)
        reader.close()
        if end_audio is not None:
            writer.end_audio_at(end_audio)


@pytest.mark.parametrize("suffix", [".mp4", ".webm"])
def test_audio_from_the_readers_own_container(two_seconds, tmp_path, suffix):
    out = tmp_path / f"out{suffix}"
    write_with_feed(two_seconds, out)
    codec, seconds = audio_seconds(out)
    assert seconds == pytest.approx(audio_seconds(two_seconds)[1], abs=1 / FPS)
    if suffix == ".mp4":  # copied, packet for packet
        assert codec == "aac" and audio_packets(out) == audio_packets(two_seconds)
    else:
        assert codec == "opus"


@pytest.mark.parametrize("suffix, packet", [(".mp4", 1024), (".webm", 0)])
def test_end_audio_at_ends_the_audio_with_the_last_frame(two_seconds, tmp_path, suffix, packet):
    # The reader runs to the end, as a pipeline's reads ahead, but only 15 frames (0.5 s) are written.
    out = tmp_path / f"out{suffix}"
    write_with_feed(two_seconds, out, write=15, end_audio=15 / FPS)
    seconds = audio_seconds(out)[1]
    # Copied AAC ends with the last whole packet that starts before 0.5 s; Opus is cut to the sample.
    assert 0.5 <= seconds <= 0.5 + packet / AUDIO_RATE + 1e-9, seconds


def test_audio_stops_where_the_reader_stopped(two_seconds, tmp_path):
    # A run stopped after 15 frames, its reader closed: the audio demuxed so far is written, no more.
    out = tmp_path / "out.mp4"
    write_with_feed(two_seconds, out, read=15)
    assert 15 / FPS <= audio_seconds(out)[1] < 1.0


def test_audio_feed_is_bounded(two_seconds, caplog, monkeypatch):
    monkeypatch.setattr("livematte.media.audio.AudioFeed.CAPACITY_BYTES", 2000)
    with VideoReader(two_seconds, audio=True) as reader:
        reader.audio.claim()  # a writer that never takes anything
        with caplog.at_level(logging.WARNING):
            assert len(list(reader.frames())) == 60
        assert 1000 < reader.audio.held_bytes <= 2000
    assert "ahead of the video" in caplog.text


def test_audio_nobody_writes_is_not_kept(two_seconds):
    with VideoReader(two_seconds, audio=True) as reader:
        assert len(list(reader.frames())) == 60
        assert reader.audio.held_bytes == 0  # no writer claimed it before the frames started


def test_only_one_writer_takes_a_feed(two_seconds, tmp_path):
    with VideoReader(two_seconds, audio=True) as reader:
        with VideoWriter(tmp_path / "a.mp4", width=W, height=H, rate=Fraction(30), audio=reader.audio):
            with pytest.raises(ValueError, match="another writer"):
                VideoWriter(tmp_path / "b.mp4", width=W, height=H, rate=Fraction(30), audio=reader.audio)


@pytest.mark.parametrize("suffix", [".webm", ".mov"])
def test_transparent_output_keeps_alpha(tmp_path, suffix):
    ramp = np.linspace(0, 200, W, dtype=np.float32)[None, :] + np.arange(H, dtype=np.float32)[:, None]
    alpha = ramp.astype(np.uint8)
    out = tmp_path / f"out{suffix}"
    with VideoWriter(out, width=W, height=H, rate=Fraction(30)) as writer:
        for i in range(5):
            writer.write(np.dstack([gradient(i), alpha]), i / FPS)
    frames = read_rgba(out)
    assert len(frames) == 5
    for i, frame in enumerate(frames):
        assert frame.shape == (H, W, 4) and frame.dtype == np.uint8
        assert np.abs(frame[:, :, 3].astype(int) - alpha).max() <= 3
        assert np.abs(frame[:, :, :3].astype(int) - gradient(i)).mean() < 3


def test_png_sequence(tmp_path, clip, caplog):
    out = tmp_path / "frames"
    assert output_kind(str(out) + "/") == output_kind(out) == "png"
    images = [np.dstack([gradient(i), np.full((H, W), 17 * i, np.uint8)]) for i in range(3)]
    with caplog.at_level(logging.WARNING), VideoReader(clip, audio=True) as reader, VideoWriter(
            str(out) + "/", width=W, height=H, rate=Fraction(30), audio=reader.audio) as writer:
        writer.write(images[0], 0.0)
        writer.write(images[1][:, :, :3].copy(), 0.1)  # BGR gets alpha 255
        writer.write(images[2], 0.2)
    assert "no audio" in caplog.text
    assert sorted(p.name for p in out.iterdir()) == ["000000.png", "000001.png", "000002.png"]
    back = read_rgba(out)
    np.testing.assert_array_equal(back[0], images[0])
    np.testing.assert_array_equal(back[1][:, :, 3], 255)
    np.testing.assert_array_equal(back[2], images[2])


@pytest.mark.parametrize("name", ["alpha.mkv", "alpha.nut", "alpha_frames"])
def test_alpha_writer_round_trip_is_exact(tmp_path, rng, name):
    alphas = [rng.integers(0, 256, (H - 1, W + 1), dtype=np.uint8) for _ in range(4)]
    pts = [0.0, 0.04, 0.1, 0.25]
    with AlphaWriter(tmp_path / name, width=W + 1, height=H - 1, rate=Fraction(25)) as writer:
        for alpha, t in zip(alphas, pts):
            writer.write(alpha, t)
    back = read_alpha(tmp_path / name)
    assert len(back) == 4
    for got, want in zip(back, alphas):
        np.testing.assert_array_equal(got, want)
    if name.endswith((".mkv", ".nut")):
        assert [t for _, t in read_alpha_with_pts(tmp_path / name)] == pytest.approx(pts, abs=1e-6)
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]


@pytest.mark.parametrize("suffix", [".mp4", ".mkv", ".webm"])
def test_variable_frame_rate_survives(tmp_path, suffix):
    times = [0.0, 0.033, 0.1, 0.12, 0.2, 0.35, 0.36, 0.4, 0.5, 0.51, 0.7, 0.75]
    source = make_video(tmp_path / "vfr.mkv", n=len(times), pts=times, audio=False)
    with VideoReader(source) as reader:
        assert [p for _, p in reader.frames()] == pytest.approx(times, abs=1e-6)
    out = tmp_path / f"out{suffix}"
    copy_through(source, out)
    with VideoReader(out) as reader:
        assert [p for _, p in reader.frames()] == pytest.approx(times, abs=1e-3)


def test_non_increasing_pts_are_nudged(tmp_path):
    out = tmp_path / "out.mp4"
    with VideoWriter(out, width=W, height=H, rate=Fraction(30)) as writer:
        for i, t in enumerate([0.0, 0.1, 0.1, 0.05, None]):
            writer.write(gradient(i), t)
    with VideoReader(out) as reader:
        times = [p for _, p in reader.frames()]
    assert len(times) == 5 and all(b > a for a, b in zip(times, times[1:]))
    assert times[:2] == pytest.approx([0.0, 0.1], abs=1e-4)


@pytest.mark.parametrize("suffix", [".mp4", ".webm", ".mov"])
def test_odd_size_gives_a_playable_file(tmp_path, suffix):
    out = tmp_path / f"odd{suffix}"
    with VideoWriter(out, width=63, height=47, rate=Fraction(30)) as writer:
        for i in range(4):
            writer.write(gradient(i, 63, 47), i / FPS)
    info = probe(out)
    # H.264 yuv420p is padded to even sizes by repeating the edge; the alpha codecs keep the size.
    assert (info.width, info.height) == ((64, 48) if suffix == ".mp4" else (63, 47))
    with VideoReader(out) as reader:
        frames = [image for image, _ in reader.frames()]
    assert len(frames) == 4
    assert np.abs(frames[2][:47, :63].astype(int) - gradient(2, 63, 47)).mean() < 4
    if suffix == ".mp4":
        assert np.abs(frames[2][47].astype(int) - frames[2][46]).mean() < 4


def test_rotation_from_display_matrix(tmp_path):
    # A phone held upright stores a landscape picture tagged "rotate 90 degrees clockwise".
    source = make_video(tmp_path / "phone.mp4", n=3, audio=False, rotation=-90)
    info = probe(source)
    assert (info.rotation, info.width, info.height) == (90, H, W)
    with VideoReader(source) as reader:
        image, _ = next(reader.frames())
    assert image.shape == (W, H, 3)
    stored = gradient(0)
    # Turning clockwise brings the stored bottom-left corner to the top-left.
    assert np.abs(image[0, 0].astype(int) - stored[-1, 0]).max() < 8
    assert np.abs(image[0, -1].astype(int) - stored[0, 0]).max() < 8


def test_unreadable_inputs_name_the_file(tmp_path, clip, portrait):
    import cv2

    empty = tmp_path / "empty.mp4"
    empty.touch()
    text = tmp_path / "notes.mp4"
    text.write_text("not a video\n" * 50)
    picture = tmp_path / "picture.mp4"
    cv2.imwrite(str(tmp_path / "p.png"), portrait)
    (tmp_path / "p.png").rename(picture)
    sound = make_video(tmp_path / "sound.m4a", video=False)
    cut = tmp_path / "cut.mp4"  # moov atom is at the end, so half a file has no index at all
    data = clip.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    for path, words in [(tmp_path / "missing.mp4", "no such file"), (empty, "empty"), (text, "not a video"),
                        (picture, "still image"), (sound, "no video stream"), (cut, "not a video")]:
        with pytest.raises(LivematteError, match=words) as caught:
            probe(path)
        assert str(path) in str(caught.value)


def test_truncated_file_keeps_the_decoded_frames(tmp_path, caplog):
    source = make_video(tmp_path / "long.mkv", n=60, audio=False)
    data = source.read_bytes()
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(data[: len(data) // 2])
    with VideoReader(cut) as reader:
        assert 0 < len(list(reader.frames())) < 60
    # Garbage in the middle of the data: skipped with a warning, decoding goes on past it.
    source = make_video(tmp_path / "long.mp4", n=60, audio=False)
    data = source.read_bytes()
    third = len(data) // 3
    damaged = tmp_path / "damaged.mp4"
    damaged.write_bytes(data[:third] + np.random.default_rng(0).bytes(third) + data[2 * third:])
    with caplog.at_level(logging.WARNING), VideoReader(damaged) as reader:
        frames = list(reader.frames())
    assert 0 < len(frames) < 60
    assert "damaged.mp4" in caplog.text and "could not be decoded" in caplog.text


def test_unknown_extension_lists_choices(tmp_path):
    with pytest.raises(LivematteError, match=r"out\.avi.*\.mov.*\.mp4.*\.webm"):
        VideoWriter(tmp_path / "out.avi", width=W, height=H, rate=Fraction(30))
    with pytest.raises(LivematteError, match=r"alpha\.mp4.*\.mkv"):
        AlphaWriter(tmp_path / "alpha.mp4", width=W, height=H, rate=Fraction(30))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", ["out.mp4", "out.webm", "frames/"])
def test_failure_leaves_no_file(tmp_path, clip, name):
    with pytest.raises(RuntimeError):
        with VideoReader(clip, audio=True) as reader, VideoWriter(
                str(tmp_path / name), width=W, height=H, rate=Fraction(30), audio=reader.audio) as writer:
            for i in range(10):
                writer.write(gradient(i), i / FPS)
            raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []
    writer.abort()
    writer.close()  # both idempotent after an abort
    assert list(tmp_path.iterdir()) == []


def test_close_is_idempotent_and_replaces_atomically(tmp_path):
    out = tmp_path / "out.mp4"
    out.write_bytes(b"old")
    writer = VideoWriter(out, width=W, height=H, rate=Fraction(30))
    writer.write(gradient(0), 0.0)
    assert out.read_bytes() == b"old"  # the previous file stays until close
    writer.close()
    writer.close()
    writer.abort()
    assert probe(out).codec == "h264"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.mp4"]


def test_real_clip(shared_data):
    clip = shared_data / "clips" / "s18.mp4"
    info = probe(clip)
    assert (info.width, info.height, info.rotation, info.codec, info.has_audio) == (1280, 720, 0, "h264", True)
    assert info.fps == pytest.approx(30.0, abs=0.01)
    assert info.frame_count == 282
    with VideoReader(clip) as reader:
        count = 0
        for image, _ in reader.frames():
            count += 1
    assert count == 282 and image.shape == (720, 1280, 3)
