"""zoo.compile_payback: compile only where the measured cost is paid back inside the budget; the trainer follows
the rule and records why."""

from __future__ import annotations

import math

import pytest

from conftest import TickingClock
from eval.energy import EnergyMeter
from test_train import TINY, patterned_ids
from zoo import compile_payback
from zoo.compile_payback import MEASURED, Payback, break_even_s, compile_choice, device_class
from zoo.train import TrainSettings, train

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_break_even_is_where_the_saved_step_time_equals_the_compile_time():
    assert break_even_s(30.0, 1.5) == pytest.approx(90.0)  # 90 s compiled: 60 s of steps at 1.5x = 90 s eager
    assert break_even_s(10.0, 2.0) == pytest.approx(20.0)
    assert math.isinf(break_even_s(5.0, 1.0)) and math.isinf(break_even_s(5.0, 0.8))


@pytest.mark.parametrize("device_type, name, expected", [
    ("cpu", "cpu", "cpu"), ("cuda", "NVIDIA H100 80GB HBM3", "h100"), ("cuda", "NVIDIA H200", "h200"),
    ("cuda", "NVIDIA A100-SXM4-80GB", "a100"), ("cuda", "NVIDIA L4", None)])
def test_device_classes(device_type, name, expected):
    assert device_class(device_type, name) == expected


def test_compile_only_when_the_budget_exceeds_the_break_even(monkeypatch):
    monkeypatch.setitem(MEASURED, ("transformer", "h100"), Payback(30.0, 1.5, "test"))
    long = compile_choice("transformer", "cuda", "NVIDIA H100 80GB HBM3", 300.0, None)
    short = compile_choice("transformer", "cuda", "NVIDIA H100 80GB HBM3", 60.0, None)
    assert long["compile"] is True and long["why"] == "break-even 90 s < 300 s left"
    assert short["compile"] is False and short["why"] == "break-even 90 s >= 60 s left"
    assert long["measured"] == {"compile_s": 30.0, "speedup": 1.5, "machine": "test"}


def test_unmeasured_stays_eager_and_the_setting_wins(monkeypatch):
    monkeypatch.setattr(compile_payback, "MEASURED", {})
    assert compile_choice("mamba", "cuda", "NVIDIA L4", 300.0, None) == {
        "compile": False, "why": "no measured payback for mamba on NVIDIA L4: eager", "measured": None}
    assert compile_choice("mamba", "cpu", "cpu", 300.0, True)["compile"] is True
    assert compile_choice("mamba", "cpu", "cpu", 300.0, False)["why"] == "TrainSettings.compile"


def test_a_fixed_step_count_stays_eager_unless_told(monkeypatch):
    monkeypatch.setitem(MEASURED, ("hyena", "cpu"), Payback(1.0, 3.0, "test"))
    assert compile_choice("hyena", "cpu", "cpu", 300.0, None)["compile"] is True
    assert compile_choice("hyena", "cpu", "cpu", 300.0, None, fixed_steps=True) == {
        "compile": False, "why": "a fixed step count: eager", "measured": None}
    assert compile_choice("hyena", "cpu", "cpu", 300.0, True, fixed_steps=True)["compile"] is True


def test_every_measurement_is_plausible():
    for (model, device), payback in MEASURED.items():
        assert model in ("transformer", "mamba", "hyena") and device in ("cpu", *compile_payback.GPU_CLASSES)
        assert payback.compile_s > 0 and payback.speedup > 0 and payback.machine


def test_the_trainer_follows_the_rule_and_records_it(monkeypatch):
    monkeypatch.setitem(MEASURED, ("transformer", "cpu"), Payback(1e6, 1.01, "test"))
    monkeypatch.setattr("zoo.train.time", TickingClock(0.01))  # a clock-stopped run: some 35 steps
    result = train("transformer", patterned_ids(), 24, budget_s=2, overrides=TINY["transformer"], device="cpu",
                   settings=TrainSettings(progress=False, threads=1, evals=0), meter=EnergyMeter(gpu=None, cpu=None))
    choice = result.summary()["compile_choice"]
    assert result.compiled is False and choice["compile"] is False and choice["why"].startswith("break-even")


def failing_compile(error: Exception):
    def compiled(model):
        def run(x):
            raise error
        return run
    return compiled


def test_a_compile_that_fails_falls_back_to_eager_but_not_when_the_budget_interrupted_it(monkeypatch):
    import zoo.train
    from eval.guard import TrainingTimeoutError

    def run() -> object:
        return train("transformer", patterned_ids(), 24, budget_s=60, overrides=TINY["transformer"], device="cpu",
                     settings=TrainSettings(max_steps=2, progress=False, threads=1, compile=True),
                     meter=EnergyMeter(gpu=None, cpu=None))

    monkeypatch.setattr(zoo.train.torch, "compile", failing_compile(RuntimeError("no kernel")))
    result = run()
    assert result.compiled is False and result.steps == 2  # trained eagerly
    try:
        raise TrainingTimeoutError("training exceeded 60 s wall clock; the run is disqualified")
    except TrainingTimeoutError:
        try:
            raise RuntimeError("inductor wrapped it")  # as InductorError wraps what interrupts a compilation
        except RuntimeError as err:
            wrapped = err
    monkeypatch.setattr(zoo.train.torch, "compile", failing_compile(wrapped))
    with pytest.raises(TrainingTimeoutError):
        run()


def test_a_timeout_that_surfaces_wrapped_outside_the_step_is_still_a_timeout(monkeypatch):
    import zoo.train
    from eval.guard import TrainingTimeoutError, caused_by_timeout

    timeout = TrainingTimeoutError("training exceeded 60 s wall clock; the run is disqualified")
    wrapped = RuntimeError("raised in compiled backward")
    wrapped.__context__ = timeout
    assert caused_by_timeout(wrapped) and caused_by_timeout(timeout) and not caused_by_timeout(RuntimeError("x"))

    for error, expected, message in ((wrapped, TrainingTimeoutError, r"60 s wall clock \(inside RuntimeError\)"),
                                     (ValueError("other"), ValueError, "other")):
        def interrupted(*args, error=error, **kwargs):
            raise error

        monkeypatch.setattr(zoo.train, "train_neural", interrupted)
        with pytest.raises(expected, match=message):
            train("transformer", patterned_ids(), 24, budget_s=60, device="cpu",
                  meter=EnergyMeter(gpu=None, cpu=None))
