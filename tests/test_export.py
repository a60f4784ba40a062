"""``subchar export``: the generated submission.py, run as the benchmark harness runs it, reproduces the run."""

from __future__ import annotations

import importlib
import importlib.util
import json
import math
import shutil
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import numpy as np
import pytest

import torch

import tokenizers_local
from lab import export
from lab.export import parts
from lab.export.run import read_run
from lab.export.inline import PROJECT_PACKAGES
from eval.contract import CharModel
from conftest import TickingClock, write_data
from eval.data import SplitText, load_split
from eval.errors import UserError
from eval.evaluate import evaluate
from lab.cell import Cell, CellOptions, run_cell
from subchar import CharAdapter
from subchar.batch_engine import batch_adapter
from lab.cli import main
from zoo.checkpoint import load_checkpoint, save_checkpoint
from zoo.streaming import TorchTokenLM
from zoo.train import TrainSettings, lr_at, train

OPTIONS = CellOptions(budget_s=30, mode="exact", beam=4, eval_chars=400, test_chars=0, progress=False)
TINY_TRANSFORMER = {"block_size": 16, "n_layer": 1, "n_head": 2, "n_embd": 16}

# Loads a submission exactly as the harness's run_eval.py does (spec_from_file_location "user_submission",
# never registered in sys.modules, train_text plus valid_text when train() takes it, isinstance against
# wikitext.CharModel, reset once then predict-before-observe), while a meta-path hook refuses every import
# the submission file itself makes outside the benchmark image. Beside the harness's accuracy it prints the
# predictions and, from the model's distribution() before each observe, bits/char summed as eval.evaluate sums them.
HARNESS = textwrap.dedent('''
    import importlib.abc, importlib.util, inspect, json, math, sys
    submission, train_file, valid_file, harness_dir = sys.argv[1:5]
    sys.path.insert(0, harness_dir)  # the image sets PYTHONPATH=/workspace, where wikitext.py lives
    ALLOWED = {"torch", "numpy", "tiktoken", "regex", "wikitext"} | set(sys.stdlib_module_names)
    refused = []

    class ImageOnly(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            frame = sys._getframe(1)
            while frame is not None and frame.f_code.co_filename.startswith("<frozen"):
                frame = frame.f_back
            root = name.split(".")[0]
            if frame is not None and frame.f_code.co_filename == submission and root not in ALLOWED:
                refused.append(name)
                raise ImportError(f"{name} is not in the benchmark image")
            return None

    sys.meta_path.insert(0, ImageOnly())
    import wikitext
    spec = importlib.util.spec_from_file_location("user_submission", submission)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    train_text = open(train_file, encoding="utf-8").read()
    valid_text = open(valid_file, encoding="utf-8").read()
    if "valid_text" in inspect.signature(module.train).parameters:
        model = module.train(train_text, valid_text=valid_text)
    else:
        model = module.train(train_text)
    assert isinstance(model, wikitext.CharModel), type(model).__mro__
    model.reset()
    guesses, bit_total = [], 0.0
    for char in valid_text:
        guesses.append(model.predict())
        p = model.distribution().get(char, 0.0)
        bit_total = bit_total - math.log2(p) if p > 0 else math.inf
        model.observe(char)
    correct = sum(guess == char for guess, char in zip(guesses, valid_text))
    print(json.dumps({"accuracy": correct / max(1, len(valid_text)), "bits_per_char": bit_total / len(valid_text),
                      "predictions": "".join(guesses), "refused": refused}))
''')
WIKITEXT_STUB = textwrap.dedent('''
    from abc import ABC, abstractmethod

    class CharModel(ABC):
        @abstractmethod
        def reset(self) -> None: ...
        @abstractmethod
        def predict(self) -> str: ...
        @abstractmethod
        def observe(self, char: str) -> None: ...
''')


@pytest.fixture(scope="module")
def ngram_run(tmp_path_factory):
    """A finished pipeline cell: bytebpe 300 + n-gram, exact mode with beam 4, scored on 400 val chars while the
    n-gram learned from them (CellOptions.adapt, on by default)."""
    folder = tmp_path_factory.mktemp("ngram")
    data, train_file = write_data(folder)
    record = run_cell(Cell("ngram", "bytebpe", 300), OPTIONS, folder / "run", str(data), str(train_file))
    train_text = load_split("train", train_file=str(train_file)).text
    valid = load_split("valid", str(data)).text[: OPTIONS.eval_chars]
    return folder, record, train_text, valid


def load_in_process(path: Path):
    """The harness's way of loading (not registered in sys.modules), without a wikitext module around."""
    name = f"user_submission_{uuid.uuid4().hex}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sys.modules.pop(name, None)  # the file registers itself for dataclasses; do not leak it into other tests
    return module


def run_in_harness(submission: Path, train_text: str, valid: str, folder: Path) -> dict:
    """The HARNESS script above in a fresh interpreter: the file's accuracy, bits/char, predictions, refusals."""
    (folder / "harness").mkdir()
    (folder / "harness" / "wikitext.py").write_text(WIKITEXT_STUB, encoding="utf-8")
    (folder / "run_eval.py").write_text(HARNESS, encoding="utf-8")
    (folder / "train.txt").write_text(train_text, encoding="utf-8")
    (folder / "valid.txt").write_text(valid, encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-I", str(folder / "run_eval.py"), str(submission), str(folder / "train.txt"),
         str(folder / "valid.txt"), str(folder / "harness")],
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def checkpoint_scores(checkpoint_dir: Path, valid: str, mode: str, beam: int, adapt: bool = False) -> dict:
    """What the run's own checkpoint answers on ``valid``, read as the HARNESS script reads a submission
    (``adapt``: the n-gram learning what the adapter commits, as the run's did)."""
    checkpoint = load_checkpoint(checkpoint_dir)
    model = CharAdapter(checkpoint.token_lm(adapt=adapt), checkpoint.tokenizer, mode=mode, beam=beam)
    model.reset()
    guesses, bit_total = [], 0.0
    for char in valid:
        guesses.append(model.predict())
        p = model.distribution().get(char, 0.0)
        bit_total = bit_total - math.log2(p) if p > 0 else math.inf
        model.observe(char)
    correct = sum(guess == char for guess, char in zip(guesses, valid))
    return {"accuracy": correct / len(valid), "bits_per_char": bit_total / len(valid), "predictions": "".join(guesses),
            "refused": []}


def test_ngram_export_reproduces_the_run_under_the_harness(ngram_run, tmp_path):
    """Counting is deterministic: the file's accuracy, bits/char and every prediction equal the run's exactly,
    its model learning from the scored text as the run's did (the run's batch engine against the harness's loop)."""
    folder, record, train_text, valid = ngram_run
    assert record["extra"]["adapt"] is True
    path = export.export_run(folder / "run", tmp_path / "out", author="@subchar")
    assert path == tmp_path / "out" / "submission.py"
    source = path.read_text(encoding="utf-8")
    assert export.unguarded_imports(source) == [] and "count_ngram_chunked(ids" in source
    assert "ADAPT = True\n" in source and "class OnlineKneserNey" in source
    assert "TRAIN_CHARS = None\n" in source and "COUNTED_CHARS = None\n" in source  # the plan took all the text
    assert "train() trains on all of the text it is given" in " ".join(source.split())
    assert "__author__ = '@subchar'" in source and "bytebpe300-ngram" in source and "PROXY" in source
    assert f"val char accuracy {record['val_char_accuracy']:.4f}" in " ".join(source.split())

    result = run_in_harness(path, train_text, valid, tmp_path)
    assert (result["accuracy"], result["bits_per_char"]) == (record["val_char_accuracy"], record["bits_per_char"])
    assert result == checkpoint_scores(folder / "run" / "checkpoint", valid, "exact", 4, adapt=True)
    assert 0.3 < result["accuracy"] < 0.9  # a fixture that leaves room for a wrong model to show


def test_an_ngram_export_without_adaptation_is_the_static_model(ngram_run, tmp_path):
    """``--no-adapt`` overrides the run's setting: the file then answers as the train counts alone do, which here
    differs from the adapting run (so the flag is what made the difference)."""
    folder, record, train_text, valid = ngram_run
    path = export.export_run(folder / "run", tmp_path / "out", adapt=False)
    source = path.read_text(encoding="utf-8")
    assert "ADAPT = False\n" in source and "does not learn while it is scored" in " ".join(source.split())
    result = run_in_harness(path, train_text, valid, tmp_path)
    assert result == checkpoint_scores(folder / "run" / "checkpoint", valid, "exact", 4, adapt=False)
    assert result["bits_per_char"] != record["bits_per_char"]


def test_a_run_from_before_adaptation_exports_without_it(ngram_run, tmp_path):
    """A cell.json without ``adapt`` is of a run that never adapted: its export does not either."""
    folder, *_ = ngram_run
    old = tmp_path / "old"
    shutil.copytree(folder / "run", old)
    cell = json.loads((old / "cell.json").read_text(encoding="utf-8"))
    del cell["options"]["adapt"]
    (old / "cell.json").write_text(json.dumps(cell), encoding="utf-8")
    assert export.read_run(old).adapt is False and export.read_run(folder / "run").adapt is True
    assert export.read_run(old, adapt=True).adapt is True


def test_ngram_export_runs_under_subchar_evaluate(ngram_run, tmp_path):
    folder, record, train_text, valid = ngram_run
    path = export.export_run(folder / "run", tmp_path)
    module = load_in_process(path)
    assert module.CharModel is CharModel  # no wikitext module here: subchar's own contract
    model = module.train(train_text)
    assert isinstance(model, CharModel) and (model.mode, model.beam) == ("exact", 4)
    assert module.run_text(train_text) == train_text

    source = path.read_text(encoding="utf-8")
    assert str(folder) not in source and str(tmp_path) not in source and "pytest-of" not in source  # no local paths
    tokenizer = tokenizers_local.load(folder / "run" / "tokenizer")
    phase = record["energy_phases"]["tokenizer"]
    assert module.TOKENIZER == {
        "family": "bytebpe", "vocab_size": 300, "learned_on": "train.raw", "learned_on_proxy": True,
        "learned_on_chars": len(train_text), "learned_on_sha256": tokenizer.info.train_sha256,
        "learning_seconds": phase["duration_s"], "learning_joules": phase["total_energy_J"],
        "cost_counted": "no: learned before train(), outside the harness's measured window",
    }
    assert f"sha256 {tokenizer.info.train_sha256}" in " ".join(source.split())
    result = evaluate(model, valid, None, progress=False)
    assert result.accuracy == record["val_char_accuracy"]

    encoding = module.build_encoding()
    module.ENCODE_CHUNK_CHARS = 50  # many cuts: still the ids of the run's tokenizer over the whole text
    ids = module.encode(encoding, train_text)
    assert len(list(module.chunks(train_text, 50))) > 10
    assert ids.dtype == np.uint16 and ids.tolist() == tokenizer.encode(train_text)


def test_a_cell_checkpoint_is_scored_with_the_data_dir_it_was_trained_with(ngram_run, tmp_path, monkeypatch):
    folder, record, *_ = ngram_run
    monkeypatch.delenv("SUBCHAR_DATA", raising=False)
    assert main(["eval", str(folder / "run" / "checkpoint"), "--chars", "400", "--beam", "4", "--json",
                 str(tmp_path / "record.json")]) == 0
    assert json.loads((tmp_path / "record.json").read_text())["val_char_accuracy"] == record["val_char_accuracy"]


def test_cli_export_and_overrides(ngram_run, tmp_path, capsys):
    folder, *_ = ngram_run
    assert main(["export", str(folder / "run"), "--out", str(tmp_path), "--mode", "spec", "--beam", "0"]) == 0
    assert "submission.py" in capsys.readouterr().out
    source = (tmp_path / "submission.py").read_text(encoding="utf-8")
    assert "MODE = 'spec'\n" in source and "BEAM = None\n" in source and "ORDER = 5\n" in source
    assert "ADAPT = True\n" in source  # the run's
    assert main(["export", str(folder / "run"), "--out", str(tmp_path), "--no-adapt"]) == 0
    assert "ADAPT = False\n" in (tmp_path / "submission.py").read_text(encoding="utf-8")


def test_transformer_export_replays_the_training(tmp_path, monkeypatch):
    data, train_file = write_data(tmp_path)
    text = load_split("train", train_file=str(train_file))
    valid = load_split("valid", str(data)).text[:150]
    tokenizer = tokenizers_local.train_tokenizer(text, "bytebpe", 300, progress=False)
    tokenizer_dir = tokenizer.save(tmp_path / "tokenizer")
    ids = np.asarray(tokenizer.encode(text.text), dtype=np.int64)
    result = train("transformer", ids, tokenizer.vocab_size, budget_s=120, overrides=TINY_TRANSFORMER, device="cpu",
                   settings=TrainSettings(max_steps=3, progress=False))
    save_checkpoint(tmp_path / "ckpt", result, tokenizer_dir, text)
    expected = evaluate(batch_adapter(TorchTokenLM(result.model), tokenizer, mode="exact", beam=2), valid, None,
                        progress=False)

    assert read_run(tmp_path / "ckpt").beam == 8  # a `subchar train` run records no beam: eval's default
    path = export.export_run(tmp_path / "ckpt", tmp_path / "out", mode="exact", beam=2)
    source = path.read_text(encoding="utf-8")
    assert export.unguarded_imports(source) == []
    assert "'batch_size': 8" in source and "SEED = 0\n" in source
    assert str(tmp_path) not in source and "pytest-of" not in source
    module = load_in_process(path)
    assert module.LR_SCHEDULE == result.lrs and len(result.lrs) == 3
    assert module.TOKENIZER["learning_seconds"] == tokenizer.info.training_seconds
    assert module.TOKENIZER["learning_joules"] is None  # `subchar tokenizer train` meters no energy: said, not guessed
    model = module.train(text.text)
    assert isinstance(model, CharModel)
    trained = model.lm.model.state_dict()
    assert trained.keys() == result.model.state_dict().keys()
    assert all(torch.equal(trained[k], v) for k, v in result.model.state_dict().items())
    assert evaluate(model, valid, None, progress=False).accuracy == expected.accuracy

    # the benchmark's `submit.py --seed N` sets SEED=N for the submission: train() follows it
    reseeded = train("transformer", ids, tokenizer.vocab_size, budget_s=120, overrides=TINY_TRANSFORMER,
                     device="cpu", seed=5, settings=TrainSettings(max_steps=3, progress=False))
    monkeypatch.setenv("SEED", "5")
    harness_seeded = module.train(text.text).lm.model.state_dict()
    assert all(torch.equal(harness_seeded[k], v) for k, v in reseeded.model.state_dict().items())
    assert not torch.equal(harness_seeded["wte.weight"], trained["wte.weight"])


def test_a_clock_stopped_transformer_run_replays_under_the_harness(tmp_path, monkeypatch):
    """The run stops on its clock, so its learning rate followed elapsed time. The file replays the rate of each
    step as the run recorded it: in the harness's loop, on the same device, its every prediction and its bits/char
    equal the run's checkpoint's exactly."""

    monkeypatch.setattr("zoo.train.time", TickingClock(0.01))  # about 0.04 s a step: some 35 steps, on any machine
    data, train_file = write_data(tmp_path)
    text = load_split("train", train_file=str(train_file))
    valid = load_split("valid", str(data)).text[:300]
    tokenizer = tokenizers_local.train_tokenizer(text, "bytebpe", 300, progress=False)
    ids = np.asarray(tokenizer.encode(text.text), dtype=np.int64)
    result = train("transformer", ids, tokenizer.vocab_size, budget_s=2.0, overrides=TINY_TRANSFORMER, device="cpu",
                   settings=TrainSettings(progress=False))
    save_checkpoint(tmp_path / "ckpt", result, tokenizer.save(tmp_path / "tokenizer"), text)
    path = export.export_run(tmp_path / "ckpt", tmp_path / "out", mode="exact", beam=2)

    assert run_in_harness(path, text.text, valid, tmp_path) == checkpoint_scores(tmp_path / "ckpt", valid, "exact", 2)
    assert result.stop_reason == "budget" and len(result.lrs) == result.steps > 20
    by_step = [lr_at(step, step / result.steps, TrainSettings()) for step in range(result.steps)]
    assert result.lrs != by_step  # what replaying the step count with a step-based schedule got wrong


@pytest.mark.parametrize("model_name, overrides", [
    ("mamba", {"block_size": 16, "n_layer": 1, "d_model": 16}),
    ("hyena", {"block_size": 16, "n_layer": 1, "n_embd": 16}),
])
def test_mamba_and_hyena_exports_train_the_same_weights(ngram_run, tmp_path, model_name, overrides):
    folder, _, train_text, _ = ngram_run
    tokenizer_dir = folder / "run" / "tokenizer"
    tokenizer = tokenizers_local.load(tokenizer_dir)
    text = SplitText(train_text, "train", "fixture", proxy=True)
    ids = np.asarray(tokenizer.encode(train_text), dtype=np.int64)
    result = train(model_name, ids, tokenizer.vocab_size, budget_s=120, overrides=overrides, device="cpu",
                   settings=TrainSettings(max_steps=2, progress=False))
    save_checkpoint(tmp_path / "ckpt", result, tokenizer_dir, text)
    module = load_in_process(export.export_run(tmp_path / "ckpt", tmp_path / "out", mode="exact", beam=2))
    model = module.train(train_text)
    trained = model.lm.model.state_dict()
    assert all(torch.equal(trained[k], v) for k, v in result.model.state_dict().items())
    stream = train_text[:120]  # the inlined streaming path (hyena: its trunk) predicts what the project's does
    expected = evaluate(batch_adapter(TorchTokenLM(result.model), tokenizer, mode="exact", beam=2), stream, None,
                        progress=False)
    got = evaluate(model, stream, None, progress=False)
    assert (got.correct, got.bits_per_char) == (expected.correct, expected.bits_per_char)


def test_recorded_rates_replace_lr_and_older_checkpoints_get_a_step_based_schedule(ngram_run, tmp_path):
    folder, _, train_text, _ = ngram_run
    tokenizer = tokenizers_local.load(folder / "run" / "tokenizer")
    ids = np.asarray(tokenizer.encode(train_text), dtype=np.int64)
    result = train("transformer", ids, tokenizer.vocab_size, budget_s=60, overrides=TINY_TRANSFORMER, device="cpu",
                   settings=TrainSettings(max_steps=2, progress=False))
    checkpoint = save_checkpoint(tmp_path / "ckpt", result, folder / "run" / "tokenizer",
                                 SplitText(train_text, "train", "fixture", proxy=True))
    module = load_in_process(export.export_run(checkpoint, tmp_path / "out"))
    assert module.SETTINGS == {"batch_size": 8, "evals": 0, "progress": False, "compile": False,
                               "optimizer": "adamw"}
    assert module.LR_SCHEDULE == result.lrs
    with pytest.raises(UserError, match="recorded the learning rate of each of its steps.*--lr applies only to"):
        export.export_run(checkpoint, tmp_path / "out", lr=0.01)

    manifest_path = checkpoint / "manifest.json"
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    manifest_path.write_text(json.dumps({**manifest, "lr_schedule": result.lrs[:1]}), encoding="utf-8")
    with pytest.raises(UserError, match=r"damaged lr_schedule \(1 rates for 2 steps, compiled False\)"):
        export.export_run(checkpoint, tmp_path / "out")
    del manifest["lr_schedule"], manifest["compiled"]  # a checkpoint saved before rates were recorded
    manifest_path.write_text(json.dumps(manifest), encoding="utf-8")
    path = export.export_run(checkpoint, tmp_path / "out", lr=0.01)
    module = load_in_process(path)
    assert module.SETTINGS == {"batch_size": 8, "evals": 0, "progress": False, "lr": 0.01, "max_steps": 2}
    assert module.LR_SCHEDULE is None
    assert "with a step-based learning-rate schedule from lr 0.01" in " ".join(path.read_text().split())


def test_only_bytebpe_runs_export(tmp_path, capsys):
    data, train_file = write_data(tmp_path)
    text = load_split("train", train_file=str(train_file))
    tokenizer = tokenizers_local.train_tokenizer(text, "unigram", 400, progress=False)
    tokenizer_dir = tokenizer.save(tmp_path / "tokenizer")
    ids = np.asarray(tokenizer.encode(text.text), dtype=np.int64)
    result = train("ngram", ids, tokenizer.vocab_size, overrides={"order": 3})
    save_checkpoint(tmp_path / "ckpt", result, tokenizer_dir, text)
    with pytest.raises(UserError, match="only bytebpe runs can be exported.*'unigram'"):
        export.export_run(tmp_path / "ckpt", tmp_path / "out")
    assert main(["export", str(tmp_path / "ckpt"), "--out", str(tmp_path / "out")]) == 2
    message = capsys.readouterr().err
    assert message.startswith("error: only bytebpe") and message.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_folders_that_are_not_runs(tmp_path):
    with pytest.raises(UserError, match="no run folder"):
        export.export_run(tmp_path / "missing", tmp_path / "out")
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "notes.txt").write_text("hello")
    with pytest.raises(UserError, match="is not a subchar run"):
        export.export_run(tmp_path / "junk", tmp_path / "out")
    baseline = tmp_path / "char-kn"
    baseline.mkdir()
    cell = {"cell": {"model": "char-kn", "family": None, "vocab_size": None}, "options": {}}
    (baseline / "cell.json").write_text(json.dumps(cell))
    with pytest.raises(UserError, match="baseline, which has no tokenizer"):
        export.export_run(baseline, tmp_path / "out")
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    (unfinished / "cell.json").write_text(json.dumps({**cell, "cell": {**cell["cell"], "family": "bytebpe"}}))
    (unfinished / "record.json").write_text(json.dumps({"reason": "train_time_exceeded"}))
    with pytest.raises(UserError, match="no checkpoint.*train_time_exceeded"):
        export.export_run(unfinished, tmp_path / "out")


def test_self_checks_catch_a_stale_part_list(ngram_run, monkeypatch):
    folder, *_ = ngram_run
    facts = export.read_run(folder / "run")
    monkeypatch.setattr(parts, "NGRAM_TRAINER", (export.Part("zoo.ngram"),))
    with pytest.raises(RuntimeError, match="uses undefined .*check_ids.*count_ngram_chunked"):
        export.build_submission(facts)
    monkeypatch.setattr(parts, "NGRAM_TRAINER", (export.Part("zoo.ngram"), export.Part("zoo.train", ("no_such",))))
    with pytest.raises(RuntimeError, match="no longer defines no_such"):
        export.build_submission(facts)


def test_import_and_name_checks():
    source = "try:\n    import mamba_ssm\nexcept ImportError:\n    mamba_ssm = None\nimport os, tqdm\nimport torch.nn\n"
    assert export.unguarded_imports(source) == ["tqdm"]
    source = "from __future__ import annotations\ndef f(x: Missing) -> int:\n    return helper(x) + len(x)\n"
    assert export.undefined_names(source) == ["helper"]


@pytest.mark.parametrize("template", ["register", "base_class", "run", "tokenizer", "standins", "ngram_entry",
                                      "neural_entry", "mixture_entry"])
def test_templates_are_real_modules_that_lint_clean(template):
    module = importlib.import_module(f"lab.export.templates.{template}")
    source = Path(module.__file__).read_text(encoding="utf-8")
    assert export.undefined_names(source) == []
    assert set(export.unguarded_imports(source)) <= PROJECT_PACKAGES  # dropped when inlined: earlier parts define them
