from setuptools import find_packages, setup

setup(
    name="livematte",
    version="0.1.0",
    description="Real-time video background replacement with BSHM portrait matting",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    # The presets in configs/ install as livematte.presets so that a non-editable
    # install finds them too.
    packages=find_packages(include=["livematte", "livematte.*"]) + ["livematte.presets"],
    package_dir={"livematte.presets": "configs"},
    package_data={"livematte.presets": ["*.toml"]},
    install_requires=[
        # Lower bounds are the versions the test suite was run with.
        "tensorflow>=2.16",  # BSHM's TF1 frozen graph through tf.compat.v1
        "modelscope>=1.20",  # snapshot_download of damo/cv_unet_image-matting
        "onnxruntime>=1.18",  # Robust Video Matting (and on GPUs, with onnxruntime-gpu)
        "openvino>=2024.0",  # Robust Video Matting on CPUs: bf16, 1.4x onnxruntime's speed
        "opencv-python>=4.9",
        "numpy>=1.26",
        "av>=14",
        "pyvirtualcam>=0.11",
        "psutil>=5.9",
        "matplotlib>=3.7",  # benchmark plots, and the demo's sample portrait
    ],
    extras_require={
        # GPU builds. onnxruntime-gpu provides the same `onnxruntime` module:
        # uninstall the CPU `onnxruntime` after installing this extra.
        "gpu": ["tensorflow[and-cuda]>=2.16", "onnxruntime-gpu>=1.18"],
        "test": ["pytest>=7", "hypothesis>=6"],
    },
    entry_points={"console_scripts": ["livematte=livematte.cli:main"]},
)
