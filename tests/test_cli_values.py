"""Every numeric flag and every ``--set`` value is checked while parsing: a bad one is a one-line error (exit 2, no
traceback) naming the flag, before the command starts. The flags are found by walking the parsers ``lab.cli``
builds, so a flag added later is walked too; the commands run in-process with their work replaced by a failure."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import lab.cli
from eval.errors import UserError
from lab.cli import main
from lab.commands.common import TRAIN_MODEL_CHOICES

ROOT = Path(__file__).resolve().parents[1]
VALUES = ("nan", "inf", "-1", "0", "abc")
# Where 0 is a meaning of its own; everywhere else it is refused like the other four values.
ZERO_ACCEPTED = {
    "--test-chars": "0 skips scoring the test split",
    "--beam": "0 keeps every covering (no pruning)",
    "--prune": "0 drops nothing",
    "--seed": "0 is the default seed",
    "harness --chars": "0 scores the whole valid split, as run_eval.py's --max-test-chars 0",
    "harness --acc-min": "0 turns the accuracy gate off",
    "--char-weight": "0 leaves ngram+char-kn the token n-gram alone",
}
# Placeholders for required arguments that take more than any text.
REQUIRED = {"tokenizers": "bytebpe:512"}
SETTING_VALUES = ("nan", "NaN", "inf", "Infinity", "-1", "0", "abc")  # NaN, Infinity: what JSON reads as floats
SETTING_ZERO_ACCEPTED = {"dropout": "0 is no dropout"}


def leaf_parsers(parser: argparse.ArgumentParser, words: tuple[str, ...] = ()):
    """(command words, parser) of every command that runs, sub-subcommands included."""
    groups = [action for action in parser._actions if isinstance(action, argparse._SubParsersAction)]
    if not groups:
        yield " ".join(words), parser
    for group in groups:
        for name, sub in group.choices.items():
            yield from leaf_parsers(sub, (*words, name))


def required_argv(parser: argparse.ArgumentParser) -> list[str]:
    """Values for the positionals and required options, so that only the flag under test can be wrong."""
    argv = []
    for action in parser._actions:
        if action.option_strings and not action.required:
            continue
        value = REQUIRED.get(action.dest, "64" if is_numeric(action) else next(iter(action.choices or ["x"])))
        argv += [*action.option_strings[:1], value]
    return argv


def is_numeric(action: argparse.Action) -> bool:
    """A flag whose type turns "1" or "0.5" into a number (found by behaviour, whatever the type is called)."""
    if not callable(action.type):
        return False
    for text in ("1", "0.5"):
        try:
            if isinstance(action.type(text), (int, float)):
                return True
        except (argparse.ArgumentTypeError, ValueError, TypeError):
            pass
    return False


def numeric_flags() -> list[tuple[str, str, list[str]]]:
    return [(command, action.option_strings[0], [*command.split(), *required_argv(parser)])
            for command, parser in leaf_parsers(lab.cli.build_parser())
            for action in parser._actions if action.option_strings and is_numeric(action)]


def cases() -> list:
    found = []
    for command, flag, argv in numeric_flags():
        for value in VALUES:
            reason = ZERO_ACCEPTED.get(f"{command} {flag}", ZERO_ACCEPTED.get(flag)) if value == "0" else None
            found.append(pytest.param(command, argv, flag, value, reason, id=f"{command} {flag} {value}"))
    return found


@pytest.fixture
def no_work(monkeypatch):
    """``lab.cli.main`` with every command's work replaced by a failure: a value the parser lets through fails the
    test instead of starting a run."""
    build = lab.cli.build_parser

    def built() -> argparse.ArgumentParser:
        parser = build()
        for command, leaf in leaf_parsers(parser):
            leaf.set_defaults(func=lambda args, command=command: pytest.fail(f"`subchar {command}` started its work"))
        return parser

    monkeypatch.setattr(lab.cli, "build_parser", built)


def refused(argv: list[str], capsys) -> str:
    """The one line ``main(argv)`` printed when it refused ``argv`` while parsing."""
    with pytest.raises(SystemExit) as stop:
        main(argv)
    err = capsys.readouterr().err
    assert stop.value.code == 2, err
    assert err.count("\n") == 1 and "Traceback" not in err and "usage:" not in err, err
    return err


@pytest.mark.parametrize("command,argv,flag,value,zero_reason", cases())
def test_every_numeric_flag_refuses_what_it_cannot_use_in_one_line(no_work, capsys, command, argv, flag, value,
                                                                  zero_reason):
    full = [*argv, flag, value]
    if zero_reason:  # parsed, not run: the value is one the command uses
        lab.cli.build_parser().parse_args(full)
        return
    err = refused(full, capsys)
    assert err.startswith(f"subchar {command}: error: {flag}: "), err
    assert f"got {value}" in err, err


def test_the_walk_reaches_every_command_with_numbers():
    """The walk above is not empty by accident: it finds the flags the issue named, sub-subcommands included, and
    the placeholders let each command parse."""
    flags = {(command, flag) for command, flag, _ in numeric_flags()}
    assert {("train", "--budget"), ("train", "--seed"), ("train", "--lr"), ("eval", "--chars"), ("eval", "--beam"),
            ("compare", "--test-chars"), ("quickstart", "--budget"), ("export", "--batch-size"),
            ("tokenizer train", "--vocab-size")} <= flags
    for command, parser in leaf_parsers(lab.cli.build_parser()):
        lab.cli.build_parser().parse_args([*command.split(), *required_argv(parser)])
    assert {model for model, _, _ in model_settings()} == set(TRAIN_MODEL_CHOICES)


def test_no_flag_takes_a_bare_int_or_float():
    """``type=int`` lets -1 through and ``type=float`` nan and inf: every numeric flag has a checked type."""
    bare = [f"{command} {action.option_strings[0]}" for command, parser in leaf_parsers(lab.cli.build_parser())
            for action in parser._actions if action.type in (int, float)]
    assert bare == []


def model_settings() -> list:
    """(model, setting, its default as JSON) for every model and every setting ``--set`` may change."""
    from zoo.registry import MODELS
    from zoo.train import NGRAM_DEFAULT_ORDER

    found = [("ngram", "order", str(NGRAM_DEFAULT_ORDER))]
    for model, (config, _) in MODELS.items():
        defaults = config(vocab_size=2)
        found += [(model, field.name, json.dumps(getattr(defaults, field.name)))
                  for field in dataclasses.fields(config) if field.name != "vocab_size"]
    return found


def train_argv(model: str, *pairs: str) -> list[str]:
    return ["train", "--tokenizer", "tok", "--out", "run", *(w for pair in pairs for w in ("--set", pair)),
            "--model", model]  # --model last: the check does not depend on the order


@pytest.mark.parametrize("model,setting,default", model_settings())
def test_every_model_setting_refuses_nonsense_in_one_line(no_work, capsys, model, setting, default):
    lab.cli.build_parser().parse_args(train_argv(model, f"{setting}={default}"))  # the default is fine
    for value in SETTING_VALUES:
        if value == "0" and setting in SETTING_ZERO_ACCEPTED:
            lab.cli.build_parser().parse_args(train_argv(model, f"{setting}=0"))
            continue
        err = refused(train_argv(model, f"{setting}={value}"), capsys)
        assert err.startswith("subchar train: error: --set") and setting in err, err


@pytest.mark.parametrize("pair,message", [
    ("n_layer=-2", "n_layer must be a whole number >= 1, got -2"),  # trained a model with no layers
    ("n_embd=0", "n_embd must be a whole number >= 1, got 0"),  # trained with the loss stuck at ln V
    ("block_size=abc", "block_size must be a whole number >= 1, got 'abc'"),  # TypeError: '<' not supported
    ("n_layer=2.5", "n_layer must be a whole number >= 1, got 2.5"),
    ("tie_embeddings=1", "tie_embeddings must be true or false, got 1"),
    ("vocab_size=64", "the vocabulary is the tokenizer's"),  # was silently replaced by the tokenizer's
    ("n_layers=2", "transformer has no such setting; choose from block_size, n_layer"),
    ("order", "--set expects KEY=VALUE"),
])
def test_the_issue_settings_are_refused_by_name(no_work, capsys, pair, message):
    assert message in refused(train_argv("transformer", pair), capsys)


def test_settings_that_fit_the_model_parse(no_work):
    args = lab.cli.build_parser().parse_args(train_argv("mamba", "dt_rank=null", "dropout=0.1", "tie_embeddings=false"))
    assert args.overrides == ["dt_rank=null", "dropout=0.1", "tie_embeddings=false"]


def test_the_model_files_refuse_sizes_as_plain_value_errors():
    """The Config classes themselves refuse what no model can be built from (their callers outside the CLI get a
    ValueError naming the field), and the trainer turns that into the user's one-line error."""
    import torch

    from zoo.registry import MODELS
    from zoo.train import build_model

    for model, (config, _) in MODELS.items():
        for name in ("n_layer", "block_size", "d_state" if model == "mamba" else "n_embd"):
            with pytest.raises(ValueError, match=f"{name} must be a whole number >= 1, got 0"):
                config(vocab_size=16, **{name: 0})
    with pytest.raises(UserError, match="n_layer must be a whole number >= 1, got -2"):
        build_model("transformer", 16, {"n_layer": -2}, torch.device("cpu"))


def test_settings_are_checked_by_the_model_files_own_config_classes():
    """``--set`` runs each model's Config as written in its file, without importing the file (torch): the same
    fields, annotations and defaults, and the same refusals, as the imported class."""
    from lab.commands.common import zoo_config
    from zoo.registry import MODELS

    for model, (config, _) in MODELS.items():
        copy = zoo_config(model)
        assert [(f.name, f.type, f.default) for f in dataclasses.fields(copy)] == \
               [(f.name, f.type, f.default) for f in dataclasses.fields(config)]
        for field in dataclasses.fields(config):
            for value in (0, -1, float("nan"), "abc", None, True):
                outcomes = []
                for cls in (config, copy):
                    try:
                        cls(**{"vocab_size": 16, field.name: value})
                        outcomes.append("built")
                    except ValueError as err:
                        outcomes.append(str(err))
                assert outcomes[0] == outcomes[1], (model, field.name, value)


def test_refusals_load_nothing_heavy():
    """Parsing refuses before torch or the zoo is imported (a refusal takes a fraction of a second)."""
    argvs = [["train", "--model", "ngram", "--tokenizer", "t", "--out", "o", "--budget", "inf"],
             train_argv("transformer", "n_layer=-2"), train_argv("hyena", "decay_target=2")]
    code = ("import contextlib, io, json, sys\nfrom lab.cli import main\nout = []\n"
            f"for argv in {argvs!r}:\n"
            "    err = io.StringIO()\n"
            "    with contextlib.redirect_stderr(err):\n"
            "        try:\n            main(argv)\n"
            "        except SystemExit as stop:\n            out.append([stop.code, err.getvalue()])\n"
            "print(json.dumps([out, [m for m in ('torch', 'zoo') if m in sys.modules]]))\n")
    env = {name: value for name, value in os.environ.items() if not name.startswith("SUBCHAR_")}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=env, timeout=120)
    runs, heavy = json.loads(done.stdout)
    assert [status for status, _ in runs] == [2, 2, 2] and heavy == [], (runs, heavy, done.stderr)


@pytest.mark.parametrize("argv,line", [
    (["train", "--model", "ngram", "--tokenizer", "t", "--out", "o", "--budgt", "5"],
     "subchar train: error: unrecognized arguments: --budgt 5; did you mean --budget? (see subchar train --help)\n"),
    (["train", "--model", "ngram"],
     "subchar train: error: the following arguments are required: --tokenizer, --out (see subchar train --help)\n"),
    (["data", "fetch", "--data-dir", "d", "--splits", "dev"],
     "subchar data fetch: error: --splits: invalid choice: 'dev' (choose from 'train', 'valid', 'test') "
     "(see subchar data fetch --help)\n"),
    (["harness", "submission.py", "--acc-min", "1.5"],
     "subchar harness: error: --acc-min: expected a number >= 0 and <= 1, got 1.5 (see subchar harness --help)\n"),
    (["trian"], "subchar: error: COMMAND: invalid choice: 'trian' (choose from "),
    ([], "subchar: error: the following arguments are required: COMMAND (see subchar --help)\n"),
])
def test_argument_errors_are_one_line_naming_the_command(no_work, capsys, argv, line):
    """argparse printed its usage block (3-5 lines) before the line that mattered."""
    err = refused(argv, capsys)
    assert err == line if line.endswith("\n") else err.startswith(line), err
