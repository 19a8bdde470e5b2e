"""Opening an input for PyAV: a media file or http(s) URL, every failure one line naming it.

Used by the reader, by an audio feed that reads a file itself, and by the read-back helpers.
"""

from __future__ import annotations

from pathlib import Path

import av
import av.error

from . import net
from ..errors import LivematteError
from . import PathLike


def open_input(source: PathLike) -> av.container.InputContainer:
    """Open a media file or http(s) URL, turning every failure into one line naming it."""
    name = str(source)
    if net.is_url(name):
        net.check_scheme(name)
    else:
        path = Path(name)
        if not path.exists():
            raise LivematteError(f"{name}: no such file")
        if path.is_dir():
            raise LivematteError(f"{name} is a folder, expected a video file")
        if path.stat().st_size == 0:
            raise LivematteError(f"{name} is empty")
    timeout = net.TIMEOUT_S if net.is_url(name) else None
    try:
        container = av.open(name, "r", timeout=timeout)
    except av.error.ExitError as e:  # PyAV's interrupt callback: the timeout ran out
        reason = f"no answer within {timeout:g} s" if timeout else e.strerror
        raise LivematteError(f"cannot open {name}: {reason}") from e
    except av.error.InvalidDataError as e:
        raise LivematteError(f"{name} is not a video file FFmpeg can read, or it is damaged or truncated") from e
    except PermissionError as e:
        raise LivematteError(f"cannot read {name}: permission denied") from e
    except (av.error.FFmpegError, OSError) as e:
        raise LivematteError(f"cannot open {name}: {getattr(e, 'strerror', None) or e}") from e
    # FFmpeg happily opens a single picture as a one-frame "video"; that is a user mix-up.
    if container.format.name == "image2" or container.format.name.endswith("_pipe"):
        container.close()
        raise LivematteError(f"{name} is a still image, not a video")
    return container
