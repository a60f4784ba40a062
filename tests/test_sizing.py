"""zoo.sizing: the size rule grows with throughput and budget, is capped by the data, yields to overrides and keeps
the default Config off CUDA; the probe times steps without disturbing the training's random numbers."""

from __future__ import annotations

from dataclasses import asdict

import numpy as np
import pytest
import torch

from zoo.hardware import flops_per_token, non_embedding_params
from zoo.registry import lookup
from zoo.sizing import LADDER, TOKENS_PER_PARAM, choose_shape, plan_size, probe_tokens_per_s, shape_values
from zoo.train import TrainSettings, train

pytestmark = pytest.mark.usefixtures("one_torch_thread")

MODELS = ("transformer", "mamba", "hyena")
PLENTY = 10**12  # train tokens: no data cap


def defaults(name: str) -> dict:
    return asdict(lookup(name)[0](vocab_size=2048))


def plan(name="transformer", rate=1e5, seconds=300.0, train_tokens=PLENTY, device="cuda", overrides=None, **kw):
    calls = []

    def probe(reference):
        calls.append(reference)
        return rate

    result = plan_size(name, defaults(name), overrides or {}, device, train_tokens, lambda: seconds, probe, **kw)
    return result, calls


@pytest.mark.parametrize("name", MODELS)
def test_the_first_rung_is_every_models_default_config_and_every_rung_builds(name):
    config = defaults(name)
    assert all(config[k] == v for k, v in shape_values(LADDER[0], config).items())
    for shape in LADDER:
        lookup(name)[0](**{**config, **shape_values(shape, config)})  # a valid Config (RoPE: even head size)


@pytest.mark.parametrize("name", MODELS)
def test_the_chosen_size_grows_with_throughput_and_with_budget(name):
    rungs = [plan(name, rate=rate)[0].record["rung"] for rate in (1e3, 1e5, 1e6, 1e7, 1e8)]
    assert rungs == sorted(rungs) and rungs[0] == 0 and rungs[-1] > rungs[0]
    by_budget = [plan(name, rate=1e5, seconds=s)[0].record["rung"] for s in (10, 100, 1000, 10000, 100000)]
    assert by_budget == sorted(by_budget) and by_budget[-1] > by_budget[0]


def test_the_choice_is_the_largest_rung_with_20_tokens_per_param():
    result, calls = plan(rate=3e5, seconds=300)
    record = result.record
    assert record["applied"] and len(calls) == 1 and calls[0]["n_embd"] == 128  # the probe ran the default shape
    ratios = [row["tokens_per_param"] for row in record["ladder"]]
    chosen = record["rung"]
    assert ratios[chosen] >= TOKENS_PER_PARAM and all(r < TOKENS_PER_PARAM for r in ratios[chosen + 1:])
    shape = LADDER[chosen]
    assert result.values == {"n_embd": shape.width, "n_layer": shape.n_layer, "n_head": shape.n_head,
                             "block_size": shape.block_size}
    # the inputs are recorded: tokens/s x the reference's FLOPs per token is the FLOP/s every rung is planned with
    reference = defaults("transformer")
    assert record["probe_flops_per_s"] == 3e5 * flops_per_token("transformer", reference, reference["block_size"])
    row = record["chosen"]
    config = {**reference, **result.values}
    assert row["params_non_embedding"] == non_embedding_params("transformer", config)
    assert row["tokens"] == int(record["probe_flops_per_s"] * 300 / flops_per_token("transformer", config,
                                                                                       shape.block_size))


def test_one_pass_over_the_data_caps_the_size():
    fast = plan(rate=1e9, seconds=3000)[0].record
    assert fast["rung"] == len(LADDER) - 1
    capped = plan(rate=1e9, seconds=3000, train_tokens=20_000_000)[0].record
    assert capped["rung"] < fast["rung"] and capped["chosen"]["tokens"] == 20_000_000
    assert capped["chosen"]["tokens_per_param"] >= TOKENS_PER_PARAM
    assert plan(rate=1e9, train_tokens=1000)[0].record["rung"] == 0  # too little data for any rung: the default


def test_a_slow_device_or_tiny_budget_keeps_the_default():
    result = plan(rate=10, seconds=1)[0]
    assert result.record["applied"] and result.record["rung"] == 0 and result.values["n_embd"] == 128


@pytest.mark.parametrize("overrides", [{"n_embd": 64}, {"block_size": 64}, {"n_layer": 2}, {"n_head": 2}])
def test_overrides_of_a_size_field_win_and_skip_the_probe(overrides):
    result, calls = plan(rate=1e9, overrides=overrides)
    assert result.values == {} and not calls and not result.record["applied"]
    assert next(iter(overrides)) in result.record["why"]


def test_other_overrides_keep_the_rule_and_reach_the_probe():
    result, calls = plan(rate=1e7, overrides={"dropout": 0.1})
    assert result.record["applied"] and calls[0]["dropout"] == 0.1


@pytest.mark.parametrize("kw, why", [({"device": "cpu"}, "cpu"), ({"fixed_steps": True}, "fixed step count"),
                                     ({"enabled": False}, "size_rule")])
def test_cpu_fixed_steps_or_off_keep_the_default_without_a_probe(kw, why):
    result, calls = plan(rate=1e12, seconds=1e6, **kw)
    assert result.values == {} and not calls and why in result.record["why"]


def test_off_cuda_the_ladder_never_grows():
    index, rows = choose_shape("transformer", defaults("transformer"), 1e18, 1e6, PLENTY, "cpu")
    assert index == 0 and len(rows) == len(LADDER)


def test_a_module_of_your_own_is_not_sized():
    result = plan_size(None, {}, {}, "cuda", 100, lambda: 1.0, lambda c: 1.0)
    assert result.values == {} and not result.record["applied"]


def test_the_probe_measures_tokens_per_second_without_touching_the_rng():
    config = lookup("transformer")[0](vocab_size=64, n_layer=1, n_head=2, n_embd=32, block_size=16)
    model = lookup("transformer")[1](config)
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    rate = probe_tokens_per_s(model, 2, 16, torch.device("cpu"), seconds=0.05, max_steps=3)
    assert rate > 0 and torch.equal(torch.rand(3), expected)
    assert all(p.grad is None for p in model.parameters())


def test_a_cpu_run_records_the_rule_and_keeps_the_default_size():
    ids = np.tile(np.arange(20), 300)
    result = train("transformer", ids, 32, budget_s=30, device="cpu",
                   settings=TrainSettings(max_steps=2, progress=False, threads=1))
    summary = result.summary()
    assert summary["size_rule"]["applied"] is False and "cpu" in summary["size_rule"]["why"]
    assert summary["config"]["n_embd"] == 128 and summary["config"]["n_layer"] == 4


def test_a_rung_that_runs_out_of_memory_gives_way_to_the_next_smaller():
    asked = []

    def fits(config):
        asked.append(config["n_embd"])
        return config["n_embd"] <= LADDER[2].width

    chosen = plan(rate=1e9)[0].record["rung"]
    assert chosen >= 4
    big, _ = plan(rate=1e9, fits=fits)
    assert big.record["out_of_memory"] == list(range(chosen, 2, -1)) and big.record["rung"] == 2
    assert big.values["n_embd"] == LADDER[2].width and asked == [LADDER[i].width for i in range(chosen, 1, -1)]
    asked.clear()
    nothing_fits, _ = plan(rate=1e9, fits=lambda config: asked.append(config) or False)
    assert nothing_fits.record["rung"] == 0 and len(asked) == chosen  # the default is never tried: it stands


def test_off_cuda_everything_fits_without_building_anything():
    from zoo.sizing import fits_in_memory

    assert fits_in_memory(lambda: pytest.fail("built"), 64, 1024, torch.device("cpu")) is True


def test_models_the_rule_builds_leave_the_trained_models_weights_alone(monkeypatch):
    import zoo.train

    ids = np.tile(np.arange(20), 300)
    tiny = {"n_layer": 1, "n_head": 2, "n_embd": 32, "block_size": 16}
    settings = TrainSettings(max_steps=1, lr=0.0, progress=False, threads=1)  # lr 0: the weights stay initial
    plain = train("transformer", ids, 32, budget_s=30, overrides=tiny, device="cpu", settings=settings)

    def probing_plan(*args, **kwargs):  # as on CUDA: the probe and the memory check each build a model
        args[6](tiny)
        kwargs["fits"]({**defaults("transformer"), **tiny, "vocab_size": 32})
        return plan_size(*args, **kwargs)

    monkeypatch.setattr(zoo.train, "plan_size", probing_plan)
    probed = train("transformer", ids, 32, budget_s=30, overrides=tiny, device="cpu", settings=settings)
    for (name, a), b in zip(plain.model.named_parameters(), probed.model.parameters()):
        assert torch.equal(a, b), name
