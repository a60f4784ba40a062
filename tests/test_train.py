"""zoo.train: every model learns, the trainer stops itself inside the budget, bad input is a UserError."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from eval.energy import EnergyMeter
from eval.errors import UserError
from test_ngram import BruteForceKN
from zoo.ngram import KneserNeyLM
from zoo.train import NGRAM, TrainSettings, model_names, train

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


def test_trainer_stops_itself_before_a_tiny_budget():
    name = neural_names()[0]
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
    reference = BruteForceKN(ids.tolist(), 3, 24)
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


def test_each_steps_learning_rate_is_recorded_and_a_replay_gives_the_same_weights():
    """A clock-stopped run's rates depend on how fast its steps ran; replaying them (``lr_schedule``) with the
    same seed and ids on the same device trains the same weights, bit for bit."""
    name = neural_names()[0]
    settings = TrainSettings(batch_size=4, progress=False, margin_s=0.0)
    run = train(name, patterned_ids(), 24, budget_s=0.5, overrides=tiny_overrides(name), device="cpu", seed=3,
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
