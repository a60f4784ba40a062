"""One cell of a comparison: tokenizer training + model training under the budget + streaming evaluation.

Everything the benchmark's ``train()`` would do is measured as energy phases and shares one wall-clock budget:
``tokenizer`` (learning the vocabulary on the train split), ``tokenize`` (encoding the train text) and ``train``
(the model). Evaluation is not charged, as in the benchmark. The character-level Kneser–Ney baseline (the
benchmark's leading family) runs through the same pipeline as the cell ``char-kn``.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from eval.data import SplitText, VAL_WINDOW_CHARS, load_split
from eval.energy import EnergyMeter
from eval.errors import UserError
from eval.evaluate import EvalResult, evaluate
from eval.guard import MAX_TRAIN_SECONDS, TrainingTimeoutError, wall_clock_guard
from eval.records import RunRecord, write_json_atomic

CHAR_BASELINE = "char-kn"
ACC_MIN = 0.70


@dataclass(frozen=True)
class Cell:
    """A grid point: a tokenizer (family, vocab size) and a model; ``char-kn`` needs no tokenizer."""

    model: str
    family: str | None = None
    vocab_size: int | None = None

    @property
    def id(self) -> str:
        return self.model if self.family is None else f"{self.family}{self.vocab_size}-{self.model}"

    @classmethod
    def parse_tokenizer(cls, spec: str) -> tuple[str, int]:
        """``family:vocab`` (e.g. ``bytebpe:4096``) → (family, vocab size)."""
        family, sep, vocab = spec.partition(":")
        if not sep or not vocab.isdigit():
            raise UserError(f"tokenizer spec {spec!r} must be FAMILY:VOCAB_SIZE, e.g. bytebpe:4096")
        return family, int(vocab)


@dataclass(frozen=True)
class CellOptions:
    """Settings shared by every cell of a grid (JSON-ready, so they travel to remote workers)."""

    budget_s: float = MAX_TRAIN_SECONDS
    mode: str = "exact"
    beam: int | None = None
    eval_chars: int = VAL_WINDOW_CHARS
    test_chars: int = VAL_WINDOW_CHARS
    train_chars: int | None = None
    char_order: int = 6
    device: str = "auto"
    engine: str = "batch"
    prune: float | None = None
    seed: int = 0
    overrides: dict[str, Any] = field(default_factory=dict)
    progress: bool = True

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def run_cell(
    cell: Cell,
    options: CellOptions,
    run_dir: str | Path,
    data_dir: str | None = None,
    train_file: str | None = None,
) -> dict[str, Any]:
    """Train and evaluate one cell; returns its run record (also saved as ``run_dir/record.json``)."""
    run_dir = Path(run_dir)
    write_json_atomic(run_dir / "cell.json", {"cell": asdict(cell), "options": options.to_dict()})
    train = load_split("train", data_dir, train_file).prefix(options.train_chars)
    valid = load_split("valid", data_dir).text
    test = load_split("test", data_dir).text
    meter = EnergyMeter()
    try:
        model, facts = train_cell(cell, options, train, run_dir, meter)
    except TrainingTimeoutError as err:
        record = base_record(cell, meter, train, facts={})
        record.disqualified, record.reason = True, err.reason
        record.extra["max_train_seconds"] = options.budget_s
        record.save(run_dir / "record.json")
        return record.to_dict()
    record = base_record(cell, meter, train, facts)
    val = evaluate(model, valid, options.eval_chars, progress=options.progress, engine=options.engine)
    test_seen = test.startswith(train.text)  # the usual proxy is the test split itself: scoring it would flatter
    test_result = None
    if options.test_chars and not test_seen:
        test_result = evaluate(model, test, options.test_chars, progress=options.progress, engine=options.engine)
    fill_scores(record, val, test_result, options)
    if test_seen:
        record.extra["test_skipped"] = "the proxy train text is the test split"
    record.save(run_dir / "record.json")
    return record.to_dict()


def train_cell(cell: Cell, options: CellOptions, train: SplitText, run_dir: Path, meter: EnergyMeter):
    """The measured part: returns the trained CharModel and facts about tokenizer and model."""
    if cell.model == CHAR_BASELINE:
        from zoo.char_baseline import CharKneserNey

        with meter.phase("train"), wall_clock_guard(options.budget_s):
            model = CharKneserNey.fit(train, order=options.char_order)
        return model, {"model": {"name": CHAR_BASELINE, "config": {"order": options.char_order}}}

    import tokenizers_local
    from subchar import CharAdapter
    from zoo.checkpoint import save_checkpoint
    from zoo.registry import num_params
    from zoo.streaming import TorchTokenLM
    from zoo.train import NGRAM, train as train_model

    started = time.monotonic()
    with meter.phase("tokenizer"), wall_clock_guard(options.budget_s):
        tokenizer = tokenizers_local.train_tokenizer(train, cell.family, cell.vocab_size, progress=options.progress)
    with meter.phase("tokenize"), wall_clock_guard(options.budget_s - (time.monotonic() - started)):
        ids = np.asarray(tokenizer.encode(train.text), dtype=np.int64)
    remaining = options.budget_s - (time.monotonic() - started)
    if remaining <= 0:
        raise TrainingTimeoutError(f"the tokenizer took the whole {options.budget_s:g} s budget")
    overrides = options.overrides.get(cell.model, {})
    result = train_model(cell.model, ids, tokenizer.vocab_size, budget_s=remaining, overrides=overrides,
                         device=options.device, seed=options.seed, meter=meter)
    tokenizer_dir = tokenizer.save(run_dir / "tokenizer")
    save_checkpoint(run_dir / "checkpoint", result, tokenizer_dir, train)
    lm = result.model if cell.model == NGRAM else TorchTokenLM(result.model, result.device)
    adapter = CharAdapter(lm, tokenizer, mode=options.mode, beam=options.beam, prune=options.prune)
    facts = {
        "tokenizer": {
            "family": tokenizer.family,
            "vocab_size": tokenizer.vocab_size,
            "chars_per_token": len(train.text) / max(1, len(ids)),
            "training_seconds": tokenizer.info.training_seconds,
        },
        "model": {
            "name": cell.model,
            "config": result.config,
            "params": None if cell.model == NGRAM else num_params(result.model),
            "train": result.summary(),
        },
    }
    return adapter, facts


def base_record(cell: Cell, meter: EnergyMeter, train: SplitText, facts: dict[str, Any]) -> RunRecord:
    return RunRecord.after_training(
        cell.id, meter.report, train.proxy,
        tokenizer=facts.get("tokenizer"),
        model=facts.get("model"),
        extra={"train_source": train.source, "train_chars": len(train.text)},
    )


def fill_scores(record: RunRecord, val: EvalResult, test: EvalResult | None, options: CellOptions) -> None:
    """Scores, and the benchmark's accuracy gate (only on the full 60,000-char window)."""
    record.val_char_accuracy = val.accuracy
    record.val_chars = val.chars
    record.bits_per_char = val.bits_per_char
    record.eval_chars_per_s = val.chars_per_s
    record.eval_engine = val.engine
    record.extra.update(
        mode=options.mode,
        beam=options.beam,
        prune=options.prune,
        budget_s=options.budget_s,
        zero_prob_chars=val.zero_prob_chars,
        covered_bits_per_char=val.covered_bits_per_char,
        test_char_accuracy=test.accuracy if test else None,
        test_chars=test.chars if test else 0,
        test_bits_per_char=test.bits_per_char if test else None,
    )
    if val.accuracy < ACC_MIN:
        record.disqualified, record.reason = True, "val_accuracy_below_floor"
        record.extra["acc_min"] = ACC_MIN
