"""What the commands say to a new user: a short stats line, a CPU budget named with where it came
from, one line for the model that runs, no latency where a run has none. The real command line on
real clips, in a process of its own, as a user runs it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from livematte import models
from livematte.sources.capture import FileSource
from livematte.config import LiveSettings
from livematte.runtime.governor import Sample, for_live
from livematte.models.base import ModelSettings
from livematte.machine import available_cores

SHORT_LINE = re.compile(r"^livematte: done: \d+\.\d fps, latency \d+ ms \(p95 \d+\), "
                        r"(selfie )?\d+px (whenever free|every \d\+ frames)(, waits)?, "
                        r"age \d+ \(p95 \d+\), CPU \d+%(, \d+ dropped)?$")


def livematte(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "livematte", *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ, **(env or {})})


def lines(stderr: str, start: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith(start)]


@pytest.fixture(scope="module")
def s18(shared_data) -> Path:
    return shared_data / "clips" / "s18.mp4"


# --- the stats line ---------------------------------------------------------------------------------

def test_live_prints_a_short_stats_line_and_the_stages_only_under_v(s18, tmp_path, rvm_weights, selfie_weights):
    # Played as a camera, so the governor runs and its level is in the line (RVM's, whatever BSHM
    # weights this machine has)
    run = ["live", "--source", str(s18), "--realtime", "--sink", "null", "--frames", "30"]
    env = {"MODELSCOPE_CACHE": str(tmp_path / "modelscope")}
    plain = livematte(*run, env=env)
    assert plain.returncode == 0, plain.stderr
    (done,) = lines(plain.stderr, "livematte: done: ")
    assert SHORT_LINE.match(done), done
    assert len(done) <= 120 and "ms:" not in done
    verbose = livematte("-v", *run, env=env)
    assert verbose.returncode == 0, verbose.stderr
    (done,) = lines(verbose.stderr, "livematte: done: ")
    short, details = done.split(" | ", 1)
    assert SHORT_LINE.match(short), done
    assert re.search(r"frames in 30, fresh \d+ \(\d+ reused\), repeated \d+, dropped \d+; sent \d+\.\d fps "
                     r"with repeats; \d+\.\d model calls/s \| ms: .*\bmodel \d+\.\d", details), done


def test_live_help_says_what_each_figure_means():
    result = livematte("live", "--help")
    assert result.returncode == 0, result.stderr
    help_text = " ".join(result.stdout.split())
    for meaning in ("fps fresh frames per second: new frames composited, each with a matte of its own",
                    "latency capture to output of those frames, the median",
                    "level played as a camera with --adapt on: the network's input size and how often the model may "
                    "take a frame",
                    "age how many frames before each frame the model's input was",
                    "CPU the whole process since the first frame, percent of one core",
                    "dropped frames skipped because a newer one was ready",
                    "sent: frames sent per second, repeats included",
                    "wait_*: waiting, not working"):
        assert meaning in help_text, meaning


# --- the CPU budget ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def rvm_and_clip(s18, rvm_weights):
    matter = models.load(ModelSettings(name="rvm"))
    source = FileSource(str(s18), realtime=True)
    yield matter, source
    source.close()
    matter.close()


def over_budget(governor) -> str:
    """Feed the governor a second of CPU half a core over its budget, nothing else wrong; -> its reason."""
    governor.begin(0.0)
    governor.update(Sample(0.0, 0, 0, 0.0, 0.0, 0.0, 20.0))
    cpu_s = governor.max_cpu / 100 + 0.5
    change = governor.update(Sample(1.0, 30, 0, 0.2, cpu_s, 0.1, 20.0))
    assert change is not None, governor.timeline
    return change.reason


def test_a_default_cpu_budget_is_named_as_the_default_with_how_to_lift_it(rvm_and_clip, caplog):
    if available_cores() < 2:
        pytest.skip("one core: no default CPU budget")
    budget = 100 * (available_cores() - 1)
    with caplog.at_level("INFO", logger="livematte"):
        governor = for_live(LiveSettings(), *rvm_and_clip)
    assert f"the default budget of {budget}%, all cores but one (--max-cpu; 0 lifts it)" in caplog.text
    assert over_budget(governor) == (f"CPU {budget + 50}% over the default budget of {budget}%, all cores but one "
                                     "(--max-cpu; 0 lifts it)")


def test_a_given_cpu_budget_is_named_as_given(rvm_and_clip):
    governor = for_live(LiveSettings(max_cpu=60.0), *rvm_and_clip)
    assert over_budget(governor) == "CPU 110% over the budget of 60% (--max-cpu or [live] max_cpu; 0 lifts it)"


# --- the model lines --------------------------------------------------------------------------------

def test_demo_names_the_model_that_runs_once_and_gives_no_bshm_hint(tmp_path, rvm_weights):
    # A first run (an empty cache: the demo cuts its person out with a model of its own first), with
    # no BSHM weights anywhere, so that auto runs RVM
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / rvm_weights.name).symlink_to(rvm_weights)
    env = {"LIVEMATTE_CACHE": str(cache), "MODELSCOPE_CACHE": str(tmp_path / "modelscope")}
    result = livematte("demo", "-o", str(tmp_path / "demo.mp4"), "--frames", "3", "--quiet", env=env)
    assert result.returncode == 0, result.stderr
    model_lines = lines(result.stderr, "livematte: model")
    assert len(model_lines) == 1 and re.fullmatch(r"livematte: model: rvm on CPU \([^()]*\)", model_lines[0]), \
        result.stderr
    assert "BSHM" not in result.stderr and "models fetch" not in result.stderr
    # ... where `livematte models` says how to fetch them
    listed = livematte("models", env=env)
    assert "livematte models fetch bshm" in listed.stdout


# --- bench in throughput mode -----------------------------------------------------------------------

def test_bench_in_throughput_mode_reports_no_latency(s18, tmp_path, rvm_weights):
    out = tmp_path / "bench.json"
    result = livematte("bench", "--model", "rvm", "--source", str(s18), "--preset", "live", "--frames", "20",
                       "--json", str(out))
    assert result.returncode == 0, result.stderr
    table = result.stdout
    assert "no latency: frames queue behind each other, --realtime measures it" in table
    assert "latency p" not in table and "wait_" not in table, table
    (run,) = json.loads(out.read_text())["runs"]
    assert run["latency_ms"] is None
    assert not [stage for stage in run["stages_ms"] if stage.startswith("wait_")], run["stages_ms"]
    assert run["stages_ms"]["model"] > 0 and run["stages_ms"]["decode"] > 0
