"""What the viewer sees beyond the matte itself: the main person, edge controls, the person's
own colours at the edge, and spill. Settings are the config's ``[composite]`` section.

:class:`Finisher` runs on the engine's thread after the matte is finished, in frame order:

1. ``subject = "main"``: everyone but the main person faded out (:mod:`livematte.matte.subject`);
   then ``plate = "auto"``: the soft edge measured against the background behind the person,
   learnt from the frames of a camera that stands still or pans (:mod:`livematte.matte.plate`),
   where it is known;
2. edge controls, in this order: ``threshold`` (a hard matte), ``grow`` (px, negative
   shrinks), ``feather`` (px, outwards) (:mod:`livematte.matte.edges`);
3. foreground colours (:mod:`livematte.matte.foreground`) where either matte, the model's or the
   edited one, is soft: RVM's own colour coefficients (``auto``), or blur fusion (``auto`` for
   backends without them, or ``blur``); ``off`` composites the frame's own colours; where the
   plate is known, the colours are the frame's less the plate's share;
4. ``despill`` (``off``, ``auto`` or ``#RRGGBB``) at the soft pixels and the person's pixels near the
   edge (:mod:`livematte.matte.despill`).

``light_wrap`` (0..1) is the compositor's: it needs the new background.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

import numpy as np

from . import despill, edges, foreground
from .plate import PLATE_MODES, BackgroundPlate
from ..errors import LivematteError
from ..frames import GuidedMatte

FOREGROUND_MODES = ("auto", "blur", "off")
SUBJECTS = ("all", "main")
MAX_EDGE_PX = 100


def _key_colour(text: str) -> tuple[int, int, int]:
    """``#RRGGBB``, ``#RGB`` or a CSS name -> (B, G, R), or ValueError (the config turns it into its one-line error)."""
    from ..compose.colors import color_hint, parse_color

    try:
        return parse_color(text)
    except LivematteError:
        raise ValueError(f"despill got {text!r}, expected off, auto or a key colour: #RRGGBB, #RGB or a CSS "
                         f"name{color_hint(text)}") from None


@dataclass(frozen=True)
class CompositeSettings:
    """foreground: ``auto`` (the model's own colour estimate, else blur fusion), ``blur`` or ``off``.
    despill: ``off``, ``auto`` (a key-coloured backdrop detected from the frames) or ``#RRGGBB``.
    grow: px the edge moves out (negative: in), -100..100. feather: px of outward softening, 0..100.
    threshold: 0 (off) or the matte level above which the matte is 1 and below which 0, (0, 1].
    light_wrap: 0 (off) .. 1, the new background's light on the person's edge.
    subject: ``all`` people, or the ``main`` one only.
    plate: ``auto`` learns the background behind the person and uses it at the edge (it follows
    a camera that pans and steps aside where the camera jumps or the scene changes), ``off`` does not.
    """

    foreground: str = "auto"
    despill: str = "off"
    grow: int = 0
    feather: float = 0.0
    threshold: float = 0.0
    light_wrap: float = 0.0
    subject: str = "all"
    plate: str = "off"

    def __post_init__(self):
        if self.foreground not in FOREGROUND_MODES:
            raise ValueError(f"foreground got {self.foreground!r}, expected one of {', '.join(FOREGROUND_MODES)}")
        if self.despill not in ("off", "auto") and despill.key_of(_key_colour(self.despill)) is None:
            raise ValueError(f"despill got {self.despill!r}: not a key colour (one channel must be at least "
                             f"{despill.MIN_KEY_RATIO}x both others, e.g. #263D29 or #00FF00)")
        if not -MAX_EDGE_PX <= self.grow <= MAX_EDGE_PX:
            raise ValueError(f"grow got {self.grow!r}, expected -{MAX_EDGE_PX}..{MAX_EDGE_PX} px")
        if not 0 <= self.feather <= MAX_EDGE_PX:
            raise ValueError(f"feather got {self.feather!r}, expected 0..{MAX_EDGE_PX} px")
        if not 0 <= self.threshold <= 1:
            raise ValueError(f"threshold got {self.threshold!r}, expected 0 (off) or a matte level up to 1")
        if not 0 <= self.light_wrap <= 1:
            raise ValueError(f"light_wrap got {self.light_wrap!r}, expected 0 (off) .. 1")
        if self.subject not in SUBJECTS:
            raise ValueError(f"subject got {self.subject!r}, expected one of {', '.join(SUBJECTS)}")
        if self.plate not in PLATE_MODES:
            raise ValueError(f"plate got {self.plate!r}, expected one of {', '.join(PLATE_MODES)}")

    @property
    def wants_colour(self) -> bool:
        """Whether a model's colour coefficients are used (so worth smoothing and cropping)."""
        return self.foreground == "auto"


class Finisher:
    """Per stream, in frame order (the main person, a detected key and the background plate are
    followed); ``reset`` for a new stream or a scene cut."""

    def __init__(self, settings: CompositeSettings = CompositeSettings()):
        from .subject import MainSubject

        self.settings = settings
        self._subject = MainSubject() if settings.subject == "main" else None
        self.plate = BackgroundPlate() if settings.plate == "auto" else None
        self._key = despill.KeyDetector() if settings.despill == "auto" else None
        self._fixed_key = (despill.key_of(_key_colour(settings.despill))
                           if settings.despill not in ("off", "auto") else None)

    def reset(self) -> None:
        for part in (self._subject, self._key, self.plate):
            if part is not None:
                part.reset()

    def apply(self, frame_bgr: np.ndarray, alpha: np.ndarray, matte: np.ndarray | GuidedMatte,
              timings: dict[str, float], segmentation: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
        """frame_bgr ``uint8 [H, W, 3]``, alpha ``float32 [H, W]`` (the model's, finished), ``matte``
        (what the model gave, smoothed: colour coefficients for ``auto``) -> (the alpha to composite,
        ``float32 [H, W]`` in [0, 1]; the foreground colours, ``uint8 [H, W, 3]`` BGR, or None for the
        frame's own). ``segmentation``: the matte is a segmentation's (``Matter.segmentation``), whose
        soft band holds no mixed colours: ``auto`` keeps the frame's own. Adds ``subject``,
        ``edges``, ``foreground``, ``despill`` and ``plate`` ms to ``timings``."""
        settings = self.settings
        if segmentation and settings.foreground == "auto":
            settings = dataclasses.replace(settings, foreground="off")
        start = time.perf_counter()
        if self._subject is not None:
            alpha = self._subject.apply(alpha)
        t_subject = time.perf_counter()
        model_alpha = alpha
        if self.plate is not None:
            self.plate.see(frame_bgr, alpha)  # where this frame lies in the plate, for a camera that moves
            alpha = self.plate.refine(frame_bgr, alpha)
        t_plate = time.perf_counter()
        plate_ms = (t_plate - t_subject) * 1e3
        final = alpha
        if settings.threshold > 0:
            final = edges.hard(final, settings.threshold)
        if settings.grow:
            final = edges.grow(final, settings.grow)
        if settings.feather > 0:
            final = edges.feather(final, settings.feather)
        t_edges = time.perf_counter()
        key = self._key.update(frame_bgr, alpha) if self._key is not None else self._fixed_key
        colours = None
        if settings.foreground != "off" or key is not None:
            points = foreground.soft_points(alpha) if final is alpha else foreground.soft_points(alpha, final)
            if settings.foreground == "off":
                colours = frame_bgr.copy()
            elif isinstance(matte, GuidedMatte) and matte.colour_a is not None and settings.foreground == "auto":
                colours = foreground.from_coefficients(np.ascontiguousarray(matte.colour_a.transpose(1, 2, 0)),
                                                       np.ascontiguousarray(matte.colour_b.transpose(1, 2, 0)),
                                                       frame_bgr, points)
            else:
                colours = foreground.blur_fusion(frame_bgr, alpha, points)
        t_foreground = time.perf_counter()
        if self.plate is not None:
            if colours is not None and settings.foreground != "off":
                self.plate.decontaminate(frame_bgr, alpha, colours, points)
            self.plate.update(frame_bgr, model_alpha)
            plate_ms += (time.perf_counter() - t_foreground) * 1e3
        t_despill = time.perf_counter()
        if key is not None:
            despill.suppress(colours, alpha if final is alpha else np.maximum(alpha, final), key)
        done = time.perf_counter()
        timings.update(subject=(t_subject - start) * 1e3, edges=(t_edges - t_plate) * 1e3,
                       foreground=(t_foreground - t_edges) * 1e3, despill=(done - t_despill) * 1e3,
                       plate=plate_ms)
        return final, colours
