"""``livematte bench`` end to end through the command line, on the test BSHM graph."""

import json

import pytest

from livematte.sources import synthetic
from livematte.cli import main

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
STAGES = {"decode", "wait_capture", "prepare", "wait_model", "model", "smoothing", "refine", "composite", "sink"}
# Played as a camera, governed: the model on its own thread, every frame moved and finished on the frame thread
LIVE_STAGES = {"decode", "wait_capture", "motion", "model", "smoothing", "refine", "composite", "sink"}


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """A private cache, and a short built-in clip so that generating it costs well under a second."""
    folder = tmp_path / "cache"
    monkeypatch.setenv("LIVEMATTE_CACHE", str(folder))
    monkeypatch.setattr(synthetic, "CLIP_FRAMES", 24)
    return folder


def bshm(bshm_dir):
    return ["--model", "bshm", "--model-dir", str(bshm_dir)]


def test_bench_writes_the_json_schema_and_a_png(tmp_path, cache, bshm_dir, capsys):
    out_json, out_png = tmp_path / "bench.json", tmp_path / "plots" / "bench.png"
    assert main(["bench", *bshm(bshm_dir), "--frames", "20", "--json", str(out_json), "--plot", str(out_png)]) == 0

    doc = json.loads(out_json.read_text())
    assert set(doc) >= {"machine", "source", "runs"}
    machine = doc["machine"]
    assert isinstance(machine["cpu"], str) and isinstance(machine["cores"], int) and machine["cores"] >= 1
    assert isinstance(machine["python"], str) and isinstance(machine["livematte"], str)
    source = doc["source"]
    assert source["builtin"] is True and (source["width"], source["height"]) == (1280, 720)
    assert (cache / synthetic.CLIP_NAME).is_file()
    assert [run["preset"] for run in doc["runs"]] == ["live", "offline"]
    for run in doc["runs"]:
        assert run["model"] == "bshm" and isinstance(run["device"], str) and run["sink"] == "null"
        assert run["frames"] == 20 and run["dropped"] == 0  # throughput mode: every frame
        assert isinstance(run["fps"], float) and run["fps"] > 0
        assert run["latency_ms"] is None  # throughput mode: no latency to report
        assert set(run["stages_ms"]) >= STAGES - {"wait_capture", "wait_model"}
        assert all(isinstance(v, float) and v >= 0 for k, v in run["stages_ms"].items() if not k.startswith("wait"))
        assert run["stages_ms"]["decode"] > 0 and run["stages_ms"]["model"] > 0
        for key in ("cpu_percent", "cpu_ms_per_frame", "rss_mb"):
            assert isinstance(run[key], float) and run[key] > 0
        assert isinstance(run["dropped"], int)

    assert out_png.read_bytes()[:8] == PNG_SIGNATURE
    table = capsys.readouterr().out
    assert "latency p95 ms" not in table and "live" in table and "offline" in table


def test_bench_realtime_with_encoding_on_a_given_source(tmp_path, bshm_dir):
    clip = tmp_path / "small.mp4"
    synthetic.write_clip(clip, frames=15, width=320, height=180)
    out_json = tmp_path / "bench.json"
    assert main(["bench", *bshm(bshm_dir), "--source", str(clip), "--preset", "live", "--realtime", "--encode",
                 "--frames", "40", "--json", str(out_json)]) == 0
    doc = json.loads(out_json.read_text())
    assert doc["source"] == {"path": str(clip), "builtin": False, "width": 320, "height": 180, "fps": 30.0,
                             "frames": 15}
    assert doc["settings"] == {"frames": 40, "realtime": True, "encode": True}
    (run,) = doc["runs"]
    assert run["sink"] == "file" and run["preset"] == "live"
    latency = run["latency_ms"]
    assert set(latency) == {"p50", "p95", "p99"} and all(isinstance(v, float) for v in latency.values())
    assert 0 < latency["p50"] <= latency["p95"] <= latency["p99"]
    assert set(run["stages_ms"]) >= LIVE_STAGES
    assert 1 <= run["frames"] and run["frames"] + run["dropped"] <= 15  # the clip is shorter than --frames
    # Played at 30 fps: 15 frames take about half a second, whatever the machine.
    assert run["elapsed_s"] >= 0.4


def test_bench_realtime_on_rvm_on_one_core_reports_the_governor(tmp_path, rvm_weights):
    # The default model, played as a camera on one of the machine's cores, as a slower machine.
    # In a process of its own: OpenVINO's thread pool keeps the one core it started with.
    import subprocess
    import sys

    clip = tmp_path / "small.mp4"
    synthetic.write_clip(clip, frames=45, width=320, height=180)
    out_json = tmp_path / "bench.json"
    subprocess.run([sys.executable, "-m", "livematte", "bench", "--model", "rvm", "--source", str(clip), "--preset",
                    "live", "--realtime", "--cores", "1", "--json", str(out_json)], check=True, capture_output=True)
    doc = json.loads(out_json.read_text())
    assert doc["machine"]["cores"] == 1
    (run,) = doc["runs"]
    governor = run["governor"]
    start = governor["timeline"][0]
    assert start["t"] == 0.0 and start["reason"].startswith("calibrated: model 320px")
    assert {"size", "stride"} <= set(governor["level"]) <= {"size", "stride", "model", "waits"}
    assert 0 <= run["reused"] <= run["frames"] and 0 < run["model_calls_per_s"] <= run["fps"] + 0.01


def test_bench_adapt_off_runs_the_fixed_preset(tmp_path, bshm_dir):
    clip = tmp_path / "small.mp4"
    synthetic.write_clip(clip, frames=10, width=160, height=90)
    out_json = tmp_path / "bench.json"
    assert main(["bench", *bshm(bshm_dir), "--source", str(clip), "--preset", "live", "--realtime", "--adapt", "off",
                 "--json", str(out_json)]) == 0
    (run,) = json.loads(out_json.read_text())["runs"]
    assert run["governor"] is None and run["reused"] == 0


@pytest.mark.parametrize("args, message", [
    (["--source", "no/such/video.mp4"], "no/such/video.mp4: no such file"),
    (["--preset", "live", "nope"], "unknown preset 'nope'"),
    (["--frames", "0"], "--frames got 0"),
    (["--cores", "4096"], "--cores got 4096"),
])
def test_bad_input_is_one_line(tmp_path, cache, bshm_dir, capsys, args, message):
    assert main(["bench", *bshm(bshm_dir), *args]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("livematte: error: ") and message in err and "\n" not in err
    assert not (cache / synthetic.CLIP_NAME).exists()  # nothing generated, nothing run


def test_plot_without_matplotlib_says_what_to_install(tmp_path, cache, bshm_dir, capsys, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "matplotlib", None)
    assert main(["bench", *bshm(bshm_dir), "--plot", str(tmp_path / "p.png")]) == 1
    assert capsys.readouterr().err.strip() == 'livematte: error: --plot needs matplotlib: pip install "livematte[plot]"'
