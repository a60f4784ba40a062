"""Splitting the 300 s training budget between a cell's phases, from throughputs probed on the machine.

Why: at the train split's 540 MB, learning the tokenizer on all of it, or encoding it on one thread, can each take
the whole budget; a run past 300 s is disqualified. The plan gives every phase a share that is known before it
starts, including the seconds already spent probing and a safety margin, so the planned total never passes the
budget however slow a probe was; when even the probed rates cannot fit the whole text, the plan encodes (and
trains on) a prefix of it instead of overrunning.

Phases: ``probe`` (spent), ``tokenizer`` (learning on a sample), ``tokenize`` (encoding), ``train`` (counting or
the neural loop, which stops itself at its deadline), and ``margin`` (saving, timer slack).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

MARGIN_SHARE = 0.08  # of the budget, kept free
MIN_MARGIN_S = 2.0
TOKENIZER_SHARE = 0.15  # of the time left after probing and margin, at most, for learning the tokenizer
MIN_SAMPLE_CHARS = 1 << 20  # sizes are planned on a grid of this times powers of two (see on_grid)
MAX_SAMPLE_CHARS = 1 << 25  # ~34M chars: beyond this the merges barely change (see scripts/bench_scale.py)
NEURAL_TRAIN_SHARE = 0.5  # a neural model keeps at least this share of the time after probing for training
# n-gram table rows a cell may build: a KneserNeyLM took ~54 bytes of resident memory per row (char 11-grams, 100 MB
# of text), plus 16 per row for the count tables it is made from: ~8.4 GB, leaving room within 12 GB for the text
MAX_TABLE_ROWS = 120_000_000


@dataclass(frozen=True)
class Throughputs:
    """Rates measured by the probes (chars or tokens per second, wall clock) and what probing cost."""

    probe_s: float
    tokenizer_chars_per_s: float
    encode_chars_per_s: float
    encode_threads: int
    chars_per_token: float
    count_tokens_per_s: float | None = None  # n-gram counting; None for a neural model
    # (tokens counted by the probe, the table rows they made, how rows grow: rows ∝ tokens ** exponent); n-gram only
    table_rows: tuple[float, float, float] | None = None


@dataclass(frozen=True)
class PhasePlan:
    """Planned seconds per phase, and the amounts of text they cover; all seconds sum to at most the budget."""

    budget_s: float
    probe_s: float
    margin_s: float
    tokenizer_sample_chars: int
    tokenizer_s: float
    encode_threads: int
    encode_chars: int
    encode_s: float
    train_s: float
    memory_chars: int | None = None  # the most text whose n-gram tables fit MAX_TABLE_ROWS (None: no n-gram)

    @property
    def planned_s(self) -> dict[str, float]:
        return {"probe": self.probe_s, "tokenizer": self.tokenizer_s, "tokenize": self.encode_s,
                "train": self.train_s, "margin": self.margin_s}

    @property
    def feasible(self) -> bool:
        """Whether every phase got something to do (a probe slower than the budget leaves nothing)."""
        return self.tokenizer_sample_chars > 0 and self.encode_chars > 0 and self.train_s > 0

    def to_dict(self) -> dict:
        return {**asdict(self), "planned_s": self.planned_s, "feasible": self.feasible}


def margin_for(budget_s: float) -> float:
    return min(budget_s, max(MIN_MARGIN_S, MARGIN_SHARE * budget_s))


def encode_chars_that_fit(seconds: float, rates: Throughputs, text_chars: int, neural: bool) -> int:
    """How much text can be encoded (and, for the n-gram, counted) in ``seconds``; a neural model keeps half."""
    if seconds <= 0:
        return 0
    if neural:
        per_char = 1.0 / rates.encode_chars_per_s
        seconds *= 1.0 - NEURAL_TRAIN_SHARE
    else:
        per_char = 1.0 / rates.encode_chars_per_s + 1.0 / (rates.chars_per_token * (rates.count_tokens_per_s or 1e-9))
    return int(min(text_chars, seconds / per_char))


def chars_that_fit_memory(rates: Throughputs) -> int | None:
    """How much text an n-gram can count without its tables passing MAX_TABLE_ROWS, from the probe's rows and their
    growth (n-gram types grow slower than the text: ``rows(N) = rows(n) (N/n) ** exponent``); None without a probe."""
    if rates.table_rows is None:
        return None
    tokens, rows, exponent = rates.table_rows
    if tokens <= 0 or rows <= 0:
        return None
    fit_tokens = tokens * (MAX_TABLE_ROWS / rows) ** (1.0 / min(1.0, max(0.5, exponent)))
    return int(min(fit_tokens * rates.chars_per_token, 1e15))


def on_grid(chars: int) -> int:
    """``chars`` rounded down to MIN_SAMPLE_CHARS times a power of two (below that, kept as is).

    Probed rates vary from run to run; on this grid a rerun mostly picks the same sample and prefix, so it learns
    the same tokenizer and finds its ids in the cache.
    """
    if chars < MIN_SAMPLE_CHARS:
        return max(0, chars)
    return MIN_SAMPLE_CHARS << ((chars // MIN_SAMPLE_CHARS).bit_length() - 1)


def plan_phases(budget_s: float, text_chars: int, rates: Throughputs, neural: bool) -> PhasePlan:
    """The plan for a text of ``text_chars``; every phase gets >= 0 s and probe + phases + margin <= budget."""
    margin = min(margin_for(budget_s), max(0.0, budget_s - rates.probe_s))
    left = max(0.0, budget_s - rates.probe_s - margin)
    affordable = int(rates.tokenizer_chars_per_s * TOKENIZER_SHARE * left)
    sample = min(text_chars, on_grid(min(MAX_SAMPLE_CHARS, affordable)))
    tokenizer_s = min(left, sample / rates.tokenizer_chars_per_s)
    left -= tokenizer_s
    memory_chars = None if neural else chars_that_fit_memory(rates)
    encode_chars = encode_chars_that_fit(left, rates, text_chars, neural)
    if memory_chars is not None:
        encode_chars = min(encode_chars, memory_chars)
    if encode_chars < text_chars:
        encode_chars = on_grid(encode_chars)
    encode_s = min(left, encode_chars / rates.encode_chars_per_s)
    return PhasePlan(
        budget_s=budget_s,
        probe_s=rates.probe_s,
        margin_s=margin,
        tokenizer_sample_chars=max(0, sample),
        tokenizer_s=tokenizer_s,
        encode_threads=rates.encode_threads,
        encode_chars=encode_chars,
        encode_s=encode_s,
        train_s=max(0.0, left - encode_s),
        memory_chars=memory_chars,
    )
