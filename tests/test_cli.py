"""The ``subchar`` command as a whole: light startup, one set of choices and one mode default, arguments refused
before any work (in a process that never loads torch, leaving nothing behind), and honest Ctrl-C messages."""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import lab.checkpoint_runs
from lab.cli import build_parser, main
from lab.commands.common import FAMILY_CHOICES, MODE_HELP, MODEL_CHOICES, TRAIN_MODEL_CHOICES

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "zoo", "subchar", "tokenizers_local", "tokenizers", "sentencepiece", "tiktoken", "matplotlib",
         "modal")


def loaded_after(code: str, cwd: Path = ROOT) -> dict:
    """Run ``code`` in a fresh interpreter; it sets ``out``; returns it with the heavy modules it loaded."""
    script = (f"import json, sys\n{code}\n"
              f"out['heavy'] = sorted(m for m in {HEAVY!r} if m in sys.modules)\nprint(json.dumps(out))\n")
    env = {name: value for name, value in os.environ.items() if not name.startswith("SUBCHAR_")}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=cwd, timeout=120,
                          env=env)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_the_cli_imports_no_heavy_library():
    out = loaded_after("import lab.cli\nlab.cli.build_parser()\nout = {}")
    assert out["heavy"] == []


def test_scoring_a_checkpoint_does_not_load_the_compiler():
    """``subchar eval`` imports the checkpoint runner; torch._dynamo (1.6 s of imports, loaded by zoo.train) is for
    training only."""
    out = loaded_after("import lab.checkpoint_runs, zoo.checkpoint\nout = {'dynamo': 'torch._dynamo' in sys.modules}")
    assert out["dynamo"] is False


def test_choices_are_the_libraries_own():
    from tokenizers_local import FAMILIES
    from zoo.kinds import grid_names
    from zoo.train import model_names

    assert MODEL_CHOICES == tuple(grid_names()) and FAMILY_CHOICES == tuple(FAMILIES)
    assert TRAIN_MODEL_CHOICES == tuple(model_names())


def subcommand_parsers(parser: argparse.ArgumentParser, prefix: str = ""):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield f"{prefix}{name}", sub
                yield from subcommand_parsers(sub, f"{prefix}{name} ")


def test_every_mode_option_says_what_the_modes_mean_and_defaults_to_exact():
    modes = {name: next(a for a in sub._actions if a.dest == "mode")
             for name, sub in subcommand_parsers(build_parser()) if any(a.dest == "mode" for a in sub._actions)}
    assert set(modes) == {"compare", "quickstart", "export", "eval"}
    assert all(MODE_HELP in action.help and action.choices == ("spec", "exact") for action in modes.values())
    assert {name: action.default for name, action in modes.items()} == {
        "compare": "exact", "quickstart": "exact", "eval": "exact", "export": None}  # export: the run's mode
    assert build_parser().parse_args(["eval", "run"]).mode == "exact"


def test_model_and_family_choices_are_checked_by_the_parser(capsys):
    for argv in (["train", "--model", "lstm", "--tokenizer", "t", "--out", "o"],
                 ["compare", "--tokenizers", "bytebpe:512", "--models", "lstm", "--out", "o"],
                 ["tokenizer", "train", "--family", "nope", "--vocab-size", "512", "--out", "o"]):
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        assert exit_info.value.code == 2
        assert "invalid choice" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["compare", "--tokenizers", "bytebpe:512", "--models", "lstm", "--out", "o"])
    assert "'ngram'" in capsys.readouterr().err


REFUSED = [
    (["train", "--model", "ngram", "--tokenizer", "tok", "--train-file", "train.txt", "--budget", "-5", "--out", "run"],
     "--budget: expected a number > 0 and <= 86400, got -5"),
    (["train", "--model", "ngram", "--tokenizer", "tok", "--train-file", "train.txt", "--out", "a_file/run"],
     "a_file is a file, not a folder"),
    (["train", "--model", "ngram", "--tokenizer", "tok", "--train-file", "train.txt", "--out", "a_file"],
     "--out a_file is a file"),
    (["train", "--model", "ngram", "--tokenizer", "tok", "--train-file", "train.txt", "--out", "busy"],
     "busy exists and is not a checkpoint; choose another path"),
    (["train", "--model", "ngram", "--tokenizer", "tok", "--train-file", "missing.txt", "--out", "run"],
     "file not found: missing.txt; check the --train-file path"),
    (["train", "--model", "ngram", "--tokenizer", "missing", "--train-file", "train.txt", "--out", "run"],
     "no tokenizer folder at missing; create it with `subchar tokenizer train --out missing`"),
    (["train", "--model", "ngram", "--tokenizer", "tok", "--train-file", "train.txt", "--train-chars", "0",
      "--out", "run"], "--train-chars: expected a whole number >= 1, got 0"),
    (["tokenizer", "train", "--family", "bytebpe", "--vocab-size", "0", "--train-file", "train.txt", "--out", "t"],
     "--vocab-size: expected a whole number >= 1, got 0"),
    (["tokenizer", "train", "--family", "bytebpe", "--vocab-size", "300", "--train-file", "train.txt",
      "--out", "a_file/deeper/t"], "a_file is a file, not a folder"),
    (["tokenizer", "train", "--family", "bytebpe", "--vocab-size", "300", "--train-file", "train.txt",
      "--out", "busy"], "busy exists and is not a saved tokenizer; choose another path"),
    (["tokenizer", "train", "--family", "bytebpe", "--vocab-size", "300", "--train-file", "nothing", "--out", "t"],
     "file not found: nothing; check the --train-file path"),
    (["tokenizer", "train", "--family", "bytebpe", "--vocab-size", "300", "--train-file", "wiki.valid.raw",
      "--out", "t"], "wiki.valid.raw is the validation split"),
    (["train", "--model", "ngram", "--tokenizer", "tok", "--train-file", "wiki.valid.raw", "--out", "run"],
     "wiki.valid.raw is the validation split"),
    (["eval", "run", "--chars", "0"], "--chars: expected a whole number >= 1, got 0"),
    (["eval", "run", "--json", "a_file/record.json"], "a_file is a file, not a folder"),
    (["train", "--model", "transformer", "--tokenizer", "tok", "--train-file", "train.txt", "--set", "n_layr=2",
      "--out", "run"], "--set n_layr: transformer has no such setting"),
]


def saved_tokenizer_stand_in(folder: Path) -> Path:
    """What the checks before any work read of a saved tokenizer (manifest and file checksum), and no more."""
    folder.mkdir()
    (folder / "tokenizer.json").write_text("{}")
    manifest = {"format": "subchar-tokenizer", "format_version": 1, "backend_file": "tokenizer.json",
                "backend_sha256": hashlib.sha256(b"{}").hexdigest()}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


def test_bad_arguments_are_refused_before_any_work_and_leave_nothing(tmp_path):
    (tmp_path / "train.txt").write_text("some text to train on\n")
    (tmp_path / "wiki.valid.raw").write_text(" = Valid = \n")
    (tmp_path / "a_file").write_text("not a folder\n")
    saved_tokenizer_stand_in(tmp_path / "tok")
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("keep me\n")
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    code = ("import contextlib, io\nfrom lab.cli import main\nout = {'runs': []}\n"
            f"for argv in {[argv for argv, _ in REFUSED]!r}:\n"
            "    err = io.StringIO()\n"
            "    with contextlib.redirect_stderr(err):\n"
            "        try:\n"
            "            status = main(argv)\n"
            "        except SystemExit as stop:  # refused by the parser\n"
            "            status = stop.code\n"
            "    out['runs'].append([status, err.getvalue()])\n")
    out = loaded_after(code, cwd=tmp_path)
    assert out["heavy"] == []  # refused before torch or a tokenizer library was even imported
    for (argv, message), (status, err) in zip(REFUSED, out["runs"]):
        assert status == 2 and "error: " in err and err.count("\n") == 1, (argv, err)
        assert message in err, (argv, err)
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


def test_train_interrupt_says_that_nothing_was_saved(tmp_path, monkeypatch, capsys):
    def interrupted(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(lab.checkpoint_runs, "train_checkpoint", interrupted)
    saved_tokenizer_stand_in(tmp_path / "tok")
    (tmp_path / "train.txt").write_text("text\n")
    code = main(["train", "--model", "ngram", "--tokenizer", str(tmp_path / "tok"), "--train-file",
                 str(tmp_path / "train.txt"), "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 130 and err.startswith("interrupted: training stopped and nothing was saved")
    assert "go on" not in err and not (tmp_path / "run").exists()

