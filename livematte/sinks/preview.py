"""An OpenCV window showing the output. Keys: q or Esc quits, b cycles backgrounds."""

from __future__ import annotations

import subprocess
import sys
from typing import Callable

import cv2
import numpy as np

from ..errors import LivematteError
from .base import Sink

WINDOW = "livematte"


def checkerboard(height: int, width: int, cell: int = 16) -> np.ndarray:
    ys, xs = np.indices((height, width))
    light = ((ys // cell + xs // cell) % 2).astype(bool)
    board = np.full((height, width, 3), 102, np.uint8)
    board[light] = 153
    return board


def check_display(alternatives: str) -> None:
    """LivematteError unless a preview window can open here (naming the ``alternatives``, the
    sinks that need no screen).

    OpenCV's Qt build aborts the whole process (SIGABRT, no exception) when it finds
    no display, so the window is tried in a child process first, before a model loads.
    """
    probe = "import cv2; cv2.namedWindow('livematte-probe'); cv2.destroyAllWindows()"
    try:
        result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=20)
    except subprocess.TimeoutExpired:
        raise LivematteError("the preview window did not open within 20 s; use --sink null, file or vcam") from None
    if result.returncode != 0:
        lines = [line for line in result.stderr.splitlines() if "display" in line.lower()] or ["no display?"]
        raise LivematteError(f"cannot open a preview window ({lines[0].strip()}); "
                             f"run it in a desktop session, or use --sink {alternatives}")


class PreviewSink(Sink):
    accepts_alpha = True

    def __init__(self, on_key: Callable[[str], None] | None = None):
        try:
            cv2.namedWindow(WINDOW, cv2.WINDOW_NORMAL)
        except cv2.error as e:
            raise LivematteError("cannot open a preview window (no display?); use --sink null or file") from e
        self.on_key = on_key
        self._quit = False
        self._closed = False

    def send(self, image, pts):
        if image.shape[2] == 4:  # show transparency over the usual grey checkerboard
            alpha = image[:, :, 3].astype(np.float32) * np.float32(1 / 255)
            board = checkerboard(*image.shape[:2])
            image = cv2.blendLinear(np.ascontiguousarray(image[:, :, :3]), board, alpha, 1 - alpha)
        cv2.imshow(WINDOW, image)
        key = cv2.waitKey(1) & 0xFF
        if key in (ord("q"), 27):
            self._quit = True
        elif key != 0xFF and self.on_key is not None:
            self.on_key(chr(key))

    @property
    def wants_quit(self):
        return self._quit

    def close(self):
        if not self._closed:
            self._closed = True
            cv2.destroyWindow(WINDOW)
            cv2.waitKey(1)
