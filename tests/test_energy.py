from __future__ import annotations

import json
import math
import signal
import sys
import time
import types

import codecarbon
import pytest

import eval.energy
from eval.energy import EnergyMeter
from eval.guard import TrainingTimeoutError, wall_clock_guard
from eval.records import RunRecord, staged_folder, write_json_atomic


class FakeGpu:
    """A GPU whose counter rises 300 J per reading."""

    name = "Fake A100"

    def __init__(self):
        self.joules = 1_000.0

    def energy_J(self):
        self.joules += 300.0
        return self.joules


class FakeCpu:
    """A CPU backend that reports 12.5 J for every block."""

    def start(self):
        pass

    def read(self):
        return 0.0

    def stop(self):
        return 12.5


class BrokenCpu:
    def start(self):
        raise RuntimeError("no RAPL")

    def read(self):
        raise AssertionError("never called after a failed start")

    def stop(self):
        raise AssertionError("never called after a failed start")


def test_cpu_only_host_is_finite_non_negative_and_floored():
    meter = EnergyMeter(gpu=None)
    with meter.phase("train"):
        time.sleep(0.05)
    report = meter.report
    assert not report.gpu_available and report.gpu_energy_J == 0.0
    assert report.cpu_energy_J >= 0.0 and math.isfinite(report.cpu_energy_J)
    assert report.total_energy_J >= report.duration_s * 50.0 > 0.0
    assert report.total_energy_J == max(report.cpu_energy_J, report.duration_s * 50.0)


def test_gpu_counter_net_of_given_idle_and_cpu_part():
    meter = EnergyMeter(gpu=FakeGpu(), cpu=FakeCpu(), idle_watts=0.0)
    with meter.phase("train") as phase:
        pass
    assert phase.gpu_energy_J == 300.0 and phase.cpu_energy_J == 12.5
    assert phase.gpu_available and phase.cpu_available
    assert phase.total_energy_J == 312.5
    assert meter.report.gpu_name == "Fake A100"


def test_idle_baseline_is_subtracted_and_floored_at_zero():
    huge_idle = EnergyMeter(gpu=FakeGpu(), cpu=None, idle_watts=1e6)
    with huge_idle.phase("train") as phase:
        time.sleep(0.01)
    assert phase.gpu_energy_J == 0.0 and phase.gpu_available
    assert EnergyMeter(gpu=None, cpu=None).idle_watts == 50.0  # the benchmark's fixed baseline, never probed


def test_phases_outside_a_block_are_blocks_of_their_own():
    meter = EnergyMeter(gpu=FakeGpu(), cpu=FakeCpu(), idle_watts=0.0)
    with meter.phase("tokenizer"):
        pass
    with meter.phase("train"):
        pass
    with meter.phase("train"):
        pass
    report = meter.report.to_dict()
    assert set(report["phases"]) == {"tokenizer", "train"} and len(report["blocks"]) == 3
    assert report["phases"]["train"]["gpu_energy_J"] == 600.0
    assert report["gpu_energy_J"] == 900.0 and report["cpu_energy_J"] == 37.5


def test_failing_backend_never_breaks_the_measured_work():
    meter = EnergyMeter(gpu=None, cpu=BrokenCpu())
    with meter.measure():
        with meter.phase("train") as phase:
            work = sum(range(1000))
    assert work == 499500
    assert not phase.cpu_available and phase.cpu_energy_J == 0.0 and not meter.report.cpu_available


def test_timeout_raises_and_keeps_partial_energy():
    meter = EnergyMeter(gpu=None, cpu=FakeCpu())
    with pytest.raises(TrainingTimeoutError, match="exceeded 0.2 s"):
        with meter.phase("train"), wall_clock_guard(0.2):
            while True:
                time.sleep(0.01)
    phase = meter.report.phases["train"]
    assert phase.duration_s >= 0.2 and phase.cpu_energy_J == 12.5
    assert TrainingTimeoutError.reason == "train_time_exceeded"


def test_guard_does_not_fire_when_work_finishes_in_time():
    handler = signal.getsignal(signal.SIGALRM)
    with wall_clock_guard(5.0):
        time.sleep(0.01)
        assert 0 < signal.getitimer(signal.ITIMER_REAL)[0] <= 5.0
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)  # the alarm is cancelled
    assert signal.getsignal(signal.SIGALRM) is handler  # and the previous handler is back


class FakeClock:
    """``time.monotonic`` that moves only when told to."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class CountingGpu:
    """An energy counter that reads ``joules`` as set by the test."""

    name = "Fake GPU"

    def __init__(self) -> None:
        self.joules = 0.0

    def energy_J(self):
        return self.joules


def test_each_phase_and_the_total_are_floored_at_50_watts(monkeypatch):
    """Phase 'tokenizer': 10 s, 100 J GPU net + 12.5 J CPU -> its floor 500 J. Phase 'train': 2 s, 1,000 J
    net + 12.5 J -> 1,012.5 J. The report floors the summed duration, not the sum of floored phases:
    max(1,125 J, 12 s × 50 W = 600 J) = 1,125 J (the phases' own totals would add to 1,512.5 J)."""
    clock, gpu = FakeClock(), CountingGpu()
    monkeypatch.setattr(eval.energy.time, "monotonic", clock)
    meter = EnergyMeter(gpu=gpu, cpu=FakeCpu(), idle_watts=50.0)
    with meter.phase("tokenizer") as tokenizer:
        clock.now += 10.0
        gpu.joules += 10.0 * 50.0 + 100.0  # idle draw plus 100 J of work
    with meter.phase("train") as train:
        clock.now += 2.0
        gpu.joules += 2.0 * 50.0 + 1_000.0
    assert (tokenizer.duration_s, tokenizer.gpu_energy_J, tokenizer.cpu_energy_J) == (10.0, 100.0, 12.5)
    assert tokenizer.total_energy_J == 500.0 and tokenizer.to_dict()["total_energy_J"] == 500.0
    assert train.total_energy_J == 1_012.5
    report = meter.report.to_dict()
    assert report["duration_s"] == 12.0 and report["gpu_energy_J"] == 1_100.0 and report["cpu_energy_J"] == 25.0
    assert report["total_energy_J"] == 1_125.0
    assert report["phases"]["tokenizer"]["total_energy_J"] == 500.0


def test_total_floor_wins_when_little_energy_is_measured(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(eval.energy.time, "monotonic", clock)
    meter = EnergyMeter(gpu=None, cpu=FakeCpu())
    for _ in range(2):
        with meter.phase("train"):
            clock.now += 3.0
    report = meter.report
    assert report.phases["train"].duration_s == 6.0 and report.cpu_energy_J == 25.0
    assert report.phases["train"].total_energy_J == report.total_energy_J == 300.0


CPU_TICK_KWH = 2.0**-16  # one CodeCarbon sample of the fake tracker: 54.931640625 J, exact in binary


class FakePynvml:
    """The pynvml calls NvmlGpu makes: a counter in integer millijoules, set by the test; reads are logged."""

    def __init__(self, events: list[str]) -> None:
        self.events = events
        self.millijoules = 1_000_000

    def nvmlInit(self):
        pass

    def nvmlDeviceGetHandleByIndex(self, index):
        return f"gpu{index}"

    def nvmlDeviceGetName(self, handle):
        return b"Fake A100-SXM4-80GB"

    def nvmlDeviceGetTotalEnergyConsumption(self, handle):
        self.events.append("nvml")
        return self.millijoules


class FakeTracker:
    """CodeCarbon's OfflineEmissionsTracker as CodeCarbonCpu drives it: the CPU samples the test adds count once
    the tracker accounts them (flush or stop), into ``_total_cpu_energy.kWh``."""

    instances: list[FakeTracker] = []

    def __init__(self, events: list[str], **kwargs) -> None:
        self.events, self.kwargs = events, kwargs
        self.pending_kwh = 0.0
        self._total_cpu_energy = types.SimpleNamespace(kWh=0.0)
        FakeTracker.instances.append(self)

    def start(self):
        self.events.append("start")

    def flush(self):
        self.events.append("flush")
        self._total_cpu_energy.kWh += self.pending_kwh
        self.pending_kwh = 0.0

    def stop(self):
        self.events.append("stop")
        self._total_cpu_energy.kWh += self.pending_kwh
        self.pending_kwh = 0.0


@pytest.fixture
def fake_hardware(monkeypatch):
    """NvmlGpu over a fake pynvml and CodeCarbonCpu over a fake tracker, a clock the test moves, and the log of
    counter reads and tracker calls in the order they happened."""
    events: list[str] = []
    nvml = FakePynvml(events)
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    monkeypatch.setattr(codecarbon, "OfflineEmissionsTracker", lambda **kwargs: FakeTracker(events, **kwargs))
    monkeypatch.setattr(FakeTracker, "instances", [])
    clock = FakeClock()
    monkeypatch.setattr(eval.energy.time, "monotonic", clock)
    return types.SimpleNamespace(nvml=nvml, clock=clock, events=events,
                                 tracker=lambda: FakeTracker.instances[-1])


def spend(hw, seconds: float, work_J: float, cpu_samples: int) -> None:
    """``seconds`` pass; the GPU counter rises by its 50 W idle draw plus ``work_J``; the CPU takes samples."""
    hw.clock.now += seconds
    hw.nvml.millijoules += round((seconds * 50.0 + work_J) * 1000)
    hw.tracker().pending_kwh += cpu_samples * CPU_TICK_KWH


def test_a_block_is_one_nvml_delta_and_one_codecarbon_tracker_split_into_phases(fake_hardware):
    """A cell's shape: a gap, probe, tokenizer, a gap, train. The block is charged as the benchmark charges one
    measure() around train(): duration 17.5 s; NVML 5,215 J - 50 W x 17.5 s = 4,340 J; CPU 8 samples = 439.453125 J;
    total max(4,779.453125 J, 875 J). Phases are read from the same counter and the same running tracker."""
    hw = fake_hardware
    meter = EnergyMeter()
    assert meter.report.gpu_name == "Fake A100-SXM4-80GB" and hw.events == ["nvml"]  # NvmlGpu probes its counter
    hw.events.clear()
    with meter.measure() as block:
        spend(hw, 1.0, 10.0, 1)  # planning before the first phase
        with meter.phase("probe") as probe:
            spend(hw, 2.0, 30.0, 1)
        with meter.phase("tokenizer") as tokenizer:
            spend(hw, 4.0, 300.0, 2)
        spend(hw, 0.5, 0.0, 0)
        with meter.phase("train") as train:
            spend(hw, 10.0, 4_000.0, 4)
    assert len(FakeTracker.instances) == 1
    assert hw.tracker().kwargs == {"country_iso_code": "USA", "save_to_file": False, "log_level": "error",
                                   "measure_power_secs": 1.0}
    assert hw.events == ["nvml", "start", *["nvml", "flush"] * 6, "nvml", "stop"]
    assert (block.duration_s, block.gpu_energy_J, block.cpu_energy_J) == (17.5, 4_340.0, 439.453125)
    assert block.total_energy_J == 4_779.453125
    assert [(p.duration_s, p.gpu_energy_J, p.cpu_energy_J) for p in (probe, tokenizer, train)] == [
        (2.0, 30.0, 54.931640625), (4.0, 300.0, 109.86328125), (10.0, 4_000.0, 219.7265625)]
    report = meter.report.to_dict()
    assert (report["duration_s"], report["gpu_energy_J"], report["cpu_energy_J"], report["total_energy_J"]) == (
        17.5, 4_340.0, 439.453125, 4_779.453125)
    assert report["unphased_s"] == 1.5 and report["gpu_available"] and report["cpu_available"]
    assert list(report["phases"]) == ["probe", "tokenizer", "train"] and len(report["blocks"]) == 1


def test_phases_each_restarting_codecarbon_miss_what_lies_between_them(fake_hardware):
    """The same work as the block above, measured the old way (each phase its own tracker and counter delta): three
    trackers, and the 1.5 s between phases go unmeasured: 16 s, 4,330 J GPU, 7 samples (4,714.521484375 J in all)
    against the block's 17.5 s, 4,340 J, 8 samples (4,779.453125 J)."""
    hw = fake_hardware
    meter = EnergyMeter()
    hw.clock.now += 1.0  # planning: no tracker runs, so its CPU sample is lost
    hw.nvml.millijoules += 60_000
    with meter.phase("probe"):
        spend(hw, 2.0, 30.0, 1)
    with meter.phase("tokenizer"):
        spend(hw, 4.0, 300.0, 2)
    hw.clock.now += 0.5
    hw.nvml.millijoules += 25_000
    with meter.phase("train"):
        spend(hw, 10.0, 4_000.0, 4)
    report = meter.report
    assert len(FakeTracker.instances) == 3 and len(report.blocks) == 3 and report.unphased_s == 0.0
    assert (report.duration_s, report.gpu_energy_J, report.cpu_energy_J) == (16.0, 4_330.0, 384.521484375)
    assert report.total_energy_J == 4_714.521484375


def test_a_phase_that_raises_inside_a_block_keeps_its_split_and_the_block_closes(fake_hardware):
    hw = fake_hardware
    meter = EnergyMeter()
    with pytest.raises(TrainingTimeoutError):
        with meter.measure() as block, meter.phase("train") as train:
            spend(hw, 3.0, 100.0, 1)
            raise TrainingTimeoutError("training wall-clock budget exceeded (3.0 s)")
    assert (train.duration_s, train.gpu_energy_J, train.cpu_energy_J) == (3.0, 100.0, 54.931640625)
    assert (block.duration_s, block.gpu_energy_J, block.cpu_energy_J) == (3.0, 100.0, 54.931640625)
    assert hw.events[-2:] == ["nvml", "stop"]
    with pytest.raises(RuntimeError, match="blocks do not nest"):
        with meter.measure(), meter.measure():
            pass


def test_run_record_has_benchmark_fields_and_writes_atomically(tmp_path, monkeypatch):
    record = RunRecord(
        submission="fixture",
        training_energy_J=1.0,
        training_duration_s=2.0,
        cpu_energy_J=3.0,
        total_energy_J=100.0,
        val_char_accuracy=0.5,
        val_chars=10,
        gpu_name=None,
        proxy_train=True,
    )
    path = tmp_path / "run" / "result.json"
    record.save(path)
    saved = json.loads(path.read_text())
    for key in ("submission", "training_energy_J", "training_duration_s", "cpu_energy_J", "total_energy_J",
                "val_char_accuracy", "val_chars", "gpu_name", "date_utc", "disqualified", "reason", "proxy_train"):
        assert key in saved
    assert saved["proxy_train"] is True

    import eval.records

    def crash(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(eval.records.os, "replace", crash)
    with pytest.raises(OSError):
        write_json_atomic(path, {"half": "written"})
    assert json.loads(path.read_text()) == saved  # the old file is intact
    assert [p.name for p in path.parent.iterdir()] == ["result.json"]  # no temp file left behind


def test_staged_folder_swaps_in_whole_or_not_at_all(tmp_path):
    target = tmp_path / "saved"
    with staged_folder(target) as staging:
        (staging / "a.txt").write_text("first")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["saved"] and (target / "a.txt").read_text() == "first"

    with pytest.raises(RuntimeError, match="crash"):
        with staged_folder(target) as staging:
            (staging / "a.txt").write_text("second")
            raise RuntimeError("crash while writing")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["saved"] and (target / "a.txt").read_text() == "first"

    with staged_folder(target) as staging:
        (staging / "b.txt").write_text("third")
    assert sorted(p.name for p in target.iterdir()) == ["b.txt"] and sorted(p.name for p in tmp_path.iterdir()) == ["saved"]
