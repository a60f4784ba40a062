"""What several subcommands share: choices, the adapter's mode and beam, where the data is, and the checks every
command runs on its arguments before any work (so a refused command fails in its first second and leaves nothing).

This module stays light (no torch, no tokenizer libraries): ``lab.cli`` builds every parser from it at startup.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from eval.errors import UserError

DEFAULT_BEAM = 8
MODES = ("spec", "exact")
DEFAULT_MODE = "exact"
MODE_HELP = ("adapter mode: exact sums every token spelling of the text (pruned to --beam); spec is the benchmark's "
             "one-buffer formula, faster but it can give the true char p=0")
# The zoo's trainable models (zoo.train.model_names()) and the tokenizer families (tokenizers_local.FAMILIES),
# spelled out because importing those modules costs seconds; tests/test_cli_startup.py keeps them equal.
MODEL_CHOICES = ("ngram", "transformer", "mamba", "hyena")
FAMILY_CHOICES = ("bpe", "bytebpe", "unigram", "wordpiece", "word")
SAVED_MANIFEST = "manifest.json"  # what a saved tokenizer or checkpoint folder holds (it may be replaced)


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


def add_engine_arg(parser: argparse.ArgumentParser) -> None:
    """``--prune`` and ``--engine``, the same in every command that scores."""
    parser.add_argument("--prune", type=float, default=None, metavar="EPS",
                        help="exact mode: also drop coverings and expansions lighter than EPS times the total (e.g. 1e-4)")
    parser.add_argument("--engine", choices=("batch", "stream"), default="batch",
                        help="batch (default): the stream's exact answers, many positions at a time; "
                             "stream: the benchmark's own predict/observe loop")


def beam_width(text: str) -> int | None:
    """``--beam K``: K coverings kept; 0 means none pruned (the exact sum, whose cost grows with the buffer)."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("the beam must be 0 (no pruning) or positive")
    return value or None


def check_positive(value: float | None, flag: str) -> None:
    """``--budget must be positive`` (and the like), worded the same in every command; None means not given."""
    if value is not None and value <= 0:
        raise UserError(f"{flag} must be positive, got {value:g}")


def check_output_folder(path: str, flag: str = "--out", what: str = "output") -> Path:
    """Refuse an output folder that could not be written once the work is done: a file in its place or on its
    way, no permission, or a folder holding something else than a saved ``what`` (only an empty folder or one
    with a ``manifest.json`` is replaced). Creates nothing."""
    target = Path(path).expanduser()
    if target.exists():
        if not target.is_dir():
            raise UserError(f"{flag} {target} is a file; give a folder path")
        if any(target.iterdir()) and not (target / SAVED_MANIFEST).is_file():
            raise UserError(f"{flag} {target} exists and is not a saved {what}; choose another path")
    check_writable_place(target, flag)
    return target


def check_results_folder(path: str, flag: str = "--out") -> Path:
    """Refuse a results folder (one that comparisons add to) that is a file, lies below one or cannot be written.
    Creates nothing."""
    target = Path(path).expanduser()
    if target.exists() and not target.is_dir():
        raise UserError(f"{flag} {target} is a file; give a folder path")
    check_writable_place(target / "results.jsonl", flag)
    return target


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
