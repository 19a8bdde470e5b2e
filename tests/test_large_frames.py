"""4K pictures: what the pipeline holds is bounded in bytes, not only in frames.

A 3840x2160 BGR frame is 24.9 MB and its float32 matte 33.2 MB, so hand-offs sized in frames
hold hundreds of MB at 4K; these tests check the byte budget with real 4K frames and a real
4K clip, and that no full-size float copy of a frame is made where a band does.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
import tracemalloc
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from media import gradient
from livematte.frames import Frame, Matted
from livematte.runtime.workers import Channel, Stopped

W4K, H4K = 3840, 2160
BUDGET = 64 * 2**20


def weight(item) -> int:
    """The picture bytes an item of a hand-off holds, counted here apart from the pipeline's own count."""
    if isinstance(item, Matted):
        return sum(a.nbytes for a in (item.frame.image, item.alpha, item.foreground) if a is not None)
    return item.image.nbytes if isinstance(item, Frame) else 0


def waiting(channel: Channel) -> list:
    with channel._queue.mutex:
        return list(channel._queue.queue)


def wait_for(condition, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "still waiting"
        time.sleep(0.01)


def test_channel_holds_a_byte_budget_and_lets_a_bigger_item_through_alone():
    stop = threading.Event()
    channel = Channel(stop, 4, max_bytes=BUDGET, weigh=lambda picture: picture.nbytes)
    frames = [np.zeros((H4K, W4K, 3), np.uint8) for _ in range(5)]

    def produce():
        try:
            for frame in frames:
                channel.put(frame)
        except Stopped:  # the test is over
            pass

    producer = threading.Thread(target=produce, daemon=True)
    producer.start()
    # Two 4K frames fit in the budget, a third does not: the producer waits with it.
    wait_for(lambda: len(waiting(channel)) == 2)
    time.sleep(0.3)
    assert len(waiting(channel)) == 2 and channel.held_bytes == 2 * frames[0].nbytes <= BUDGET
    assert channel.get() is frames[0]
    wait_for(lambda: len(waiting(channel)) == 2)  # one out, one in
    time.sleep(0.3)
    assert [id(f) for f in waiting(channel)] == [id(frames[1]), id(frames[2])]
    big = np.zeros((2 * H4K, 2 * W4K, 3), np.uint8)  # 99.5 MB, more than the whole budget
    lone = Channel(stop, 4, max_bytes=BUDGET, weigh=lambda picture: picture.nbytes)
    lone.put(big)
    assert lone.get(timeout=1) is big and lone.held_bytes == 0
    stop.set()
    producer.join(5)


@pytest.fixture(scope="module")
def clip_4k(tmp_path_factory) -> Path:
    """A real 4K H.264 clip of 8 frames (a moving gradient): enough to fill every hand-off."""
    path = tmp_path_factory.mktemp("4k") / "4k.mp4"
    small = [gradient(i, 384, 216) for i in range(8)]
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=30, options={"preset": "ultrafast", "crf": "30"})
        stream.width, stream.height, stream.pix_fmt = W4K, H4K, "yuv420p"
        for i, picture in enumerate(small):
            frame = av.VideoFrame.from_ndarray(cv2.resize(picture, (W4K, H4K)), format="bgr24")
            frame.pts, frame.time_base = i, Fraction(1, 30)
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


def test_offline_pipeline_holds_a_few_4k_pictures_not_a_queue_of_them(clip_4k, bshm_dir):
    """With a slow consumer every hand-off fills up: each may hold its byte budget, not 4 frames."""
    from livematte import models
    from livematte.sources.capture import FileSource
    from livematte.runtime.engine import Engine
    from livematte.matte.finishing import CompositeSettings
    from livematte.models.base import ModelSettings
    from livematte.runtime.pipeline import Pipeline
    from livematte.runtime.stats import Stats
    from livematte.runtime.workers import END

    # The model at 512 px and no colour estimate: quick, and the frames and mattes are still 4K.
    engine = Engine(models.load(ModelSettings(name="bshm", model_dir=bshm_dir, size=512)),
                    composite=CompositeSettings(foreground="off"))
    source = FileSource(str(clip_4k))
    held = {"captured": 0, "matted": 0}
    done = threading.Event()
    try:
        with Pipeline(source, engine, Stats(), live=False) as pipeline:
            def watch():
                while not done.is_set():
                    for name in held:
                        held[name] = max(held[name], sum(map(weight, waiting(getattr(pipeline, name)))))
                    time.sleep(0.005)

            watcher = threading.Thread(target=watch, daemon=True)
            watcher.start()
            count = 0
            while pipeline.next(timeout=60) is not END:
                count += 1
                time.sleep(0.3)  # a slow encoder: the stages before it fill their hand-offs
            done.set()
            watcher.join(5)
    finally:
        source.close()
    assert count == 8
    frame = W4K * H4K * 3
    assert held["captured"] >= frame  # it did fill (else the test proves nothing)
    assert held["captured"] <= BUDGET, f"captured held {held['captured'] / 2**20:.0f} MiB"
    assert held["matted"] <= max(BUDGET, frame + W4K * H4K * 4 + frame), f"matted held {held['matted'] / 2**20:.0f} MiB"


def test_guide_makes_no_float_copy_of_the_whole_picture():
    from livematte.matte.refine import _MEAN_RGB, guide

    image = np.random.default_rng(0).integers(0, 256, (H4K, W4K, 3), dtype=np.uint8)
    whole = cv2.transform(image.astype(np.float32), _MEAN_RGB)
    tracemalloc.start()
    try:
        banded = guide(image)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert np.array_equal(banded, whole)  # the same values
    assert peak < 1.5 * whole.nbytes, f"{peak / 2**20:.0f} MiB for a {whole.nbytes / 2**20:.0f} MiB guide"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc")
def test_freed_4k_pictures_go_back_to_the_system():
    """Once a pipeline is made, a 4K picture gets a mapping of its own, unmapped when it is freed,
    instead of a heap's memory, which the heap would keep (glibc's default, once such a block was freed)."""
    code = """
import ctypes, platform, numpy as np
if platform.libc_ver()[0] != "glibc":
    print("skip"); raise SystemExit
from livematte.runtime.pipeline import Pipeline
from livematte.runtime.stats import Stats
Pipeline(None, None, Stats(), live=False)  # made, not started
class Info(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]
libc = ctypes.CDLL(None)
libc.mallinfo2.restype = Info
np.ones((2160, 3840, 3), np.uint8)  # made and freed: glibc's default threshold rises past its size
before = libc.mallinfo2().hblkhd
picture = np.ones((2160, 3840, 3), np.uint8)
print(libc.mallinfo2().hblkhd - before >= picture.nbytes)
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          cwd=Path(__file__).resolve().parents[1])
    assert done.returncode == 0, done.stderr
    if done.stdout.strip() == "skip":
        pytest.skip("not glibc")
    assert done.stdout.strip() == "True"
