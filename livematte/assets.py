"""Pictures that come with livematte (``livematte/data``): the sample portrait.

The engine's warm-up stands it in a frame (a real person's soft edges cost what a camera's
will) and the demo films it; neither needs anything of the user's.
"""

from __future__ import annotations

from importlib import resources

import cv2
import numpy as np

from .errors import LivematteError

# Grace Hopper's portrait, byte for byte matplotlib's sample_data/grace_hopper.jpg (sha256 a8ca6d73...).
PORTRAIT_FILE = "grace_hopper.jpg"


def sample_portrait() -> np.ndarray:
    """``uint8 [600, 512, 3]`` BGR: the portrait that comes with livematte (``livematte/data``)."""
    data = resources.files("livematte") / "data" / PORTRAIT_FILE
    try:
        image = cv2.imdecode(np.frombuffer(data.read_bytes(), np.uint8), cv2.IMREAD_COLOR)
    except OSError as e:
        raise LivematteError(f"the sample portrait {PORTRAIT_FILE} is missing from livematte's install") from e
    if image is None:
        raise LivematteError(f"the sample portrait {PORTRAIT_FILE} could not be read")
    return image
