"""Token-level interpolated modified Kneser–Ney (Chen & Goodman 1998), counted with numpy, served as a TokenLM.

Why this model: count-based n-grams are the benchmark's strongest cheap family (training = counting, seconds on a
CPU), so it is both a baseline and a real contender once tokens are subwords.

Formulas, for an order-k table with counts c (raw counts at the top order n, continuation counts
``N1+(• g)`` = number of distinct left neighbours of g below it):

    P_k(w | h) = max(c(hw) - D_k(c(hw)), 0) / c(h•) + gamma_k(h) * P_{k-1}(w | h')
    gamma_k(h) = (D_k1 N1(h•) + D_k2 N2(h•) + D_k3+ N3+(h•)) / c(h•)
    P_k(w | h) = P_{k-1}(w | h')                       when c(h•) = 0 (context unseen at this order)
    P_0(w)     = 1 / V                                 (so every token keeps some mass)

with h' = h minus its first token, and discounts from that order's count-of-counts n1..n4:
``Y = n1/(n1+2 n2); D1 = 1-2Y n2/n1; D2 = 2-3Y n3/n2; D3+ = 3-4Y n4/n3``. There is no sentence-start symbol:
a context shorter than n-1 tokens (the start of a stream) is served by the order it fills.

Counting never loops in Python per n-gram: the k-gram at every position gets an integer id as the rank of the
pair (id of its (k-1)-gram prefix, last token) among all such pairs (``np.unique``), so k-gram keys stay exact
int64 numbers for any order; sorted keys are grouped by context, and lookups are ``np.searchsorted``.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np


State = tuple[int, ...]
FALLBACK_DISCOUNTS = (0.5, 1.0, 1.5)
MIN_DISCOUNT = 0.01
ROWS_REMEMBERED = 1 << 18  # k-gram lookups remembered per order


def kn_discounts(counts: np.ndarray) -> tuple[float, float, float]:
    """Chen & Goodman's (D1, D2, D3+) from the count-of-counts of ``counts`` (zeros ignored).

    A corpus too small to have every count-of-count n1..n4 gets FALLBACK_DISCOUNTS; each estimate is clipped into
    [MIN_DISCOUNT, k] so a discount never removes more than the count nor leaves a seen context with no back-off.
    """
    n1, n2, n3, n4 = (int(np.count_nonzero(counts == k)) for k in (1, 2, 3, 4))
    if min(n1, n2, n3, n4) == 0:
        return FALLBACK_DISCOUNTS
    y = n1 / (n1 + 2 * n2)
    raw = (1 - 2 * y * n2 / n1, 2 - 3 * y * n3 / n2, 3 - 4 * y * n4 / n3)
    return tuple(float(min(max(d, MIN_DISCOUNT), k)) for k, d in enumerate(raw, start=1))  # type: ignore[return-value]


@dataclass
class OrderTable:
    """All k-grams of one order, sorted by (context id, word): context ranges, counts and per-context sums.

    ``keys`` = context_id * V + word, where context_id is the id of the (k-1)-gram prefix (0 for k = 1); a k-gram's
    own id is its row index, which is how the (k+1)-gram table refers to it as a context.
    """

    keys: np.ndarray  # int64 [U_k], sorted, unique
    counts: np.ndarray  # int64 [U_k] raw (top order) or continuation counts; may hold 0 below the top order
    vocab_size: int
    num_contexts: int

    def __post_init__(self) -> None:
        self.words = (self.keys % self.vocab_size).astype(np.int64)
        contexts = self.keys // self.vocab_size
        self.starts = np.searchsorted(contexts, np.arange(self.num_contexts + 1))
        self.discounts = np.array((0.0, *kn_discounts(self.counts)))
        # discount of each row: D1, D2 or D3+ by its count (0 for a zero count, which then adds nothing)
        row_discount = self.discounts[np.minimum(self.counts, 3)]
        self.kept = np.maximum(self.counts - row_discount, 0.0)
        self.totals = np.bincount(contexts, weights=self.counts, minlength=self.num_contexts)
        self.backoff_mass = np.bincount(contexts, weights=row_discount, minlength=self.num_contexts)
        self._rows: dict[int, int] = {}  # key -> row (or -1), see gram_id

    def gram_id(self, context_id: int, word: int) -> int:
        """Row of the k-gram (context, word), or -1 when it never occurred; remembered per key (a step asks
        about every suffix of its context, and neighbouring states share most of them)."""
        key = context_id * self.vocab_size + word
        row = self._rows.get(key)
        if row is None:
            found = int(np.searchsorted(self.keys, key))
            row = found if found < len(self.keys) and self.keys[found] == key else -1
            if len(self._rows) >= ROWS_REMEMBERED:
                self._rows.clear()
            self._rows[key] = row
        return row

    def interpolate(self, context_id: int, lower: np.ndarray) -> np.ndarray:
        """P_k(· | context) given P_{k-1}(· | shorter context)."""
        total = self.totals[context_id]
        if total == 0:
            return lower
        lo, hi = self.starts[context_id], self.starts[context_id + 1]
        probs = lower * (self.backoff_mass[context_id] / total)
        probs[self.words[lo:hi]] += self.kept[lo:hi] / total
        return probs


def gram_ids(tokens: np.ndarray, order: int, vocab_size: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """For k = 1..order: the sorted unique k-gram keys and the k-gram id at every start position."""
    keys_by_order = [np.arange(vocab_size, dtype=np.int64)]
    ids_by_order = [tokens.astype(np.int64)]
    for k in range(2, order + 1):
        prefix_ids = ids_by_order[-1][:-1]  # (k-1)-grams that still have a next token
        pair_keys = prefix_ids * vocab_size + tokens[k - 1 :]
        unique_keys, inverse = np.unique(pair_keys, return_inverse=True)
        keys_by_order.append(unique_keys)
        ids_by_order.append(inverse.astype(np.int64))
    return keys_by_order, ids_by_order


def count_tables(tokens: np.ndarray, order: int, vocab_size: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(keys, counts) per order 1..order: raw counts at the top order, continuation counts below it."""
    keys_by_order, ids_by_order = gram_ids(tokens, order, vocab_size)
    tables = []
    for k in range(1, order + 1):
        num_grams = len(keys_by_order[k - 1])
        if k == order:
            counts = np.bincount(ids_by_order[k - 1], minlength=num_grams)
        else:
            # distinct left neighbours of each k-gram = distinct (k+1)-grams whose last k tokens are that k-gram
            _, first_positions = np.unique(ids_by_order[k], return_index=True)
            suffix_ids = ids_by_order[k - 1][first_positions + 1]
            counts = np.bincount(suffix_ids, minlength=num_grams)
        tables.append((keys_by_order[k - 1], counts.astype(np.int64)))
    return tables


def check_counting_input(tokens: np.ndarray, vocab_size: int, order: int) -> np.ndarray:
    """``tokens`` as an array if n-grams up to ``order`` can be counted from it, else a ValueError naming the fix."""
    tokens = np.asarray(tokens)
    if order < 1:
        raise ValueError(f"n-gram order must be >= 1, got {order}")
    if tokens.ndim != 1 or len(tokens) < order:
        raise ValueError(f"need a 1-D sequence of at least {order} token ids to count {order}-grams, got {tokens.shape}")
    if len(tokens) and (tokens.min() < 0 or tokens.max() >= vocab_size):
        raise ValueError(f"token ids must lie in [0, {vocab_size}); check the tokenizer's vocab_size")
    if vocab_size * len(tokens) >= 2**62:
        raise ValueError("vocab_size x tokens is too large for int64 n-gram keys; train on fewer tokens")
    return tokens


class KneserNeyLM:
    """Interpolated modified Kneser–Ney over token ids; a :class:`subchar.lm.TokenLM` with LRU-cached queries.

    State = the longest suffix of the last ``order - 1`` token ids that the counts have seen. P(w | h) only
    depends on that suffix (interpolation stops at the first unseen context), so histories that differ only in
    unseen older tokens share one state: one cache entry, and coverings the adapter can merge.
    """

    def __init__(self, tables: list[tuple[np.ndarray, np.ndarray]], vocab_size: int, cache_size: int = 65_536):
        if not tables:
            raise ValueError("a Kneser-Ney model needs order >= 1")
        self.vocab_size = int(vocab_size)
        self.order = len(tables)
        num_contexts = [1] + [len(keys) for keys, _ in tables[:-1]]
        self.tables = [
            OrderTable(np.asarray(keys, np.int64), np.asarray(counts, np.int64), self.vocab_size, n)
            for (keys, counts), n in zip(tables, num_contexts)
        ]
        self.cache_size = cache_size
        self._cache: OrderedDict[State, list[np.ndarray | None]] = OrderedDict()  # [probs, logprobs or None]
        # P_1, the same for every state: made once (over the whole vocabulary it was most of a new state's cost)
        self._unigram = self.tables[0].interpolate(0, np.full(self.vocab_size, 1.0 / self.vocab_size))
        self._unigram.flags.writeable = False

    @classmethod
    def fit(cls, tokens: np.ndarray, vocab_size: int, order: int = 5, cache_size: int = 65_536) -> KneserNeyLM:
        """Count ``tokens`` (ints in [0, vocab_size)) up to ``order``."""
        tokens = check_counting_input(tokens, vocab_size, order)
        return cls(count_tables(tokens.astype(np.int64), order, vocab_size), vocab_size, cache_size)

    # --- TokenLM -----------------------------------------------------------------------------------------------
    def start(self) -> State:
        return ()

    def step(self, state: State, token: int) -> State:
        if not 0 <= token < self.vocab_size:
            raise ValueError(f"token id {token} is outside the model's vocabulary 0..{self.vocab_size - 1}; "
                            "use the tokenizer the model was trained with")
        if self.order == 1:
            return ()
        history = (*state, int(token))[-(self.order - 1) :]
        seen = sum(1 for gram in self.context_ids(history) if gram >= 0)
        return history[len(history) - seen :]

    def logprobs(self, state: State) -> np.ndarray:
        """log P(next token | state) as float64 [V]; cached (LRU) per state, read-only."""
        entry = self._lookup(state)
        if entry[1] is None:  # made when first asked: the adapter reads probabilities (``probs_many``)
            entry[1] = np.log(entry[0])
            entry[1].flags.writeable = False
        return entry[1]

    # --- queries -----------------------------------------------------------------------------------------------
    def probs(self, state: State) -> np.ndarray:
        """P(next token | state) as float64 [V], summing to 1; cached (LRU) per state, read-only."""
        return self._lookup(state)[0]

    def probs_many(self, states: Sequence[State]) -> list[np.ndarray]:
        """``probs`` of each state: what the adapter reads (``subchar.lm``), so it never exponentiates log-probs."""
        return [self.probs(state) for state in states]

    def _lookup(self, state: State) -> list[np.ndarray | None]:
        """[probs, logprobs or None until asked], cached (LRU) per state."""
        cached = self._cache.get(state)
        if cached is not None:
            self._cache.move_to_end(state)
            return cached
        probs = self._compute(state)
        probs.flags.writeable = False
        entry = self._cache[state] = [probs, None]
        if len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return entry

    def _compute(self, state: State) -> np.ndarray:
        probs = self._unigram
        for k, context_id in enumerate(self.context_ids(state), start=2):
            if context_id < 0:
                break  # a longer context containing an unseen one is unseen too
            probs = self.tables[k - 1].interpolate(context_id, probs)
        return probs

    def context_ids(self, history: State) -> list[int]:
        """Ids of the last 1, 2, ... tokens of ``history`` as k-grams (-1 once unseen), shortest first."""
        ids = []
        for length in range(1, len(history) + 1):
            suffix = history[len(history) - length :]
            gram = suffix[0]
            for k, token in enumerate(suffix[1:], start=2):
                gram = self.tables[k - 1].gram_id(gram, token)
                if gram < 0:
                    break
            ids.append(gram)
            if gram < 0:
                break
        return ids

    # --- persistence -------------------------------------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        """Write the counts as an npz (``np.savez`` to an open file, so the name is kept as given)."""
        arrays = {"vocab_size": np.array(self.vocab_size), "order": np.array(self.order)}
        for k, table in enumerate(self.tables, start=1):
            arrays[f"keys_{k}"] = table.keys
            arrays[f"counts_{k}"] = table.counts
        with open(path, "wb") as handle:
            np.savez(handle, **arrays)

    @classmethod
    def load(cls, path: str | Path) -> KneserNeyLM:
        with np.load(path) as data:
            order = int(data["order"])
            tables = [(data[f"keys_{k}"], data[f"counts_{k}"]) for k in range(1, order + 1)]
            return cls(tables, int(data["vocab_size"]))
