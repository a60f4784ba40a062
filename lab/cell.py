"""One cell of a comparison: tokenizer training + model training under the budget + streaming evaluation.

Everything the benchmark's ``train()`` would do is measured as energy phases and shares one wall-clock budget,
split by :mod:`lab.phase_plan`: ``probe`` (measuring rates), ``tokenizer`` (learning the vocabulary on a sample of
the train split), ``tokenize`` (encoding it into a cached memory-mapped id file, :mod:`lab.cell_phases`) and
``train`` (the model). Evaluation is not charged, as in the benchmark. The character-level Kneser–Ney baseline (the
benchmark's leading family) runs through the same pipeline as the cell ``char-kn``. The step from token ids to the
character model (:func:`ngram_char_model`, :func:`neural_char_model`, :func:`mixture_char_model`) is what an exported
submission's ``train()`` runs as well (``lab.export``).

The mixture cell ``ngram+char-kn`` trains as the ``ngram`` cell does (same phases, one measured block) and, in its
``train`` phase, also learns the character vocabulary of the text it encoded and counts the char n-gram on it
(``CellOptions.char_order``); it reads both per character, mixed with weight ``CellOptions.char_weight`` on the char
model (:class:`subchar.mixture.Mixture`). That default weight was chosen on held-out *train* text, never val
(``scripts/select_on_heldout.py``).

Online adaptation (``CellOptions.adapt``, on by default): the counted models (the token n-gram and ``char-kn``) also
learn from the text they are scored on, position by position after it was observed (``zoo.online_ngram``): the
benchmark calls ``predict()`` for a position strictly before ``observe()`` of it, and evaluation is not charged. The
neural models ignore the option. Every record says whether its model adapted (``extra.adapt``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from eval.data import SplitText, VAL_WINDOW_CHARS, load_split
from eval.energy import EnergyMeter
from eval.errors import UserError
from eval.evaluate import EvalResult, evaluate
from eval.guard import MAX_TRAIN_SECONDS, TrainingTimeoutError, wall_clock_guard
from eval.memory import peak_rss_gb, reset_peak_rss
from eval.progress import phase
from eval.records import RunRecord, write_json_atomic
from lab.cell_phases import phase_table, prepare_char_ids, prepare_ids, train_budget
from lab.report import ACC_MIN
from lab.results import CELL_FILE, RECORD_FILE
from subchar import CharAdapter
from subchar.batch_engine import batch_adapter
from subchar.mixture import Mixture
from zoo.char_baseline import DEFAULT_ORDER as CHAR_DEFAULT_ORDER
from zoo.char_baseline import CharKneserNey, CharVocabulary
from zoo import mamba
from zoo.checkpoint import save_checkpoint
from zoo.kinds import CHAR_BASELINE, MIXTURE, kind_of
from zoo.online_ngram import OnlineKneserNey
from zoo.registry import num_params
from zoo.streaming import TorchTokenLM
from zoo.train import (
    NGRAM_DEFAULT_ORDER,
    TrainResult,
    TrainSettings,
    check_ids,
    count_ngram_chunked,
    resolve_device,
    seed_everything,
    train_neural,
)

# The char model's weight in the ngram+char-kn mixture (the token n-gram gets the rest). Chosen on held-out train
# text by scripts/select_on_heldout.py (the README's selection table), never on val: with char-kn at order 10 and
# bytebpe2048 at order 4, both adapting, the grid's best (0.6633 against 0.6568 and 0.6567 alone; flat over
# 0.30-0.55). The CLI reads this line (lab.commands.common.char_weight_default).
DEFAULT_CHAR_WEIGHT = 0.4


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
    char_order: int = CHAR_DEFAULT_ORDER
    device: str = "auto"
    engine: str = "batch"
    prune: float | None = None
    seed: int = 0
    overrides: dict[str, Any] = field(default_factory=dict)
    progress: bool = True
    repeat: int = 0  # which run of `compare --repeats N` (compare gives run k the seed --seed + k)
    ids_cache: str | None = None  # folder of encoded id files (lab.cell_phases); None: beside the run folder
    adapt: bool = True  # the counted models also learn from the text they are scored on (zoo.online_ngram)
    char_weight: float = DEFAULT_CHAR_WEIGHT  # ngram+char-kn: the char model's weight in the mixture
    optimizer: str | None = None  # neural models: "adamw" or "muon" (zoo.optimizers); None: the model's default

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_saved(cls, saved: dict[str, Any]) -> CellOptions:
        """Options as a cell.json or grid.json holds them; one written before ``adapt`` existed ran without it."""
        return cls(**{"adapt": False, **saved})


def adapts(cell: Cell, options: CellOptions) -> bool:
    """Whether ``cell``'s model learns while it is scored: ``options.adapt`` for a counted model, never for a
    neural one (which ignores the option)."""
    return options.adapt and kind_of(cell.model).counted


def run_cell(
    cell: Cell,
    options: CellOptions,
    run_dir: str | Path,
    data_dir: str | None = None,
    train_file: str | None = None,
    train: SplitText | None = None,
) -> dict[str, Any]:
    """Train and evaluate one cell; returns its run record (also saved as ``run_dir/record.json``). ``train`` is
    the train text when the caller has read it already (``train_chars`` applied)."""
    run_dir = Path(run_dir)
    reset_peak_rss()
    write_json_atomic(run_dir / CELL_FILE, {"cell": asdict(cell), "options": options.to_dict()})
    train = train or load_split("train", data_dir, train_file, progress=options.progress).prefix(options.train_chars)
    valid = load_split("valid", data_dir).text
    test = load_split("test", data_dir).text
    meter = EnergyMeter()
    try:
        model, facts = train_cell(cell, options, train, run_dir, meter)
    except TrainingTimeoutError as err:
        record = base_record(cell, meter, train, facts={}, adapt=adapts(cell, options))
        record.disqualified, record.reason = True, err.reason
        record.extra["max_train_seconds"] = options.budget_s
        record.save(run_dir / RECORD_FILE)
        return record.to_dict()
    record = base_record(cell, meter, train, facts, adapt=adapts(cell, options))
    val = evaluate(model, valid, options.eval_chars, progress=options.progress, engine=options.engine)
    test_seen = test.startswith(train.text)  # the usual proxy is the test split itself: scoring it would flatter
    test_result = None
    if options.test_chars and not test_seen:
        test_result = evaluate(model, test, options.test_chars, progress=options.progress, engine=options.engine)
    fill_scores(record, val, test_result, options)
    if test_seen:
        record.extra["test_skipped"] = "the proxy train text is the test split"
    record.save(run_dir / RECORD_FILE)
    return record.to_dict()


def train_cell(cell: Cell, options: CellOptions, train: SplitText, run_dir: Path, meter: EnergyMeter):
    """The measured part: returns the trained CharModel and facts about tokenizer and model."""
    kind = kind_of(cell.model)
    if not kind.tokenized:
        return train_char_baseline(options, train, run_dir, meter)

    overrides = options.overrides.get(cell.model, {})
    order = int(overrides.get("order", NGRAM_DEFAULT_ORDER)) if kind.counted else None
    with meter.measure():  # one block, as the benchmark measures train(); saving below is not part of it
        prepared, started = prepare_ids(cell.family, cell.vocab_size, order, train, options.budget_s, meter,
                                        ids_cache_dir(run_dir, options), progress=options.progress,
                                        char_order=options.char_order if kind.mixture else None)
        tokenizer, ids = prepared.tokenizer, prepared.id_file.ids()
        remaining = train_budget(options.budget_s - (time.monotonic() - started), prepared.plan, kind.counted)
        if remaining <= 0:
            raise TrainingTimeoutError(f"the tokenizer took the whole {options.budget_s:g} s budget")
        with meter.phase("train"), wall_clock_guard(remaining):
            if kind.mixture:  # the n-gram's step, then the char n-gram on the text it encoded
                with phase(f"count {order}-grams", len(ids), "token", options.progress) as shown:
                    adapter, result = mixture_char_model(
                        ids, tokenizer.vocab_size, tokenizer, train.text[: prepared.encoded_chars],
                        overrides=overrides, mode=options.mode, beam=options.beam, prune=options.prune,
                        char_order=options.char_order, char_weight=options.char_weight, adapt=options.adapt,
                        device=options.device, advanced=shown.update, progress=options.progress)
            elif kind.counted:
                with phase(f"count {order}-grams", len(ids), "token", options.progress) as shown:
                    adapter, result = ngram_char_model(ids, tokenizer.vocab_size, tokenizer, overrides=overrides,
                                                       mode=options.mode, beam=options.beam, prune=options.prune,
                                                       adapt=options.adapt,
                                                       advanced=shown.update)  # a GPU counts when present
            else:
                adapter, result = neural_char_model(cell.model, ids, tokenizer.vocab_size, tokenizer,
                                                    budget_s=remaining, overrides=overrides, device=options.device,
                                                    seed=options.seed,
                                                    settings=TrainSettings(progress=options.progress,
                                                                           optimizer=options.optimizer),
                                                    mode=options.mode, beam=options.beam, prune=options.prune)
    tokenizer_dir = tokenizer.save(run_dir / "tokenizer")
    char_model = adapter.components[0] if kind.mixture else None
    save_checkpoint(run_dir / "checkpoint", result, tokenizer_dir, train, char_model=char_model)
    facts = {
        "tokenizer": {
            "family": tokenizer.family,
            "vocab_size": tokenizer.vocab_size,
            "chars_per_token": prepared.encoded_chars / max(1, len(ids)),
            "training_seconds": tokenizer.info.training_seconds,
            "sample_chars": tokenizer.info.train_chars,
        },
        "data": prepared.facts(),
        "plan": prepared.plan,
        "model": {
            "name": cell.model,
            "config": result.config,
            "params": num_params(result.model) if kind.neural else None,
            "train": result.summary(),
            **MODEL_FACTS.get(cell.model, no_facts)(result.model, result.device),
            **(mixture_facts(adapter, result) if kind.mixture else {}),
        },
    }
    return adapter, facts


def train_char_baseline(options: CellOptions, train: SplitText, run_dir: Path, meter: EnergyMeter):
    """The char-KN baseline through the same planned, bounded phases as a subword n-gram cell."""
    order, device = options.char_order, str(resolve_device(options.device))
    with meter.measure():  # one block, as the benchmark measures train()
        prepared, started = prepare_char_ids(order, train, options.budget_s, meter, ids_cache_dir(run_dir, options),
                                             progress=options.progress)
        vocabulary, ids = prepared.tokenizer, prepared.id_file.ids()
        remaining = options.budget_s - (time.monotonic() - started)
        if remaining <= 0:
            raise TrainingTimeoutError(f"the data phases took the whole {options.budget_s:g} s budget")
        with meter.phase("train"), wall_clock_guard(remaining):
            counting_started = time.monotonic()
            model = CharKneserNey.count(ids, vocabulary, order, device, progress=options.progress,
                                        adapt=options.adapt)
            counting_s = time.monotonic() - counting_started
    model_facts = {
        "name": CHAR_BASELINE,
        "config": {"order": order},
        "vocabulary": vocabulary.facts(),
        "train": {"device": device, "seconds": counting_s, "tokens_seen": len(ids), "stop_reason": "counted",
                  "ngrams": sum(len(table.keys) for table in model.counts.tables)},
    }
    return model, {"data": prepared.facts(), "plan": prepared.plan, "model": model_facts}


def mixture_facts(mixture: Mixture, result: TrainResult) -> dict[str, Any]:
    """What a mixture cell's record adds: the char model's vocabulary and each component's stored n-grams (the
    ``ngrams`` of its ``train`` summary is their sum)."""
    char_model = mixture.components[0]
    char_ngrams = sum(len(table.keys) for table in char_model.counts.tables)
    return {"vocabulary": {"chars": len(char_model.chars)},
            "components": {"ngram": result.ngrams - char_ngrams, CHAR_BASELINE: char_ngrams}}


def mamba_scan(model: mamba.Model, device: str) -> str:
    """Which scan trained a Mamba model: mamba-ssm's fused kernel (CUDA, installed) or the pure-torch reference."""
    fused = model.blocks[0].mixer.use_fused and device.startswith("cuda") and mamba.selective_scan_fn is not None
    return "fused" if fused else "torch"


def no_facts(model: Any, device: str) -> dict[str, Any]:
    return {}


# Facts a kind of model adds to its record's "model" entry, from the trained model and its device.
MODEL_FACTS: dict[str, Callable[[Any, str], dict[str, Any]]] = {
    "mamba": lambda model, device: {"scan": mamba_scan(model, device)},
}


def ngram_char_model(
    ids: np.ndarray, vocab_size: int, tokenizer: Any, *, overrides: dict[str, Any], mode: str, beam: int | None,
    device: str = "auto", prune: float | None = None, advanced: Callable[[int], object] = lambda tokens: None,
    adapt: bool = False,
) -> tuple[CharAdapter, TrainResult]:
    """Count the n-gram on the token ids (chunked, on the GPU when ``device`` finds one; ``advanced`` is told each
    chunk's length) and read it per character: a cell's model step, which an exported n-gram submission's
    ``train()`` runs too (``tokenizer`` may be a tiktoken Encoding there). ``adapt``: the model also learns every
    token the adapter commits (``OnlineKneserNey``); the result holds the train counts either way."""
    result = count_ngram_chunked(check_ids(ids, vocab_size), vocab_size, overrides, device, advanced)
    lm = OnlineKneserNey(result.model) if adapt else result.model
    return batch_adapter(lm, tokenizer, mode=mode, beam=beam, prune=prune), result


def mixture_char_model(
    ids: np.ndarray, vocab_size: int, tokenizer: Any, text: str, *, overrides: dict[str, Any], mode: str,
    beam: int | None, prune: float | None = None, char_order: int, char_weight: float, adapt: bool = False,
    device: str = "auto", advanced: Callable[[int], object] = lambda tokens: None, progress: bool = False,
) -> tuple[Mixture, TrainResult]:
    """The token n-gram of :func:`ngram_char_model` on ``ids``, and the char baseline counted on ``text`` (the text
    ``ids`` encode: its characters are the char model's vocabulary) at ``char_order``, read together per character
    with weight ``char_weight`` on the char model: a mixture cell's model step, which an exported mixture
    submission's ``train()`` runs too. ``adapt``: both models also learn the text they are scored on. The mixture's
    components are [char model, adapter]; the result holds the token counts, named ``ngram+char-kn`` with the char
    order and weight in its config and the two models' n-grams in its ``ngrams``."""
    if not 0.0 <= char_weight <= 1.0:
        raise UserError(f"the mixture's char weight must lie in [0, 1], got {char_weight}")
    adapter, result = ngram_char_model(ids, vocab_size, tokenizer, overrides=overrides, mode=mode, beam=beam,
                                       device=device, prune=prune, advanced=advanced, adapt=adapt)
    started = time.monotonic()
    vocabulary = CharVocabulary.learn(text)
    char_model = CharKneserNey.count(vocabulary.encode(text), vocabulary, char_order, str(resolve_device(device)),
                                     progress=progress, adapt=adapt)
    mixture = Mixture([char_model, adapter], [char_weight, 1.0 - char_weight])
    ngrams = result.ngrams + sum(len(table.keys) for table in char_model.counts.tables)
    config = {**result.config, "char_order": char_order, "char_weight": char_weight}
    return mixture, replace(result, model_name=MIXTURE, config=config, ngrams=ngrams,
                            seconds=result.seconds + time.monotonic() - started)


def neural_char_model(
    model_name: str, ids: np.ndarray, vocab_size: int, tokenizer: Any, *, budget_s: float, overrides: dict[str, Any],
    device: str, seed: int, settings: TrainSettings, mode: str, beam: int | None, prune: float | None = None,
) -> tuple[CharAdapter, TrainResult]:
    """Train the neural model on the token ids within ``budget_s`` and read it per character: a cell's model step,
    which an exported neural submission's ``train()`` runs too."""
    ids = check_ids(ids, vocab_size)
    seed_everything(seed)
    result = train_neural(model_name, ids, vocab_size, budget_s, overrides, device, settings)
    return batch_adapter(TorchTokenLM(result.model, result.device), tokenizer, mode=mode, beam=beam, prune=prune), result


def base_record(cell: Cell, meter: EnergyMeter, train: SplitText, facts: dict[str, Any],
                adapt: bool = False) -> RunRecord:
    extra = {"train_source": train.source, "train_chars": len(train.text), "train_peak_rss_gb": peak_rss_gb(),
             "adapt": adapt}
    if "plan" in facts:
        extra.update(data=facts["data"], plan=facts["plan"].to_dict(), phases=phase_table(facts["plan"], meter.report))
    return RunRecord.after_training(
        cell.id, meter.report, train.proxy,
        tokenizer=facts.get("tokenizer"),
        model=facts.get("model"),
        extra=extra,
    )


def ids_cache_dir(run_dir: Path, options: CellOptions) -> Path:
    """Where encoded id files are cached: --ids-cache, else beside the grid's runs (shared by its cells)."""
    return Path(options.ids_cache).expanduser() if options.ids_cache else run_dir.parent / ".ids-cache"


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
