"""compare never reuses a stale result, refuses bad input before any work, repeats runs and says what is noise."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import fields, replace
from pathlib import Path

import pytest

import lab.identity as identity
from lab.cell import Cell, CellOptions
from lab.cli import main
from lab.compare import compare, grid, read_results
from lab.identity import cell_identity, identity_key
from lab.report import summarise, table_markdown, ties
from test_compare import OPTIONS, fixture_dir

ROOT = Path(__file__).resolve().parents[1]
BASELINE_ONLY = dict(tokenizer_specs=[], models=["ngram"])  # the char-kn baseline: fast, no tokenizer


def run_grid(tmp_path: Path, **options):
    """The baseline-only grid into ``tmp_path/cmp`` on the fixture data (made by the test with ``fixture_dir``)."""
    return compare(grid(**BASELINE_ONLY), replace(OPTIONS, **options), tmp_path / "cmp",
                   data_dir=str(tmp_path / "data"), train_file=str(tmp_path / "train.raw"))


# Another value than OPTIONS's for every CellOptions field: a field added there needs one here, and then either
# changes the identity (it reaches the result) or is one of NEVER_IN_IDENTITY.
OTHER_VALUES = {
    "budget_s": 1.0, "mode": "spec", "beam": None, "eval_chars": 5, "test_chars": 7, "train_chars": 1000,
    "char_order": 3, "device": "cpu", "engine": "stream", "prune": 1e-4, "seed": 1,
    "overrides": {"ngram": {"order": 2}}, "progress": True, "repeat": 1, "ids_cache": "/elsewhere", "adapt": False,
    "char_weight": 0.3, "optimizer": "muon",
}
NEVER_IN_IDENTITY = {
    "progress": "it changes only what is printed",
    "ids_cache": "where encoded ids are cached: the ids are the same wherever they are kept",
}
MIXTURE_ONLY = {"char_weight": "only the mixture ngram+char-kn reads it (tests/test_mixture_cell.py)"}
NEURAL_ONLY = {"optimizer": "only a neural model's training reads it (tests/test_optimizers.py)"}


def test_identity_covers_what_changes_a_result():
    cell = Cell("ngram", "bytebpe", 300)
    base = identity_key(cell_identity(cell, OPTIONS, "abc"))
    names = [field.name for field in fields(CellOptions)]
    assert not set(names) - set(OTHER_VALUES), "a new CellOptions field: give it a value in OTHER_VALUES"
    assert set(identity.NOT_IDENTITY) == set(NEVER_IN_IDENTITY)
    for name in names:
        changed = replace(OPTIONS, **{name: OTHER_VALUES[name]})
        assert getattr(changed, name) != getattr(OPTIONS, name), name
        same = identity_key(cell_identity(cell, changed, "abc")) == base
        expected = name in NEVER_IN_IDENTITY or name in MIXTURE_ONLY or name in NEURAL_ONLY
        assert same == expected, f"{name} {'leaves' if same else 'changes'} the identity"
    for model, only in (("ngram+char-kn", MIXTURE_ONLY), ("transformer", NEURAL_ONLY)):
        reader = Cell(model, "bytebpe", 300)
        for name in only:
            changed = replace(OPTIONS, **{name: OTHER_VALUES[name]})
            assert identity_key(cell_identity(reader, changed, "abc")) != \
                identity_key(cell_identity(reader, OPTIONS, "abc")), name
    neural = Cell("transformer", "bytebpe", 300)  # the default, asked for or not, is one run (older records too)
    assert identity_key(cell_identity(neural, replace(OPTIONS, optimizer="adamw"), "abc")) == \
        identity_key(cell_identity(neural, OPTIONS, "abc"))
    # another model's overrides do not touch this cell
    assert identity_key(cell_identity(cell, replace(OPTIONS, overrides={"transformer": {"n_layer": 2}}), "abc")) == base
    assert identity_key(cell_identity(cell, OPTIONS, "other train text")) != base
    backends = ["local", identity.modal_backend_identity("A100-80GB", False),
                identity.modal_backend_identity("H100", False), identity.modal_backend_identity("A100-80GB", True)]
    assert len({identity_key(cell_identity(cell, OPTIONS, "abc", backend=backend)) for backend in backends}) == 4


def test_changed_settings_rerun_and_supersede_never_reuse(tmp_path):
    fixture_dir(tmp_path)
    (first,), _, _ = run_grid(tmp_path, eval_chars=300)
    assert first["val_chars"] == 300
    (again,), _, _ = run_grid(tmp_path, eval_chars=300)
    assert again["date_utc"] == first["date_utc"]  # same identity: reused, not rerun
    (second,), table, _ = run_grid(tmp_path, eval_chars=200)
    assert second["val_chars"] == 200
    saved = read_results(tmp_path / "cmp" / "results.jsonl")
    assert [r["val_chars"] for r in saved] == [300, 200]
    assert saved[0]["extra"]["superseded"] == saved[1]["extra"]["cell_key"] and "superseded" not in saved[1]["extra"]
    assert "| 200 |" in Path(table).read_text() and "| 300 |" not in Path(table).read_text()


def test_table_shows_only_the_cells_asked_for_unless_all(tmp_path, capsys):
    data, train = fixture_dir(tmp_path)
    common = ["--data-dir", str(data), "--train-file", str(train), "--out", str(tmp_path / "cmp"), "--eval-chars",
              "200", "--test-chars", "0", "--char-order", "3", "--budget", "30"]
    assert main(["compare", "--tokenizers", "bytebpe:300", "--models", "ngram", *common]) == 0
    assert main(["compare", "--tokenizers", "unigram:300", "--models", "ngram", *common]) == 0
    shown = capsys.readouterr().out.split("table:")[-2]
    assert "unigram300-ngram" in shown and "bytebpe300-ngram" not in shown
    assert main(["compare", "--tokenizers", "unigram:300", "--models", "ngram", "--all", *common]) == 0
    table = (tmp_path / "cmp" / "table.md").read_text()
    assert "unigram300-ngram" in table and "bytebpe300-ngram" in table
    history = json.loads((tmp_path / "cmp" / "grid.json").read_text())["history"]
    assert [[c["family"] for c in entry["cells"]] for entry in history] == [[None, "bytebpe"], [None, "unigram"], [None, "unigram"]]


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--tokenizers", "foo:1024", "--models", "ngram"], "unknown tokenizer family 'foo'"),
        (["--tokenizers", "bytebpe:1024", "--models", "lstm"], "invalid choice: 'lstm'"),
        (["--tokenizers", "bytebpe:1024", "--models", "ngram", "--budget", "-5"], "--budget: expected a number > 0"),
        (["--tokenizers", "bytebpe:1024", "--models", "ngram", "--repeats", "0"], "--repeats: expected a whole number >= 1"),
    ],
)
def test_bad_names_and_numbers_are_refused_before_any_work(tmp_path, capsys, argv, message):
    data, train = fixture_dir(tmp_path)
    out = tmp_path / "cmp"
    started = time.monotonic()
    try:
        code = main(["compare", *argv, "--data-dir", str(data), "--train-file", str(train), "--out", str(out)])
    except SystemExit as stop:  # argparse refuses a choice itself
        code = stop.code
    assert code == 2 and message in capsys.readouterr().err
    assert time.monotonic() - started < 5 and not out.exists()


def test_output_that_is_a_file_or_below_one_is_refused(tmp_path, capsys):
    data, train = fixture_dir(tmp_path)
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    for out, message in ((blocker, "is a file; give a folder path"), (blocker / "sub", "is a file, not a folder")):
        code = main(["compare", "--tokenizers", "bytebpe:300", "--models", "ngram", "--data-dir", str(data),
                     "--train-file", str(train), "--out", str(out)])
        assert code == 2 and message in capsys.readouterr().err


def test_compare_on_the_val_split_is_one_line_in_seconds_leaving_nothing(tmp_path):
    data, _ = fixture_dir(tmp_path)
    out = tmp_path / "cmp"
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "lab.cli", "compare", "--tokenizers", "bpe:512", "--models", "ngram", "--data-dir",
         str(data), "--train-file", str(data / "wiki.valid.raw"), "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "validation split" in done.stderr
    assert time.monotonic() - started < 30 and not out.exists()  # 30 s: a loaded CI box starting Python and torch


def test_repeats_give_medians_ranges_and_ties(tmp_path):
    data, train = fixture_dir(tmp_path)
    records, table, plot = compare(grid(**BASELINE_ONLY), replace(OPTIONS, eval_chars=200), tmp_path / "cmp",
                                   data_dir=str(data), train_file=str(train), repeats=3)
    assert [r["extra"]["repeat"] for r in records] == [0, 1, 2]
    assert len({r["extra"]["cell_identity"]["options"]["seed"] for r in records}) == 3
    assert (tmp_path / "cmp" / "runs" / "char-kn-r2" / "record.json").is_file()
    (row,) = summarise(records)
    energies = sorted(r["total_energy_J"] for r in records)
    assert row["total_energy_J"] == energies[1] and row["extra"]["energy_range"] == [energies[0], energies[2]]
    text = Path(table).read_text()
    assert "char-kn (×3)" in text and f"{energies[1]:,.0f} [{energies[0]:,.0f}–{energies[2]:,.0f}]" in text
    assert "the totals sit on the 50 W × training seconds floor" in text  # CPU host: no GPU counter, CodeCarbon below the floor


def test_overlapping_energy_ranges_are_named_as_ties():
    def runs(name, energies, acc=0.8):
        return [{"submission": name, "total_energy_J": e, "val_char_accuracy": acc, "training_duration_s": 1.0,
                 "training_energy_J": 0.0} for e in energies]

    records = runs("a", [100, 120, 140]) + runs("b", [130, 150, 170]) + runs("c", [300, 310, 320])
    rows = summarise(records)
    assert ties(rows) == {"a": ["b"], "b": ["a"]}
    table = table_markdown(records)
    assert "| a (×3) | 120 [100–140] |" in table and "Winner (least energy with val acc ≥ 0.7): a, tied with b" in table
    assert "No GPU energy counter" not in table


def test_quickstart_without_data_or_network_says_how_to_point_it_at_files(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SUBCHAR_DATA", raising=False)
    monkeypatch.delenv("SUBCHAR_TRAIN_FILE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # a closed port: the Hub is unreachable at once
    assert main(["quickstart"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no WikiText train/valid/test split in data" in err
    assert "--data-dir" in err and "--train-file" in err
    assert list(tmp_path.iterdir()) == []  # neither ./data nor runs/quickstart was left behind


def test_quickstart_rerun_in_the_same_folder_says_it_reused_the_runs(tmp_path, capsys):
    data, train = fixture_dir(tmp_path)
    argv = ["quickstart", "--data-dir", str(data), "--train-file", str(train), "--out", str(tmp_path / "qs"),
            "--eval-chars", "150", "--budget", "30", "--char-order", "3"]
    assert main(argv) == 0
    capsys.readouterr()
    assert main(argv) == 0
    assert "reused 5 finished run(s) with these exact settings" in capsys.readouterr().out  # char-kn, 2 x 2
