"""Build fixed-camera test clips with exact truth: a still background, a portrait that moves.

The layout is ../shared/data/composited's, so ``scripts/eval_composite.py --clips-dir DIR`` scores
them and ../shared/tools/composite_truth.py rebuilds their truth: each clip folder holds
``input.mp4`` (H.264 crf 12, yuv420p), ``alpha.mkv`` (the exact alpha, FFV1 gray) and
``meta.json``. The portrait is placed as that tool places it (95 % of the frame's height,
bottom-aligned, its motion: slow sway, still, fast swing), and every frame is exactly
``I = a * F + (1 - a) * B_t``, ``a`` being alpha.mkv's frame. Unlike the composited clips the
camera does not move: ``B_t`` is one still cover-fitted to the frame, with, per clip, the
camera's own noise (Gaussian, ``noise`` levels) and a slow change of light (``light``: the
background's brightness swings by that fraction over the clip), as a webcam in a room gives.

``F`` is the portrait photo's own colours, as in the composited clips, where its soft pixels still
hold some of the photo's own background: a strand there is ``a`` person-and-old-background over
``B_t``, two backgrounds in one pixel, which no camera gives. ``--foreground clean`` takes the
photo's background out first (pymatting's multilevel foreground estimate, ``pip install
"livematte[eval]"``): every pixel then holds the person's colour and one background, as a camera
sees a person. Those clips keep their ``F`` in ``foreground.png`` (8-bit BGR, the portrait's placed
size, the exact values the frames were built from), which ``scripts/eval_composite.py`` takes as
the truth's colours.

    python scripts/make_fixed_camera_clips.py -o /tmp/fixed [--frames 90] [--shared ../shared]
    python scripts/make_fixed_camera_clips.py -o /tmp/fixed-clean --foreground clean

Never writes into the repository: the clips are test data, rebuilt on demand.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import av
import cv2
import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
WIDTH, HEIGHT, FPS = 1280, 720, 30
# name: (portrait, background, camera noise in levels, light swing as a fraction)
CLIPS = {
    "fixed00_home": ("p_22fc0130.jpg", "home.jpg", 0.0, 0.0),
    "fixed01_coffee": ("p_514ca06a.jpg", "coffee.png", 2.0, 0.0),
    "fixed02_building": ("p_818e689d.jpg", "building.jpg", 2.0, 0.08),
    "fixed03_brick": ("p_51c916fc.jpg", "brick.png", 1.5, 0.05),
}


def cover(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """``image`` scaled to cover ``width`` x ``height`` and centre-cropped to it."""
    scale = max(width / image.shape[1], height / image.shape[0])
    w, h = max(width, round(image.shape[1] * scale)), max(height, round(image.shape[0] * scale))
    scaled = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC)
    x, y = (w - width) // 2, (h - height) // 2
    return scaled[y:y + height, x:x + width]


def placed_portrait(portraits: Path, name: str) -> tuple[np.ndarray, np.ndarray]:
    """The portrait (``float32 [fh, fw, 3]`` BGR) and its alpha (``uint8 [fh, fw]``), sized exactly
    as composite_truth.truth sizes them."""
    photo = cv2.imread(str(portraits / "image" / name))
    alpha = cv2.imread(str(portraits / "alpha" / (Path(name).stem + ".png")), cv2.IMREAD_GRAYSCALE)
    if photo is None or alpha is None:
        sys.exit(f"make_fixed_camera_clips: cannot read portrait {name} (image and alpha) in {portraits}")
    s = HEIGHT * 0.95 / photo.shape[0]
    fw, fh = int(photo.shape[1] * s), int(photo.shape[0] * s)
    if fw > WIDTH:
        s = WIDTH / photo.shape[1]
        fw, fh = int(photo.shape[1] * s), int(photo.shape[0] * s)
    photo = cv2.resize(photo, (fw, fh), interpolation=cv2.INTER_AREA).astype(np.float32)
    return photo, cv2.resize(alpha, (fw, fh), interpolation=cv2.INTER_AREA)


def clean_foreground(photo: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """The person's colours without the photo's own background (``float32 [fh, fw, 3]`` BGR,
    whole levels) from the photo (``float32`` BGR levels) and its alpha (``uint8``)."""
    try:
        from pymatting import estimate_foreground_ml
    except ImportError:
        sys.exit('make_fixed_camera_clips: --foreground clean needs pymatting: pip install "livematte[eval]"')
    colours = estimate_foreground_ml(photo.astype(np.float64) / 255, alpha.astype(np.float64) / 255)
    return np.round(np.clip(colours, 0, 1) * 255).astype(np.float32)


def build(out: Path, shared: Path, name: str, frames: int, offsets, clean: bool = False) -> None:
    portrait, background, noise, light = CLIPS[name]
    data = shared / "data"
    still = cv2.imread(str(data / "backgrounds" / background))
    if still is None:
        sys.exit(f"make_fixed_camera_clips: cannot read background {background}")
    still = cover(still, WIDTH, HEIGHT).astype(np.float32)
    photo, photo_alpha = placed_portrait(data / "portraits", portrait)
    fh, fw = photo_alpha.shape
    y0, xs = HEIGHT - fh, offsets(frames, WIDTH, fw)
    rng = np.random.default_rng(sum(name.encode()))
    out.mkdir(parents=True, exist_ok=True)
    if clean:
        photo = clean_foreground(photo, photo_alpha)
        cv2.imwrite(str(out / "foreground.png"), photo.astype(np.uint8))
    else:
        (out / "foreground.png").unlink(missing_ok=True)  # a clip rebuilt in place takes the photo's again
    with av.open(str(out / "input.mp4"), "w") as video, av.open(str(out / "alpha.mkv"), "w") as mattes:
        stream = video.add_stream("libx264", rate=FPS, options={"crf": "12"})
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        matte_stream = mattes.add_stream("ffv1", rate=FPS)
        matte_stream.width, matte_stream.height, matte_stream.pix_fmt = WIDTH, HEIGHT, "gray"
        for t in range(frames):
            alpha8 = np.zeros((HEIGHT, WIDTH), np.uint8)
            alpha8[y0:, xs[t]:xs[t] + fw] = photo_alpha
            fg = np.zeros((HEIGHT, WIDTH, 3), np.float32)
            fg[y0:, xs[t]:xs[t] + fw] = photo
            behind = still * np.float32(1 + light * math.sin(2 * math.pi * t / frames))
            if noise:
                behind = behind + rng.normal(0, noise, behind.shape).astype(np.float32)
            a = (alpha8.astype(np.float32) / 255)[..., None]
            image = np.clip(a * fg + (1 - a) * behind + 0.5, 0, 255).astype(np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="bgr24")):
                video.mux(packet)
            for packet in matte_stream.encode(av.VideoFrame.from_ndarray(alpha8, format="gray")):
                mattes.mux(packet)
        video.mux(stream.encode())
        mattes.mux(matte_stream.encode())
    still_start, still_end = math.ceil(frames * 0.4), math.ceil(frames * 0.6)  # as offsets() splits them
    meta = {"portrait": portrait, "background": background, "background_kind": "fixed",
            "size": [WIDTH, HEIGHT], "fps": FPS, "frames": frames,
            "segments": {"sway": [0, still_start], "still": [still_start, still_end], "fast": [still_end, frames]},
            "camera": {"noise": noise, "light": light}, "foreground": "clean" if clean else "photo"}
    (out / "meta.json").write_text(json.dumps(meta, indent=1))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", type=Path, required=True, help="folder for the clip folders (outside the repo)")
    parser.add_argument("--shared", type=Path, default=REPO_ROOT.parent / "shared")
    parser.add_argument("--frames", type=int, default=90, help="frames per clip (default 90, as the composited clips)")
    parser.add_argument("--clips", nargs="*", default=None, help=f"which ({', '.join(CLIPS)}; default all)")
    parser.add_argument("--foreground", choices=("photo", "clean"), default="photo",
                        help="the person's colours: the portrait photo's own (default, as the composited clips), "
                             "or clean: without the photo's background (needs pymatting)")
    args = parser.parse_args(argv)
    if args.output.resolve().is_relative_to(REPO_ROOT):
        sys.exit("make_fixed_camera_clips: the clips are test data: write them outside the repository")
    tools = args.shared / "tools"
    if not (tools / "composite_truth.py").is_file():
        sys.exit(f"make_fixed_camera_clips: no {tools / 'composite_truth.py'}; give --shared DIR")
    sys.path.insert(0, str(tools))
    from composite_truth import offsets  # the composited clips' own motion, so the tool's truth matches

    for name in args.clips or CLIPS:
        if name not in CLIPS:
            sys.exit(f"make_fixed_camera_clips: no clip {name!r}; expected one of {', '.join(CLIPS)}")
        build(args.output / name, args.shared, name, args.frames, offsets, clean=args.foreground == "clean")
        print(args.output / name, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
