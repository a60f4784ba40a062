"""``subchar eval`` says what it scored: it refuses the split a model was trained on unless told
(--allow-trained-split, then labelled in the output and the record), and names each record by the settings that
change it, so one evaluation never overwrites another's record."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lab.cli import main
from test_folders import run_fresh, words


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A bytebpe tokenizer, an n-gram trained on the proxy train text and one trained on the test split itself."""
    base = tmp_path_factory.mktemp("eval")
    data = base / "data"
    data.mkdir()
    (data / "wiki.valid.raw").write_text(" = Valid = \n \n" + words(5, 80) + " \n")
    (data / "wiki.test.raw").write_text(" = Test = \n \n" + words(9, 400) + " \n")
    (base / "train.txt").write_text(words(0, 3000) + ".\n")
    assert main(["tokenizer", "train", "--family", "bytebpe", "--vocab-size", "300", "--train-file",
                 str(base / "train.txt"), "--out", str(base / "tok")]) == 0
    for name, train_file in (("run", base / "train.txt"), ("on_test", data / "wiki.test.raw")):
        assert main(["train", "--model", "ngram", "--tokenizer", str(base / "tok"), "--train-file", str(train_file),
                     "--data-dir", str(data), "--set", "order=3", "--out", str(base / name)]) == 0
    return base


def test_training_prints_one_step_in_the_singular(trained, tmp_path, capsys):
    assert main(["train", "--model", "ngram", "--tokenizer", str(trained / "tok"), "--train-file",
                 str(trained / "train.txt"), "--out", str(tmp_path / "run")]) == 0
    assert "trained ngram: 1 step, " in capsys.readouterr().out


def test_the_split_a_model_was_trained_on_is_refused_unless_allowed_and_then_labelled(trained, capsys):
    """A model trained on the test text scored 0.938 on it with no warning: now a one-line refusal before torch
    loads, and with --allow-trained-split a score that says what it is and never fills the benchmark's fields."""
    model, data = trained / "on_test", trained / "data"
    out = run_fresh([["eval", str(model), "--split", "test", "--data-dir", str(data), "--chars", "300"]], trained)
    [(code, err)] = out["runs"]
    assert code == 2 and err.count("\n") == 1
    assert f"error: {model} was trained on the test split's text (its first " in err
    assert "score --split valid, or pass --allow-trained-split to score it anyway" in err
    assert not list(model.glob("eval_*.json"))
    assert out["heavy"] == []  # refused before torch was imported

    assert main(["eval", str(model), "--split", "test", "--data-dir", str(data), "--chars", "300",
                 "--allow-trained-split"]) == 0
    shown = capsys.readouterr().out
    assert shown.startswith("TRAINED ON THIS TEXT (recall, not prediction): test char accuracy ")
    [path] = model.glob("eval_test_*.json")
    record = json.loads(path.read_text())
    assert record["extra"]["trained_on_scored_text"] is True and record["val_char_accuracy"] is None
    assert record["extra"]["test_chars"] == 300

    assert main(["eval", str(model), "--split", "valid", "--data-dir", str(data), "--chars", "300"]) == 0
    assert capsys.readouterr().out.startswith("valid char accuracy ")
    [path] = model.glob("eval_valid_*.json")
    assert json.loads(path.read_text())["extra"]["trained_on_scored_text"] is False


def test_the_test_split_of_a_model_trained_elsewhere_is_scored(trained, capsys):
    assert main(["eval", str(trained / "run"), "--split", "test", "--chars", "200"]) == 0
    assert capsys.readouterr().out.startswith("test char accuracy ")


def test_each_record_is_named_by_the_settings_that_change_it(trained, tmp_path):
    """Every `subchar eval` wrote eval_valid_exact.json, whatever --chars or --engine: now each setting that
    changes the record is in its name; only the same settings again replace a record."""
    run = tmp_path / "run"
    assert main(["train", "--model", "ngram", "--tokenizer", str(trained / "tok"), "--train-file",
                 str(trained / "train.txt"), "--data-dir", str(trained / "data"), "--out", str(run)]) == 0
    settings = [[], ["--engine", "stream"], ["--chars", "100"], ["--beam", "4"], ["--prune", "1e-4"], ["--no-bits"],
                ["--mode", "spec"], ["--split", "test"], ["--no-adapt"], []]
    for extra in settings:
        assert main(["eval", str(run), "--chars", "150", *extra]) == 0
    assert sorted(path.name for path in run.glob("eval_*.json")) == sorted([  # the n-gram learns as it is scored
        "eval_valid_exact_beam8_150chars_batch_cpu_adapt.json",
        "eval_valid_exact_beam8_150chars_stream_cpu_adapt.json",
        "eval_valid_exact_beam8_100chars_batch_cpu_adapt.json",
        "eval_valid_exact_beam4_150chars_batch_cpu_adapt.json",
        "eval_valid_exact_beam8_prune0.0001_150chars_batch_cpu_adapt.json",
        "eval_valid_exact_beam8_150chars_batch_cpu_adapt_nobits.json",
        "eval_valid_spec_beam8_150chars_batch_cpu_adapt.json",
        "eval_test_exact_beam8_150chars_batch_cpu_adapt.json",
        "eval_valid_exact_beam8_150chars_batch_cpu.json",
    ])
    chars = json.loads((run / "eval_valid_exact_beam8_100chars_batch_cpu_adapt.json").read_text())["val_chars"]
    assert chars == 100
