"""MediaPipe Selfie Segmentation, the fast tier: TFLite, on LiteRT or OpenCV's dnn.

Two networks from the ``mediapipe==0.10.21`` wheel (Apache-2.0), each with a fixed input:
``selfie_segmentation_landscape.tflite`` (256x144) and ``selfie_segmentation.tflite`` (256x256).
Contract, as MediaPipe's own graph (``selfie_segmentation_cpu.pbtxt``) feeds them:
- input ``float32 [1, h, w, 3]``: the whole frame stretched to the network's size (aspect not
  kept), **RGB in [0, 1]**;
- output ``float32 [1, h, w, 1]``: the person's confidence in [0, 1] (the graph applies no
  activation after the network: the model ends in its own sigmoid).
``tests/test_modnet_selfie.py`` checks both on the real weights.

It is a segmentation model, not a matting one: its map is soft only where it is unsure. The
matte's edges come from a guided filter: :meth:`SelfieMatter.infer` fits its coefficients to
the map at the network's size (:func:`livematte.matte.refine.guided_coefficients`, guided by the
picture the network saw) and returns them as a :class:`GuidedMatte`, which the engine smooths
over time as it does RVM's and :meth:`SelfieMatter.finish` applies to the frame at its full
resolution (a cheap step: two resizes and a multiply-add), so edges follow the real frame.

Runtimes: ``litert`` (``ai-edge-litert``, XNNPACK) or ``opencv`` (``cv2.dnn``'s TFLite reader,
NCHW). OpenVINO cannot load the models (their custom op ``Convolution2DTransposeBias``).
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np

from ..errors import LivematteError, error_line
from ..matte.refine import apply_to_frame, guided_coefficients
from ..frames import GuidedMatte
from .base import ModelSettings
from .quiet import notices_to_debug_log
from .weights import SELFIE_LANDSCAPE, SELFIE_SQUARE, FetchedFromWheels, resolve

RUNTIMES = ("auto", "litert", "opencv")
# The finish, chosen on the composited clips (README: Measurements behind the code): the guided
# filter's window radius (px at the network's size) and regulariser, the smallest window (wider
# ones blur the edge); then the confidence read as a matte through a ramp 1/RAMP wide around 0.5,
# which pulls the map's unsure band in to where the frame's edge is.
GUIDE_RADIUS, GUIDE_EPS = 1, 1e-4
RAMP = 3.0
_KNOWN_SHAPES = {SELFIE_LANDSCAPE.filename: (144, 256), SELFIE_SQUARE.filename: (256, 256)}  # file -> (h, w)


class SelfieMatter(FetchedFromWheels):
    name = "selfie"
    description = ("MediaPipe Selfie Segmentation (the fast tier: a few ms a frame for slow machines, "
                   f"softer edges), TFLite ({SELFIE_LANDSCAPE.package})")
    WEIGHTS = (SELFIE_LANDSCAPE, SELFIE_SQUARE)
    CLAIMS = (".tflite", "a TFLite file")  # no other backend reads TFLite
    guided = True  # infer returns guided-filter coefficients; finish applies them to the full-size guide
    # The networks take only their own input sizes, which input_size always gives (no side
    # below 144), so the engine never pads.
    min_side = 144
    # An area average: a better matte than a bilinear downscale, for a little more time (README:
    # Measurements behind the code).
    antialias = True
    # Its soft band is the confidence ramp, not mixed colour: blur fusion there recovers nothing
    # and costs more than the network itself, where selfie is the model for 30 fps on one core
    # (README: "Selfie live on one core").
    segmentation = True
    still_size = 0  # its networks' sizes are fixed

    def __init__(self, settings: ModelSettings):
        paths = resolve(settings.model_dir, self.WEIGHTS, ".tflite", "Selfie Segmentation",
                        settings.download_timeout)
        runtime = settings.runtime
        if runtime not in RUNTIMES:
            raise LivematteError(f"selfie runs on {' or '.join(RUNTIMES[1:])}, not {runtime!r}")
        if runtime == "auto":
            runtime = "litert" if importlib.util.find_spec("ai_edge_litert") is not None else "opencv"
        runner = _LiteRTNet if runtime == "litert" else _OpenCVNet
        # One network per input size, (h, w) -> network.
        self._nets = {net.shape: net for net in (runner(path, settings.threads) for path in paths)}
        self.path = paths[0]
        self.device = f"CPU ({runtime})"

    @staticmethod
    def auto(settings: ModelSettings) -> tuple[bool, str]:
        """``auto`` leaves the fast tier to be asked for by name."""
        return False, "selfie is taken only with --model selfie"

    def input_size(self, width: int, height: int, size: int | None = None) -> tuple[int, int]:
        """The network whose shape is nearest the frame's (landscape 256x144 for 16:9, square
        256x256 for 4:3 and portrait frames): its fixed (width, height). ``size`` (the settings' or
        the live governor's) does not apply."""
        aspect = math.log(max(width, 1) / max(height, 1))
        h, w = min(self._nets, key=lambda shape: abs(math.log(shape[1] / shape[0]) - aspect))
        return w, h

    def prepare(self, image_bgr: np.ndarray) -> np.ndarray:
        """``uint8 [h, w, 3]`` BGR at a network's size -> ``float32 [1, h, w, 3]`` RGB in [0, 1]."""
        return np.multiply(image_bgr[None, :, :, ::-1], np.float32(1 / 255), dtype=np.float32)

    def initial_state(self) -> None:
        return None

    def confidence(self, prepared: np.ndarray) -> np.ndarray:
        """The network itself: ``prepare``'s input -> the person's confidence ``float32 [h, w]`` in [0, 1]."""
        net = self._nets.get(prepared.shape[1:3])
        if net is None:
            sizes = ", ".join(f"{w}x{h}" for h, w in self._nets)
            raise LivematteError(f"selfie takes {sizes}, got {prepared.shape[2]}x{prepared.shape[1]}")
        return net.run(prepared)

    def infer(self, prepared: np.ndarray, state: None) -> tuple[GuidedMatte, None]:
        """-> (a :class:`GuidedMatte` at the network's size, None): the confidence, ramped around 0.5
        (:data:`RAMP`), as guided-filter coefficients against the mean of R, G and B the network saw."""
        confidence = self.confidence(prepared)
        ramped = np.clip((confidence - np.float32(0.5)) * np.float32(RAMP) + np.float32(0.5), 0.0, 1.0)
        a, b = guided_coefficients(ramped, prepared[0].mean(axis=2), GUIDE_RADIUS, GUIDE_EPS)
        return GuidedMatte(a, b), None

    def finish(self, matte: GuidedMatte, frame_bgr: np.ndarray, full_guide: np.ndarray | None,
               refine: str = "bilinear") -> np.ndarray:
        """The (smoothed) coefficients applied to the frame's own guide -> ``float32 [H, W]`` alpha in
        [0, 1] at the frame's size. ``refine`` is not used: the guided filter places the edges."""
        return apply_to_frame(matte.a, matte.b, frame_bgr, full_guide)

    def close(self) -> None:
        """Drop the networks; safe to call twice."""
        self._nets = {}


class _LiteRTNet:
    """One ``.tflite`` on LiteRT's interpreter (XNNPACK). ``shape``: its input's (h, w)."""

    def __init__(self, path: Path, threads: int):
        from ai_edge_litert.interpreter import Interpreter

        try:
            # One thread unless asked: two measured no faster for this small network (README:
            # Measurements behind the code).
            self.interpreter = Interpreter(model_path=str(path), num_threads=threads or 1)
            with notices_to_debug_log(("Created TensorFlow Lite XNNPACK delegate",), "litert"):
                self.interpreter.allocate_tensors()
        except Exception as e:  # LiteRT's ValueError/RuntimeError with multi-line texts
            raise LivematteError(f"cannot load {path} as a TFLite model: {error_line(e)}") from e
        (given,), (taken,) = self.interpreter.get_input_details(), self.interpreter.get_output_details()
        self.input, self.output = given["index"], taken["index"]
        self.shape = _checked_shape(path, tuple(given["shape"]), tuple(taken["shape"]))

    def run(self, prepared: np.ndarray) -> np.ndarray:
        self.interpreter.set_tensor(self.input, prepared)
        self.interpreter.invoke()
        return self.interpreter.get_tensor(self.output)[0, :, :, 0].copy()


class _OpenCVNet:
    """One ``.tflite`` on OpenCV's dnn, which takes NCHW. ``shape``: its input's (h, w)."""

    def __init__(self, path: Path, threads: int):
        import cv2

        try:
            self.net = cv2.dnn.readNetFromTFLite(str(path))
        except cv2.error as e:
            raise LivematteError(f"cannot load {path} as a TFLite model: {error_line(e, last=True)}") from e
        # threads: OpenCV's dnn shares OpenCV's one global thread pool, left as it is.
        # OpenCV reports no input shape for a TFLite model and runs a wrong one without complaint:
        # the shape is known by the file's name, and one run checks it.
        self.shape = _KNOWN_SHAPES.get(path.name)
        if self.shape is None:
            raise LivematteError(f"{path}: OpenCV cannot tell this TFLite model's input size; name it "
                                 f"{' or '.join(_KNOWN_SHAPES)}, or use --runtime litert")
        try:
            self.net.setInput(np.zeros((1, 3, *self.shape), np.float32))
            out = self.net.forward()
        except cv2.error as e:
            out = e
        if not isinstance(out, np.ndarray) or out.size != self.shape[0] * self.shape[1]:
            raise LivematteError(f"{path} is not a Selfie Segmentation model (it does not run at "
                                 f"{self.shape[1]}x{self.shape[0]})")

    def run(self, prepared: np.ndarray) -> np.ndarray:
        self.net.setInput(np.ascontiguousarray(prepared.transpose(0, 3, 1, 2)))
        return self.net.forward().reshape(self.shape)


def _checked_shape(path: Path, given: tuple, taken: tuple) -> tuple[int, int]:
    """A network's input and output shapes -> its (h, w), refused unless ``[1, h, w, 3]`` -> ``[1, h, w, 1]``."""
    if len(given) != 4 or given[0] != 1 or given[3] != 3 or taken != (*given[:3], 1):
        raise LivematteError(f"{path} is not a Selfie Segmentation model: it takes {list(given)} and gives "
                             f"{list(taken)}, expected [1, h, w, 3] and [1, h, w, 1]")
    return int(given[1]), int(given[2])  # Python ints: they reach the stats' JSON through the governor
