"""Inputs with more than one audio stream: every stream reaches the output, read back with PyAV."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from media import FPS, N, gradient, mux_tone
from livematte.cli import main

RATE = 48000
# Each input stream: its tone (Hz), its length (s) and its language, told apart in the output by all three.
TRACKS = [(440, 1.0, "eng"), (880, 0.6, "spa")]


def add_video(container):
    """A 64x48 H.264 stream in ``container``, timed in ms."""
    video = container.add_stream("libx264", rate=FPS, options={"preset": "ultrafast", "threads": "1"})
    video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
    video.codec_context.time_base = Fraction(1, 1000)
    return video


def mux_video(container, video) -> None:
    """N frames of the moving gradient at FPS into ``video``, flushed."""
    for i in range(N):
        frame = av.VideoFrame.from_ndarray(gradient(i), format="bgr24")
        frame.pts, frame.time_base = round(i * 1000 / FPS), Fraction(1, 1000)
        container.mux(video.encode(frame))
    container.mux(video.encode())


def make_two_track_video(path: Path) -> Path:
    """A real 64x48 H.264 clip (N frames at FPS) with two AAC streams of different tones, lengths
    and languages, written with PyAV directly."""
    container = av.open(str(path), "w")
    video = add_video(container)
    sounds = []
    for _, _, language in TRACKS:
        sound = container.add_stream("aac", rate=RATE)
        sound.layout = "mono"
        sound.metadata["language"] = language
        sounds.append(sound)
    mux_video(container, video)
    for sound, (tone, seconds, _) in zip(sounds, TRACKS):
        mux_tone(container, sound, tone, round(RATE * seconds))
    container.close()
    return path


def audio_tracks(path: Path) -> list[dict]:
    """Every audio stream of ``path``, in order: codec, language, seconds decoded, loudest tone (Hz)
    and its packets' bytes."""
    with av.open(str(path)) as container:
        indices = [stream.index for stream in container.streams.audio]
    tracks = []
    for index in indices:
        with av.open(str(path)) as container:  # one pass a stream: a seek back may skip a stream's first packet
            stream = container.streams[index]
            packets = [p for p in container.demux(stream) if p.size]
            samples = np.concatenate([frame.to_ndarray().reshape(frame.layout.nb_channels, -1)[0]
                                      for p in packets for frame in p.decode()])
            rate = stream.codec_context.sample_rate
            spectrum = np.abs(np.fft.rfft(samples))
            tracks.append({"codec": stream.codec_context.name, "language": stream.metadata.get("language"),
                           "packets": [bytes(p) for p in packets], "seconds": len(samples) / rate,
                           "tone": float(np.fft.rfftfreq(len(samples), 1 / rate)[spectrum.argmax()])})
    return tracks


@pytest.fixture(scope="module")
def two_tracks(tmp_path_factory) -> Path:
    return make_two_track_video(tmp_path_factory.mktemp("in") / "two_tracks.mp4")


@pytest.mark.parametrize("name, codec, copied", [("out.mp4", "aac", True), ("out.mkv", "aac", True),
                                                 ("out.mov", "aac", True), ("out.webm", "opus", False)])
def test_every_audio_stream_is_kept(tmp_path, two_tracks, bshm_dir, caplog, name, codec, copied):
    source = audio_tracks(two_tracks)
    assert [t["language"] for t in source] == ["eng", "spa"]
    assert [t["tone"] for t in source] == pytest.approx([440, 880], abs=5)
    out = tmp_path / name
    assert main(["video", str(two_tracks), "-o", str(out), "--model", "bshm", "--model-dir", str(bshm_dir),
                 "--quiet"]) == 0
    kept = audio_tracks(out)
    assert len(kept) == 2, f"{name}: {len(kept)} audio streams"
    for was, now in zip(source, kept):
        assert now["codec"] == codec
        assert now["language"] == was["language"]
        assert now["tone"] == pytest.approx(was["tone"], abs=5)
        assert now["seconds"] == pytest.approx(was["seconds"], abs=0.05)
        if copied:
            assert now["packets"] == was["packets"]  # copied packet by packet, not re-encoded
    assert "kept" not in caplog.text  # nothing was left out, so nothing to explain


def test_surround_and_mp3_streams_are_copied_into_mp4(tmp_path, bshm_dir):
    """An AC-3 5.1 stream and an MP3 stream, both kinds MP4 holds as they are: copied, all six
    channels kept (re-encoding would mix them down to stereo AAC)."""
    source = tmp_path / "surround.mkv"
    container = av.open(str(source), "w")
    video = add_video(container)
    streams = []
    for codec, layout in [("ac3", "5.1"), ("libmp3lame", "mono")]:
        sound = container.add_stream(codec, rate=RATE)
        sound.layout, sound.format = layout, "fltp"
        streams.append(sound)
    mux_video(container, video)
    for sound in streams:
        # Whole frames of the encoder's size (AC-3 takes no short one): one second, rounded up.
        size = sound.codec_context.frame_size
        mux_tone(container, sound, 440, -(-RATE // size) * size, size)
    container.close()
    out = tmp_path / "out.mp4"
    assert main(["video", str(source), "-o", str(out), "--model", "bshm", "--model-dir", str(bshm_dir),
                 "--quiet"]) == 0
    with av.open(str(out)) as written:
        kept = [(s.codec_context.codec.canonical_name, s.codec_context.channels) for s in written.streams.audio]
    assert kept == [("ac3", 6), ("mp3", 1)]
    was, now = audio_tracks(source), audio_tracks(out)
    assert [t["packets"] for t in now] == [t["packets"] for t in was]


def test_a_stream_that_cannot_be_kept_is_named_and_the_others_kept(tmp_path, bshm_dir, capfd):
    """A Matroska file whose first audio stream has a codec FFmpeg does not know (its CodecID
    altered), and an AAC second one: the AAC is kept, and one line says which was left out and why."""
    source = tmp_path / "odd.mkv"
    container = av.open(str(source), "w")
    video = add_video(container)
    odd, aac = container.add_stream("pcm_s16le", rate=RATE), container.add_stream("aac", rate=RATE)
    odd.layout = aac.layout = "mono"
    mux_video(container, video)
    tone = 0.3 * np.sin(2 * np.pi * 440 * np.arange(RATE) / RATE)
    for sound, samples, sample_format in [(odd, (tone * 32767).astype(np.int16), "s16"),
                                          (aac, tone.astype(np.float32), "fltp")]:
        for start in range(0, RATE, 1024):
            frame = av.AudioFrame.from_ndarray(samples[None, start:start + 1024], format=sample_format, layout="mono")
            frame.sample_rate, frame.pts, frame.time_base = RATE, start, Fraction(1, RATE)
            container.mux(sound.encode(frame))
        container.mux(sound.encode())
    container.close()
    data = source.read_bytes()
    assert data.count(b"A_PCM/INT/LIT") == 1
    source.write_bytes(data.replace(b"A_PCM/INT/LIT", b"A_QQQ/INT/LIT"))  # a codec no FFmpeg knows
    out = tmp_path / "out.mp4"
    assert main(["video", str(source), "-o", str(out), "--model", "bshm", "--model-dir", str(bshm_dir),
                 "--quiet"]) == 0
    kept = audio_tracks(out)
    assert [(t["codec"], round(t["seconds"], 1)) for t in kept] == [("aac", 1.0)]
    with av.open(str(source)) as container:
        assert kept[0]["packets"] == [bytes(p) for p in container.demux(container.streams.audio[1]) if p.size]
    lines = [line for line in capfd.readouterr().err.splitlines() if "neither" in line]
    assert len(lines) == 1 and "#1 (unknown codec)" in lines[0] and "keeps audio #2 (aac)" in lines[0], lines
