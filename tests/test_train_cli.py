"""`subchar train` / `subchar eval` end to end on a tiny proxy text (in-process, no energy libraries)."""

from __future__ import annotations

import json

import pytest

import lab.checkpoint_runs as train_command
import tokenizers_local
import zoo.train
from conftest import TickingClock
from eval.data import load_split
from eval.energy import EnergyMeter
import lab.commands.train as train_cli
from lab.cli import main

WORDS = [a + b + c for a in "bcdfglmnpst" for b in "aeiou" for c in "nrstx"]


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    monkeypatch.setattr(train_command, "EnergyMeter", lambda: EnergyMeter(gpu=None, cpu=None))
    train_file = tmp_path / "train.txt"
    train_file.write_text(" ".join(WORDS[(i * 37) % len(WORDS)] for i in range(3000)) + ".\n")
    data = tmp_path / "data"
    data.mkdir()
    for split, words in (("valid", range(200, 260)), ("test", range(300, 340))):
        (data / f"wiki.{split}.raw").write_text(" = Head = \n \n" + " ".join(WORDS[(i * 37) % len(WORDS)] for i in words) + " \n")
    tokenizer = tokenizers_local.train_tokenizer(load_split("train", train_file=train_file), "bytebpe", 300)
    tokenizer.save(tmp_path / "tok")
    return tmp_path


def test_train_ngram_writes_checkpoint_and_partial_record(workspace, capsys):
    run = workspace / "run"
    code = main(["train", "--model", "ngram", "--tokenizer", str(workspace / "tok"), "--train-file",
                 str(workspace / "train.txt"), "--set", "order=3", "--out", str(run)])
    assert code == 0 and "trained ngram" in capsys.readouterr().out
    record = json.loads((run / "train_record.json").read_text())
    assert record["submission"] == "subchar-ngram-bytebpe300"
    assert record["proxy_train"] is True and record["val_char_accuracy"] is None
    assert set(record["energy_phases"]) == {"tokenize", "train"}
    assert record["model"] == {"name": "ngram", "config": {"vocab_size": 300, "order": 3}}
    assert json.loads((run / "manifest.json").read_text())["tokens_seen"] == record["extra"]["train"]["tokens_seen"]


def test_train_neural_respects_budget(workspace, monkeypatch):
    """The trainer stops itself inside the budget; its clock ticks (conftest.TickingClock), so no step of a busy
    machine can outlast the margin and trip the wall-clock guard."""
    monkeypatch.setattr("zoo.train.time", TickingClock(0.05))
    run = workspace / "run"
    code = main(["train", "--model", "transformer", "--tokenizer", str(workspace / "tok"), "--train-file",
                 str(workspace / "train.txt"), "--budget", "4", "--set", "n_layer=1", "--set", "n_embd=32", "--set", "block_size=16",
                 "--batch-size", "2", "--out", str(run)])
    assert code == 0
    record = json.loads((run / "train_record.json").read_text())
    assert record["extra"]["train"]["stop_reason"] == "budget"
    assert record["training_duration_s"] < 4.0


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--model", "ngram", "--set", "order"], "--set expects KEY=VALUE"),
        (["--model", "ngram", "--train-chars", "0"], "--train-chars: expected a whole number >= 1, got 0"),
        (["--model", "ngram", "--set", "order=0"], "n-gram order must be a whole number >= 1"),
        (["--model", "transformer", "--set", "n_embd=36", "--set", "n_head=4"], "n_embd=36 must be a multiple"),
    ],
)
def test_train_argument_errors(workspace, capsys, argv, message):
    """Refused by the parser (``--set`` by the model's own Config), before the command starts."""
    with pytest.raises(SystemExit) as stop:
        main(["train", *argv, "--tokenizer", str(workspace / "tok"), "--train-file", str(workspace / "train.txt"),
              "--out", str(workspace / "run")])
    assert stop.value.code == 2 and message in capsys.readouterr().err


def test_an_interrupted_training_says_so_on_its_own_line(workspace, monkeypatch, capsys):
    def interrupted(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(zoo.train, "next_token_loss", interrupted)
    run = workspace / "run"
    code = main(["train", "--model", "transformer", "--tokenizer", str(workspace / "tok"), "--train-file",
                 str(workspace / "train.txt"), "--set", "n_layer=1", "--set", "n_embd=32", "--set", "block_size=16",
                 "--batch-size", "2", "--out", str(run)])
    err = capsys.readouterr().err
    assert code == 130 and "train transformer" in err  # the progress bar was drawn, then closed
    assert err.splitlines()[-1] == "interrupted: " + train_cli.NOTHING_SAVED
    assert not run.exists()


def test_eval_completes_the_record(workspace):
    run = workspace / "run"
    assert main(["train", "--model", "ngram", "--tokenizer", str(workspace / "tok"), "--train-file",
                 str(workspace / "train.txt"), "--set", "order=3", "--out", str(run)]) == 0
    assert main(["eval", str(run), "--split", "valid", "--data-dir", str(workspace / "data"), "--chars", "150",
                 "--mode", "exact", "--beam", "8", "--json", str(workspace / "record.json")]) == 0
    record = json.loads((workspace / "record.json").read_text())
    assert record["val_chars"] == 150 and record["val_char_accuracy"] == 0.92  # 138 of 150: fixed input, counted model
    assert record["proxy_train"] is True and record["extra"]["eval"]["mode"] == "exact"
    assert record["bits_per_char"] is not None and record["extra"]["eval"]["beam"] == 8
    assert record["energy_phases"]["train"]["name"] == "train"
    assert record["eval_engine"] == "batch" and record["extra"]["eval"]["engine"] == "batch"
    assert main(["eval", str(run), "--split", "valid", "--data-dir", str(workspace / "data"), "--chars", "150",
                 "--mode", "exact", "--beam", "8", "--engine", "stream", "--json", str(workspace / "stream.json")]) == 0
    streamed = json.loads((workspace / "stream.json").read_text())
    assert streamed["eval_engine"] == "stream" and streamed["val_char_accuracy"] == record["val_char_accuracy"]
    assert abs(streamed["bits_per_char"] - record["bits_per_char"]) < 1e-9
    assert main(["eval", str(run), "--split", "test", "--data-dir", str(workspace / "data"), "--chars", "100",
                 "--mode", "spec", "--json", str(workspace / "test.json")]) == 0
    test_record = json.loads((workspace / "test.json").read_text())
    assert test_record["val_char_accuracy"] is None and test_record["val_chars"] == 0
    # 0.87 from the train counts alone (--no-adapt); the n-gram also learns from the text it is scored on
    assert test_record["extra"]["test_chars"] == 100 and test_record["extra"]["test_char_accuracy"] == 0.88


def test_eval_falls_back_to_the_data_dir_the_checkpoint_was_trained_with(workspace, monkeypatch):
    run = workspace / "run"
    monkeypatch.chdir(workspace)
    assert main(["train", "--model", "ngram", "--tokenizer", "tok", "--data-dir", "data", "--train-file",
                 "train.txt", "--set", "order=3", "--out", str(run)]) == 0
    monkeypatch.delenv("SUBCHAR_DATA", raising=False)
    monkeypatch.chdir(workspace / "data")  # the relative --data-dir of training was recorded as an absolute path
    assert main(["eval", str(run), "--chars", "150", "--json", str(workspace / "record.json")]) == 0
    record = json.loads((workspace / "record.json").read_text())
    assert record["val_chars"] == 150 and record["extra"]["eval"]["mode"] == "exact"


def test_eval_of_a_missing_run_is_a_user_error(workspace, capsys):
    assert main(["eval", str(workspace / "absent"), "--data-dir", str(workspace / "data")]) == 2
    assert "no checkpoint folder" in capsys.readouterr().err
