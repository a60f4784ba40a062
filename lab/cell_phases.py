"""The measured data phases of a subword cell at any scale: probe, plan, tokenizer on a sample, cached parallel encode.

Why: the benchmark's ``train()`` receives the whole train split (540 MB) and 300 s. A few seconds of probes on
slices of the text measure this machine's rates; :mod:`lab.phase_plan` turns them into a tokenizer sample size,
encode threads and the time left for the model; the tokenizer learns on evenly spaced slices of the text; the
text is encoded into a memory-mapped id file (tokenizers_local.encode_ids), which a resumed cell finds in the cache.
Each phase runs under the benchmark's wall-clock guard for the budget that is still left. The char baseline goes
through the same phases, with its alphabet (zoo.char_baseline.CharVocabulary) in the tokenizer's place.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from eval.data import SplitText, text_sha256
from eval.energy import EnergyMeter, EnergyReport
from eval.guard import TrainingTimeoutError, wall_clock_guard
from eval.progress import phase
from lab.phase_plan import PhasePlan, Throughputs, encode_chars_that_fit, plan_phases
import tokenizers_local
from tokenizers_local.encode_ids import IdFile, batch_encoder, encode_to_file, id_file_of
from tokenizers_local.text_stream import CHUNK_BOUNDARY, chunks
from zoo.char_baseline import CharVocabulary
from zoo.ngram_count import count_tables_chunked

PROBE_TOKENIZER_CHARS = 1 << 18
PROBE_ENCODE_CHARS = 1 << 20
SAMPLE_SLICES = 16


@dataclass
class PreparedIds:
    """What the data phases produced: the tokenizer, the id file and the text it covers, and the plan."""

    tokenizer: Any  # LocalTokenizer, or the char baseline's CharVocabulary
    id_file: IdFile
    cache_hit: bool
    encoded_chars: int
    plan: PhasePlan
    rates: Throughputs

    def facts(self) -> dict[str, Any]:
        return {
            "ids_file": str(self.id_file.path),
            "ids_dtype": self.id_file.dtype,
            "ids_tokens": self.id_file.tokens,
            "ids_bytes": self.id_file.bytes_on_disk,
            "ids_cache_hit": self.cache_hit,
            "encoder": self.id_file.encoder,
            "encoded_chars": self.encoded_chars,
            "rates": vars(self.rates),
        }


def sample_text(text: str, chars: int, slices: int = SAMPLE_SLICES) -> str:
    """About ``chars`` characters from ``slices`` evenly spaced places, each slice cut at pre-token boundaries."""
    if chars >= len(text):
        return text
    per_slice = max(1, chars // slices)
    parts = []
    for index in range(slices):
        start = index * len(text) // slices
        if start:
            boundary = text.find("\n ", start)  # a chunk boundary (text_stream.CHUNK_BOUNDARY) at or after start
            start = boundary + 1 if boundary >= 0 else len(text)
        piece = next(chunks(text[start : start + 2 * per_slice + 1], per_slice), "")
        parts.append(piece)
    return "".join(parts)


def count_probe(ids: np.ndarray, order: int, vocab_size: int,
                expected_tokens: float) -> tuple[float, tuple[float, float, float]]:
    """Counting half and all of ``ids``: the tokens per second that counting ``expected_tokens`` will reach, and
    (tokens, table rows, growth exponent of the rows) for the memory plan (``phase_plan.chars_that_fit_memory``)."""
    seconds, rows = [], []
    for size in (len(ids) // 2, len(ids)):
        started = time.monotonic()
        tables = count_tables_chunked(ids[:size], order, vocab_size)
        seconds.append(time.monotonic() - started)
        rows.append(sum(len(keys) for keys, _ in tables))
    exponent = math.log(rows[1] / max(1, rows[0])) / math.log(len(ids) / max(1, len(ids) // 2))
    rate = extrapolated_count_rate(len(ids), seconds[0], seconds[1], expected_tokens)
    return rate, (float(len(ids)), float(rows[1]), exponent)


def extrapolated_count_rate(tokens: int, half_s: float, whole_s: float, expected_tokens: float) -> float:
    """Small counts are dominated by fixed costs, so the rate comes from the difference of the two timings (at
    least what the whole probe reached, at most 8 times it), divided by the growth of log n from the probe to
    the full text (sorting)."""
    whole_s = max(1e-6, whole_s)
    marginal = (tokens - tokens // 2) / max(1e-6, whole_s - half_s)
    rate = max(tokens / whole_s, min(marginal, 8 * tokens / whole_s))
    return rate / max(1.0, math.log(max(expected_tokens, 2)) / math.log(max(tokens, 2)))


def prefix_at_boundary(text: str, chars: int) -> str:
    """The first ``chars`` characters or a little more, ending at a pre-token boundary (so its ids are a prefix)."""
    return text if chars >= len(text) else next(chunks(text, max(1, chars)))


def prefix_through(text: str, chars: int) -> str:
    """The shortest prefix of at least ``chars`` characters that ends at a pre-token boundary (all of ``text``
    when none does). A prefix that :func:`prefix_at_boundary` cut ends at one, so this gives it back from its
    length alone: how an exported run (lab.export) takes the prefix the run encoded and counted."""
    cut = CHUNK_BOUNDARY.search(text, max(0, chars - 1))
    return text if chars >= len(text) or cut is None else text[: cut.end()]


def probe_rates(train: SplitText, family: str, vocab_size: int, order: int | None, threads: list[int]) -> Throughputs:
    """Short measurements on slices of the text: tokenizer training, encoding per thread count, n-gram counting."""
    started = time.monotonic()
    sample = sample_text(train.text, PROBE_TOKENIZER_CHARS)
    split = SplitText(sample, "train", f"{train.source} (probe sample)", train.proxy)
    tokenizer = tokenizers_local.train_tokenizer(split, family, vocab_size)
    tokenizer_rate = len(sample) / max(1e-3, time.monotonic() - started)
    probe_text = sample_text(train.text, PROBE_ENCODE_CHARS)
    pieces = list(chunks(probe_text, 1 << 16))
    best_rate, best_threads, ids = 0.0, 1, []
    for count in threads:
        encoder_started = time.monotonic()
        ids = [i for piece_ids in batch_encoder(tokenizer, count)[1](pieces) for i in piece_ids]
        rate = len(probe_text) / max(1e-3, time.monotonic() - encoder_started)
        if rate > best_rate:
            best_rate, best_threads = rate, count
    count_rate = table_rows = None
    if order is not None and len(ids) >= 2 * order:
        count_rate, table_rows = count_probe(np.asarray(ids, dtype=np.int64), order, tokenizer.vocab_size,
                                             expected_tokens=len(train.text) * len(ids) / len(probe_text))
    return Throughputs(
        probe_s=time.monotonic() - started,
        tokenizer_chars_per_s=tokenizer_rate,
        encode_chars_per_s=best_rate,
        encode_threads=best_threads,
        chars_per_token=len(probe_text) / max(1, len(ids)),
        count_tokens_per_s=count_rate,
        table_rows=table_rows,
    )


def probe_char_rates(train: SplitText, order: int) -> Throughputs:
    """The char baseline's probes on a slice of the text: learning the alphabet, encoding, counting."""
    started = time.monotonic()
    sample = sample_text(train.text, PROBE_ENCODE_CHARS)
    vocabulary = CharVocabulary.learn(sample)
    learned = time.monotonic()
    text_sha256(sample)  # the encode phase hashes its text and writes the ids out too
    ids = vocabulary.encode(sample)
    ids.tobytes()
    encoded = time.monotonic()
    count_rate = table_rows = None
    if len(ids) >= 2 * order:
        count_rate, table_rows = count_probe(ids, order, vocabulary.size, expected_tokens=len(train.text))
    return Throughputs(
        probe_s=time.monotonic() - started,
        tokenizer_chars_per_s=len(sample) / max(1e-3, learned - started),
        encode_chars_per_s=len(sample) / max(1e-3, encoded - learned),
        encode_threads=1,
        chars_per_token=1.0,
        count_tokens_per_s=count_rate,
        table_rows=table_rows,
    )


def with_char_model(rates: Throughputs, train: SplitText, char_order: int) -> Throughputs:
    """A mixture cell's rates (``ngram+char-kn``): counting a token also pays for its characters, whose vocabulary
    is learned, encoded and counted at ``char_order`` in the same phase (the char baseline's probes,
    :func:`probe_char_rates`), so the plan's count rate is the two together."""
    if rates.count_tokens_per_s is None:
        return rates
    chars = probe_char_rates(train, char_order)
    per_char = sum(1.0 / rate for rate in (chars.tokenizer_chars_per_s, chars.encode_chars_per_s,
                                           chars.count_tokens_per_s or 1e-9))
    per_token = 1.0 / rates.count_tokens_per_s + rates.chars_per_token * per_char
    return replace(rates, probe_s=rates.probe_s + chars.probe_s, count_tokens_per_s=1.0 / per_token,
                   table_rows=combined_rows(rates.table_rows, chars.table_rows))


def combined_rows(tokens: tuple[float, float, float] | None,
                  chars: tuple[float, float, float] | None) -> tuple[float, float, float] | None:
    """Both models' table rows over the same probe text (both probes read ``sample_text(train, PROBE_ENCODE_CHARS)``),
    in the token model's units, growing as the faster of the two."""
    if tokens is None or chars is None:
        return tokens
    return (tokens[0], tokens[1] + chars[1], max(tokens[2], chars[2]))


def prepare_ids(
    family: str,
    vocab_size: int,
    order: int | None,
    train: SplitText,
    budget_s: float,
    meter: EnergyMeter,
    cache_dir: str | os.PathLike,
    progress: bool = False,
    char_order: int | None = None,
) -> tuple[PreparedIds, float]:
    """Probe, plan, learn the tokenizer on the planned sample and encode into the cache; returns (result, start).

    ``order`` is the n-gram order (None for a neural model); ``char_order``, a mixture's char model, which its
    ``train`` phase counts beside the n-gram (:func:`with_char_model`). Raises TrainingTimeoutError when the plan
    leaves no room (probing alone took the budget) or a phase outlives the budget.
    """
    threads = sorted({1, os.cpu_count() or 1})

    def learn(sample: SplitText) -> Any:
        return tokenizers_local.train_tokenizer(sample, family, vocab_size, progress=progress)

    def encode(tokenizer: Any, text: str, plan: PhasePlan) -> tuple[IdFile, bool]:
        return encode_to_file(tokenizer, text, cache_dir, threads=plan.encode_threads, progress=progress)

    def probe() -> Throughputs:
        rates = probe_rates(train, family, vocab_size, order, threads)
        return rates if char_order is None else with_char_model(rates, train, char_order)

    return prepare(train, budget_s, meter, probe, learn, encode, neural=order is None)


def prepare_char_ids(
    order: int, train: SplitText, budget_s: float, meter: EnergyMeter, cache_dir: str | os.PathLike,
    progress: bool = False,
) -> tuple[PreparedIds, float]:
    """The char baseline's data phases, planned like a subword cell's: its alphabet is learned on the planned
    sample (the "tokenizer" phase) and its ids go through the same cache; the tokenizer of the result is the
    :class:`CharVocabulary`."""

    def learn(sample: SplitText) -> CharVocabulary:
        return CharVocabulary.learn(sample.text)

    def encode(vocabulary: CharVocabulary, text: str, plan: PhasePlan) -> tuple[IdFile, bool]:
        def groups() -> tuple[str, Iterator[np.ndarray]]:
            return "char", counted(vocabulary.id_chunks(text), "encode chars", len(text), progress)

        return id_file_of(cache_dir, vocabulary.digest(), text_sha256(text), vocabulary.size, vocabulary.dtype.name,
                          groups)

    return prepare(train, budget_s, meter, lambda: probe_char_rates(train, order), learn, encode, neural=False)


def counted(chunks_of_ids: Iterator[np.ndarray], name: str, total: int, progress: bool) -> Iterator[np.ndarray]:
    """The chunks, reported as a phase of ``total`` characters."""
    with phase(name, total, enabled=progress) as shown:
        for ids in chunks_of_ids:
            yield ids
            shown.update(len(ids))


def prepare(
    train: SplitText,
    budget_s: float,
    meter: EnergyMeter,
    probe: Callable[[], Throughputs],
    learn: Callable[[SplitText], Any],
    encode: Callable[[Any, str, PhasePlan], tuple[IdFile, bool]],
    neural: bool,
) -> tuple[PreparedIds, float]:
    """Probe, plan, ``learn`` the vocabulary on the planned sample and ``encode`` the planned prefix, each phase
    under the budget's guard; returns (result, start)."""
    started = time.monotonic()
    with meter.phase("probe"), wall_clock_guard(budget_s):
        rates = probe()
    plan = plan_phases(budget_s, len(train.text), rates, neural=neural)
    if not plan.feasible:
        raise TrainingTimeoutError(f"probing took {rates.probe_s:.1f} s of the {budget_s:g} s budget; nothing fits")
    with meter.phase("tokenizer"), wall_clock_guard(budget_s - (time.monotonic() - started)):
        sample = sample_text(train.text, plan.tokenizer_sample_chars)
        source = train.source if len(sample) == len(train.text) else f"{train.source} (sample of {len(sample):,} chars)"
        tokenizer = learn(SplitText(sample, "train", source, train.proxy))
    left = budget_s - (time.monotonic() - started) - plan.margin_s
    # re-fit the encode to the time really left (the tokenizer may have run slower than planned)
    encode_chars = min(plan.encode_chars, encode_chars_that_fit(left, rates, len(train.text), neural=neural))
    if encode_chars <= 0:
        raise TrainingTimeoutError(f"the tokenizer left no time to encode within the {budget_s:g} s budget")
    text = prefix_at_boundary(train.text, encode_chars)
    with meter.phase("tokenize"), wall_clock_guard(budget_s - (time.monotonic() - started)):
        id_file, hit = encode(tokenizer, text, plan)
    return PreparedIds(tokenizer, id_file, hit, len(text), plan, rates), started


def train_budget(remaining_s: float, plan: PhasePlan, counting: bool) -> float:
    """Seconds to give the model: counting cannot stop early, so it gets all that remains (under the guard); a
    neural model stops itself at its budget, so it gets what remains less the plan's margin."""
    return remaining_s if counting else remaining_s - plan.margin_s


def phase_table(plan: PhasePlan, report: EnergyReport) -> dict[str, dict[str, float | None]]:
    """Planned and actual seconds and joules per phase, for the run record."""
    table = {}
    for name, planned in plan.planned_s.items():
        phase = report.phases.get(name)
        table[name] = {
            "planned_s": planned,
            "actual_s": round(phase.duration_s, 3) if phase else None,
            "energy_J": round(phase.total_energy_J, 3) if phase else None,
        }
    return table
