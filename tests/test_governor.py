"""The live governor's decisions on synthetic cost traces: deterministic, no wall clock.

A :class:`Machine` stands for the run: given the level, it says what the infer thread costs per
frame (model calls at a size cost ``model_ms(size)``, reused frames ``REUSE_MS``), and turns
that into the counters the pipeline samples every half second: busy time, frames dropped when
the thread cannot keep up, process CPU. A hog can take part of the machine mid-trace.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import pytest

from livematte.runtime.governor import FAILED_WITHIN_S, Governor, Level, Sample, WINDOW_S, ladder

FPS = 30.0
PERIOD = 1 / FPS
REUSE_MS = 3.0
FALLBACK_MS = 3.0  # one call of the fallback model (Selfie Segmentation), whatever the speed
SELFIE = Level(256, 1, "selfie")
FIXED_CPU = 25.0  # % of a core outside the infer thread: decode, composite


@dataclass
class Machine:
    """``speed``: 1 normal, 0.5 when a hog takes half of it. Costs at 384 px: ``top_ms``."""

    top_ms: float
    speed: float = 1.0
    latency_extra_ms: float = 30.0
    jitter: float = 0.0  # each window's speed varies by up to this fraction, seeded
    rng: random.Random = field(default_factory=lambda: random.Random(1))
    frames_in: int = 0
    dropped: float = 0.0
    busy_s: float = 0.0
    cpu_s: float = 0.0
    log: list = field(default_factory=list)

    def model_ms(self, size: int, model: str = "") -> float:
        if model:
            return FALLBACK_MS / self.speed
        return self.top_ms * (size / 384) ** 2 / self.speed

    def run(self, governor: Governor, seconds: float, start: float) -> float:
        """Play ``seconds`` of video from ``start`` in half-second windows; -> the end time."""
        now = start
        while now < start + seconds - 1e-9:
            level = governor.level
            noise = 1.0 + self.jitter * (2 * self.rng.random() - 1)
            model, reuse = self.model_ms(level.size, level.model) * noise, REUSE_MS / self.speed * noise
            per_frame_ms = (model + (level.stride - 1) * reuse) / level.stride
            frames = FPS * WINDOW_S
            done = min(frames, WINDOW_S * 1e3 / per_frame_ms)  # what the infer thread gets through
            for k in range(max(1, round(done))):
                keyframe = k % level.stride == 0
                governor.frame_cost(model if keyframe else reuse, model=keyframe, level=level)
            self.frames_in += round(frames)
            self.dropped += frames - done
            self.busy_s += done * per_frame_ms / 1e3
            self.cpu_s += WINDOW_S * (FIXED_CPU / 100 + done * per_frame_ms / 1e3 / WINDOW_S)
            now += WINDOW_S
            latency = model + self.latency_extra_ms + (200.0 if done < frames else 0.0)
            governor.update(Sample(now, self.frames_in, round(self.dropped), self.busy_s, self.cpu_s, latency))
            self.log.append((now, governor.level))
        return now


def new_governor(fallback: Level | None = None, **kwargs) -> Governor:
    return Governor(ladder(384, fallback=fallback), PERIOD, **{"cores": 2, **kwargs})


def test_the_ladder_starts_at_the_preset_and_every_step_is_cheaper():
    levels = ladder(384)
    assert levels[0] == Level(384, 1)
    assert levels == [Level(384, 1), Level(384, 2), Level(384, 3), Level(384, 4), Level(288, 4), Level(192, 4)]
    machine = Machine(top_ms=40)
    costs = [(machine.model_ms(l.size) + (l.stride - 1) * REUSE_MS) / l.stride for l in levels]
    assert costs == sorted(costs, reverse=True) and len(set(costs)) == len(costs)


def test_small_presets_keep_a_ladder_above_the_floor():
    assert ladder(160) == [Level(160, 1), Level(160, 2), Level(160, 3), Level(160, 4), Level(128, 4)]
    assert ladder(64)[0] == Level(64, 1) and all(l.size == 64 for l in ladder(64))


def test_a_machine_that_holds_the_top_level_stays_there():
    governor, machine = new_governor(), Machine(top_ms=20)
    machine.run(governor, 30, 0.0)
    assert governor.level == Level(384, 1)
    assert [c.reason for c in governor.timeline] == ["start"]


def test_a_slow_machine_steps_down_within_a_second_or_two_to_a_level_that_holds():
    governor, machine = new_governor(), Machine(top_ms=90)  # 3x over the frame budget at the top
    end = machine.run(governor, 20, 0.0)
    level = governor.level
    cost = (machine.model_ms(level.size) + (level.stride - 1) * REUSE_MS) / level.stride
    assert cost < PERIOD * 1e3, f"settled at {level}, {cost:.0f} ms a frame"
    # Every step down came one settle period after the last, the first within 1.5 s
    downs = [c.time for c in governor.timeline[1:]]
    assert downs[0] <= 1.5
    # And the end of the trace drops nothing
    before = machine.dropped
    machine.run(governor, 5, end)
    assert machine.dropped - before < 1


def test_it_does_not_oscillate_between_a_level_that_fits_and_one_that_barely_does_not():
    # 384 px every frame costs 36 ms at 30 fps (33 ms): the headroom at 384/2 tempts a step up
    governor, machine = new_governor(), Machine(top_ms=36, latency_extra_ms=0)
    machine.run(governor, 120, 0.0)
    ups = [c for c in governor.timeline if c.reason == "headroom"]
    assert len(governor.timeline) <= 6, [str(c) for c in governor.timeline]
    assert len(ups) <= 2


@pytest.mark.parametrize("top_ms", [30.0, 45.0, 70.0])
def test_a_noisy_machine_near_a_boundary_changes_level_rarely(top_ms):
    # Each half-second window is up to 25 % faster or slower than the last, at random
    governor, machine = new_governor(), Machine(top_ms=top_ms, jitter=0.25)
    machine.run(governor, 300, 0.0)
    changes = len(governor.timeline) - 1
    assert changes <= 12, [f"{c.time:.1f} {c.level} {c.reason}" for c in governor.timeline]
    # And never more than four changes in any 30 s
    times = [c.time for c in governor.timeline[1:]]
    assert all(sum(t <= u < t + 30 for u in times) <= 4 for t in times)


def test_a_failed_step_up_doubles_the_wait_before_the_next_try():
    governor = new_governor()
    governor._index = 1  # at 384/2; pretend it stepped up there from 288/2 and failed at once
    governor._last_up = (10.0, 1)
    hold = governor._up_hold[1]
    governor._move(10.0 + FAILED_WITHIN_S / 2, +1, "test")
    assert governor._up_hold[1] == 2 * hold


def test_a_hog_taking_half_the_machine_steps_down_at_once_and_the_level_recovers_after_it():
    governor, machine = new_governor(), Machine(top_ms=20)
    now = machine.run(governor, 10, 0.0)
    assert governor.level == Level(384, 1)
    machine.speed = 0.4  # a hog starts
    hog_start = now
    now = machine.run(governor, 10, now)
    first_down = next(c.time for c in governor.timeline if c.time > hog_start)
    assert first_down - hog_start <= 1.0
    assert governor.level != Level(384, 1)
    machine.speed = 1.0  # it stops
    hog_end = now
    machine.run(governor, 15, now)
    back = [c.time for c in governor.timeline if c.time > hog_end and c.level == Level(384, 1)]
    assert back and back[0] - hog_end <= 3.0 * len(ladder(384)), governor.timeline
    assert governor.level == Level(384, 1)


def test_a_cpu_budget_steps_down_until_the_process_fits_it():
    # Unbudgeted this machine holds the top at ~95% of a core; with --max-cpu 60 it must not
    governor, machine = new_governor(max_cpu=60.0), Machine(top_ms=23)
    start = machine.cpu_s
    machine.run(governor, 20, 0.0)
    begin = machine.cpu_s
    machine.run(governor, 10, 20.0)
    assert 100 * (machine.cpu_s - begin) / 10 <= 60.0
    assert governor.level != Level(384, 1) and start == 0


def test_latency_over_the_target_steps_down_to_a_smaller_network():
    # Holding the rate is not enough when one model call takes longer than the latency target
    governor, machine = new_governor(latency_ms=100.0), Machine(top_ms=120.0, latency_extra_ms=20)
    machine.speed = 1.0
    machine.run(governor, 30, 0.0)
    assert machine.model_ms(governor.level.size) + 20 <= 100.0


def test_latency_alone_skips_the_longer_strides_to_a_smaller_network():
    # 384 px holds the rate (30 ms a frame) but a keyframe's latency is 30 + 80 ms: a longer
    # stride would leave it as it is, so the first step goes straight to a smaller network
    governor, machine = new_governor(latency_ms=100.0), Machine(top_ms=30.0, latency_extra_ms=80)
    machine.run(governor, 5, 0.0)
    first = governor.timeline[1]
    assert first.reason.startswith("latency") and first.level == Level(288, 4), [str(c) for c in governor.timeline]


def test_decisions_wait_for_the_first_window_and_nothing_moves_before_the_settle_time():
    governor = new_governor()
    assert governor.update(Sample(0.0, 0, 0, 0.0, 0.0, None)) is None
    assert governor.update(Sample(0.6, 18, 17, 0.6, 0.6, 500.0)) is None  # still settling
    assert governor.level == Level(384, 1)
    change = governor.update(Sample(1.2, 36, 34, 1.2, 1.2, 500.0))
    assert change is not None and change.level == Level(384, 2) and "dropped" in change.reason


def test_the_snapshot_holds_the_level_and_the_timeline():
    governor, machine = new_governor(), Machine(top_ms=90)
    machine.run(governor, 5, 0.0)
    snapshot = governor.snapshot()
    assert snapshot["level"] == {"size": governor.level.size, "stride": governor.level.stride}
    assert snapshot["timeline"][0] == {"t": 0.0, "size": 384, "stride": 1, "reason": "start"}
    assert len(snapshot["timeline"]) >= 2 and set(snapshot["window"]) >= {"busy", "drops", "cpu_percent"}


@pytest.mark.parametrize("bad", [[], None])
def test_an_empty_ladder_is_refused(bad):
    with pytest.raises((ValueError, TypeError)):
        Governor(bad, PERIOD)


# --- the start, calibrated on the warm-up's costs; the fallback model ---------------------------

def warm_up_costs(machine: Machine, levels: list[Level], cpu_per_wall: float = 1.0) -> dict:
    """What the engine's warm-up measures: one model call's (wall, CPU) ms per level."""
    return {Level(l.size, 1, l.model): (machine.model_ms(l.size, l.model),
                                        cpu_per_wall * machine.model_ms(l.size, l.model)) for l in levels}


def test_the_run_starts_at_the_highest_level_the_warm_up_predicts_fits():
    # 384 px costs 30 ms a call, and the rest of a frame 5 ms: 35 ms is over 70 % of 33 ms,
    # 15 + 5 at 384/2 is under it
    governor, machine = new_governor(), Machine(top_ms=30)
    start = governor.calibrate(warm_up_costs(machine, governor.levels), (5.0, 8.0))
    assert start == Level(384, 2) == governor.level
    assert [c.level for c in governor.timeline] == [Level(384, 2)] and "calibrated" in governor.timeline[0].reason
    # And from there it holds: nothing dropped once it settles, no change needed
    machine.run(governor, 10, 0.0)
    assert governor.level in (Level(384, 2), Level(384, 1))


def test_the_start_honours_the_cpu_budget_and_takes_the_lowest_level_when_nothing_fits():
    machine = Machine(top_ms=30)
    # Two model threads: each call's CPU is twice its wall time; a budget of half a core
    budgeted = new_governor(max_cpu=50.0)
    assert budgeted.calibrate(warm_up_costs(machine, budgeted.levels, cpu_per_wall=2.0), (5.0, 8.0)) < Level(384, 2)
    hopeless = new_governor(fallback=SELFIE)
    assert hopeless.calibrate(warm_up_costs(machine, hopeless.levels), (40.0, 40.0)) == SELFIE


def test_the_ladder_ends_with_the_fallback_model():
    assert ladder(384, fallback=SELFIE)[-1] == SELFIE and ladder(384, fallback=SELFIE)[:-1] == ladder(384)
    assert str(SELFIE) == "selfie 256px every frame"


def test_a_machine_too_slow_for_the_smallest_network_steps_down_to_the_fallback_and_back_up():
    # A machine 8x slower than one that runs 384 px in 75 ms: 192 px every fourth frame costs
    # 600/4/4 + 24 = 61 ms a frame there, the fallback 24 ms: only the fallback holds 30 fps
    governor, machine = new_governor(fallback=SELFIE), Machine(top_ms=75, speed=0.125)
    now = machine.run(governor, 30, 0.0)
    assert governor.level == SELFIE, [str(c.level) for c in governor.timeline]
    before = machine.dropped
    now = machine.run(governor, 5, now)
    assert machine.dropped - before < 1
    # When it gets 8x faster (the hog that made it slow stops), the fallback's calls get cheaper,
    # and the governor leaves it: the configured model's costs were priced at the slow speed
    machine.speed = 1.0
    machine.run(governor, 30, now)
    assert governor.level.model == "" and governor.level.size >= 288, governor.level
    assert governor.snapshot()["timeline"][-1].get("model") is None


def test_costs_are_kept_per_model():
    governor = new_governor(fallback=SELFIE)
    governor.frame_cost(80.0, model=True, level=Level(384, 1))
    governor.frame_cost(3.0, model=True, level=SELFIE)
    # 192 px is scaled from RVM's own 384 px call, not from the fallback's 256 px one
    assert governor._model_cost(Level(192, 2)) == pytest.approx(20.0)
    assert governor._model_cost(SELFIE) == 3.0


# --- the settings --------------------------------------------------------------------------------

def test_the_default_cpu_budget_leaves_one_core_to_other_programs():
    from livematte.config import LiveSettings

    assert LiveSettings().cpu_budget(1) == 0.0  # one core: nothing to leave
    assert LiveSettings().cpu_budget(2) == 100.0 and LiveSettings().cpu_budget(8) == 700.0
    assert LiveSettings(max_cpu=0.0).cpu_budget(8) == 0.0 and LiveSettings(max_cpu=150).cpu_budget(2) == 150.0


@pytest.mark.parametrize("flags, message", [
    (["--max-cpu", "-5"], "--max-cpu: got -5.0, expected 0 or more"),
    (["--adapt", "maybe"], "--adapt: invalid choice"),
])
def test_bad_governor_flags_are_one_line(flags, message, capsys):
    from livematte.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["live", "--source", "x.mp4", "--sink", "null", *flags])
    assert exit_.value.code == 2 and message in capsys.readouterr().err


def test_the_live_section_of_a_config_file_is_typed(tmp_path):
    from livematte import config
    from livematte.errors import LivematteError

    good = tmp_path / "good.toml"
    good.write_text("[live]\nadapt = false\nmax_cpu = 120\nlatency_ms = 80\n")
    live = config.load("live", good).live
    assert (live.adapt, live.max_cpu, live.latency_ms) == (False, 120.0, 80.0)
    bad = tmp_path / "bad.toml"
    bad.write_text('[live]\nmax_cpu = "lots"\n')
    with pytest.raises(LivematteError, match=r"bad.toml \[live\] max_cpu got 'lots', expected float"):
        config.load("live", bad)


@pytest.mark.parametrize("max_cpu, cores, threads, expected", [
    (None, 2, 2, 1),    # the default budget on two cores is one core: one model thread
    (None, 1, 2, 2),    # no budget on one core (the runtime's threads are clamped to the cores elsewhere)
    (150, 2, 2, 2), (100, 4, 4, 1), (0, 2, 2, 2), (250, 4, 0, 3),
])
def test_the_model_runs_on_no_more_threads_than_the_cpu_budgets_cores(max_cpu, cores, threads, expected):
    from livematte.config import LiveSettings

    assert LiveSettings(max_cpu=max_cpu).model_threads(threads, cores) == expected
