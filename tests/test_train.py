"""zoo.train: every model learns, the trainer stops itself inside the budget, bad input is a UserError."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import TickingClock
from eval.energy import EnergyMeter
from eval.errors import UserError
from test_ngram import BruteForceKN
from zoo.ngram import KneserNeyLM
from zoo.train import NGRAM, ThreadChoice, TrainSettings, model_names, train

TINY = {
    "transformer": {"n_layer": 1, "n_head": 2, "n_embd": 32, "block_size": 32},
    "mamba": {"n_layer": 1, "d_model": 32, "block_size": 32},
    "hyena": {"n_layer": 1, "n_embd": 32, "block_size": 32},
}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def quiet_meter() -> EnergyMeter:
    return EnergyMeter(gpu=None, cpu=None)


def patterned_ids(length: int = 4000, vocab_size: int = 24) -> np.ndarray:
    """A learnable stream: a repeating phrase with occasional random tokens."""
    rng = np.random.default_rng(0)
    ids = np.tile(np.arange(12), length // 12 + 1)[:length]
    noise = rng.random(length) < 0.05
    ids[noise] = rng.integers(12, vocab_size, noise.sum())
    return ids


def neural_names() -> list[str]:
    return [name for name in model_names() if name != NGRAM]


def tiny_overrides(name: str) -> dict:
    from zoo.registry import lookup

    fields = lookup(name)[0].__dataclass_fields__
    return {k: v for k, v in TINY.get(name, {"block_size": 32}).items() if k in fields}


@pytest.mark.parametrize("name", neural_names())
def test_each_model_trains_and_loss_drops(name):
    settings = TrainSettings(batch_size=8, max_steps=30, lr=1e-2, progress=False, evals=2, margin_s=0.0)
    result = train(name, patterned_ids(), 24, budget_s=120, overrides=tiny_overrides(name), device="cpu",
                   settings=settings, meter=quiet_meter())
    assert result.stop_reason == "max_steps" and result.steps == 30
    assert result.tokens_seen == 30 * 8 * 32
    first_val = result.val_losses[0][1]
    assert result.train_loss < np.log(24) - 1.0  # well below the uniform guess
    assert result.val_losses[-1][1] <= first_val
    assert result.energy is not None and result.energy.name == "train" and result.energy.duration_s > 0
    assert not result.model.training


def test_trainer_stops_itself_before_a_tiny_budget(monkeypatch):
    name = neural_names()[0]
    monkeypatch.setattr("zoo.train.time", TickingClock(0.05))  # about 0.2 s a step: a dozen steps fill the budget
    settings = TrainSettings(batch_size=4, progress=False, margin_s=0.5)
    result = train(name, patterned_ids(), 24, budget_s=3.0, overrides=tiny_overrides(name), device="cpu",
                   settings=settings, meter=quiet_meter())  # the guard would raise TrainingTimeoutError at 3 s
    assert result.stop_reason == "budget" and result.steps > 0
    assert result.seconds < 3.0


def test_ngram_training_is_counting():
    ids = patterned_ids()
    result = train(NGRAM, ids, 24, overrides={"order": 3}, meter=quiet_meter())
    assert isinstance(result.model, KneserNeyLM) and result.model.order == 3
    assert result.config == {"vocab_size": 24, "order": 3}
    assert result.tokens_seen == len(ids) and result.stop_reason == "counted"
    reference = BruteForceKN([ids.tolist()], 3, 24)
    for history in [(0, 1), (11, 0), (5, 20), ()]:
        state = result.model.start()
        for token in history:
            state = result.model.step(state, token)
        expected = [reference.prob(history, w) for w in range(24)]
        np.testing.assert_allclose(result.model.probs(state), expected, rtol=1e-12, atol=0)


def test_same_seed_same_weights():
    name = neural_names()[0]
    settings = TrainSettings(batch_size=4, max_steps=3, progress=False, evals=1)
    runs = [train(name, patterned_ids(), 24, budget_s=60, overrides=tiny_overrides(name), device="cpu", seed=3,
                  settings=settings, meter=quiet_meter()) for _ in range(2)]
    for a, b in zip(runs[0].model.state_dict().values(), runs[1].model.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_each_steps_learning_rate_is_recorded_and_a_replay_gives_the_same_weights(monkeypatch):
    """A clock-stopped run's rates depend on how fast its steps ran; replaying them (``lr_schedule``) with the
    same seed and ids on the same device trains the same weights, bit for bit."""
    name = neural_names()[0]
    monkeypatch.setattr("zoo.train.time", TickingClock(0.01))  # the same clock-stopped run on any machine
    settings = TrainSettings(batch_size=4, progress=False, margin_s=1.5)
    run = train(name, patterned_ids(), 24, budget_s=2.0, overrides=tiny_overrides(name), device="cpu", seed=3,
                settings=settings, meter=quiet_meter())
    assert run.stop_reason == "budget" and len(run.lrs) == run.steps > 2 and run.compiled is False
    replay = train(name, patterned_ids(), 24, budget_s=60, overrides=tiny_overrides(name), device="cpu", seed=3,
                   settings=TrainSettings(batch_size=4, progress=False, lr_schedule=run.lrs, evals=0),
                   meter=quiet_meter())
    assert replay.stop_reason == "max_steps" and replay.steps == run.steps and replay.lrs == run.lrs
    for a, b in zip(run.model.state_dict().values(), replay.model.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_a_planned_step_count_gives_a_step_based_schedule():
    name = neural_names()[0]
    settings = TrainSettings(batch_size=4, max_steps=4, warmup_steps=2, progress=False)
    result = train(name, patterned_ids(), 24, budget_s=60, overrides=tiny_overrides(name), device="cpu",
                   settings=settings, meter=quiet_meter())
    lr = settings.lr
    assert result.lrs == [lr * 0.5, lr * (1 - 0.9 * 0.25), lr * (1 - 0.9 * 0.5), lr * (1 - 0.9 * 0.75)]
    with pytest.raises(UserError, match="max_steps 3 contradicts the 4 learning rates of lr_schedule"):
        train(name, patterned_ids(), 24, budget_s=60, overrides=tiny_overrides(name), device="cpu", meter=quiet_meter(),
              settings=TrainSettings(max_steps=3, lr_schedule=result.lrs, progress=False))


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"model_name": "nope"}, "unknown model"),
        ({"token_ids": np.array([0, 1, 99] * 10)}, "must lie in"),
        ({"token_ids": np.array([0, 1])}, "training tokens"),
        ({"budget_s": 0}, "budget must be positive"),
        ({"overrides": {"no_such_field": 1}}, "has no setting"),
        ({"model_name": NGRAM, "overrides": {"n_layer": 2}}, "only the override 'order'"),
    ],
)
def test_bad_input_is_a_user_error(kwargs, message):
    args = {"model_name": neural_names()[0], "token_ids": patterned_ids(), "budget_s": 10, **kwargs}
    with pytest.raises(UserError, match=message):
        train(args.pop("model_name"), args.pop("token_ids"), 24, device="cpu", meter=quiet_meter(),
              settings=TrainSettings(max_steps=1, progress=False), **args)


def test_a_module_of_your_own_is_checked_before_training():
    ids = np.arange(64) % 8

    class NoSizes(torch.nn.Module):
        def forward(self, idx):
            return idx

    with pytest.raises(UserError, match="NoSizes needs an int attribute vocab_size"):
        train(NoSizes(), ids, 8, budget_s=5, device="cpu")
    model = NoSizes()
    model.vocab_size, model.block_size = 9, 4
    with pytest.raises(UserError, match="NoSizes has vocab_size 9 but the token ids need 8"):
        train(model, ids, 8, budget_s=5, device="cpu")
    model.vocab_size = 8
    with pytest.raises(UserError, match="apply to zoo models only"):
        train(model, ids, 8, budget_s=5, overrides={"n_layer": 2}, device="cpu")
    with pytest.raises(UserError, match="cannot train object: pass a zoo model's name or an nn.Module"):
        train(object(), ids, 8, budget_s=5, device="cpu")


def stepped(choice: ThreadChoice, steps: int, seconds) -> list[int | None]:
    """``steps`` steps through ``choice`` on a fake clock: step i on t threads lasts ``seconds(i, t)``; returns the
    thread count of each step."""
    used = []
    for step in range(steps):
        threads = choice.current()
        used.append(threads)
        choice.after_step(seconds(step, threads))
    return used


def test_the_probe_keeps_all_threads_when_faster_and_one_when_they_are_slower_or_collapse():
    idle = ThreadChoice(available=4)  # a warm-up step, then pairs on 1 and on 4 threads; 4 are faster
    assert stepped(idle, 8, lambda step, threads: {1: 0.12, 4: 0.07}[threads]) == [1, 1, 4, 1, 4, 4, 4, 4]
    assert idle.threads == 4 and idle.record() == {"how": "probe", "available": 4,
                                                   "probe_step_s": {"1": 0.12, "4": 0.07}, "collapsed_at_step": None}
    busy = ThreadChoice(available=2)  # the first pair shows a collapse: no second pair is spent on it
    assert stepped(busy, 5, lambda step, threads: {1: 0.12, 2: 0.6}[threads]) == [1, 1, 2, 1, 1]
    assert busy.threads == 1 and busy.record()["probe_step_s"] == {"1": 0.12, "2": 0.6}
    close = ThreadChoice(available=2)  # slower on 2, within the collapse ratio: both pairs, then the faster
    assert stepped(close, 7, lambda step, threads: {1: 0.10, 2: 0.12}[threads]) == [1, 1, 2, 1, 2, 1, 1]


def test_all_threads_fall_back_to_one_for_good_when_their_steps_collapse_mid_run():
    choice = ThreadChoice(available=2)
    slowed = lambda step, threads: 0.12 if threads == 1 else (0.07 if step < 8 else 0.5)  # another process from step 8
    used = stepped(choice, 16, slowed)
    assert used[5:10] == [2, 2, 2, 2, 2] and set(used[10:]) == {1}  # two of the last three steps slow: then 1
    assert choice.record()["collapsed_at_step"] == 10
    assert stepped(choice, 4, lambda step, threads: 0.01) == [1, 1, 1, 1]  # no way back, however fast 1 thread runs
    hiccup = ThreadChoice(available=2)  # one slow step (a validation pass, a GC) is not a collapse
    used = stepped(hiccup, 12, lambda step, threads: 0.12 if threads == 1 else (0.5 if step == 7 else 0.07))
    assert set(used[5:]) == {2} and hiccup.record()["collapsed_at_step"] is None


def test_a_fixed_count_one_thread_or_cuda_skip_the_probe_and_torchs_count_is_restored():
    assert stepped(ThreadChoice(available=2, fixed=2), 4, lambda step, threads: 9.0) == [2, 2, 2, 2]
    assert ThreadChoice(available=2, fixed=2).record()["how"] == "fixed"
    assert stepped(ThreadChoice(available=1), 3, lambda step, threads: 0.1) == [1, 1, 1]
    assert stepped(ThreadChoice(available=None), 3, lambda step, threads: 0.1) == [None, None, None]  # CUDA
    assert torch.get_num_threads() == 1
    with ThreadChoice(available=2) as choice:
        stepped(choice, 5, lambda step, threads: {1: 0.12, 2: 0.07}[threads])
        choice.before_step()
        assert torch.get_num_threads() == 2  # the probe's choice is torch's setting for the steps
    assert torch.get_num_threads() == 1


def test_the_summary_records_threads_how_they_were_chosen_and_tokens_per_second():
    name = neural_names()[0]
    torch.set_num_threads(2)  # the fixture puts 1 back afterwards
    result = train(name, patterned_ids(), 24, budget_s=60, overrides=tiny_overrides(name), device="cpu",
                   settings=TrainSettings(batch_size=4, max_steps=8, progress=False), meter=quiet_meter())
    summary = result.summary()
    assert torch.get_num_threads() == 2  # the probe's switches are undone when training ends
    assert summary["threads"] in (1, 2) and summary["thread_choice"]["how"] == "probe"
    assert set(summary["thread_choice"]["probe_step_s"]) == {"1", "2"}
    assert summary["tokens_per_s"] == summary["tokens_seen"] / summary["seconds"] > 0
    fixed = train(name, patterned_ids(), 24, budget_s=60, overrides=tiny_overrides(name), device="cpu",
                  settings=TrainSettings(batch_size=4, max_steps=2, threads=1, progress=False), meter=quiet_meter())
    assert fixed.summary()["threads"] == 1 and fixed.summary()["thread_choice"]["how"] == "fixed"
    short = train(name, patterned_ids(), 24, budget_s=60, overrides=tiny_overrides(name), device="cpu",
                  settings=TrainSettings(batch_size=4, max_steps=3, progress=False), meter=quiet_meter())
    assert short.threads == 2 and short.thread_choice["probe_step_s"].keys() == {"1", "2"}  # ended mid-probe
    counted = train(NGRAM, patterned_ids(), 24, budget_s=60, device="cpu", meter=quiet_meter()).summary()
    assert counted["threads"] is None and counted["ngrams"] == sum(len(t.keys) for t in
                                                                    train(NGRAM, patterned_ids(), 24).model.tables)


def test_every_step_and_validation_runs_on_the_chosen_threads(monkeypatch):
    """Torch's own count is restored only after the final validation: on a busy machine that pass on all threads
    collapsed and took a 2 s run past its cap."""
    import zoo.train

    seen = []
    validation_loss = zoo.train.validation_loss
    monkeypatch.setattr(zoo.train, "validation_loss",
                        lambda *args: seen.append(torch.get_num_threads()) or validation_loss(*args))
    torch.set_num_threads(2)  # the fixture puts 1 back afterwards
    name = neural_names()[0]
    result = train(name, patterned_ids(), 24, budget_s=60, overrides=tiny_overrides(name), device="cpu",
                   settings=TrainSettings(batch_size=4, max_steps=6, evals=2, threads=1, progress=False),
                   meter=quiet_meter())
    assert [step for step, _ in result.val_losses] == [1, 4, 6] and seen == [1, 1, 1]
    assert torch.get_num_threads() == 2


@pytest.mark.parametrize("name", ["transformer", "mamba", "hyena"])
def test_the_summary_carries_hardware_accounting_and_the_size_rule(name, monkeypatch):
    from zoo import hardware
    monkeypatch.setattr(hardware, "_cpu_peaks", {1: 1e11})  # no GEMM timing in a unit test
    result = train(name, patterned_ids(), 24, budget_s=30, overrides=TINY[name], device="cpu", meter=quiet_meter(),
                   settings=TrainSettings(max_steps=3, progress=False, threads=1))
    summary = result.summary()
    facts = summary["hardware"]
    assert facts["flops_per_token"] == hardware.flops_per_token(name, result.config, facts["block"]) > 0
    assert facts["tokens_per_s"] == summary["tokens_per_s"] > 0
    assert facts["flops_per_s"] == pytest.approx(facts["tokens_per_s"] * facts["flops_per_token"])
    assert facts["mfu"] == pytest.approx(facts["flops_per_s"] / 1e11) and facts["peak_flops"] == 1e11
    assert facts["compile_s"] == 0.0 and facts["data_s"] >= 0 and facts["step_s"] > 0
    assert summary["size_rule"]["applied"] is False and "block_size" in summary["size_rule"]["why"]


def test_the_ngram_summary_has_no_hardware_accounting():
    result = train(NGRAM, patterned_ids(), 24, budget_s=30, meter=quiet_meter())
    assert result.summary()["hardware"] is None and result.summary()["size_rule"] is None


def test_prefetched_batches_are_the_plain_batches_in_the_same_order():
    from zoo.train import Batches

    ids = np.arange(5000, dtype=np.uint16)
    plain = Batches(ids, 16, 4, 0.02, torch.device("cpu"), seed=7)
    ahead = Batches(ids, 16, 4, 0.02, torch.device("cpu"), seed=7)
    assert plain.pin is False and ahead.pin is False  # pinned memory only for a GPU
    for step in range(6):
        if step % 2:
            ahead.prefetch()
            ahead.prefetch()  # a second call waits for the batch to be taken
        got, want = ahead.train_batch(), plain.train_batch()
        assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
        assert torch.equal(got[0][:, 1:], got[1][:, :-1]) and got[0].dtype == torch.int64


@pytest.mark.skipif(not torch.cuda.is_available(), reason="pinned memory needs a GPU")
def test_pinned_batches_reach_the_gpu_equal():
    from zoo.train import Batches

    ids = np.arange(5000, dtype=np.uint16)
    cpu = Batches(ids, 16, 4, 0.02, torch.device("cpu"), seed=7)
    gpu = Batches(ids, 16, 4, 0.02, torch.device("cuda"), seed=7)
    assert gpu.pin is True
    gpu.prefetch()
    assert torch.equal(gpu.train_batch()[0].cpu(), cpu.train_batch()[0])
