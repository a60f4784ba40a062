"""Kneser–Ney that keeps counting while it is evaluated: the train counts plus every n-gram of the committed text.

Why: the benchmark calls ``predict()`` for a position strictly before ``observe()`` of it, so a model may learn from
the text it has already been shown (its research notes, ``research/gradfree-survey/designs/
method_ppm-context-tree_pass_2.md`` in cybertronai/wikitext, keep online updates in ``observe()`` on), and eval
is not charged. On the proxy, refitting on train + observed text every 10,000 chars gained 1.6-2.2 points.

What it answers, exactly: the :class:`zoo.ngram.KneserNeyLM` counted over two sequences, the train ids and the
committed stream (no n-gram spans the two), with each order's discounts fixed at the train counts' (so one update
changes only the rows it touches). Learning token ``w`` after the committed history ``H``:

- top order n: the raw count of ``H[-(n-1):] w`` grows by one;
- every k-gram ``g`` ending at ``w`` (k = 2..n) that neither the train text nor the stream had before is a new
  left extension of its suffix ``g[1:]``, whose continuation count (order k-1) grows by one.

The train tables stay the sorted arrays of zoo.ngram; what the stream added lives in dictionaries beside them, and
``probs`` reads both (a context's total and back-off mass are the train's, corrected for the words whose count the
stream changed). States are ``(version, context)``: ``version`` changes with every update, so an answer remembered
for a state (the adapter remembers plain states by value) is never read again once the counts change, and asking
about a state of an older version raises.
"""

from __future__ import annotations

import itertools
from typing import Sequence

import numpy as np

from zoo.ngram import KneserNeyLM, OrderTable

Context = tuple[int, ...]
State = tuple[int, Context]
_versions = itertools.count(1)  # shared by every model, so no two streams ever hand out the same state


class OnlineKneserNey:
    """A :class:`KneserNeyLM` that also learns from what is committed: a ``subchar.lm.TokenLM`` with ``commit``.

    ``commit(state, tokens)`` (called by the adapter on every commit, by a char model on every observed char) learns
    ``tokens`` and returns the state after them; ``start()`` begins a new stream and forgets what the last one
    taught (unless it was kept, ``keep``). One stream at a time per object. ``learn=False``: the counts stay as they
    are (train text and kept streams), ``commit`` only steps.
    """

    def __init__(self, base: KneserNeyLM, learn: bool = True) -> None:
        self.base, self.vocab_size, self.order, self.learn = base, base.vocab_size, base.order, learn
        # what earlier streams taught for good (``keep``): new k-gram types per order, counts per order and context
        self._kept: tuple[list[set[Context]], list[dict[Context, dict[int, int]]]] = (
            [set() for _ in range(self.order + 1)], [{} for _ in range(self.order + 1)])
        self._kept_unigram = self.base.probs(self.base.start())
        self._forget()

    def _forget(self) -> None:
        self.version = next(_versions)
        self.learned = 0  # tokens learned in this stream
        self._history: Context = ()  # the last order-1 committed tokens
        types, added = self._kept
        self._types: list[set[Context]] = [set(grams) for grams in types]  # [k]: k-grams train never had
        self._added: list[dict[Context, dict[int, int]]] = [  # [k][context][word]: counts train never had
            {context: dict(words) for context, words in table.items()} for table in added]
        self._unigram = self._kept_unigram
        self._last: tuple[State, np.ndarray] | None = None  # the last state asked and its distribution

    def keep(self) -> None:
        """What this stream taught stays: from now on every new stream starts from it (a stream of held-out train
        text read to fit mixture weights is learned this way, as a second train sequence)."""
        self._kept = (self._types, self._added)
        self._kept_unigram = self._unigram
        self._forget()

    # --- TokenLM -----------------------------------------------------------------------------------------------
    def start(self) -> State:
        """The empty context of a new stream (what an earlier stream taught is forgotten)."""
        if self.learned:
            self._forget()
        return (self.version, ())

    def step(self, state: State, token: int) -> State:
        """The state after ``token`` without learning it (a covering the adapter explores)."""
        self._check(state)
        if not 0 <= token < self.vocab_size:
            raise ValueError(f"token id {token} is outside the model's vocabulary 0..{self.vocab_size - 1}; "
                             "use the tokenizer the model was trained with")
        return (self.version, self._seen_suffix((*state[1], int(token))))

    def commit(self, state: State, tokens: Sequence[int]) -> State:
        """Learn ``tokens`` (committed text that follows ``state``, the stream's current state) and return the
        state after them, of the new version."""
        self._check(state)
        if not self.learn:  # counts fixed: the state after the tokens, as steps would give it
            for token in tokens:
                state = self.step(state, token)
            return state
        for token in tokens:
            self._learn(int(token))
        self.version = next(_versions)
        return (self.version, self._seen_suffix(self._history))

    def probs(self, state: State) -> np.ndarray:
        """P(next token | state) as float64 [V] over the train counts plus the stream's; the last answer is
        remembered (a char model asks about one state for ``predict`` and again for ``distribution``)."""
        self._check(state)
        if self._last is not None and self._last[0] == state:
            return self._last[1]
        probs = self._compute(state[1])
        probs.flags.writeable = False
        self._last = (state, probs)
        return probs

    def _compute(self, context: Context) -> np.ndarray:
        probs = self._unigram
        base_ids = self.base.context_ids(context)
        for k in range(2, len(context) + 2):
            suffix = context[len(context) - (k - 1) :]
            base_id = base_ids[k - 2] if k - 2 < len(base_ids) else -1
            added = self._added[k].get(suffix)
            if base_id < 0 and added is None:
                break  # a longer context holding an unseen one is unseen too
            probs = self._interpolate(self.base.tables[k - 1], base_id, added, probs)
        return probs

    def probs_many(self, states: Sequence[State]) -> list[np.ndarray]:
        return [self.probs(state) for state in states]

    def logprobs(self, state: State) -> np.ndarray:
        return np.log(self.probs(state))

    # --- counting ----------------------------------------------------------------------------------------------
    def _learn(self, token: int) -> None:
        gram = (*self._history, token)
        train_ids = self.base.context_ids(gram)  # the suffixes' train ids, shortest first, -1 once unseen
        for k in range(2, len(gram) + 1):
            kgram = gram[len(gram) - k :]
            if kgram in self._types[k] or (k <= len(train_ids) and train_ids[k - 1] >= 0):
                continue
            self._types[k].add(kgram)
            self._add(k - 1, kgram[1:])  # a new left extension of its suffix
        if len(gram) == self.order:
            self._add(self.order, gram)  # the top order counts occurrences
        self._history = gram[1:] if len(gram) == self.order else gram
        self.learned += 1

    def _add(self, k: int, gram: Context) -> None:
        words = self._added[k].setdefault(gram[:-1], {})
        words[gram[-1]] = words.get(gram[-1], 0) + 1
        if k == 1:
            self._unigram = self._interpolate(self.base.tables[0], 0, self._added[1][()],
                                              np.full(self.vocab_size, 1.0 / self.vocab_size))

    def _seen_suffix(self, history: Context) -> Context:
        """The longest suffix of the last order-1 tokens whose every suffix occurred (train or stream): what P
        depends on, so histories differing only in unseen older tokens share one state."""
        if self.order == 1:
            return ()
        history = history[len(history) - min(len(history), self.order - 1) :]
        train_ids = self.base.context_ids(history)
        for length in range(2, len(history) + 1):
            in_train = length <= len(train_ids) and train_ids[length - 1] >= 0
            if not in_train and history[len(history) - length :] not in self._types[length]:
                return history[len(history) - length + 1 :]
        return history

    def _interpolate(self, table: OrderTable, base_id: int, added: dict[int, int] | None,
                     lower: np.ndarray) -> np.ndarray:
        """``OrderTable.interpolate`` over the train counts of context ``base_id`` (-1: unseen in train) plus
        ``added``, the stream's count per word."""
        total = float(table.totals[base_id]) if base_id >= 0 else 0.0
        backoff = float(table.backoff_mass[base_id]) if base_id >= 0 else 0.0
        changed = []
        for word, extra in (added or {}).items():
            row = table.gram_id(base_id, word) if base_id >= 0 else -1
            old = int(table.counts[row]) if row >= 0 else 0
            new = old + extra
            backoff += table.discounts[min(new, 3)] - table.discounts[min(old, 3)]
            total += extra
            changed.append((word, new))
        if total == 0:
            return lower
        ratio = backoff / total
        probs = lower * ratio
        if base_id >= 0:
            lo, hi = table.starts[base_id], table.starts[base_id + 1]
            probs[table.words[lo:hi]] += table.kept[lo:hi] / total
        for word, count in changed:
            probs[word] = lower[word] * ratio + max(count - table.discounts[min(count, 3)], 0.0) / total
        return probs

    def _check(self, state: State) -> None:
        if state[0] != self.version:
            raise ValueError("this state is from before the model last learned (or from another stream); "
                             "use the state commit() or start() returned")
