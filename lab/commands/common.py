"""What several subcommands share: choices, the adapter's mode and beam, where the data is, and the checks every
command runs on its arguments before any work (so a refused command fails in its first second and leaves nothing).

This module stays light (no torch, no tokenizer libraries): ``lab.cli`` builds every parser from it at startup.
"""

from __future__ import annotations

import __future__
import argparse
import ast
import importlib.util
import json
import math
import os
from dataclasses import dataclass, fields
from functools import cache
from pathlib import Path
from typing import Any

from eval.errors import UserError

DEFAULT_BEAM = 8
MODES = ("spec", "exact")
DEFAULT_MODE = "exact"
MODE_HELP = ("adapter mode: exact sums every token spelling of the text (pruned to --beam); spec is the benchmark's "
             "one-buffer formula, faster but it can give the true char p=0")
# The models a grid cell trains over a tokenizer (zoo.kinds.grid_names()), those `subchar train` trains
# (zoo.train.model_names(): the mixture is a grid cell only) and the tokenizer families (tokenizers_local.FAMILIES),
# spelled out because importing those modules costs seconds; tests/test_cli.py keeps them equal.
MODEL_CHOICES = ("ngram", "ngram+char-kn", "transformer", "mamba", "hyena")
TRAIN_MODEL_CHOICES = ("ngram", "transformer", "mamba", "hyena")
FAMILY_CHOICES = ("bpe", "bytebpe", "unigram", "wordpiece", "word")


def add_data_args(parser: argparse.ArgumentParser, *, train_file: bool = False) -> None:
    parser.add_argument("--data-dir", help="directory with wiki.<split>.raw or parquet shards (default: $SUBCHAR_DATA)")
    if train_file:
        parser.add_argument(
            "--train-file",
            help="proxy text standing in for the train split (default: $SUBCHAR_TRAIN_FILE); results are marked proxy",
        )


def add_mode_arg(parser: argparse.ArgumentParser, default: str | None = DEFAULT_MODE, default_text: str | None = None) -> None:
    """``--mode``, with the same choices and words in every command."""
    parser.add_argument("--mode", choices=MODES, default=default,
                        help=f"{MODE_HELP} (default {default_text or default})")


def tokenizer_spec(text: str) -> str:
    """``--tokenizers FAMILY:VOCAB``, checked by the parser (``lab.cell.Cell.parse_tokenizer`` reads it later)."""
    family, sep, vocab = text.partition(":")
    if not sep or not vocab.isdigit():
        raise argparse.ArgumentTypeError(f"tokenizer spec {text!r} must be FAMILY:VOCAB_SIZE, e.g. bytebpe:4096")
    if family not in FAMILY_CHOICES:
        raise argparse.ArgumentTypeError(f"unknown tokenizer family {family!r}; use one of {', '.join(FAMILY_CHOICES)}")
    return text


ADAPT_HELP = ("the n-grams (token n-gram, char-kn, both of ngram+char-kn) also learn from the text they are scored "
              "on, once it was observed (the benchmark asks predict() strictly before observe(); evaluation is not "
              "charged); neural models ignore it")


def add_adapt_arg(parser: argparse.ArgumentParser, default: bool | None = True, default_text: str = "on") -> None:
    """``--adapt/--no-adapt``, with the same words in every command (``default=None``: the run's own setting)."""
    parser.add_argument("--adapt", action=argparse.BooleanOptionalAction, default=default,
                        help=f"{ADAPT_HELP} (default {default_text})")


def add_optimizer_arg(parser: argparse.ArgumentParser) -> None:
    """``--optimizer``, its choices read from ``zoo/optimizers.py`` alone (importing it loads torch)."""
    choices = tuple(assigned_literal("zoo", "optimizers.py", "OPTIMIZERS"))
    parser.add_argument("--optimizer", choices=choices,
                        help="neural models: adamw (default), or muon on the hidden matrices with adamw on the rest "
                             "(torch >= 2.9: the benchmark image's torch 2.5.1 lacks it, so Muon runs cannot be "
                             "exported or run on Modal)")


@cache
def char_order_default() -> int:
    """``zoo.char_baseline.DEFAULT_ORDER``, read from its assignment in ``zoo/char_baseline.py`` alone: importing the
    module loads numpy and the zoo (the CLI must start light), and one value is kept in one place.
    ``tests/test_adapt.py`` checks it against the imported constant."""
    return int(assigned_literal("zoo", "char_baseline.py", "DEFAULT_ORDER"))


@cache
def char_weight_default() -> float:
    """``lab.cell.DEFAULT_CHAR_WEIGHT`` (the mixture's weight on its char model), read from ``lab/cell.py`` alone as
    :func:`char_order_default` reads its value: ``lab.cell`` loads torch. ``tests/test_mixture_cell.py`` checks it
    against the imported constant."""
    return float(assigned_literal("lab", "cell.py", "DEFAULT_CHAR_WEIGHT"))


def assigned_literal(package_name: str, file_name: str, name: str) -> Any:
    """The literal a top-level ``name = ...`` (or ``name: T = ...``) assigns in ``file_name`` of the package, read
    from the source without importing the module."""
    package = importlib.util.find_spec(package_name)  # found without being imported (``import zoo`` is not light)
    path = Path(package.submodule_search_locations[0]) / file_name
    for node in ast.parse(path.read_text(encoding="utf-8"), str(path)).body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) \
            else []
        if any(isinstance(target, ast.Name) and target.id == name for target in targets) and node.value:
            return ast.literal_eval(node.value)
    raise RuntimeError(f"{path} no longer assigns {name} a literal; update lab.commands.common")


def add_engine_arg(parser: argparse.ArgumentParser) -> None:
    """``--prune`` and ``--engine``, the same in every command that scores."""
    parser.add_argument("--prune", type=FRACTION, default=None, metavar="EPS",
                        help="exact mode: also drop coverings and expansions lighter than EPS times the total (e.g. 1e-4)")
    parser.add_argument("--engine", choices=("batch", "stream"), default="batch",
                        help="batch (default): the stream's exact answers, many positions at a time; "
                             "stream: the benchmark's own predict/observe loop")


@dataclass(frozen=True)
class Number:
    """The ``type=`` of a numeric flag: a finite whole (or real) number within its bounds, else the parser refuses it
    in one line naming the flag, so ``nan``, ``inf``, ``abc`` or ``-1`` never reach a command's work."""

    whole: bool
    low: int | float
    high: int | float = math.inf
    low_open: bool = False  # ``low`` itself is refused
    high_open: bool = False

    def __call__(self, text: str) -> int | float:
        try:
            value = int(text) if self.whole else float(text)
        except ValueError:
            value = math.nan  # refused below, as nan itself is
        above = self.low < value if self.low_open else self.low <= value
        below = value < self.high if self.high_open or self.high == math.inf else value <= self.high
        if not (above and below):  # nan fails both, inf the second
            raise argparse.ArgumentTypeError(f"expected {self}, got {text}")
        return value

    def __str__(self) -> str:
        style = "d" if self.whole else "g"
        bounds = [f"{'>' if self.low_open else '>='} {self.low:{style}}"]
        if self.high != math.inf:
            bounds.append(f"{'<' if self.high_open else '<='} {self.high:{style}}")
        kind = "a whole number" if self.whole else "a number" if len(bounds) > 1 else "a finite number"
        return f"{kind} {' and '.join(bounds)}"


# The numeric flags' types. A budget above a day is a typo (the benchmark caps training at 300 s, and the clock's
# alarm cannot be set 1e12 s ahead); a seed must suit numpy, the narrowest of the three seeded generators.
COUNT = Number(whole=True, low=1)
COUNT_OR_ZERO = Number(whole=True, low=0)
SEED = Number(whole=True, low=0, high=2**32 - 1)
POSITIVE = Number(whole=False, low=0, low_open=True)
SECONDS = Number(whole=False, low=0, low_open=True, high=86_400)
FRACTION = Number(whole=False, low=0, high=1, high_open=True)
PROPORTION = Number(whole=False, low=0, high=1)


def beam_width(text: str) -> int | None:
    """``--beam K``: K coverings kept; 0 means none pruned (the exact sum, whose cost grows with the buffer)."""
    return COUNT_OR_ZERO(text) or None


def check_output_file(path: str | None, flag: str) -> None:
    """Refuse an output file (``--json``) that could not be written once the work is done. Creates nothing."""
    if path is None:
        return
    target = Path(path).expanduser()
    if target.is_dir():
        raise UserError(f"{flag} {target} is a folder; give a file path")
    check_writable_place(target, flag)


def check_writable_place(target: Path, flag: str) -> None:
    """The nearest folder above ``target`` that exists is where it will be made: it must be a writable folder."""
    anchor = next(folder for folder in target.absolute().parents if folder.exists())
    if not anchor.is_dir():
        raise UserError(f"{flag} {target}: {anchor} is a file, not a folder; choose another path")
    if not os.access(anchor, os.W_OK | os.X_OK):
        raise UserError(f"{flag} {target}: no permission to write in {anchor}; choose another path")


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """``KEY=VALUE`` strings to a dict; values are read as JSON (numbers, true/false, null), else kept as text."""
    overrides = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UserError(f"--set expects KEY=VALUE, got {pair!r}")
        try:
            overrides[key] = json.loads(value)
        except json.JSONDecodeError:
            overrides[key] = value
    return overrides


class ModelSettings(argparse.Action):
    """``--set KEY=VALUE`` (repeatable) for the model named by ``--model``: the pairs are kept as given (the command
    reads them with :func:`parse_overrides`) and checked by :func:`check_settings` once the whole line is parsed,
    whatever the order of ``--set`` and ``--model`` (the CLI's parser calls ``check_parsed``)."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        setattr(namespace, self.dest, [*(getattr(namespace, self.dest) or ()), values])

    def check_parsed(self, namespace: argparse.Namespace) -> None:
        check_settings(namespace.model, parse_overrides(getattr(namespace, self.dest)))


def check_settings(model: str, overrides: dict[str, Any]) -> None:
    """Refuse ``--set`` values by the model's own rules before anything is loaded: the n-gram's one setting, order,
    or a neural model's Config fields, types and ranges (its ``__post_init__``, run by :func:`zoo_config`)."""
    if "vocab_size" in overrides:
        raise UserError("--set vocab_size: the vocabulary is the tokenizer's; train a tokenizer of another size")
    if model == "ngram":
        unknown = sorted(set(overrides) - {"order"})
        order = overrides.get("order", 1)
        if unknown:
            raise UserError(f"--set {unknown[0]}: the n-gram has no such setting; its one setting is order")
        if type(order) is not int or order < 1:
            raise UserError(f"--set order: the n-gram order must be a whole number >= 1, got {order!r}")
        return
    config = zoo_config(model)
    names = [field.name for field in fields(config) if field.name != "vocab_size"]
    unknown = sorted(set(overrides) - set(names))
    if unknown:
        raise UserError(f"--set {unknown[0]}: {model} has no such setting; choose from {', '.join(names)}")
    try:
        config(vocab_size=2, **overrides)  # a stand-in vocabulary: the tokenizer's is read later
    except ValueError as err:
        raise UserError(f"--set: {err}") from None


@cache
def zoo_config(model: str) -> type:
    """``model``'s Config dataclass, compiled from its class statement in ``zoo/<model>.py`` alone: the file imports
    torch (over a second), the class needs only builtins, so ``--set`` is checked while parsing by the model's own
    fields and ``__post_init__``. ``tests/test_cli_values.py`` checks it against the imported class."""
    package = importlib.util.find_spec("zoo")  # found without being imported (``import zoo`` is not light)
    path = Path(package.submodule_search_locations[0]) / f"{model}.py"
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    statement = next(node for node in tree.body if isinstance(node, ast.ClassDef) and node.name == "Config")
    code = compile(ast.Module([statement], type_ignores=[]), str(path), "exec",
                   flags=__future__.annotations.compiler_flag, dont_inherit=True)
    namespace = {"__name__": __name__, "dataclass": dataclass}  # dataclass reads the module the class names
    exec(code, namespace)
    return namespace["Config"]
