import json
import math
import signal
import time

import pytest

import eval.energy
from eval.energy import EnergyMeter
from eval.guard import TrainingTimeoutError, wall_clock_guard
from eval.records import RunRecord, staged_folder, write_json_atomic


class FakeGpu:
    """A GPU whose counter rises 300 J per reading and draws 80 W when idle."""

    name = "Fake A100"

    def __init__(self):
        self.joules = 1_000.0

    def energy_J(self):
        self.joules += 300.0
        return self.joules

    def power_W(self):
        return 80.0


class FakeCpu:
    def start(self):
        pass

    def stop(self):
        return 12.5


class BrokenCpu:
    def start(self):
        raise RuntimeError("no RAPL")

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


def test_measured_idle_baseline_is_subtracted_and_floored_at_zero():
    meter = EnergyMeter(gpu=FakeGpu(), cpu=None, idle_watts=None, idle_seconds=0.06)
    assert meter.idle_watts == 80.0
    with meter.phase("train") as phase:
        time.sleep(0.1)
    assert phase.gpu_energy_J == pytest.approx(300.0 - 80.0 * phase.duration_s)
    huge_idle = EnergyMeter(gpu=FakeGpu(), cpu=None, idle_watts=1e6)
    with huge_idle.phase("train") as phase:
        time.sleep(0.01)
    assert phase.gpu_energy_J == 0.0


def test_phases_are_reported_separately_and_summed():
    meter = EnergyMeter(gpu=FakeGpu(), cpu=FakeCpu(), idle_watts=0.0)
    with meter.phase("tokenizer"):
        pass
    with meter.phase("train"):
        pass
    with meter.phase("train"):
        pass
    report = meter.report.to_dict()
    assert set(report["phases"]) == {"tokenizer", "train"}
    assert report["phases"]["train"]["gpu_energy_J"] == 600.0
    assert report["gpu_energy_J"] == 900.0 and report["cpu_energy_J"] == 37.5


def test_failing_backend_never_breaks_the_measured_work():
    meter = EnergyMeter(gpu=None, cpu=BrokenCpu())
    with meter.phase("train") as phase:
        work = sum(range(1000))
    assert work == 499500
    assert not phase.cpu_available and phase.cpu_energy_J == 0.0


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

    def power_W(self):
        return 50.0


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
