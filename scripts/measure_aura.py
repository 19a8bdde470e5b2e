"""The blur background's aura: the person's colours spread into the blurred background beside them.

Runs a clip through the offline pipeline as ``livematte video CLIP --background blur`` does (the
command's own config, model, engine and compositor, from :mod:`livematte.assembly`), and on every
5th frame measures, with brightness the mean of B, G and R (levels, 0..255):

- aura: output minus source brightness in the ring 3-10 px outside the matte (the pixels within
  10 px of alpha > 0.05 but not within 3 px: a disc's dilation, by distance transform), minus the
  same in the ring 25-60 px out; the mean over the frames. 0: the blur beside the person is the
  wall's own; above 0 a bright aura, below 0 a dark one. "aura of |change|" is the same with
  ``|output - source|``: how much more the picture departs from the source beside the person.
- sharpness: the far ring's Laplacian energy (the mean squared ``cv2.Laplacian`` of the grey
  output) as a share of the source's in the same ring: under 1 means blurred.

``--compare`` adds the whole-frame blur (livematte's before issue 23: the person blurred in with
the wall), its code kept here, with the same strength, composited with the same matte and
colours, so one run gives both. ``--time`` then times the composite stage (background and blend)
of both on the frames measured, in CPU time: the median of 100; run it under ``taskset -c 0``
for one core.

    python scripts/measure_aura.py [--clip ../shared/data/clips/s18.mp4] [--every 5] [--compare] [--time]
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from livematte import assembly, cli
from livematte.commands.video import video_job
from livematte.compose.backgrounds import Background, Blur
from livematte.compose.compositor import Compositor
from livematte.frames import Frame
from livematte.sources.capture import FileSource

REPO_ROOT = Path(__file__).resolve().parents[1]
SUPPORT = 0.05  # the matte: alpha above this
NEAR, FAR = (3, 10), (25, 60)  # px outside the matte: (not within, within)
TARGETS = "targets: |aura| <= 2 levels, far-ring Laplacian share <= 0.65"


def rings(alpha: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Boolean ``[H, W]`` masks of the near and far rings around ``alpha`` (``float32 [H, W]``)'s
    pixels above ``SUPPORT``: the pixels whose distance to them lies in (3, 10] and (25, 60] px."""
    outside = (alpha <= SUPPORT).astype(np.uint8)
    distance = cv2.distanceTransform(outside, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    return tuple((distance > low) & (distance <= high) for low, high in (NEAR, FAR))


def aura(source: np.ndarray, output: np.ndarray, alpha: np.ndarray, absolute: bool = False) -> float | None:
    """Output minus source brightness (mean of B, G, R) in the near ring minus the same in the far
    ring, levels (``absolute``: of the change's size, ``|output - source|``); None when a ring is
    empty (no person, or one that fills the frame)."""
    near, far = rings(alpha)
    if not near.any() or not far.any():
        return None
    change = output.astype(np.float32).mean(axis=2) - source.astype(np.float32).mean(axis=2)
    if absolute:
        change = np.abs(change)
    return float(change[near].mean() - change[far].mean())


def laplacian_energy(image: np.ndarray, mask: np.ndarray) -> float:
    """The mean squared Laplacian of ``image`` (``uint8`` BGR) in grey over ``mask``'s pixels."""
    grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY).astype(np.float32)
    return float((cv2.Laplacian(grey, cv2.CV_32F) ** 2)[mask].mean())


def sharpness(source: np.ndarray, output: np.ndarray, alpha: np.ndarray) -> float | None:
    """The far ring's Laplacian energy in ``output`` as a share of ``source``'s; None when the
    ring is empty or flat in the source."""
    far = rings(alpha)[1]
    if not far.any():
        return None
    reference = laplacian_energy(source, far)
    return laplacian_energy(output, far) / reference if reference > 0 else None


class WholeFrameBlur(Background):
    """livematte's ``blur:N`` before issue 23, kept here for the comparison only: the whole frame,
    the person included, blurred at an eighth of its size (its code as it was)."""

    def __init__(self, strength: int):
        self.strength, self.spec = strength, f"blur:{strength} (whole frame)"

    def render(self, image, pts, alpha=None):
        h, w = image.shape[:2]
        small = cv2.resize(image, (max(1, w // 8), max(1, h // 8)), interpolation=cv2.INTER_AREA)
        sigma = self.strength / 8.0
        small = cv2.GaussianBlur(small, (0, 0), sigmaX=sigma, sigmaY=sigma)
        return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def run(clip: str, background: str, every: int, compare: bool, keep: int):
    """The clip through ``livematte video``'s pipeline -> ({name: [(aura, aura of |change|, sharpness)]
    per measured frame}, the compositors by name, up to ``keep`` measured frames as (image, alpha, pts, colours))."""
    with tempfile.TemporaryDirectory() as scratch:  # the command checks its output's name; nothing is written
        args = cli.build_parser().parse_args(["video", clip, "--background", background,
                                              "-o", str(Path(scratch) / "out.mp4")])
        config = video_job(args).config
    compositors = {"person-free blur": assembly.compositor(config)}
    if compare:
        if not isinstance(compositors["person-free blur"].background, Blur):
            sys.exit(f"measure_aura: --compare needs a blur background, not {background!r}")
        strength = compositors["person-free blur"].background.strength
        compositors = {"whole-frame blur": assembly.compositor(config, WholeFrameBlur(strength)),
                       **compositors}
    figures = {name: [] for name in compositors}
    kept = []
    with contextlib.ExitStack() as stack:
        for compositor in compositors.values():
            stack.callback(compositor.close)
        source = stack.enter_context(contextlib.closing(FileSource(clip, strict=True)))
        matter = assembly.load_models(config, stack, governed=False).matter
        engine = assembly.video_engine(config, matter, source.info.width, source.info.height)
        for index, (image, pts) in enumerate(source.frames()):
            matted = engine.process(Frame(index, image, pts, time.perf_counter()))  # every frame: the model's state
            if index % every:
                continue
            for name, compositor in compositors.items():
                output = compositor.composite(image, matted.alpha, pts, matted.foreground)
                figures[name].append((aura(image, output, matted.alpha), aura(image, output, matted.alpha, True),
                                      sharpness(image, output, matted.alpha)))
            if len(kept) < keep:
                kept.append((image, matted.alpha, pts, matted.foreground))
    return figures, compositors, kept


def composite_ms(compositors: dict[str, Compositor], frames: list, runs: int = 100) -> dict[str, float]:
    """Each compositor's median CPU ms (this process's, so other processes on a shared machine do
    not count) over ``runs`` composites, cycling through ``frames``; the compositors take turns
    frame by frame, so the caches and the clock's speed treat them alike."""
    times = {name: [] for name in compositors}
    for k in range(-len(compositors), runs):  # the first calls are not counted
        image, alpha, pts, colours = frames[k % len(frames)]
        for name, compositor in compositors.items():
            start = time.process_time()
            compositor.composite(image, alpha, pts, colours)
            if k >= 0:
                times[name].append(time.process_time() - start)
    return {name: float(np.median(ms) * 1e3) for name, ms in times.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clip", default=str(REPO_ROOT.parent / "shared" / "data" / "clips" / "s18.mp4"))
    parser.add_argument("--background", default="blur", help="a blur SPEC (default: blur, i.e. blur:25)")
    parser.add_argument("--every", type=int, default=5, help="measure every Nth frame (default 5)")
    parser.add_argument("--compare", action="store_true", help="the whole-frame blur beside the person-free one")
    parser.add_argument("--time", action="store_true", help="time the composite stage of each (ms, median of 100)")
    args = parser.parse_args(argv)
    if not Path(args.clip).is_file():
        sys.exit(f"measure_aura: no {args.clip}; give --clip FILE")
    figures, compositors, kept = run(args.clip, args.background, max(1, args.every), args.compare,
                                     keep=30 if args.time else 0)
    print(f"{Path(args.clip).name}, --background {args.background}, every {args.every}th frame; "
          "brightness = mean of B, G, R")
    print(f"{'':18s} {'frames':>6s} {'aura (levels)':>14s} {'min..max':>14s} {'aura of |change|':>17s} "
          f"{'far Laplacian share':>20s}")
    for name, rows in figures.items():
        auras, sizes, shares = ([row[k] for row in rows if row[k] is not None] for k in range(3))
        if not auras or not shares:
            print(f"{name:18s} no frame measured: no person, or one that fills the frame")
            continue
        print(f"{name:18s} {len(auras):6d} {np.mean(auras):+14.2f} {min(auras):+6.1f}..{max(auras):+6.1f} "
              f"{np.mean(sizes):+17.2f} {np.mean(shares):20.3f}")
    print(TARGETS)
    if args.time:
        height, width = kept[0][0].shape[:2]
        for name, ms in composite_ms(compositors, kept).items():
            print(f"{name:18s} composite (background + blend) {ms:.2f} CPU ms a frame "
                  f"(median of 100 over {len(kept)} {width}x{height} frames)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
