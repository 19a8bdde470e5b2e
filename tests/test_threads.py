"""Thread plumbing: hand-offs time out when asked, and a worker's error reaches the caller as itself."""

from __future__ import annotations

import queue
import threading
import traceback

import numpy as np
import pytest

from livematte.runtime.engine import Engine
from livematte.runtime.pipeline import Pipeline
from livematte.runtime.stats import Stats
from livematte.runtime.workers import Channel, FreshBuffer


def returns_within(fn, seconds: float):
    """Run ``fn`` on a thread; -> its exception, failing the test if it is still running after ``seconds``."""
    box: dict = {}

    def call():
        try:
            fn()
        except BaseException as e:  # handed to the test
            box["error"] = e

    thread = threading.Thread(target=call, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still waiting after {seconds} s"
    return box.get("error")


@pytest.mark.parametrize("kind", [Channel, FreshBuffer])
def test_get_with_a_timeout_gives_up_on_an_empty_hand_off(kind):
    stop = threading.Event()
    hand_off = Channel(stop, 2) if kind is Channel else FreshBuffer(stop)
    error = returns_within(lambda: hand_off.get(timeout=0.1), 10)
    assert isinstance(error, queue.Empty)
    hand_off.put("item")
    assert hand_off.get(timeout=0.1) == "item"


class ExplodingSource:
    """Three frames, then a failure deep in "decoding"."""

    name, width, height, fps, live = "exploding", 32, 24, 30.0, False

    def frames(self):
        for i in range(3):
            yield np.zeros((24, 32, 3), np.uint8), i / 30
        raise OSError("the disk went away")

    def close(self):
        pass


def test_a_worker_error_is_raised_as_itself_not_chained_to_the_wake_up(bshm_dir):
    from livematte import models
    from livematte.models.base import ModelSettings

    engine = Engine(models.load(ModelSettings(name="bshm", model_dir=bshm_dir)))
    with pytest.raises(OSError, match="the disk went away") as caught:
        with Pipeline(ExplodingSource(), engine, Stats(), live=False) as pipeline:
            while True:
                pipeline.next(timeout=10)
    error = caught.value
    # Not "During handling of the above exception (Stopped), another exception occurred".
    assert error.__context__ is None and error.__cause__ is None
    frames = [frame.name for frame in traceback.extract_tb(error.__traceback__)]
    assert "frames" in frames  # the worker's own stack, down to where it failed


@pytest.mark.skipif(not __import__("sys").platform.startswith("linux"), reason="Linux's thread names")
def test_a_workers_thread_carries_its_name_to_the_system():
    # Given a worker of the pipeline's kind
    from livematte.runtime.workers import Worker

    seen = {}

    def look() -> None:
        with open(f"/proc/self/task/{threading.get_native_id()}/comm") as comm:
            seen["name"] = comm.read().strip()

    # When it runs, the system knows its thread by the worker's short name (top -H, ps -L)
    worker = Worker("frames", look, threading.Event())
    worker.start()
    worker.join(10)
    assert worker.error is None and seen["name"] == "lm-frames"
