from setuptools import find_packages, setup

setup(
    name="livematte",
    version="0.1.0",
    description="Real-time video background replacement with BSHM portrait matting",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.11",  # tomllib (config files) is in the standard library from 3.11
    # The presets in configs/ install as livematte.presets so that a non-editable
    # install finds them too.
    packages=find_packages(include=["livematte", "livematte.*"]) + ["livematte.presets"],
    package_dir={"livematte.presets": "configs"},
    package_data={"livematte.presets": ["*.toml"]},
    # Lower bounds are the versions the test suite and the benchmarks were run with.
    install_requires=[
        "tensorflow>=2.21",  # BSHM's TF1 frozen graph through tf.compat.v1
        "modelscope>=1.40",  # snapshot_download of damo/cv_unet_image-matting
        "onnxruntime>=1.31",  # Robust Video Matting (and on GPUs, with onnxruntime-gpu)
        "openvino>=2026.4",  # Robust Video Matting on CPUs: bf16, 1.4x onnxruntime's speed
        "onnx>=1.23",  # re-declares RVM's outputs for onnxruntime (the refiner's coefficients)
        "opencv-python>=5.0",
        "numpy>=2.4",
        "av>=18.1",
        "pyvirtualcam>=0.15",
        "psutil>=7.2",
        "tqdm>=4.70",  # the progress line of `video`, `demo` and `bench`
        "matplotlib>=3.11",  # benchmark plots, and the demo's sample portrait
    ],
    extras_require={
        # GPU builds (not tested here: no GPU). onnxruntime-gpu provides the same
        # `onnxruntime` module: uninstall the CPU `onnxruntime` after installing this extra.
        "gpu": ["tensorflow[and-cuda]>=2.21", "onnxruntime-gpu>=1.31"],
        "test": ["pytest>=9.2", "hypothesis>=6.170"],
    },
    entry_points={"console_scripts": ["livematte=livematte.cli:main"]},
)
