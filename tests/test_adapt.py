"""Online adaptation through the lab: the n-grams of a grid learn from the text they are scored on unless told
``--no-adapt``; every record says whether its model did, a changed setting is never taken for the same run, and a
saved run is scored (``subchar eval``) and shown as it was run."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from eval.data import SplitText
from eval.energy import EnergyMeter
from eval.evaluate import evaluate
from eval.guard import TrainingTimeoutError
from lab.cell import CHAR_BASELINE, Cell, CellOptions, adapts, train_cell
from lab.cli import build_parser, main
from lab.commands.common import char_order_default
from lab.commands.folders import ADAPTING_MODELS
from lab.compare import compare, grid, load_grid, read_results
from lab.identity import cell_identity, identity_key
from lab.report import table_markdown
from lab.show import show
from test_compare import fixture_dir
from test_harness import write_data
from zoo import char_baseline
from zoo.char_baseline import CharKneserNey
from zoo.kinds import KINDS
from zoo.online_ngram import OnlineKneserNey

OPTIONS = CellOptions(budget_s=30, mode="exact", beam=4, eval_chars=300, test_chars=0, char_order=4, progress=False)
TRAIN = SplitText("the cat sat on the mat.\nthe dog sat on the log.\n" * 30, "train", "fixture", proxy=True)


@pytest.fixture(autouse=True)
def quiet_meter(monkeypatch):
    """No CodeCarbon start-up per cell: the energy is not what these tests look at."""
    monkeypatch.setattr("lab.cell.EnergyMeter", lambda: EnergyMeter(gpu=None, cpu=None))


# --- options, identity ---------------------------------------------------------------------------------------
def test_the_n_grams_adapt_by_default_and_neural_models_never():
    assert CellOptions().adapt is True and CellOptions().char_order == char_baseline.DEFAULT_ORDER
    no = CellOptions(adapt=False)
    assert [adapts(Cell(name, "bytebpe", 300), CellOptions()) for name in ("ngram", "transformer", "mamba")] == [
        True, False, False]
    assert adapts(Cell(CHAR_BASELINE), CellOptions()) and not adapts(Cell(CHAR_BASELINE), no)
    assert set(ADAPTING_MODELS) == {name for name, kind in KINDS.items() if kind.token_ngram}


def test_options_saved_before_the_option_existed_did_not_adapt(tmp_path):
    saved = CellOptions(char_order=4).to_dict()
    del saved["adapt"]
    assert CellOptions.from_saved(saved) == CellOptions(char_order=4, adapt=False)
    assert CellOptions.from_saved(CellOptions().to_dict()) == CellOptions()
    (tmp_path / "grid.json").write_text(json.dumps({"cells": [{"model": "char-kn"}], "options": saved}))
    assert load_grid(tmp_path)[1].adapt is False  # `subchar modal DIR` reruns an old grid as it ran


def test_a_different_adapt_is_a_different_run_of_an_n_gram_only():
    on, off = CellOptions(), CellOptions(adapt=False)
    for cell in (Cell("ngram", "bytebpe", 300), Cell(CHAR_BASELINE)):
        assert identity_key(cell_identity(cell, on, "sha")) != identity_key(cell_identity(cell, off, "sha"))
        assert cell_identity(cell, on, "sha")["options"]["adapt"] is True
    neural = Cell("transformer", "bytebpe", 300)
    assert cell_identity(neural, on, "sha") == cell_identity(neural, off, "sha")  # the option does not reach it
    # a record from before the option (its identity has no adapt) is the same run as one asked for --no-adapt
    old = cell_identity(Cell("ngram", "bytebpe", 300), off, "sha")
    assert "adapt" not in old["options"]


def test_a_grid_reruns_a_cell_asked_with_another_adapt_and_reuses_the_same(tmp_path):
    data, train = fixture_dir(tmp_path)
    out, cells = tmp_path / "cmp", grid(["bytebpe:300"], ["ngram"])
    ran: list[str] = []

    def run(options: CellOptions) -> list[dict]:
        records, _, _ = compare(cells, options, out, data_dir=str(data), train_file=str(train),
                                on_record=lambda record: ran.append(record["submission"]))
        return records

    adapted = run(OPTIONS)
    static = run(replace(OPTIONS, adapt=False))
    assert ran == ["char-kn", "bytebpe300-ngram"] * 2  # the adapted runs were not taken for static ones
    assert [r["extra"]["adapt"] for r in adapted] == [True, True]
    assert [r["extra"]["adapt"] for r in static] == [False, False]
    assert [r["extra"]["cell_identity"]["options"].get("adapt") for r in adapted] == [True, True]
    assert run(replace(OPTIONS, adapt=False)) == static and len(ran) == 4  # the same settings: reused
    superseded = [r for r in read_results(out / "results.jsonl") if r["extra"].get("superseded")]
    assert [r["extra"]["adapt"] for r in superseded] == [True, True]


# --- the models the cells build ------------------------------------------------------------------------------
def test_the_char_baseline_cell_learns_what_it_observes(tmp_path):
    """The cell's char-kn adapts as ``CharKneserNey.fit(..., adapt=True)`` does, from the same train counts."""
    model, facts = train_cell(Cell(CHAR_BASELINE), replace(OPTIONS, device="cpu"), TRAIN, tmp_path / "run",
                              EnergyMeter(gpu=False, cpu=False))
    assert model.adapt and isinstance(model.lm, OnlineKneserNey)
    assert facts["model"]["train"]["ngrams"] == sum(len(table.keys) for table in model.counts.tables)
    reference = CharKneserNey.fit(TRAIN, order=4, adapt=True)
    static = CharKneserNey.fit(TRAIN, order=4)
    text = "a cat ate the log. a cat ate the log. a cat ate the log."  # the train text's characters
    got, want, fixed = (evaluate(m, text, None, progress=False) for m in (model, reference, static))
    assert (got.correct, got.bits_per_char) == (want.correct, want.bits_per_char)
    assert got.correct > fixed.correct and got.bits_per_char < fixed.bits_per_char  # the first copies paid off


def test_every_record_says_whether_its_model_adapted(tmp_path, monkeypatch):
    from lab import cell as cell_module

    data, train = fixture_dir(tmp_path)
    trainer = cell_module.train_neural
    monkeypatch.setattr(cell_module, "train_neural", lambda *args: trainer(*args[:-1], replace(args[-1], max_steps=2)))
    tiny = {"transformer": {"n_layer": 1, "n_head": 2, "n_embd": 16, "block_size": 16}}
    options = replace(OPTIONS, overrides=tiny, eval_chars=40)
    neural = cell_module.run_cell(Cell("transformer", "bytebpe", 300), options, tmp_path / "nn", str(data), str(train))
    assert neural["extra"]["adapt"] is False  # asked for, but a neural model ignores it

    def out_of_time(*args):
        raise TrainingTimeoutError("the budget ran out")

    monkeypatch.setattr(cell_module, "train_cell", out_of_time)
    timed_out = cell_module.run_cell(Cell(CHAR_BASELINE), options, tmp_path / "dq", str(data), str(train))
    assert timed_out["disqualified"] and timed_out["extra"]["adapt"] is True


# --- the command line ----------------------------------------------------------------------------------------
def parse(argv: list[str]):
    return build_parser().parse_args(argv)


def test_the_flags_parse_and_default_as_documented():
    grid_args = ["compare", "--tokenizers", "bytebpe:300", "--models", "ngram", "--out", "o"]
    assert parse(grid_args).adapt is True and parse([*grid_args, "--no-adapt"]).adapt is False
    assert parse(["quickstart"]).adapt is True and parse(["quickstart", "--no-adapt"]).adapt is False
    assert parse(["quickstart"]).char_order == char_baseline.DEFAULT_ORDER == char_order_default()
    train_args = ["train", "--model", "ngram", "--tokenizer", "t", "--out", "o"]
    assert parse(train_args).adapt is True and parse([*train_args, "--no-adapt"]).adapt is False
    for argv in (["eval", "run"], ["export", "run", "--out", "o"]):  # None: as the run was
        assert (parse(argv).adapt, parse([*argv, "--adapt"]).adapt, parse([*argv, "--no-adapt"]).adapt) == (
            None, True, False)

    from lab.commands.grid import options_from

    assert options_from(parse([*grid_args, "--no-adapt"])).adapt is False
    assert options_from(parse(grid_args)) == replace(CellOptions(), budget_s=300.0, beam=8)


def test_the_char_order_default_is_read_from_the_baseline_module(tmp_path, monkeypatch):
    """The CLI reads zoo.char_baseline.DEFAULT_ORDER from the file (importing it loads the zoo), whatever it is."""
    import importlib.machinery
    import importlib.util

    import lab.commands.common as common

    package = tmp_path / "zoo"
    package.mkdir()
    (package / "char_baseline.py").write_text("X = 1\nDEFAULT_ORDER: int = 9  # another value\n")
    elsewhere = importlib.machinery.ModuleSpec("zoo", None, is_package=True)
    elsewhere.submodule_search_locations = [str(package)]
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *args: elsewhere if name == "zoo" else real(name, *args))
    common.char_order_default.cache_clear()
    try:
        assert common.char_order_default() == 9
    finally:
        monkeypatch.undo()
        common.char_order_default.cache_clear()
    assert common.char_order_default() == char_baseline.DEFAULT_ORDER


# --- saved runs: eval, show ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """An adapted grid cell (bytebpe 300 + n-gram, its checkpoint) and two `subchar train` checkpoints, one trained
    with --no-adapt, on a small proxy text."""
    root = tmp_path_factory.mktemp("adapt")
    data, train_file = write_data(root)
    common = ["--data-dir", str(data), "--train-file", str(train_file)]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("lab.cell.EnergyMeter", lambda: EnergyMeter(gpu=None, cpu=None))
        patch.setattr("lab.checkpoint_runs.EnergyMeter", lambda: EnergyMeter(gpu=None, cpu=None))
        assert main(["compare", "--tokenizers", "bytebpe:300", "--models", "ngram", "--budget", "30",
                     "--eval-chars", "300", "--test-chars", "0", "--char-order", "4", "--beam", "4", "--out", str(root / "grid"),
                     *common]) == 0
        assert main(["tokenizer", "train", "--family", "bytebpe", "--vocab-size", "300", "--out", str(root / "tok"),
                     *common]) == 0
        for name, flag in (("adapting", []), ("static", ["--no-adapt"])):
            assert main(["train", "--model", "ngram", "--tokenizer", str(root / "tok"), "--out", str(root / name),
                         "--set", "order=3", *flag, *common]) == 0
    return root, data


def eval_record(run: Path, *flags: str) -> tuple[str, dict]:
    """`subchar eval RUN` on 300 chars: the name and content of the record it wrote."""
    for old in run.glob("eval_*.json"):
        old.unlink()
    assert main(["eval", str(run), "--chars", "300", "--beam", "4", *flags]) == 0
    [path] = run.glob("eval_*.json")
    return path.name, json.loads(path.read_text(encoding="utf-8"))


def test_a_cell_checkpoint_is_scored_as_its_cell_was(runs, tmp_path):
    root, data = runs
    cell_record = json.loads((root / "grid" / "runs" / "bytebpe300-ngram" / "record.json").read_text())
    assert cell_record["extra"]["adapt"] is True
    checkpoint = root / "grid" / "runs" / "bytebpe300-ngram" / "checkpoint"
    name, record = eval_record(checkpoint, "--data-dir", str(data))
    assert name == "eval_valid_exact_beam4_300chars_batch_cpu_adapt.json"
    assert record["extra"]["adapt"] is True and record["extra"]["eval"]["adapt"] is True
    assert (record["val_char_accuracy"], record["bits_per_char"]) == (cell_record["val_char_accuracy"],
                                                                      cell_record["bits_per_char"])
    name, static = eval_record(checkpoint, "--data-dir", str(data), "--no-adapt")
    assert name == "eval_valid_exact_beam4_300chars_batch_cpu.json" and static["extra"]["adapt"] is False
    assert static["bits_per_char"] != record["bits_per_char"]

    old = tmp_path / "old"  # a run from before the option: its cell.json has no adapt, and it did not adapt
    shutil.copytree(checkpoint.parent, old)
    cell = json.loads((old / "cell.json").read_text())
    del cell["options"]["adapt"]
    (old / "cell.json").write_text(json.dumps(cell))
    name, again = eval_record(old / "checkpoint", "--data-dir", str(data))
    assert name == "eval_valid_exact_beam4_300chars_batch_cpu.json" and again["extra"]["adapt"] is False
    assert again["bits_per_char"] == static["bits_per_char"]


def test_a_trained_checkpoint_is_scored_as_it_was_trained_to_be(runs):
    root, data = runs
    for name, adapt in (("adapting", True), ("static", False)):
        train_record = json.loads((root / name / "train_record.json").read_text())
        assert train_record["extra"]["adapt"] is adapt
        file_name, record = eval_record(root / name, "--data-dir", str(data))
        assert record["extra"]["adapt"] is adapt and file_name.endswith("_adapt.json") is adapt
    _, forced = eval_record(root / "static", "--data-dir", str(data), "--adapt")
    _, adapted = eval_record(root / "adapting", "--data-dir", str(data))
    assert forced["extra"]["adapt"] is True and forced["bits_per_char"] == adapted["bits_per_char"]


def test_show_says_whether_a_run_adapted(runs):
    root, _ = runs
    view = show(root / "grid")
    assert [run["adapt"] for run in view["runs"]] == [True, True]
    rows = {line.split(" | ")[0].lstrip("| "): line.split(" | ") for line in view["table"].splitlines()}
    column = rows["run"].index("online")
    assert rows["bytebpe300-ngram"][column] == rows["char-kn"][column] == "yes"
    assert "online yes: the n-grams also learned from the text they were scored on" in view["table"]
    assert show(root / "grid" / "runs" / "bytebpe300-ngram")["scores"]["adapted"] is True
    assert show(root / "adapting")["settings"]["adapt"] is True and show(root / "static")["settings"]["adapt"] is False
    old = {"submission": "old", "total_energy_J": 1.0, "val_char_accuracy": 0.5, "extra": {}}
    row = {line.split(" | ")[0].lstrip("| "): line.split(" | ") for line in table_markdown([old]).splitlines()}["old"]
    assert row[column] == "—" and "online yes" not in table_markdown([old])  # a record from before the option

