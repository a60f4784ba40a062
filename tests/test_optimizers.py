"""zoo.optimizers: Muon takes exactly the hidden matrices of every model, AdamW the rest; the trainer records the
choice, a checkpoint keeps it, and what cannot run (no torch.optim.Muon, an export for torch 2.5.1) is refused."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from eval.energy import EnergyMeter
from eval.errors import UserError
from test_train import TINY, patterned_ids
from zoo import optimizers
from zoo.optimizers import DEFAULT_OPTIMIZER, OPTIMIZERS, hidden_matrices, make_optimizer
from zoo.registry import lookup
from zoo.train import TrainSettings, train

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny_model(name: str, **extra) -> nn.Module:
    config_cls, model_cls = lookup(name)
    torch.manual_seed(0)
    return model_cls(config_cls(vocab_size=24, **TINY[name], **extra))


def names(model: nn.Module, params: list[nn.Parameter]) -> set[str]:
    ids = {id(p) for p in params}
    return {name for name, p in model.named_parameters() if id(p) in ids}


@pytest.mark.parametrize("name", ["transformer", "mamba", "hyena"])
@pytest.mark.parametrize("tied", [True, False])
def test_muon_takes_the_linear_weights_of_the_blocks_and_nothing_else(name, tied):
    model = tiny_model(name, tie_embeddings=tied) if "tie_embeddings" in lookup(name)[0].__dataclass_fields__ \
        else tiny_model(name)
    chosen = hidden_matrices(model)
    linear = {f"{module_name}.weight" for module_name, module in model.named_modules()
              if isinstance(module, nn.Linear)}
    assert names(model, chosen) == linear - {"lm_head.weight"}
    assert all(p.dim() == 2 for p in chosen) and len({id(p) for p in chosen}) == len(chosen)
    assert "wte.weight" not in names(model, chosen)


@pytest.mark.parametrize("name", ["transformer", "mamba", "hyena"])
def test_the_two_optimizers_split_every_parameter_once(name):
    model = tiny_model(name)
    split = make_optimizer(model, "muon", 1e-3, 0.1, fused=False)
    muon, adamw = split.parts[1], split.parts[0]
    assert isinstance(muon, torch.optim.Muon) and isinstance(adamw, torch.optim.AdamW)
    in_muon = {id(p) for group in muon.param_groups for p in group["params"]}
    in_adamw = {id(p) for group in adamw.param_groups for p in group["params"]}
    assert not in_muon & in_adamw and in_muon | in_adamw == {id(p) for p in model.parameters()}
    total = sum(p.numel() for p in model.parameters())
    assert split.record() == {"name": "muon", "parameters": {
        "adamw": total - split.counts["muon"], "muon": sum(p.numel() for p in hidden_matrices(model))}}
    assert [group["lr"] for group in split.param_groups] == [1e-3] * len(split.param_groups)
    only_adamw = make_optimizer(model, "adamw", 1e-3, 0.1, fused=False)
    assert len(only_adamw.parts) == 1 and only_adamw.record()["parameters"] == {"adamw": total}


def test_a_muon_step_is_torchs_muon_on_the_matrices_and_adamw_on_the_rest():
    model, reference = tiny_model("transformer"), tiny_model("transformer")
    x = torch.as_tensor(patterned_ids(33)[None, :], dtype=torch.long)
    split = make_optimizer(model, "muon", 1e-2, 0.1, fused=False)
    matrices = names(reference, hidden_matrices(reference))
    by_name = dict(reference.named_parameters())
    muon = torch.optim.Muon([by_name[n] for n in sorted(matrices)], lr=1e-2, weight_decay=0.1,
                            adjust_lr_fn="match_rms_adamw")
    rest = [p for n, p in reference.named_parameters() if n not in matrices]
    adamw = torch.optim.AdamW(optimizers.adamw_groups(rest, 0.1), lr=1e-2, betas=optimizers.BETAS)
    for net, steppers in ((model, [split]), (reference, [muon, adamw])):
        for _ in range(2):
            loss = nn.functional.cross_entropy(net(x[:, :-1])[0], x[0, 1:])
            loss.backward()
            for stepper in steppers:
                stepper.step()
                stepper.zero_grad()
    for (name, got), (_, want) in zip(model.named_parameters(), reference.named_parameters()):
        assert torch.equal(got, want), name


def test_training_with_muon_learns_and_is_recorded():
    ids = patterned_ids()
    settings = TrainSettings(batch_size=8, max_steps=30, lr=1e-2, progress=False, evals=2, margin_s=0.0,
                             optimizer="muon")
    result = train("transformer", ids, 24, budget_s=120, overrides=TINY["transformer"], device="cpu",
                   settings=settings, meter=EnergyMeter(gpu=None, cpu=None))
    first, last = result.val_losses[0][1], result.val_losses[-1][1]
    assert last < first - 0.5
    assert result.summary()["optimizer"]["name"] == "muon"


def test_each_model_trains_with_its_default_unless_told():
    assert set(DEFAULT_OPTIMIZER) == {"transformer", "mamba", "hyena"} and set(DEFAULT_OPTIMIZER.values()) <= set(OPTIMIZERS)
    for name in DEFAULT_OPTIMIZER:
        result = train(name, patterned_ids(), 24, budget_s=60, overrides=TINY[name], device="cpu",
                       settings=TrainSettings(max_steps=1, progress=False, threads=1),
                       meter=EnergyMeter(gpu=None, cpu=None))
        assert result.summary()["optimizer"]["name"] == DEFAULT_OPTIMIZER[name]


def test_an_unknown_optimizer_or_a_torch_without_muon_is_a_user_error(monkeypatch):
    def run(optimizer: str) -> None:
        train("transformer", patterned_ids(), 24, budget_s=60, overrides=TINY["transformer"], device="cpu",
              settings=TrainSettings(max_steps=1, progress=False, optimizer=optimizer),
              meter=EnergyMeter(gpu=None, cpu=None))

    with pytest.raises(UserError, match="unknown optimizer 'sgd'; choose from adamw, muon"):
        run("sgd")
    monkeypatch.delattr(torch.optim, "Muon")
    with pytest.raises(UserError, match=r"has no torch.optim.Muon \(torch 2.9 added it\); use the optimizer adamw"):
        run("muon")


def test_an_export_replays_adamw_and_refuses_a_muon_run(tmp_path):
    from lab.commands.export import replay_settings

    manifest = {"steps": 2, "tokens_seen": 2 * 4 * 32, "lr_schedule": [1e-3, 2e-3], "compiled": False}
    config = {"block_size": 32}
    assert replay_settings(tmp_path, manifest, config, None, None)["optimizer"] == "adamw"  # an older checkpoint
    assert replay_settings(tmp_path, {**manifest, "optimizer": "adamw"}, config, None, None)["optimizer"] == "adamw"
    with pytest.raises(UserError, match=r"trained with muon, which the benchmark image \(torch==2.5.1\) lacks"):
        replay_settings(tmp_path, {**manifest, "optimizer": "muon"}, config, None, None)


def test_a_checkpoint_records_the_optimizer(tmp_path):
    from tokenizers_local import train_tokenizer
    from eval.data import SplitText
    from zoo.checkpoint import read_manifest, save_checkpoint

    text = SplitText("the cat sat on the mat. " * 200, "train", "fixture", proxy=True)
    tokenizer = train_tokenizer(text, "bytebpe", 300, progress=False)
    ids = tokenizer.encode(text.text)
    result = train("transformer", ids, tokenizer.vocab_size, budget_s=60, overrides=TINY["transformer"],
                   device="cpu", settings=TrainSettings(max_steps=2, progress=False, optimizer="muon"),
                   meter=EnergyMeter(gpu=None, cpu=None))
    folder = save_checkpoint(tmp_path / "ckpt", result, tokenizer.save(tmp_path / "tok"), text)
    assert read_manifest(folder)["optimizer"] == "muon"
    assert json.loads((folder / "manifest.json").read_text())["compiled"] is False


def test_muon_on_modal_is_refused_before_anything_runs(tmp_path, capsys):
    from lab.cli import main

    out = tmp_path / "cmp"
    code = main(["compare", "--tokenizers", "bytebpe:300", "--models", "transformer", "--out", str(out),
                 "--backend", "modal", "--dry-run", "--optimizer", "muon"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "the Modal image has the benchmark's torch 2.5.1" in err
    assert not out.exists()


def test_the_optimizer_flag_reaches_the_cell_options():
    from lab import cell
    from lab.commands.grid import options_from
    from lab.cli import build_parser

    args = build_parser().parse_args(["quickstart", "--optimizer", "muon"])
    assert options_from(args).optimizer == "muon"
    assert options_from(build_parser().parse_args(["quickstart"])).optimizer is None
    assert cell.CellOptions.from_saved({"optimizer": "muon"}).optimizer == "muon"
