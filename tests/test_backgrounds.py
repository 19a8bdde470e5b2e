"""Video backgrounds streamed from their file, and backgrounds switched while running.

Real files written with PyAV, a real HTTP server on 127.0.0.1, real threads; no mocks.
"""

from __future__ import annotations

import http.server
import logging
import os
import threading
import tracemalloc
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from livematte.compose.backgrounds import LoopingVideo, StillImage, cover_fit, parse_background

from livematte.compose.compositor import Compositor, blend
from livematte.errors import LivematteError
from livematte.compose.watcher import THREAD_NAME, BackgroundWatcher
from media import gradient, make_video

H, W = 48, 64
BLACK = np.zeros((H, W, 3), np.uint8)
CLEAR = np.zeros((H, W), np.float32)  # alpha 0 everywhere: the output is the background itself
RED, GREEN, BLUE = (0, 0, 255), (0, 255, 0), (255, 0, 0)  # BGR


def background_of(compositor: Compositor) -> tuple[int, int, int]:
    """Composite one frame and return the (B, G, R) it shows, all of it background."""
    picture = compositor.composite(BLACK, CLEAR, 0.0)
    return tuple(int(round(c)) for c in picture.reshape(-1, 3).mean(axis=0))


def pyav_frames(path: Path) -> tuple[list[np.ndarray], float]:
    """Every frame of ``path`` as PyAV decodes it (``uint8 [h, w, 3]`` BGR), and the stream's fps."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return [f.to_ndarray(format="bgr24") for f in container.decode(stream)], float(stream.average_rate)


def pictures_held(obj) -> int:
    """Decoded pictures (numpy arrays, PyAV frames) among ``obj``'s attributes, inside containers too."""
    count, values = 0, list(vars(obj).values())
    while values:
        value = values.pop()
        if isinstance(value, (np.ndarray, av.VideoFrame)):
            count += 1
        elif isinstance(value, (list, tuple)):
            values.extend(value)
        elif isinstance(value, dict):
            values.extend(value.values())
    return count


def open_files() -> int:
    return len(os.listdir("/proc/self/fd"))


needs_proc = pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="counts open files in /proc/self/fd")


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> dict[int, Path]:
    """Real H.264 files of 1, 30 and 300 frames (64x48, 30 fps)."""
    folder = tmp_path_factory.mktemp("videos")
    return {n: make_video(folder / f"frames{n}.mp4", n=n, audio=False) for n in (1, 30, 300)}


@pytest.fixture(scope="module")
def broken_video(tmp_path_factory) -> Path:
    """A real PNG-in-AVI video of 10 frames whose sixth frame is damaged: FFmpeg fails on it."""
    path = tmp_path_factory.mktemp("broken") / "broken.avi"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("png", rate=30)
        stream.width, stream.height, stream.pix_fmt = W, H, "rgb24"
        for i in range(10):
            frame = av.VideoFrame.from_ndarray(gradient(i), format="bgr24")
            frame.pts = i
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    data = path.read_bytes()
    sixth = [i for i in range(len(data)) if data.startswith(b"\x89PNG", i)][5]
    path.write_bytes(data[:sixth] + b"JUNK" + data[sixth + 4:])
    return path


@pytest.fixture
def logged(caplog):
    """Waits for livematte's log lines, from any thread."""
    caplog.set_level(logging.INFO, logger="livematte")
    waiter = LogWaiter()
    logger = logging.getLogger("livematte")
    logger.addHandler(waiter)
    yield waiter
    logger.removeHandler(waiter)


class LogWaiter(logging.Handler):
    def __init__(self):
        super().__init__(logging.INFO)
        self.lines: list[str] = []
        self._changed = threading.Condition()

    def emit(self, record):
        with self._changed:
            self.lines.append(record.getMessage())
            self._changed.notify_all()

    def wait_for(self, line: str, timeout: float = 10.0) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: line in self.lines, timeout)


class _SlowHandler(http.server.BaseHTTPRequestHandler):
    """GET /blue.png: a blue PNG, sent only once the test sets ``release``."""

    requested: threading.Event
    release: threading.Event

    def do_GET(self):
        self.requested.set()
        self.release.wait(30)
        body = cv2.imencode(".png", np.full((8, 8, 3), BLUE, np.uint8))[1].tobytes()
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def slow_server():
    """A local HTTP server on 127.0.0.1 that holds every request until ``release`` is set."""
    handler = type("Handler", (_SlowHandler,), {"requested": threading.Event(), "release": threading.Event()})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), name="test-http", daemon=True)
    thread.start()
    httpd.url = f"http://127.0.0.1:{httpd.server_address[1]}/blue.png"
    yield httpd
    handler.release.set()
    httpd.shutdown()
    httpd.server_close()
    thread.join()


def watcher_running() -> bool:
    return any(t.name == THREAD_NAME for t in threading.enumerate())


# --- video backgrounds ----------------------------------------------------------------------------

def test_video_background_shows_the_frames_pyav_decodes_holding_one_at_a_time(videos):
    # Given videos of 30 frames and of a single frame, and every frame as PyAV decodes them
    for n, pts_list in [(30, [0.0, 0.02, 0.5, 0.999, 1.0, 1.7, 5.25, 0.3, 0.0, 40.0, -0.2, 2.0]),
                        (1, [0.0, 0.5, 3.0, 0.1, 100.0, -1.0])]:
        reference, fps = pyav_frames(videos[n])
        assert len(reference) == n
        video = LoopingVideo(str(videos[n]))

        # When it renders times forward, around the loop, far ahead and backwards (a restarted
        # source), at the frame's size and at twice it
        for pts in pts_list:
            expected = reference[int(pts * fps) % n]
            same_size = video.render(BLACK, pts)
            double = video.render(np.zeros((2 * H, 2 * W, 3), np.uint8), pts)

            # Then it shows frame int(pts * fps) % N, as the whole-file version did, and holds
            # only that frame and its fitted copy
            assert np.array_equal(same_size, expected), (n, pts)
            assert np.array_equal(double, cover_fit(expected, 2 * W, 2 * H)), (n, pts)
            assert pictures_held(video) <= 2, (n, pts)
        video.close()


def test_video_background_memory_does_not_grow_with_its_length(videos):
    # Given a 30-frame and a 300-frame video, each played twice round at a larger output size
    def peak_bytes(path: Path, frames: int) -> int:
        tracemalloc.start()
        try:
            video = LoopingVideo(str(path))
            for i in range(2 * frames):
                video.render(np.zeros((2 * H, 2 * W, 3), np.uint8), i / video.fps)
            video.close()
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    # When the peak of traced memory (numpy arrays included) is measured for each
    short, long = peak_bytes(videos[30], 30), peak_bytes(videos[300], 300)

    # Then the long one costs less than two more output pictures (holding its frames would be
    # 270 x 9 kB decoded, plus 270 x 37 kB fitted)
    assert long - short < 2 * (2 * H) * (2 * W) * 3, (short, long)


@needs_proc
def test_video_background_close_releases_its_file(videos):
    # Given a playing video background
    before = open_files()
    video = LoopingVideo(str(videos[30]))
    video.render(BLACK, 0.5)
    assert open_files() == before + 1

    # When it is closed (twice: closing is idempotent)
    video.close()
    video.close()

    # Then its file is closed and it can decode no more
    assert open_files() == before
    with pytest.raises(ValueError, match="closed"):
        video.render(BLACK, 0.6)


@needs_proc
def test_video_background_decode_error_names_the_file_and_releases_it(broken_video):
    # Given a video whose sixth frame FFmpeg cannot decode
    before = open_files()

    # When it is given as a background
    with pytest.raises(LivematteError) as caught:
        parse_background(str(broken_video))

    # Then it is refused before anything renders it (the constructor decodes it through once),
    # with one line naming the file, and the file is closed at once
    assert str(broken_video) in str(caught.value) and "\n" not in str(caught.value)
    assert open_files() == before


@needs_proc
def test_video_background_without_a_picture_fails_cleanly(tmp_path):
    # Given a real .mp4 holding only sound
    sound_only = make_video(tmp_path / "sound.mp4", video=False)
    before = open_files()

    # When it is given as a background
    with pytest.raises(LivematteError) as caught:
        parse_background(str(sound_only))

    # Then a one-line error names the file and says why, and the file is already closed
    # (while the error, and so its traceback, is still alive)
    assert str(caught.value) == f"background video {sound_only} has no video stream"
    assert open_files() == before


@pytest.mark.parametrize("spec", ["~0", "~no-such-user-here/wall.png"])
def test_a_home_folder_that_does_not_exist_is_a_missing_file_not_a_crash(spec):
    # Given a background spec naming the home folder of a user this machine does not have
    # When it is parsed
    with pytest.raises(LivematteError) as caught:
        parse_background(spec)

    # Then the error is the one for any missing file, naming the spec
    assert str(caught.value).startswith(f"background {spec!r} is not a file")


def test_a_home_folder_path_is_expanded(tmp_path, monkeypatch):
    # Given a picture in the home folder, named from there
    monkeypatch.setenv("HOME", str(tmp_path))
    cv2.imwrite(str(tmp_path / "wall.png"), np.full((8, 8, 3), 200, np.uint8))

    # When the spec is parsed, it is that picture
    background = parse_background("~/wall.png")
    assert isinstance(background, StillImage)
    assert background.render(np.zeros((4, 4, 3), np.uint8), 0.0)[0, 0].tolist() == [200, 200, 200]


# --- the compositor's hand-off ------------------------------------------------------------------

def test_set_background_swaps_at_the_next_composite_and_closes_the_old_one_there(videos):
    # Given a compositor rendering a video background
    video = LoopingVideo(str(videos[30]))
    compositor = Compositor(video)
    compositor.composite(BLACK, CLEAR, 0.1)

    # When another background is handed over
    compositor.set_background(parse_background("color:#0000ff"))

    # Then the video stays usable until the output thread's next composite, which shows the
    # new background and closes the video
    video.render(BLACK, 0.2)
    assert background_of(compositor) == BLUE
    with pytest.raises(ValueError, match="closed"):
        video.render(BLACK, 0.3)


@needs_proc
def test_compositor_closes_current_replaced_and_pending_backgrounds(videos):
    # Given a compositor on one video, with a second handed over and then replaced by a third
    before = open_files()
    current, replaced, pending = (LoopingVideo(str(videos[n])) for n in (30, 300, 1))
    compositor = Compositor(current)
    compositor.set_background(replaced)
    compositor.set_background(pending)

    # Then the replaced one, never rendered, is closed at once
    assert open_files() == before + 2
    with pytest.raises(ValueError, match="closed"):
        replaced.render(BLACK, 0.0)

    # When the compositor is closed, and a background handed over after that
    compositor.close()
    late = LoopingVideo(str(videos[30]))
    compositor.set_background(late)

    # Then every file is closed
    assert open_files() == before
    for video in (current, pending, late):
        with pytest.raises(ValueError, match="closed"):
            video.render(BLACK, 0.0)


# --- the background watcher ---------------------------------------------------------------------

def test_watcher_applies_the_file_at_start_and_then_its_changes(tmp_path, logged):
    # Given a compositor on green and a watched file that says red
    spec = tmp_path / "background.txt"
    spec.write_text("color:#ff0000\n", encoding="utf-8")
    compositor = Compositor(parse_background("color:#00ff00"))

    with BackgroundWatcher(spec, compositor, interval=0.01):
        # Then red is the background from the first frame on
        assert background_of(compositor) == RED
        assert "background: color:#ff0000" in logged.lines

        # When the file changes (to another length: two writes may share an mtime tick)
        spec.write_text("color:#0000ff\n\n", encoding="utf-8")

        # Then the frame after the new spec was handed over is blue
        assert logged.wait_for("background: color:#0000ff")
        assert background_of(compositor) == BLUE
        assert watcher_running()

    # And leaving stops and joins the watcher's thread
    assert not watcher_running()


@pytest.mark.parametrize("contents, reason", [(None, "no such file"), ("  \n", "is empty"),
                                              ("color:#zzz", "bad colour '#zzz'")])
def test_watcher_keeps_the_background_when_the_file_is_unusable_at_start(tmp_path, logged, contents, reason):
    # Given a watched file that is missing, empty, or holds a bad spec
    spec = tmp_path / "background.txt"
    if contents is not None:
        spec.write_text(contents, encoding="utf-8")
    compositor = Compositor(parse_background("color:#00ff00"))

    with BackgroundWatcher(spec, compositor, interval=0.01):
        # Then one warning says why, the background stays green, and watching goes on
        warnings = [line for line in logged.lines if line.startswith("kept the current background: ")]
        assert len(warnings) == 1 and reason in warnings[0], logged.lines
        assert background_of(compositor) == GREEN
        spec.write_text("color:#ff0000", encoding="utf-8")
        assert logged.wait_for("background: color:#ff0000")
        assert background_of(compositor) == RED


def test_watcher_keeps_the_background_when_the_file_changes_to_a_bad_spec(tmp_path, logged):
    # Given a watcher running on red
    spec = tmp_path / "background.txt"
    spec.write_text("color:#ff0000", encoding="utf-8")
    compositor = Compositor(parse_background("color:#00ff00"))
    with BackgroundWatcher(spec, compositor, interval=0.01):
        assert background_of(compositor) == RED

        # When the file changes to a spec that cannot be parsed
        spec.write_text("blur:500", encoding="utf-8")

        # Then a warning says why and the background stays red
        assert logged.wait_for("kept the current background: blur strength 500 out of range, expected 1..100")
        assert background_of(compositor) == RED


def test_watcher_fetches_a_url_off_the_output_thread(tmp_path, logged, slow_server):
    # Given a watcher running on red
    spec = tmp_path / "background.txt"
    spec.write_text("color:#ff0000", encoding="utf-8")
    compositor = Compositor(parse_background("color:#00ff00"))
    with BackgroundWatcher(spec, compositor, interval=0.01):
        assert background_of(compositor) == RED

        # When the file changes to a URL whose server does not answer yet
        spec.write_text(slow_server.url, encoding="utf-8")
        assert slow_server.RequestHandlerClass.requested.wait(10)

        # Then frames keep coming, on red, while the watcher's thread waits for the server
        assert [background_of(compositor) for _ in range(20)] == [RED] * 20
        assert watcher_running()

        # And once the server answers, the frame after the hand-off is the downloaded blue
        slow_server.RequestHandlerClass.release.set()
        assert logged.wait_for(f"background: {slow_server.url}")
        assert background_of(compositor) == BLUE


def test_watcher_exit_during_a_fetch_waits_for_it_and_hands_nothing_over(tmp_path, logged, slow_server):
    # Given a watcher on red, fetching a URL the server holds back
    spec = tmp_path / "background.txt"
    spec.write_text("color:#ff0000", encoding="utf-8")
    compositor = Compositor(parse_background("color:#00ff00"))
    watcher = BackgroundWatcher(spec, compositor, interval=0.01).__enter__()
    assert background_of(compositor) == RED
    spec.write_text(slow_server.url, encoding="utf-8")
    assert slow_server.RequestHandlerClass.requested.wait(10)

    # When the watcher is told to exit, and only then the server answers
    closer = threading.Thread(target=watcher.__exit__, args=(None, None, None), name="test-closer")
    closer.start()
    assert watcher._stop.wait(10)
    slow_server.RequestHandlerClass.release.set()
    closer.join(10)

    # Then the exit returned once the fetch was over, with the thread joined, and the
    # background it fetched was not handed over
    assert not closer.is_alive() and not watcher_running()
    assert background_of(compositor) == RED
    assert f"background: {slow_server.url}" not in logged.lines


# --- the blend ------------------------------------------------------------------------------------

@pytest.mark.parametrize("size", [(720, 1280), (67, 101), (5, 3)])
@pytest.mark.parametrize("where", ["blob", "corner", "opposite corners", "none", "everywhere"])
def test_blend_over_the_box_of_the_person_equals_blending_the_whole_frame(size, where):
    # Given two pictures and a matte that is above 0 only somewhere (or nowhere, or everywhere)
    height, width = size
    rng = np.random.default_rng(7)
    fg = rng.integers(0, 256, (height, width, 3), np.uint8)
    bg = rng.integers(0, 256, (height, width, 3), np.uint8)
    alpha = np.zeros(size, np.float32)
    if where == "blob":
        cv2.ellipse(alpha, (width // 2, height // 2), (max(1, width // 5), max(1, height // 4)), 0, 0, 360, 1.0, -1)
        alpha = cv2.GaussianBlur(alpha, (0, 0), 2)
    elif where == "corner":
        alpha[-1, -1] = 1e-6
    elif where == "opposite corners":
        alpha[0, 0], alpha[-1, -1] = 0.5, 0.25
    elif where == "everywhere":
        alpha[:] = rng.random(size, np.float32)

    # When they are blended, the result is what blending every pixel gives, and the inputs are unchanged
    before = bg.copy()
    picture = blend(fg, bg, alpha)
    assert np.array_equal(picture, cv2.blendLinear(fg, bg, alpha, 1.0 - alpha))
    assert np.array_equal(bg, before) and picture is not bg
