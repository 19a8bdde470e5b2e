"""Still-image mode: mattes, cut-outs and composites for image files, URLs and folders."""

from __future__ import annotations

import argparse
import contextlib
import logging
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ..media import images as image_files
from ..media.images import write_png
from .. import assembly, models
from ..compose.compositor import Compositor
from ..errors import LivematteError
from ..frames import Frame, Matted, alpha_to_u8
from ..media.outpaths import check_outputs, unique_stems
from ..models.base import Matter, ModelSettings

log = logging.getLogger(__name__)


def matte_still(matter: Matter, image_bgr: np.ndarray) -> Matted:
    """``uint8 [H, W, 3]`` BGR -> its matte and foreground colours at the image's own size."""
    engine = assembly.still_engine(matter)
    return engine.process(Frame(0, image_bgr, 0.0, time.perf_counter()))


def matte_image(matter: Matter, image_bgr: np.ndarray) -> np.ndarray:
    """``uint8 [H, W, 3]`` BGR -> ``float32 [H, W]`` alpha at the image's own size."""
    return matte_still(matter, image_bgr).alpha


@dataclass(frozen=True)
class ImageJob:
    inputs: list[str]
    output_dir: Path
    background: str | None
    model: ModelSettings
    overwrite: bool = False  # -y: replace PNGs that exist in output_dir


def run_images(job: ImageJob) -> int:
    """Process every input; -> the number that failed (each failure is logged by name)."""
    sources = image_files.list_inputs(job.inputs[0]) if len(job.inputs) == 1 else list(job.inputs)
    stems = unique_stems(sources, image_files.stem_of)
    written = [path for stem in stems for kind, path in output_paths(job.output_dir, stem).items()
               if kind != "composite" or job.background is not None]
    check_outputs(sources, written, overwrite=job.overwrite)
    # A missing single input is the user's typo: report it before loading a model
    # (and keep the picture for processing).
    preread = image_files.read(sources[0]) if len(sources) == 1 else None
    compositor = assembly.background_compositor(job.background) if job.background is not None else None
    job.output_dir.mkdir(parents=True, exist_ok=True)
    settings = job.model
    if settings.size == 0:  # the backend's size for stills, larger than for video where it has one
        settings = replace(settings, size=models.backend(models.choose(settings)[0]).still_size)
    matter = models.load(settings)
    failed = 0
    with contextlib.closing(matter):
        for source, stem in zip(sources, stems):
            try:
                written = process_one(matter, source, output_paths(job.output_dir, stem), compositor, preread)
            except LivematteError as e:
                if len(sources) == 1:
                    raise
                failed += 1
                log.error("skipped %s: %s", source, e)
                continue
            log.info("%s -> %s", source, ", ".join(p.name for p in written))
    if failed:
        log.error("%d of %d images failed", failed, len(sources))
    return failed


def output_paths(output_dir: Path, stem: str) -> dict[str, Path]:
    """What :func:`process_one` writes, by kind: alpha, foreground and (with a background) composite."""
    return {kind: output_dir / f"{stem}_{kind}.png" for kind in ("alpha", "foreground", "composite")}


def process_one(matter: Matter, source: str, paths: dict[str, Path], compositor: Compositor | None,
                image: np.ndarray | None = None) -> list[Path]:
    """Matte ``source`` (``image``, when it has been read already) and write its PNGs to ``paths``."""
    image = image_files.read(source) if image is None else image
    matted = matte_still(matter, image)
    alpha_u8 = alpha_to_u8(matted.alpha)
    # The cut-out carries the estimated foreground colours with straight alpha.
    outputs = {paths["alpha"]: alpha_u8, paths["foreground"]: np.dstack([matted.colours, alpha_u8])}
    if compositor is not None:
        outputs[paths["composite"]] = compositor.composite(image, matted.alpha, 0.0, matted.foreground)
    for path, picture in outputs.items():
        write_png(path, picture)
    return list(outputs)


def main(args: argparse.Namespace) -> int:
    """``livematte image``."""
    from .options import model_settings

    job = ImageJob(inputs=args.input, output_dir=args.output_dir, background=args.background,
                   model=model_settings(args), overwrite=args.overwrite)
    return 1 if run_images(job) else 0
