"""``subchar train`` and ``subchar eval``: their parsers, and the checks on their arguments that run before any work.

The work itself, training to a checkpoint and scoring one, is :mod:`lab.checkpoint_runs`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from eval.data import load_split
from eval.errors import UserError
from eval.guard import MAX_TRAIN_SECONDS
from lab.commands.common import (
    DEFAULT_BEAM,
    MODEL_CHOICES,
    add_engine_arg,
    add_mode_arg,
    beam_width,
    check_output_file,
    check_output_folder,
    check_positive,
)

NOTHING_SAVED = "training stopped and nothing was saved (a run cannot resume); run the command again to start over"


def register(subparsers) -> None:
    train_parser = subparsers.add_parser("train", help="train a zoo model on tokenized train text within a time budget")
    train_parser.add_argument("--model", required=True, choices=MODEL_CHOICES, metavar="MODEL",
                              help=f"one of {', '.join(MODEL_CHOICES)}")
    train_parser.add_argument("--tokenizer", required=True, help="folder of a tokenizer saved by `subchar tokenizer train`")
    train_parser.add_argument("--data-dir", help="directory with wiki.train.raw or parquet shards (default: $SUBCHAR_DATA)")
    train_parser.add_argument("--train-file", help="proxy text standing in for the train split; results are marked proxy")
    train_parser.add_argument("--budget", type=float, default=MAX_TRAIN_SECONDS, help="wall-clock seconds (default 300)")
    train_parser.add_argument("--train-chars", type=int, help="use only the first N characters of the train text")
    train_parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                              help="model setting, e.g. --set n_layer=6 (n-gram: --set order=5); repeatable")
    train_parser.add_argument("--batch-size", type=int, help="sequences per step (default 64 on CUDA, 8 on CPU)")
    train_parser.add_argument("--lr", type=float, help="peak learning rate")
    train_parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    train_parser.add_argument("--seed", type=int, default=0)
    train_parser.add_argument("--out", required=True, help="checkpoint folder to write (an old checkpoint there is replaced)")
    train_parser.set_defaults(func=run_train, interrupted=NOTHING_SAVED)

    eval_parser = subparsers.add_parser("eval", help="score a checkpoint as a char model, exactly like the benchmark")
    eval_parser.add_argument("run", help="checkpoint folder written by `subchar train`")
    eval_parser.add_argument("--split", choices=("valid", "test"), default="valid")
    eval_parser.add_argument("--chars", type=int, default=60_000, help="score the first N characters (default 60000)")
    add_mode_arg(eval_parser)
    eval_parser.add_argument("--beam", type=beam_width, default=DEFAULT_BEAM,
                             help=f"exact mode: keep the K coverings of most reach (default {DEFAULT_BEAM}; 0 = no pruning, can be very slow)")
    eval_parser.add_argument("--data-dir", help="directory with wiki.<split>.raw (default: $SUBCHAR_DATA, else the one "
                             "the checkpoint was trained with)")
    eval_parser.add_argument("--device", default="cpu", help="device for neural models (cpu or cuda)")
    eval_parser.add_argument("--bits", action=argparse.BooleanOptionalAction, default=True,
                             help="also report bits/char (--no-bits: accuracy only; exact mode with --beam 0 needs it, "
                                  "since a full distribution over byte-split characters costs millions of LM calls)")
    eval_parser.add_argument("--json", help="where to write the run record (default: RUN/eval_<split>_<mode>.json)")
    add_engine_arg(eval_parser)
    eval_parser.set_defaults(func=run_eval, interrupted="scoring stopped; no record was written")


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


def run_train(args: argparse.Namespace) -> int:
    check_positive(args.budget, "--budget")
    check_positive(args.train_chars, "--train-chars")
    check_positive(args.batch_size, "--batch-size")
    check_positive(args.lr, "--lr")
    overrides = parse_overrides(args.overrides)
    check_output_folder(args.out, what="checkpoint")
    if not Path(args.tokenizer).expanduser().is_dir():
        raise UserError(f"--tokenizer {args.tokenizer}: no such folder; create it with `subchar tokenizer train`")
    text = load_split("train", args.data_dir, args.train_file, progress=True)  # refuses val text
    text = text.prefix(args.train_chars)
    from lab.checkpoint_runs import train_checkpoint  # deferred to the run: `subchar --help` must not load torch

    return train_checkpoint(args, text, overrides)


def run_eval(args: argparse.Namespace) -> int:
    check_positive(args.chars, "--chars")
    check_output_file(args.json, "--json")
    from lab.checkpoint_runs import eval_checkpoint  # deferred to the run: `subchar --help` must not load torch

    return eval_checkpoint(args)
