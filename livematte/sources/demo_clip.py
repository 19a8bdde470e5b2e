"""The built-in demo: a person on a call in a busy room, the room replaced, with nothing from the user.

What the clip is, truthfully: a composite made on this machine, not a recording.

- The person is Grace Hopper's official portrait (a US Navy photo, in the public
  domain), a still photo that comes with livematte (``livematte/data``, the same
  file matplotlib ships as sample data; no video of a real person comes with any
  installed package). The first time the demo runs, livematte cuts her out of that photo
  with its own model (RVM on onnxruntime, four passes over the still so its
  recurrent state settles). Everything outside her silhouette goes, the US flag
  behind her shoulder included; the inside of the silhouette is made solid, her
  edge pixels take her colours rather than the photo's blue backdrop, and her
  sleeves, which the photo crops, are continued past its edges.
- The room is drawn here: a window with half-drawn blinds and a tree outside, a
  framed picture beside her head, a full bookshelf behind her shoulder, a plant;
  behind her head itself there is only plain wall.
- She sways, leans and leans in, as a person on a video call does, in front of
  the room: 4 seconds of 720p at 30 fps, H.264, made once into the cache.

The demo then runs livematte's ordinary offline path on that clip: the model sees
only the encoded frames, never the cut-out's alpha, and replaces the room with a
calm generated backdrop (``demo_background``). What it shows: the person kept
whole, the busy room gone, no part of it left around her head or shoulders. What
it does not show: her face and arms never move, the room is flat-shaded, there is
no camera noise on her nor motion blur, and her outline is one this same model
drew on the still, which flatters it. The measurements are the project's
ground-truth clips (``../shared/data``, README "Performance").
"""

from __future__ import annotations

import logging
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

from ..assets import sample_portrait
from ..errors import LivematteError
from ..models.weights import cache_dir

log = logging.getLogger(__name__)

WIDTH, HEIGHT, FPS, SECONDS = 1280, 720, 30, 4

# The cached clip's name: a new name whenever its content changes, so no old cache is reused.
CLIP_NAME = "hopper_call_room_v2.mp4"

# Where her face is in the portrait (512x600): the tip of her nose; 40 px around it is all face.
PORTRAIT_FACE = (258.0, 262.0)
# The part of the portrait she is cut from (x0, y0, x1, y1): the flag's stripes reach in at
# the photo's bottom-left corner, left of her sleeve, and the model's matte is unsure on the
# photo's last rows and columns.
PORTRAIT_KEEP = (16, 0, 510, 598)
# Her placement: the portrait's bottom centre sits this far below the frame's bottom centre,
# at this scale; the motion (sway, lean, leaning in) is around that point.
PORTRAIT_ANCHOR = (256.0, 600.0)
SCALE, ANCHOR_BELOW = 1.15, 20.0
CUTOUT_PASSES, CUTOUT_SIZE = 4, 512


def demo_background(width: int = WIDTH, height: int = HEIGHT) -> np.ndarray:
    """A calm generated backdrop: a diagonal gradient with soft light discs. ``uint8 [H, W, 3]`` BGR."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    t = (x / width + y / height) / 2
    picture = np.dstack([120 + 100 * t, 60 + 80 * (1 - t), 40 + 60 * t])
    for cx, cy, radius in ((0.2, 0.3, 0.12), (0.8, 0.25, 0.18), (0.65, 0.8, 0.1)):
        disc = np.exp(-(((x - cx * width) ** 2 + (y - cy * height) ** 2) / (radius * width) ** 2))
        picture += 70 * disc[..., None]
    return np.clip(picture, 0, 255).astype(np.uint8)


# ---------------------------------------------------------------------------------------------
# The room the person is filmed in (what the demo removes)


def _colour(rng: np.random.Generator, low: int, high: int) -> tuple[int, int, int]:
    return tuple(int(c) for c in rng.integers(low, high, 3))


def room_background(width: int = WIDTH, height: int = HEIGHT, seed: int = 7) -> np.ndarray:
    """A generated home-office wall, busy on purpose. ``uint8 [H, W, 3]`` BGR, drawn for 1280x720.

    A window with half-drawn blinds and a tree outside (left), a framed picture
    (beside the person's head), a full bookshelf (right, behind her shoulder) and a
    plant, lit from the window, slightly soft, with sensor-like noise.
    """
    rng = np.random.default_rng(seed)
    canvas_w, canvas_h = 1280, 720
    y, x = np.mgrid[0:canvas_h, 0:canvas_w].astype(np.float32)
    light = 1.0 - 0.35 * (x / canvas_w) - 0.12 * (y / canvas_h)
    room = np.dstack([150 * light, 182 * light, 206 * light]).astype(np.uint8)

    # Window, blinds half down, a tree outside.
    x0, y0, x1, y1 = 30, 60, 250, 470
    cv2.rectangle(room, (x0 - 14, y0 - 14), (x1 + 14, y1 + 14), (228, 233, 236), -1)
    sky = np.linspace(0, 1, y1 - y0, dtype=np.float32)[:, None, None]
    pane = np.array([235, 200, 150], np.float32) * (1 - sky) + np.array([228, 222, 205], np.float32) * sky
    outside = np.ascontiguousarray(np.broadcast_to(pane, (y1 - y0, x1 - x0, 3)).astype(np.uint8))
    for _ in range(45):
        cx, cy = int(rng.integers(0, x1 - x0)), int(rng.integers((y1 - y0) // 3, y1 - y0))
        green = (int(rng.integers(50, 90)), int(rng.integers(110, 160)), int(rng.integers(60, 90)))
        cv2.circle(outside, (cx, cy), int(rng.integers(12, 40)), green, -1, cv2.LINE_AA)
    room[y0:y1, x0:x1] = outside
    for top in range(y0, y0 + (y1 - y0) // 2, 14):
        cv2.rectangle(room, (x0, top), (x1, top + 9), (200, 214, 222), -1)
        cv2.line(room, (x0, top + 10), (x1, top + 10), (140, 155, 165), 1)
    cv2.rectangle(room, ((x0 + x1) // 2 - 5, y0), ((x0 + x1) // 2 + 5, y1), (228, 233, 236), -1)
    cv2.rectangle(room, (x0, (y0 + y1) // 2 - 4), (x1, (y0 + y1) // 2 + 4), (228, 233, 236), -1)

    # A framed landscape on the wall beside her head. Hung behind it, the picture's shapes
    # touched her outline (its sun against the white top of her hat, a hill against the
    # dark band) and the model kept pieces of them in some frames.
    x0, y0, x1, y1 = 290, 90, 410, 250
    cv2.rectangle(room, (x0 - 12, y0 - 12), (x1 + 12, y1 + 12), (40, 60, 90), -1)
    cv2.rectangle(room, (x0, y0), (x1, y1), (150, 150, 80), -1)
    hills = np.int32([[x0, y1], [x0 + 40, y0 + 80], [x0 + 70, y0 + 105], [x1 - 25, y0 + 70], [x1, y0 + 95], [x1, y1]])
    cv2.fillPoly(room, [hills], (70, 120, 150), cv2.LINE_AA)
    cv2.circle(room, (x1 - 30, y0 + 32), 13, (120, 220, 250), -1, cv2.LINE_AA)

    # A bookshelf, full.
    x0, y0, x1, y1 = 900, 40, 1250, 720
    cv2.rectangle(room, (x0, y0), (x1, y1), (45, 75, 120), -1)
    shelves = np.linspace(y0 + 18, y1, 5).astype(int)
    for top, bottom in zip(shelves[:-1], shelves[1:]):
        left, right, floor = x0 + 16, x1 - 16, bottom - 16
        cv2.rectangle(room, (left, top), (right, floor), (30, 50, 80), -1)
        at = left + 4
        while True:
            if rng.random() < 0.08:  # a small object between the books
                if at + 44 > right:
                    break
                cv2.circle(room, (at + 20, floor - 18), 17, _colour(rng, 60, 220), -1, cv2.LINE_AA)
                at += 46
                continue
            thick, tall = int(rng.integers(10, 30)), int((floor - top) * rng.uniform(0.6, 0.95))
            if at + thick > right - 2:
                break
            spine = _colour(rng, 40, 200)
            cv2.rectangle(room, (at, floor - tall), (at + thick, floor), spine, -1)
            cv2.line(room, (at, floor - tall), (at, floor), tuple(max(0, c - 40) for c in spine), 1)
            cv2.line(room, (at + thick // 2 - 3, floor - tall + 12), (at + thick // 2 - 3, floor - tall + 40),
                     tuple(min(255, c + 70) for c in spine), 2)
            at += thick + int(rng.integers(0, 3))
        cv2.rectangle(room, (x0, floor), (x1, bottom), (60, 95, 145), -1)

    # A plant in a pot.
    cv2.fillPoly(room, [np.int32([[120, 600], [260, 600], [240, 720], [140, 720]])], (60, 90, 170), cv2.LINE_AA)
    for _ in range(26):
        angle, length = rng.uniform(-2.6, -0.5), rng.uniform(90, 200)
        centre = (int(190 + length / 2 * np.cos(angle)), int(600 + length / 2 * np.sin(angle)))
        leaf = (int(rng.integers(40, 70)), int(rng.integers(110, 170)), int(rng.integers(50, 80)))
        cv2.ellipse(room, centre, (int(length / 2), 12), float(np.degrees(angle)), 0, 360, leaf, -1, cv2.LINE_AA)

    room = cv2.GaussianBlur(room, (0, 0), 1.0)
    if (width, height) != (canvas_w, canvas_h):
        room = cv2.resize(room, (width, height), interpolation=cv2.INTER_AREA)
    noise = rng.normal(0.0, 2.5, room.shape).astype(np.float32)
    return np.clip(room.astype(np.float32) + noise, 0, 255).astype(np.uint8)


# ---------------------------------------------------------------------------------------------
# The person: cut out of the still once, by livematte itself


def matte_still(image: np.ndarray, passes: int = CUTOUT_PASSES, size: int = CUTOUT_SIZE) -> np.ndarray:
    """livematte's own matte of a still photo (RVM, ``passes`` passes): ``float32 [H, W]`` in [0, 1].

    RVM is recurrent: a first pass over a still leaves stray patches (here, of the
    flag); feeding the same picture again lets its state settle on the person.
    """
    import time

    from .. import models
    from .. import assembly
    from ..frames import Frame
    from ..models.base import ModelSettings

    # onnxruntime: float32 on every CPU (OpenVINO runs bf16 where the CPU has it), and it loads
    # in a fraction of OpenVINO's time (0.4 s against 5 s on the 2-core machine).
    settings = ModelSettings(name="rvm", size=size, runtime="onnxruntime")
    # Built without models.load, whose "model:" line is for the model that makes the demo's output.
    engine = assembly.still_engine(models.backend("rvm")(settings))
    alpha = None
    for index in range(passes):
        alpha = engine.process(Frame(index, image, index / FPS, time.perf_counter())).alpha
    return np.clip(alpha, 0.0, 1.0).astype(np.float32)


def _keep_person(alpha: np.ndarray, inside: tuple[float, float]) -> np.ndarray:
    """The connected region that holds the point ``inside``, solid within, soft at its edge only.

    Everything outside it (stray patches of the flag) goes; inside it, a few pixels in from
    the edge, the matte is made 1 (the white top of her hat against the photo's pale
    backdrop comes out of the model at 0.8: the room would show through it).
    """
    count, labels = cv2.connectedComponents((alpha > 0.5).astype(np.uint8))
    label = labels[int(inside[1]), int(inside[0])]
    if count < 2 or label == 0:
        raise LivematteError("the demo's cut-out lost the person: the matte of the portrait is empty at her face")
    region = (labels == label).astype(np.uint8)
    near = cv2.GaussianBlur(cv2.dilate(region, np.ones((9, 9), np.uint8)).astype(np.float32), (0, 0), 1.5)
    core = cv2.GaussianBlur(cv2.erode(region, np.ones((7, 7), np.uint8)).astype(np.float32), (0, 0), 1.0)
    return np.maximum(alpha * near, core)


def _person_colours(image: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """The person's own colours where the photo mixes her edge with its backdrop: ``float32 [H, W, 3]``.

    Solid pixels keep theirs; edge pixels take the mean of the nearby solid ones, so no
    blue of the photo's backdrop comes along into the room.
    """
    solid = (alpha > 0.97).astype(np.float32)
    picture = image.astype(np.float32)
    colours = picture.copy()
    missing = alpha <= 0.97
    for sigma in (3.0, 8.0, 24.0):
        weight = cv2.GaussianBlur(solid, (0, 0), sigma)
        mean = cv2.GaussianBlur(picture * solid[..., None], (0, 0), sigma) / np.maximum(weight, 1e-6)[..., None]
        fill = missing & (weight > 1e-3)
        colours[fill] = mean[fill]
        missing &= ~fill
    return colours


def _continue_sleeve(colours: np.ndarray, alpha: np.ndarray, column: int, outward: int,
                     width: int) -> tuple[np.ndarray, np.ndarray]:
    """``width`` columns past ``column`` (the photo's edge, ``outward`` = -1 left, +1 right).

    The photo crops her upper arm with a straight vertical edge; this continues the
    shoulder line from where it meets that edge into a rounded arm that drops out of the
    picture, textured with the jacket mirrored across the edge.
    """
    rows = alpha.shape[0]
    inside = np.nonzero(alpha[:, column] > 0.5)[0]
    meet = float(inside[0]) if inside.size else float(rows)
    inner = column - outward * 12
    inner_rows = np.nonzero(alpha[:, inner] > 0.5)[0]
    slope = max(0.0, (meet - inner_rows[0]) / 12.0) if inner_rows.size else 1.0  # shoulder: down, outward
    distance = np.arange(1, width + 1, dtype=np.float32)
    reach = width * 0.7  # the arm's outer edge, where the outline turns straight down
    t = np.clip(distance / reach, 0.0, 1.0)
    drop = meet + slope * distance + 0.45 * reach * (1.0 - np.sqrt(1.0 - t ** 2))
    drop[distance > reach] = rows * 4  # beyond the arm: nothing
    y = np.arange(rows, dtype=np.float32)[:, None]
    sleeve_alpha = np.clip(y - drop[None, :] + 0.5, 0.0, 1.0)
    sleeve_alpha = cv2.GaussianBlur(sleeve_alpha, (0, 0), 1.0)
    mirrored = column - outward * distance.astype(int)
    mirrored = np.clip(mirrored, 0, alpha.shape[1] - 1)
    sleeve_colours = colours[:, mirrored]
    if outward < 0:
        return sleeve_colours[:, ::-1], sleeve_alpha[:, ::-1]
    return sleeve_colours, sleeve_alpha


SLEEVE, BELOW = 90, 160  # how far the cut-out is continued past the photo's sides and bottom


def cut_out_person(portrait: np.ndarray, alpha: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The person alone, ready to film: (colours ``uint8 [h, w, 3]`` BGR, alpha ``float32 [h, w]``).

    The layer's pixel (x, y) is the portrait's (x + PORTRAIT_KEEP[0] - SLEEVE, y + PORTRAIT_KEEP[1]).
    """
    alpha = _keep_person(alpha, PORTRAIT_FACE)
    colours = _person_colours(portrait, alpha)
    x0, y0, x1, y1 = PORTRAIT_KEEP
    colours, alpha = colours[y0:y1, x0:x1], alpha[y0:y1, x0:x1]
    left = _continue_sleeve(colours, alpha, 0, -1, SLEEVE)
    right = _continue_sleeve(colours, alpha, alpha.shape[1] - 1, +1, SLEEVE)
    colours = np.concatenate([left[0], colours, right[0]], axis=1)
    alpha = np.concatenate([left[1], alpha, right[1]], axis=1)
    # Her body goes on below the photo's bottom edge: the lean never lifts it into view.
    colours = cv2.copyMakeBorder(colours, 0, BELOW, 0, 0, cv2.BORDER_REFLECT)
    alpha = cv2.copyMakeBorder(alpha, 0, BELOW, 0, 0, cv2.BORDER_REFLECT)
    return np.clip(colours + 0.5, 0, 255).astype(np.uint8), np.ascontiguousarray(alpha, dtype=np.float32)


def placement(index: int) -> np.ndarray:
    """``float64 [2, 3]``: portrait coordinates -> frame coordinates in frame ``index``.

    She sways from side to side, leans, and leans in once, as on a call; every motion
    is periodic over the clip, so the clip loops without a jump.
    """
    phase = 2 * np.pi * index / (FPS * SECONDS)
    sway = 55.0 * np.sin(phase)
    bob = 6.0 * np.sin(2 * phase)
    lean = np.radians(2.0 * np.sin(phase + 0.6))
    zoom = SCALE * (1.0 + 0.06 * (1.0 - np.cos(phase)) / 2)
    cos, sin = zoom * np.cos(lean), zoom * np.sin(lean)
    ax, ay = PORTRAIT_ANCHOR
    fx, fy = WIDTH / 2 + sway, HEIGHT + ANCHOR_BELOW + bob
    return np.array([[cos, -sin, fx - cos * ax + sin * ay],
                     [sin, cos, fy - sin * ax - cos * ay]])


def to_frame(index: int, point: tuple[float, float]) -> tuple[float, float]:
    """Where the portrait's ``point`` is in frame ``index``."""
    x, y = placement(index) @ np.array([point[0], point[1], 1.0])
    return float(x), float(y)


def film(index: int, colours: np.ndarray, alpha: np.ndarray, room: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Frame ``index`` of the clip from :func:`cut_out_person`'s layer and the room:
    (``uint8 [H, W, 3]`` BGR frame, ``float32 [H, W]`` how much of each pixel is her).
    """
    layer_to_portrait = np.array([[1.0, 0.0, PORTRAIT_KEEP[0] - SLEEVE],
                                  [0.0, 1.0, PORTRAIT_KEEP[1]],
                                  [0.0, 0.0, 1.0]])
    matrix = placement(index) @ layer_to_portrait
    person = cv2.warpAffine(colours, matrix, (WIDTH, HEIGHT), flags=cv2.INTER_LINEAR)
    cover = cv2.warpAffine(alpha, matrix, (WIDTH, HEIGHT), flags=cv2.INTER_LINEAR)
    return cv2.blendLinear(person, room, cover, 1.0 - cover), cover


def make_clip(path: Path) -> Path:
    """Film the cut-out person over the room: a 720p H.264 clip (she moves, as on a call)."""
    from ..media.writing import VideoWriter

    portrait = sample_portrait()
    log.info("cutting the person out of the sample portrait (once, with livematte's own model)")
    colours, alpha = cut_out_person(portrait, matte_still(portrait))
    room = room_background()
    with VideoWriter(path, width=WIDTH, height=HEIGHT, rate=Fraction(FPS), crf=16) as writer:
        for index in range(FPS * SECONDS):
            writer.write(film(index, colours, alpha, room)[0], index / FPS)
    return path


def prepare_inputs() -> tuple[Path, Path]:
    """(clip, background) in the cache, made once."""
    folder = cache_dir() / "demo"
    folder.mkdir(parents=True, exist_ok=True)
    clip, background = folder / CLIP_NAME, folder / "backdrop.png"
    if not clip.is_file():
        log.info("making the demo clip %s", clip)
        make_clip(clip)
    if not background.is_file():
        from ..media.images import write_png

        write_png(background, demo_background())
    return clip, background
