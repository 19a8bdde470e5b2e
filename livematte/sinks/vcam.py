"""A virtual camera (v4l2loopback on Linux, OBS on Windows/macOS) through pyvirtualcam."""

from __future__ import annotations

from ..errors import LivematteError
from .base import Sink

LOAD_HINT = ("load it with: sudo modprobe v4l2loopback devices=1 exclusive_caps=1 "
             "card_label=livematte (package v4l2loopback-dkms)")


class VirtualCameraSink(Sink):

    def __init__(self, width: int, height: int, fps: float, *, device: str | None = None,
                 backend: str | None = None):
        import pyvirtualcam

        self.width, self.height = width, height
        try:
            self.camera = pyvirtualcam.Camera(width, height, fps, fmt=pyvirtualcam.PixelFormat.BGR,
                                              device=device, backend=backend)
        except RuntimeError as e:
            text = str(e)
            if "v4l2" in text and ("loopback" in text or "device" in text):
                raise LivematteError(f"no virtual camera device (v4l2loopback): {LOAD_HINT}") from e
            raise LivematteError(f"cannot start the virtual camera: {text.splitlines()[0]}") from e
        self.device = self.camera.device
        self._closed = False

    def send(self, image, pts):
        # Always the size it was opened with: the pipeline fits a source that changes size.
        self.camera.send(image)

    def close(self):
        if not self._closed:
            self._closed = True
            self.camera.close()
