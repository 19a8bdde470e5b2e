"""Image mode end to end through the command line."""

import subprocess
import sys

import cv2
import numpy as np
import pytest

from bshm_graph import expected_alpha
from livematte.cli import main


def write_image(path, image):
    assert cv2.imwrite(str(path), image)
    return path


@pytest.fixture
def photo(tmp_path, rng):
    return write_image(tmp_path / "photo.png", rng.integers(0, 256, (61, 83, 3), dtype=np.uint8))


def test_bshm_writes_the_graphs_matte_and_a_cutout(tmp_path, bshm_dir, photo):
    out = tmp_path / "out"
    assert main(["image", "-i", str(photo), "-d", str(out), "--model", "bshm", "--model-dir", str(bshm_dir)]) == 0
    image = cv2.imread(str(photo))
    alpha = cv2.imread(str(out / "photo_alpha.png"), cv2.IMREAD_UNCHANGED)
    assert alpha.dtype == np.uint8 and alpha.shape == image.shape[:2]
    assert np.abs(alpha.astype(int) - expected_alpha(image[:, :, ::-1]).astype(int)).max() <= 1
    cutout = cv2.imread(str(out / "photo_foreground.png"), cv2.IMREAD_UNCHANGED)
    assert cutout.shape == image.shape[:2] + (4,)
    # The cut-out's colours are the estimated foreground (blur fusion for BSHM), straight alpha:
    # the photo's own where the matte is 0 or 1
    from livematte.matte.foreground import blur_fusion

    assert np.array_equal(cutout[:, :, 3], alpha)
    hard = (alpha == 0) | (alpha == 255)
    assert np.array_equal(cutout[:, :, :3][hard], image[hard])
    estimate = blur_fusion(image, alpha.astype(np.float32) / 255)
    assert np.abs(cutout[:, :, :3].astype(int) - estimate).max() <= 2
    assert not (out / "photo_composite.png").exists()


@pytest.mark.parametrize("spec, channels", [("color:#ff0000", 3), ("blur:10", 3), ("transparent", 4)])
def test_background_writes_a_composite(tmp_path, bshm_dir, photo, spec, channels):
    out = tmp_path / "out"
    assert main(["image", "-i", str(photo), "-d", str(out), "--model-dir", str(bshm_dir), "--background", spec]) == 0
    composite = cv2.imread(str(out / "photo_composite.png"), cv2.IMREAD_UNCHANGED)
    assert composite.shape == (61, 83, channels)
    if spec.startswith("color"):
        alpha = cv2.imread(str(out / "photo_alpha.png"), cv2.IMREAD_UNCHANGED)
        clear = alpha == 0
        if clear.any():
            assert (composite[clear] == (0, 0, 255)).all()


def test_image_background_is_cover_fitted(tmp_path, bshm_dir, photo):
    backdrop = write_image(tmp_path / "bg.jpg", np.full((300, 100, 3), 90, np.uint8))
    out = tmp_path / "out"
    assert main(["image", "-i", str(photo), "-d", str(out), "--model-dir", str(bshm_dir),
                 "--background", str(backdrop)]) == 0
    assert cv2.imread(str(out / "photo_composite.png")).shape == (61, 83, 3)


def test_folder_goes_on_past_a_broken_file(tmp_path, bshm_dir, rng, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("a.png", "c.jpg"):
        write_image(folder / name, rng.integers(0, 256, (20, 30, 3), dtype=np.uint8))
    (folder / "b.png").write_text("this is not a picture")
    (folder / "notes.txt").write_text("ignored: not an image suffix")
    out = tmp_path / "out"
    assert main(["image", "-i", str(folder), "-d", str(out), "--model-dir", str(bshm_dir)]) == 1
    assert sorted(p.name for p in out.iterdir()) == ["a_alpha.png", "a_foreground.png",
                                                     "c_alpha.png", "c_foreground.png"]
    assert "b.png" in capsys.readouterr().err


def test_grayscale_rgba_and_16_bit_inputs_are_accepted(tmp_path, bshm_dir, rng):
    folder = tmp_path / "in"
    folder.mkdir()
    write_image(folder / "gray.png", rng.integers(0, 256, (9, 7), dtype=np.uint8))
    write_image(folder / "rgba.png", rng.integers(0, 256, (9, 7, 4), dtype=np.uint8))
    write_image(folder / "deep.png", rng.integers(0, 65536, (9, 7, 3), dtype=np.uint16))
    out = tmp_path / "out"
    assert main(["image", "-i", str(folder), "-d", str(out), "--model-dir", str(bshm_dir)]) == 0
    for stem in ("gray", "rgba", "deep"):
        assert cv2.imread(str(out / f"{stem}_alpha.png"), cv2.IMREAD_UNCHANGED).shape == (9, 7)


@pytest.mark.parametrize("content, message", [
    (None, "no such file"),
    (b"", "is empty"),
    (b"hello, I am text", "not an image"),
])
def test_bad_input_is_one_clear_line(tmp_path, content, message):
    bad = tmp_path / "missing.png"
    if content is not None:
        bad.write_bytes(content)
    done = subprocess.run([sys.executable, "-m", "livematte", "image", "-i", str(bad), "-d", str(tmp_path / "o")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if "error" in line]
    assert len(errors) == 1 and message in errors[0] and "missing.png" in errors[0], done.stderr


def test_rvm_on_the_shared_bshm_reference(shared_data, rvm_weights, tmp_path):
    """The acceptance check: RVM's matte overlaps the real BSHM's (IoU at 0.5)."""
    out = tmp_path / "out"
    reference = shared_data / "bshm_reference"
    for name in ("1.png", "wx.jpg"):
        assert main(["image", "-i", str(reference / name), "-d", str(out), "--model", "rvm"]) == 0
        ours = cv2.imread(str(out / f"{name.rsplit('.', 1)[0]}_alpha.png"), cv2.IMREAD_GRAYSCALE) > 127
        theirs = cv2.imread(str(reference / f"{name}_mask.png"), cv2.IMREAD_GRAYSCALE) > 127
        iou = (ours & theirs).sum() / (ours | theirs).sum()
        assert iou >= 0.93, (name, iou)
