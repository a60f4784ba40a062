"""``subchar train`` (budgeted training to a checkpoint) and ``subchar eval`` (a checkpoint through the adapter).

``train`` counts everything the benchmark's ``train()`` would: encoding the train text is the "tokenize" phase and
comes out of the same wall-clock budget as the "train" phase. The tokenizer itself is trained beforehand by
``subchar tokenizer train`` and its learning time is recorded from its manifest.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from eval.cli import DEFAULT_BEAM, add_engine_arg, beam_width
from eval.data import load_split
from eval.energy import EnergyMeter
from eval.errors import UserError
from eval.evaluate import evaluate
from eval.guard import MAX_TRAIN_SECONDS, TrainingTimeoutError
from eval.records import RunRecord
from zoo.checkpoint import folder_digest, load_checkpoint, save_checkpoint
from zoo.train import NGRAM, TrainSettings, model_names, train

TRAIN_RECORD = "train_record.json"


def register(subparsers) -> None:
    train_parser = subparsers.add_parser("train", help="train a zoo model on tokenized train text within a time budget")
    train_parser.add_argument("--model", required=True, help=f"one of {', '.join(model_names())}")
    train_parser.add_argument("--tokenizer", required=True, help="folder of a tokenizer saved by `subchar tokenizer train`")
    train_parser.add_argument("--data-dir", help="directory with wiki.train.raw or parquet shards (default: $SUBCHAR_DATA)")
    train_parser.add_argument("--train-file", help="proxy text standing in for the train split; results are marked proxy")
    train_parser.add_argument("--budget", type=float, default=MAX_TRAIN_SECONDS, help="wall-clock seconds (default 300)")
    train_parser.add_argument("--train-chars", type=int, help="use only the first N characters of the train text")
    train_parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                              help="model setting, e.g. --set n_layer=6 (n-gram: --set order=5); repeatable")
    train_parser.add_argument("--batch-size", type=int, help="sequences per step (default 64 on CUDA, 8 on CPU)")
    train_parser.add_argument("--lr", type=float, default=TrainSettings.lr, help="peak learning rate")
    train_parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    train_parser.add_argument("--seed", type=int, default=0)
    train_parser.add_argument("--out", required=True, help="checkpoint folder to write (an old checkpoint there is replaced)")
    train_parser.set_defaults(func=run_train)

    eval_parser = subparsers.add_parser("eval", help="score a checkpoint as a char model, exactly like the benchmark")
    eval_parser.add_argument("run", help="checkpoint folder written by `subchar train`")
    eval_parser.add_argument("--split", choices=("valid", "test"), default="valid")
    eval_parser.add_argument("--chars", type=int, default=60_000, help="score the first N characters (default 60000)")
    eval_parser.add_argument("--mode", choices=("spec", "exact"), default="spec", help="adapter mode")
    eval_parser.add_argument("--beam", type=beam_width, default=DEFAULT_BEAM,
                             help=f"exact mode: keep the K heaviest coverings (default {DEFAULT_BEAM}; 0 = no pruning, can be very slow)")
    eval_parser.add_argument("--data-dir", help="directory with wiki.<split>.raw (default: $SUBCHAR_DATA)")
    eval_parser.add_argument("--device", default="cpu", help="device for neural models (cpu or cuda)")
    eval_parser.add_argument("--bits", action=argparse.BooleanOptionalAction, default=True,
                             help="also report bits/char (--no-bits: accuracy only; exact mode with --beam 0 needs it, "
                                  "since a full distribution over byte-split characters costs millions of LM calls)")
    eval_parser.add_argument("--json", help="where to write the run record (default: RUN/eval_<split>_<mode>.json)")
    add_engine_arg(eval_parser)
    eval_parser.set_defaults(func=run_eval)


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
    import tokenizers_local

    if args.model not in model_names():
        raise UserError(f"unknown model {args.model!r}: choose one of {', '.join(model_names())}")
    if args.train_chars is not None and args.train_chars <= 0:
        raise UserError(f"--train-chars must be positive, got {args.train_chars}")
    overrides = parse_overrides(args.overrides)
    text = load_split("train", args.data_dir, args.train_file).prefix(args.train_chars)
    tokenizer = tokenizers_local.load(args.tokenizer)
    meter = EnergyMeter()
    started = time.monotonic()
    with meter.phase("tokenize"):
        ids = np.asarray(tokenizer.encode(text.text), dtype=np.int64)
    remaining = args.budget - (time.monotonic() - started)
    if remaining <= 0:
        raise UserError(f"encoding the train text took the whole {args.budget:g} s budget; lower --train-chars")
    settings = TrainSettings(batch_size=args.batch_size, lr=args.lr)
    try:
        result = train(args.model, ids, tokenizer.vocab_size, budget_s=remaining, overrides=overrides,
                       device=args.device, seed=args.seed, settings=settings, meter=meter)
    except TrainingTimeoutError as err:
        raise UserError(f"{err} (reason {err.reason}); lower --budget, the model size or --train-chars") from None
    record = train_record(args, tokenizer, text, meter, result)
    out = save_checkpoint(args.out, result, args.tokenizer, text, records={TRAIN_RECORD: record.to_dict()})
    report = meter.report
    print(f"trained {args.model}: {result.steps} steps, {result.tokens_seen:,} tokens in {result.seconds:.1f} s "
          f"({result.stop_reason}); energy {report.total_energy_J:.0f} J; checkpoint {out}")
    return 0


def model_facts(result) -> dict[str, Any]:
    facts: dict[str, Any] = {"name": result.model_name, "config": result.config}
    if result.model_name != NGRAM:
        from zoo.registry import num_params

        facts["params"] = num_params(result.model)
    return facts


def train_record(args: argparse.Namespace, tokenizer, text, meter: EnergyMeter, result) -> RunRecord:
    """The run record as far as training knows it: energy and time, no accuracy yet."""
    return RunRecord.after_training(
        f"subchar-{result.model_name}-{tokenizer.family}{tokenizer.vocab_size}",
        meter.report,
        text.proxy,
        tokenizer={
            "family": tokenizer.family,
            "vocab_size": tokenizer.vocab_size,
            "path": str(Path(args.tokenizer).resolve()),
            "sha256": folder_digest(Path(args.tokenizer)),
            "training_seconds": tokenizer.info.training_seconds,
        },
        model=model_facts(result),
        extra={"train": result.summary(), "train_source": text.source, "train_chars": len(text.text),
               "budget_s": args.budget},
    )


def run_eval(args: argparse.Namespace) -> int:
    from subchar import CharAdapter

    if args.chars <= 0:
        raise UserError(f"--chars must be positive, got {args.chars}")
    checkpoint = load_checkpoint(args.run, device=args.device)
    text = load_split(args.split, args.data_dir).text
    options = {"mode": args.mode, "beam": args.beam, "prune": args.prune}
    adapter = CharAdapter(checkpoint.token_lm(args.device), checkpoint.tokenizer, **options)
    result = evaluate(adapter, text, max_chars=args.chars, bits=args.bits, engine=args.engine)
    record = eval_record(checkpoint, args, result)
    target = Path(args.json) if args.json else checkpoint.path / f"eval_{args.split}_{args.mode}.json"
    record.save(target)
    if result.bits_per_char is None:
        bpc = "bits/char n/a"
    elif result.zero_prob_chars and result.covered_bits_per_char is not None:
        bpc = f"{result.covered_bits_per_char:.4f} bits/char over the chars with mass ({result.zero_prob_chars} got p=0)"
    else:
        bpc = f"{result.bits_per_char:.4f} bits/char"
    proxy = " (proxy train: development figure)" if record.proxy_train else ""
    print(f"{args.split} char accuracy {result.accuracy:.4f} over {result.chars:,} chars, {bpc}, "
          f"{result.chars_per_s:,.0f} chars/s ({result.engine} engine){proxy}; record {target}")
    return 0


def eval_record(checkpoint, args: argparse.Namespace, result) -> RunRecord:
    """The training record of the checkpoint completed with the scores; a bare one if it has none."""
    path = checkpoint.path / TRAIN_RECORD
    fields = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {
        "submission": f"subchar-{checkpoint.model_name}", "training_energy_J": None, "training_duration_s": 0.0,
        "cpu_energy_J": None, "total_energy_J": None, "gpu_name": None,
    }
    fields.pop("date_utc", None)
    if args.split == "valid":
        fields.update(val_char_accuracy=result.accuracy, val_chars=result.chars, bits_per_char=result.bits_per_char)
    else:  # the benchmark's val fields stay empty: a test score must never pass for a val score
        fields.update(val_char_accuracy=None, val_chars=0, bits_per_char=None)
    fields.update(
        eval_chars_per_s=result.chars_per_s,
        eval_engine=result.engine,
        proxy_train=bool(checkpoint.manifest.get("proxy_train")),
        extra={**fields.get("extra", {}), f"{args.split}_char_accuracy": result.accuracy,
               f"{args.split}_chars": result.chars, f"{args.split}_bits_per_char": result.bits_per_char, "eval": {
            "split": args.split, "mode": args.mode, "beam": args.beam, "prune": args.prune, "engine": result.engine,
            "device": args.device,
            "zero_prob_chars": result.zero_prob_chars, "covered_bits_per_char": result.covered_bits_per_char,
            "wall_s": result.wall_s, "checkpoint": str(checkpoint.path),
        }},
    )
    try:
        return RunRecord(**fields)
    except TypeError:
        raise UserError(f"{path} is not a run record; delete it or train again") from None
