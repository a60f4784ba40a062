"""``subchar train`` (budgeted training to a checkpoint) and ``subchar eval`` (a checkpoint through the adapter).

``train`` counts everything the benchmark's ``train()`` would: encoding the train text is the "tokenize" phase and
comes out of the same wall-clock budget as the "train" phase. The tokenizer itself is trained beforehand by
``subchar tokenizer train`` and its learning time is recorded from its manifest. ``train --adapt`` (the default) is
recorded with the checkpoint (``extra.adapt`` of its train record, for an n-gram), and ``eval`` scores the model as
it was recorded (``--adapt`` / ``--no-adapt`` override it): learning from the scored text as it goes, or not. The
commands' parsers and argument checks live in :mod:`lab.commands.train`, which imports this module only when a
command runs.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

import tokenizers_local
from eval.data import SplitText
from eval.contract import CharModel
from eval.energy import EnergyMeter
from eval.errors import UserError
from eval.evaluate import evaluate
from eval.guard import TrainingTimeoutError
from eval.records import RunRecord
from subchar.batch_engine import batch_adapter
from subchar.mixture import Mixture
from zoo.checkpoint import Checkpoint, folder_digest, load_checkpoint, save_checkpoint
from zoo.kinds import kind_of
from zoo.registry import num_params

TRAIN_RECORD = "train_record.json"
SEEN_LABEL = "TRAINED ON THIS TEXT (recall, not prediction)"  # starts the output of a score on seen text


def train_checkpoint(args: argparse.Namespace, text: SplitText, overrides: dict[str, Any]) -> int:
    """`subchar train` once its arguments and train text are checked (lab.commands.train): train ``text``, then
    save the checkpoint."""
    # imported here, before the budget's clock starts: zoo.train loads torch._dynamo (seconds), which scoring a
    # checkpoint (``eval_checkpoint``) never needs
    from zoo.train import TrainSettings, train

    tokenizer = tokenizers_local.load(args.tokenizer)
    meter = EnergyMeter()
    started = time.monotonic()
    settings = TrainSettings(batch_size=args.batch_size, lr=TrainSettings.lr if args.lr is None else args.lr,
                             optimizer=args.optimizer)
    with meter.measure():  # one block, as the benchmark measures train(); saving below is not part of it
        with meter.phase("tokenize"):
            ids = np.asarray(tokenizer.encode(text.text), dtype=np.int64)
        remaining = args.budget - (time.monotonic() - started)
        if remaining <= 0:
            raise UserError(f"encoding the train text took the whole {args.budget:g} s budget; lower --train-chars")
        try:
            result = train(args.model, ids, tokenizer.vocab_size, budget_s=remaining, overrides=overrides,
                           device=args.device, seed=args.seed, settings=settings, meter=meter)
        except TrainingTimeoutError as err:
            raise UserError(f"{err} (reason {err.reason}); lower --budget, the model size or --train-chars") from None
    record = train_record(args, tokenizer, text, meter, result)
    out = save_checkpoint(args.out, result, args.tokenizer, text, records={TRAIN_RECORD: record.to_dict()})
    report = meter.report
    steps = f"{result.steps} step{'' if result.steps == 1 else 's'}"
    print(f"trained {args.model}: {steps}, {result.tokens_seen:,} tokens in {result.seconds:.1f} s "
          f"({result.stop_reason}); energy {report.total_energy_J:.0f} J; checkpoint {out}")
    return 0


def model_facts(result) -> dict[str, Any]:
    facts: dict[str, Any] = {"name": result.model_name, "config": result.config}
    if kind_of(result.model_name).neural:
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
               "budget_s": args.budget, "adapt": bool(args.adapt) and kind_of(result.model_name).counted},
    )


def eval_checkpoint(args: argparse.Namespace, text: SplitText, target: Path, seen: bool) -> int:
    """`subchar eval` once its arguments, the checkpoint's files and the split ``text`` are checked
    (lab.commands.train): score, then save the record to ``target``. ``seen``: the model was trained on ``text``
    (allowed by --allow-trained-split), which the output and the record say."""
    checkpoint = load_checkpoint(args.run, device=args.device)
    options = {"mode": args.mode, "beam": args.beam, "prune": args.prune}
    model = char_model_of(checkpoint, args.device, bool(args.adapt), **options)
    result = evaluate(model, text.text, max_chars=args.chars, bits=args.bits, engine=args.engine)
    record = eval_record(checkpoint, args, result, seen)
    record.save(target)
    if result.bits_per_char is None:
        bpc = "bits/char n/a"
    elif result.zero_prob_chars and result.covered_bits_per_char is not None:
        bpc = f"{result.covered_bits_per_char:.4f} bits/char over the chars with mass ({result.zero_prob_chars} got p=0)"
    else:
        bpc = f"{result.bits_per_char:.4f} bits/char"
    proxy = " (proxy train: development figure)" if record.proxy_train else ""
    label = f"{SEEN_LABEL}: " if seen else ""
    print(f"{label}{args.split} char accuracy {result.accuracy:.4f} over {result.chars:,} chars, {bpc}, "
          f"{result.chars_per_s:,.0f} chars/s ({result.engine} engine){proxy}; record {target}")
    return 0


def char_model_of(checkpoint: Checkpoint, device: str, adapt: bool, **options: Any) -> CharModel:
    """The checkpoint's model read per character, as its run read it: the adapter over the token LM (``options``:
    mode, beam, prune), and for the mixture ``ngram+char-kn`` that adapter mixed with its char model, the char model
    weighted by the run's ``char_weight``. ``adapt``: the counted models also learn the text they are scored on."""
    adapter = batch_adapter(checkpoint.token_lm(device, adapt=adapt), checkpoint.tokenizer, **options)
    if not kind_of(checkpoint.model_name).mixture:
        return adapter
    weight = float(checkpoint.config["char_weight"])
    return Mixture([checkpoint.char_model(adapt), adapter], [weight, 1.0 - weight])


def eval_record(checkpoint, args: argparse.Namespace, result, seen: bool) -> RunRecord:
    """The training record of the checkpoint completed with the scores; a bare one if it has none. A score on
    text the model was trained on goes under ``extra`` only, marked ``trained_on_scored_text``."""
    path = checkpoint.path / TRAIN_RECORD
    fields = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {
        "submission": f"subchar-{checkpoint.model_name}", "training_energy_J": None, "training_duration_s": 0.0,
        "cpu_energy_J": None, "total_energy_J": None, "gpu_name": None,
    }
    fields.pop("date_utc", None)
    if args.split == "valid" and not seen:
        fields.update(val_char_accuracy=result.accuracy, val_chars=result.chars, bits_per_char=result.bits_per_char)
    else:  # the benchmark's val fields stay empty: a test score (or a seen one) must never pass for a val score
        fields.update(val_char_accuracy=None, val_chars=0, bits_per_char=None)
    fields.update(
        eval_chars_per_s=result.chars_per_s,
        eval_engine=result.engine,
        proxy_train=bool(checkpoint.manifest.get("proxy_train")),
        extra={**fields.get("extra", {}), f"{args.split}_char_accuracy": result.accuracy,
               f"{args.split}_chars": result.chars, f"{args.split}_bits_per_char": result.bits_per_char,
               "trained_on_scored_text": seen, "adapt": args.adapt, "eval": {
            "split": args.split, "mode": args.mode, "beam": args.beam, "prune": args.prune, "engine": result.engine,
            "device": args.device, "adapt": args.adapt,
            "zero_prob_chars": result.zero_prob_chars, "covered_bits_per_char": result.covered_bits_per_char,
            "wall_s": result.wall_s, "checkpoint": str(checkpoint.path),
        }},
    )
    try:
        return RunRecord(**fields)
    except TypeError:
        raise UserError(f"{path} is not a run record; delete it or train again") from None
