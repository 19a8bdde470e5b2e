"""Before and after crops of the composite, saved as PNGs for eyes to judge.

- s18.mp4 (a talking head, hair over a bright wall) on a white and on a dark background: the
  raw frame's colours (``--foreground off``, before) against the estimated foreground (after).
- s18.mp4 on ``--background blur`` (``live``'s default): the old blur of the whole frame, whose
  person spreads a halo of their own colours into the background beside them (an aura), against
  the person-free blur (the matte left out of the blur), around the head and shoulder.
- d0.mp4 (a green screen) on a dark background: foreground colours without and with ``--despill``
  (``auto``: the screen's colour measured from the frame).
- a fixed camera's clip (scripts/make_fixed_camera_clips.py's ``fixed00_home``: dark curly hair over
  a bright sky, built into a temporary folder) on white: the estimated foreground without and with
  the background plate (``--plate auto``), which has learnt the sky from the earlier frames. (s18's
  camera drifts, so the plate rightly stays out of the way there.)

Each PNG puts before and after side by side (a 2x crop around the hair, the matte's soft band
shown in the title row); the frames are matted with the engine users run (``live`` preset).

    python scripts/composite_pictures.py [-o results/pictures] [--shared ../shared]
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from pathlib import Path

import av
import cv2
import numpy as np

from livematte import assembly, config, models
from livematte.compose.backgrounds import parse_background
from livematte.compose.compositor import blend
from livematte.frames import Frame
from livematte.matte.finishing import CompositeSettings
from make_fixed_camera_clips import build as build_fixed

REPO_ROOT = Path(__file__).resolve().parents[1]


def frames(path: Path, picks: list[int]) -> dict[int, np.ndarray]:
    """The frames numbered ``picks`` (and every earlier one, decoded to keep RVM's state): index -> BGR."""
    out = {}
    with av.open(str(path)) as container:
        for k, frame in enumerate(container.decode(video=0)):
            out[k] = frame.to_ndarray(format="bgr24")
            if k >= max(picks):
                break
    return out


def matted(images: dict[int, np.ndarray], composite: CompositeSettings, settings) -> dict:
    matter = models.load(settings.model)
    engine = assembly.engine(dataclasses.replace(settings, composite=composite), matter)
    out = {k: engine.process(Frame(k, image, k / 30, time.perf_counter())) for k, image in images.items()}
    matter.close()
    return out


def hair_box(alpha: np.ndarray, size: int, half_person: bool = False) -> tuple[int, int]:
    """Top-left (x, y) of a ``size`` square centred on the densest soft part of the matte;
    ``half_person``: among squares about half person, half background (where a blur's aura shows)."""
    soft = ((alpha > 0.05) & (alpha < 0.95)).astype(np.float32)
    density = cv2.blur(soft, (size, size))
    if half_person:
        density[np.abs(cv2.blur(alpha, (size, size)) - 0.5) > 0.15] = -1  # mostly person or mostly wall
    y, x = np.unravel_index(np.argmax(density), density.shape)
    h, w = alpha.shape
    return int(np.clip(x - size // 2, 0, w - size)), int(np.clip(y - size // 2, 0, h - size))


def side_by_side(left: np.ndarray, right: np.ndarray, box, size: int, labels: tuple[str, str]) -> np.ndarray:
    x, y = box
    tiles = []
    for picture, label in zip((left, right), labels):
        crop = cv2.resize(picture[y:y + size, x:x + size], (2 * size, 2 * size), interpolation=cv2.INTER_NEAREST)
        cv2.putText(crop, label, (8, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (0, 0, 255), 2)
        tiles.append(crop)
    return np.hstack([tiles[0], np.full((2 * size, 6, 3), 128, np.uint8), tiles[1]])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", type=Path, default=REPO_ROOT / "results" / "pictures")
    parser.add_argument("--shared", type=Path, default=REPO_ROOT.parent / "shared")
    args = parser.parse_args(argv)
    clips = args.shared / "data" / "clips"
    if not clips.is_dir():
        sys.exit(f"composite_pictures: no {clips}; give --shared DIR")
    args.output.mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, str(args.shared / "tools"))
    from composite_truth import offsets  # the fixed-camera clip's motion, as the composited clips'
    settings = config.load("live")
    written = []

    picks = [60, 150]
    images = frames(clips / "s18.mp4", picks)
    result = matted(images, CompositeSettings(), settings)
    for k in picks:
        m = result[k]
        box = hair_box(m.alpha, 160)
        for name, colour in (("white", (255, 255, 255)), ("dark", (40, 30, 20))):
            behind = np.empty_like(m.frame.image)
            behind[:] = colour
            before = blend(m.frame.image, behind, m.alpha)
            after = blend(m.colours, behind, m.alpha)
            path = args.output / f"s18_frame{k}_{name}_foreground.png"
            cv2.imwrite(str(path), side_by_side(before, after, box, 160, ("raw frame colours", "foreground colours")))
            written.append(path)
        # The blur's edge: half person, half wall, so the ring the aura lies in shows.
        blur = parse_background("blur")
        whole = blend(m.colours, blur.render(m.frame.image, k / 30), m.alpha)
        person_free = blend(m.colours, blur.render(m.frame.image, k / 30, m.alpha), m.alpha)
        path = args.output / f"s18_frame{k}_blur_edge.png"
        cv2.imwrite(str(path), side_by_side(whole, person_free, hair_box(m.alpha, 240, half_person=True), 240,
                                            ("whole-frame blur", "person-free blur")))
        written.append(path)

    picks = [30, 60]
    with tempfile.TemporaryDirectory() as folder:
        build_fixed(Path(folder) / "fixed00_home", args.shared, "fixed00_home", 90, offsets)
        images = frames(Path(folder) / "fixed00_home" / "input.mp4", picks)
    result = matted(images, CompositeSettings(), settings)
    plated = matted(images, CompositeSettings(plate="auto"), settings)
    for k in picks:
        box = hair_box(result[k].alpha, 160)
        behind = np.empty_like(images[k])
        behind[:] = (255, 255, 255)
        before = blend(result[k].colours, behind, result[k].alpha)
        after = blend(plated[k].colours, behind, plated[k].alpha)
        path = args.output / f"fixed00_frame{k}_white_plate.png"
        cv2.imwrite(str(path), side_by_side(before, after, box, 160, ("foreground colours", "with the plate")))
        written.append(path)

    picks = [20, 50]
    images = frames(clips / "d0.mp4", picks)
    plain = matted(images, CompositeSettings(), settings)
    despilled = matted(images, CompositeSettings(despill="auto"), settings)
    for k in picks:
        behind = np.empty_like(images[k])
        behind[:] = (40, 30, 20)
        before = blend(plain[k].colours, behind, plain[k].alpha)
        after = blend(despilled[k].colours, behind, despilled[k].alpha)
        box = hair_box(plain[k].alpha, 128)
        path = args.output / f"d0_frame{k}_despill.png"
        cv2.imwrite(str(path), side_by_side(before, after, box, 128, ("no despill", "--despill")))
        written.append(path)
    for path in written:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
