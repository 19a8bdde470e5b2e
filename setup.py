import re
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).resolve().parent


def _version() -> str:
    """The one copy of the version, livematte/__init__.py's ``__version__``, read as text: importing
    livematte would need its dependencies, which are not installed yet."""
    text = (HERE / "livematte" / "__init__.py").read_text(encoding="utf-8")
    return re.search(r"""^__version__ = ["']([^"']+)["']$""", text, re.MULTILINE).group(1)


# Sizes: `du -sh` of each package's site-packages folders in a fresh Python 3.11 venv on Linux
# x86_64, with the dependencies only it brings. Lower bounds are the versions the test suite and
# the benchmarks were run with. The core is what `livematte demo`, `video`, `live`, `image` and
# `bench` need with RVM, MODNet and Selfie Segmentation; each optional feature outside it stops
# with one line naming its extra.
# A fresh venv (`du -sm`, pip and setuptools' 26 MB included) with the core: 861 MB; with [bshm]: 2,982 MB;
# with [plot]: 960 MB; with [ray]: 1,133 MB (the versions in README: Install).
CORE = [
    "numpy>=2.4",  # 73 MB: every frame
    "opencv-python>=5.0",  # 288 MB: resizing, refinement, images, cameras; its GUI (not -headless) is --sink preview
    "av>=18.1",  # 103 MB: video files and streams, with their audio (FFmpeg inside)
    "onnx>=1.23",  # 34 MB: re-declares RVM's outputs as its refiner's coefficients, for both runtimes
    "openvino>=2026.4",  # 181 MB: RVM on CPUs, the default: bf16, faster than onnxruntime (README: Models)
    # 80 MB: RVM where OpenVINO does not run, --runtime onnxruntime, CUDA (with onnxruntime-gpu),
    # and the demo's one-time cut-out of its portrait (float32 on every CPU)
    "onnxruntime>=1.31",
    # 59 MB: selfie's networks (MediaPipe Selfie Segmentation, the fast tier) on XNNPACK: several times
    # faster than OpenCV's dnn (which reads them too), enough for `live --model selfie` to hold the
    # frame rate on one core where dnn does not (README: Measurements behind the code).
    # Wheels for Linux x86_64, Windows and macOS arm64 only; elsewhere selfie runs on OpenCV's dnn.
    'ai-edge-litert>=2.3; (platform_system == "Linux" and platform_machine == "x86_64") '
    'or platform_system == "Windows" or (platform_system == "Darwin" and platform_machine == "arm64")',
    "pyvirtualcam>=0.15",  # 1 MB: `live`'s default sink, the virtual camera
    "psutil>=7.2",  # 1 MB: `bench`'s CPU and memory figures
    "tqdm>=4.70",  # under 1 MB: the progress line of `video`, `demo` and `bench`
    # `live --web`: the local page and the OBS overlay (HTTP and WebSocket on one asyncio loop)
    "aiohttp>=3.14",
]
# `pip install "livematte[bshm]"`: the BSHM model. 2.1 GB, three quarters of the full install,
# for a model that cannot run before its weights are fetched.
BSHM = [
    "tensorflow>=2.21",  # 2.0 GB with its own dependencies (keras, grpcio, h5py, libclang, ...): BSHM's graph
    "modelscope>=1.40",  # 92 MB with its own: snapshot_download of damo/cv_unet_image-matting
]
# `pip install "livematte[plot]"`: `livematte bench --plot`. 100 MB with its dependencies
# (fonttools, pillow, ...). Out of the core since the demo's portrait, the one other use, ships
# with livematte (livematte/data/grace_hopper.jpg, 61 KB).
PLOT = ["matplotlib>=3.11"]
# `pip install "livematte[ray]"`: `livematte video --cluster`, a library of videos on a Ray cluster.
# 272 MB with its dependencies (ray itself 240 MB; its client part joins a cluster as ray://HOST:PORT).
RAY = ["ray[client]>=2.60"]
# `pip install "livematte[eval]"`: scripts/make_fixed_camera_clips.py --foreground clean (a portrait's
# colours without its photo's background, pymatting's multilevel estimate). About 380 MB with numba, llvmlite,
# scipy and pillow (their folders in a venv).
EVAL = ["pymatting>=1.1.16"]

setup(
    name="livematte",
    version=_version(),
    description="Real-time video background replacement with BSHM portrait matting",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.11",  # tomllib (config files) is in the standard library from 3.11
    packages=find_packages(include=["livematte", "livematte.*"]),
    package_data={"livematte": ["presets/*.toml", "data/*.jpg", "web/assets/*"]},
    install_requires=CORE,
    extras_require={
        "bshm": BSHM,
        "plot": PLOT,
        "ray": RAY,
        "eval": EVAL,
        # GPU builds (not tested here: no GPU). onnxruntime-gpu provides the same
        # `onnxruntime` module: uninstall the CPU `onnxruntime` after installing this extra.
        "gpu": ["tensorflow[and-cuda]>=2.21", "modelscope>=1.40", "onnxruntime-gpu>=1.31"],
        # The tests build BSHM stand-in graphs with TensorFlow, draw bench plots, run a local Ray and build
        # clean-foreground test clips;
        # selenium drives the system's Chromium (Debian `chromium`, `chromium-driver`) for the web page's tests.
        "test": ["pytest>=9.2", "hypothesis>=6.170", "selenium>=4.51", *BSHM, *PLOT, *RAY, *EVAL],
    },
    entry_points={"console_scripts": ["livematte=livematte.cli:main"]},
)
