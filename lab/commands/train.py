"""``subchar train`` and ``subchar eval``: their parsers, and the checks on their arguments that run before any work.

The work itself, training to a checkpoint and scoring one, is :mod:`lab.checkpoint_runs`.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from eval.data import SplitText, load_split, resolve_data_dir, text_sha256
from eval.errors import UserError
from eval.guard import MAX_TRAIN_SECONDS
from lab.commands.common import (
    DEFAULT_BEAM,
    TRAIN_MODEL_CHOICES,
    add_adapt_arg,
    add_engine_arg,
    add_mode_arg,
    add_optimizer_arg,
    COUNT,
    POSITIVE,
    SECONDS,
    SEED,
    ModelSettings,
    beam_width,
    check_output_file,
    parse_overrides,
)
from lab.commands.folders import (
    ADAPTING_MODELS,
    check_output_folder,
    read_saved,
    saved_adapt,
    verify_checkpoint,
    verify_tokenizer,
)

NOTHING_SAVED = "training stopped and nothing was saved (a run cannot resume); run the command again to start over"


def register(subparsers) -> None:
    train_parser = subparsers.add_parser("train", help="train a zoo model on tokenized train text within a time budget")
    train_parser.add_argument("--model", required=True, choices=TRAIN_MODEL_CHOICES, metavar="MODEL",
                              help=f"one of {', '.join(TRAIN_MODEL_CHOICES)} (the mixture ngram+char-kn trains as a "
                                   "grid cell: subchar compare --models ngram+char-kn)")
    train_parser.add_argument("--tokenizer", required=True, help="folder of a tokenizer saved by `subchar tokenizer train`")
    train_parser.add_argument("--data-dir", help="directory with wiki.train.raw or parquet shards (default: $SUBCHAR_DATA)")
    train_parser.add_argument("--train-file", help="proxy text standing in for the train split; results are marked proxy")
    train_parser.add_argument("--budget", type=SECONDS, default=MAX_TRAIN_SECONDS, help="wall-clock seconds (default 300)")
    train_parser.add_argument("--train-chars", type=COUNT, help="use only the first N characters of the train text")
    train_parser.add_argument("--set", dest="overrides", action=ModelSettings, default=[], metavar="KEY=VALUE",
                              help="model setting, e.g. --set n_layer=6 (n-gram: --set order=5); repeatable")
    train_parser.add_argument("--batch-size", type=COUNT, help="sequences per step (default 64 on CUDA, 8 on CPU)")
    train_parser.add_argument("--lr", type=POSITIVE, help="peak learning rate")
    add_optimizer_arg(train_parser)
    train_parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    train_parser.add_argument("--seed", type=SEED, default=0)
    add_adapt_arg(train_parser, default_text="on; recorded with the checkpoint for `subchar eval` and `subchar export`")
    train_parser.add_argument("--out", required=True, help="checkpoint folder to write (an old checkpoint there is replaced)")
    train_parser.set_defaults(func=run_train, interrupted=NOTHING_SAVED)

    eval_parser = subparsers.add_parser("eval", help="score a checkpoint as a char model, exactly like the benchmark")
    eval_parser.add_argument("run", help="checkpoint folder: a `subchar train --out` folder, or a compare run's "
                             "runs/<cell>/checkpoint")
    eval_parser.add_argument("--split", choices=("valid", "test"), default="valid")
    eval_parser.add_argument("--chars", type=COUNT, default=60_000, help="score the first N characters (default 60000)")
    add_mode_arg(eval_parser)
    eval_parser.add_argument("--beam", type=beam_width, default=DEFAULT_BEAM,
                             help=f"exact mode: keep the K coverings of most reach (default {DEFAULT_BEAM}; 0 = no pruning, can be very slow)")
    eval_parser.add_argument("--data-dir", help="directory with wiki.<split>.raw (default: $SUBCHAR_DATA, else the one "
                             "the checkpoint was trained with)")
    eval_parser.add_argument("--device", default="cpu", help="device for neural models (cpu or cuda)")
    eval_parser.add_argument("--bits", action=argparse.BooleanOptionalAction, default=True,
                             help="also report bits/char (--no-bits: accuracy only; exact mode with --beam 0 needs it, "
                                  "since a full distribution over byte-split characters costs millions of LM calls)")
    eval_parser.add_argument("--json", help="where to write the run record (default: RUN/eval_<split>_<mode>_beam<K>"
                             "[_prune<EPS>]_<N>chars_<engine>_<device>[_adapt][_nobits].json, named by what changes it)")
    eval_parser.add_argument("--allow-trained-split", action="store_true",
                             help="score the split even when the model was trained on its text (refused otherwise); "
                                  "the output and the record say so")
    add_engine_arg(eval_parser)
    add_adapt_arg(eval_parser, default=None, default_text="the run's: what `subchar train --adapt` or the grid cell "
                  "recorded, off for a run from before the option")
    eval_parser.set_defaults(func=run_eval, interrupted="scoring stopped; no record was written")


def run_train(args: argparse.Namespace) -> int:
    overrides = parse_overrides(args.overrides)
    check_output_folder(args.out, "checkpoint")
    verify_tokenizer(*read_saved(args.tokenizer, "tokenizer", "--tokenizer"))
    text = load_split("train", args.data_dir, args.train_file, progress=True)  # refuses val text
    text = text.prefix(args.train_chars)
    from lab.checkpoint_runs import train_checkpoint  # deferred to the run: `subchar --help` must not load torch

    return train_checkpoint(args, text, overrides)


def run_eval(args: argparse.Namespace) -> int:
    check_output_file(args.json, "--json")
    folder, manifest = read_saved(args.run, "checkpoint")
    verify_checkpoint(folder, manifest)
    text = load_split(args.split, data_dir_of(manifest, args.data_dir))
    chosen = saved_adapt(folder, manifest) if args.adapt is None else args.adapt
    args.adapt = chosen and manifest.get("model") in ADAPTING_MODELS  # what the scored model does
    seen = trained_on(manifest, text)
    if seen and not args.allow_trained_split:
        other = "test" if args.split == "valid" else "valid"
        raise UserError(f"{folder} was trained on the {args.split} split's text (its first {manifest['train_chars']:,} "
                        f"chars), so a score there is recall, not prediction; score --split {other}, or pass "
                        "--allow-trained-split to score it anyway (labelled as such)")
    target = Path(args.json) if args.json else folder / eval_record_name(args, min(args.chars, len(text.text)))
    if args.json is None:  # the checkpoint folder may be read-only
        check_output_file(str(target), "--json")
    from lab.checkpoint_runs import eval_checkpoint  # deferred to the run: `subchar --help` must not load torch

    return eval_checkpoint(args, text, target, seen)


def data_dir_of(manifest: dict[str, Any], given: str | None) -> str | None:
    """--data-dir or $SUBCHAR_DATA, else the data directory the checkpoint was trained with (its manifest)."""
    return given if resolve_data_dir(given) is not None else manifest.get("data_dir")


def trained_on(manifest: dict[str, Any], text: SplitText) -> bool:
    """Whether the checkpoint's train text was the start of ``text`` (the usual proxy is the test split): the
    manifest's digest of the train text against the digest of as many leading characters of ``text``."""
    chars = manifest.get("train_chars")
    return isinstance(chars, int) and 0 < chars <= len(text.text) \
        and text_sha256(text.text[:chars]) == manifest.get("train_text_sha256")


def eval_record_name(args: argparse.Namespace, chars: int) -> str:
    """The default record file, named by every setting that changes the record, so that scoring another way adds
    a record beside the others instead of replacing one."""
    prune = "" if args.prune is None else f"_prune{args.prune:g}"
    adapt = "_adapt" if args.adapt else ""  # a record from before the option was of a model that did not adapt
    bits = "" if args.bits else "_nobits"
    return (f"eval_{args.split}_{args.mode}_beam{args.beam or 0}{prune}_{chars}chars_{args.engine}_{args.device}"
            f"{adapt}{bits}.json")
