"""The LM's answers as the adapter sees them: each state asked once, and all of one level's questions at once.

``LMAnswers`` sits between ``CharAdapter`` and a ``TokenLM``. It remembers every answer while the adapter can
still reach the state (``StateMemo``) and turns a list of questions into one batched LM call (``step_many`` /
``logprobs_many`` when the LM offers them, see ``subchar.lm``), so a neural LM runs one forward pass per
expansion level instead of one per covering. Distributions are wrapped as ``TokenDistribution``, which caches
the per-character masses of each buffer prefix it was asked about.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Any, Sequence

import numpy as np

from subchar.lm import TokenLM, capabilities_of
from subchar.surface_index import Groups

PLAIN_TYPES = (int, str, bytes)
STEP_CACHE = 1 << 16  # (plain state, token) -> next state entries kept
NOT_REMEMBERED = object()  # no remembered answer
DIST_FLOATS = 1 << 23  # LM rows of the cached distributions of plain states (64 MiB; their sorted probs as much)


class TokenDistribution:
    """One LM next-token distribution, read in sorted-surface order; run masses are cached per prefix.

    Made from the LM's probabilities when it offers them (``probs_many``, ``subchar.lm``), else from its
    log-probabilities, exponentiated where read: the adapter only ever adds probabilities up.
    """

    __slots__ = ("logprobs", "probs", "order", "runs", "splits", "_sorted_probs")

    def __init__(self, logprobs: np.ndarray | None, order: np.ndarray, probs: np.ndarray | None = None) -> None:
        self.logprobs = None if logprobs is None else np.asarray(logprobs, dtype=np.float64)
        self.probs = None if probs is None else np.asarray(probs, dtype=np.float64)
        self.order = order
        self.runs: dict[tuple[bytes, bytes], CharMasses] = {}
        # split tokens ranked per prefix, with their probabilities and pending bytes (``frontier.TokenRun``)
        self.splits: dict[tuple[bytes, bytes], tuple[list[int], list[float], list[bytes]]] = {}
        self._sorted_probs: np.ndarray | None = None

    @classmethod
    def of_probs(cls, probs: np.ndarray, order: np.ndarray) -> TokenDistribution:
        return cls(None, order, probs)

    @property
    def sorted_probs(self) -> np.ndarray:
        """Every token's probability in sorted-surface order, made once: a distribution is asked about the prefixes
        of a growing buffer, each a slice of this (its first question is mostly the whole vocabulary anyway)."""
        if self._sorted_probs is None:
            self._sorted_probs = self.probs_of(self.order)
        return self._sorted_probs

    def char_masses(self, groups: Groups) -> CharMasses:
        """Run and character masses of ``groups`` under this distribution, cached per prefix: one LM state is
        asked about the same prefix again and again (spec mode after each commit, coverings sharing a state)."""
        cached = self.runs.get(groups.key)
        if cached is None:
            runs = groups.run_masses(self.sorted_probs[groups.lo : groups.hi])
            cached = self.runs[groups.key] = CharMasses(runs, runs[groups.chars_at], groups.chars, groups.partial_runs)
        return cached

    def probs_of(self, tokens: np.ndarray) -> np.ndarray:
        """The probabilities of ``tokens`` (ids), as an array."""
        if self.probs is not None:
            return self.probs[tokens]
        return np.exp(self.logprobs[tokens])  # type: ignore[index]

    def prob(self, token: int) -> float:
        if self.probs is not None:
            return float(self.probs[token])
        return math.exp(self.logprobs[token])  # type: ignore[index]


class CharMasses:
    """One distribution over one prefix's runs: every run's mass, the completed characters' masses (in
    ``Groups.chars`` order) and, computed once when first asked, the most probable character and the mass of
    the split runs (``Groups.partial_runs``)."""

    __slots__ = ("runs", "masses", "chars", "_partial", "_leader", "_split_mass")

    def __init__(self, runs: np.ndarray, masses: np.ndarray, chars: list[str], partial: np.ndarray) -> None:
        self.runs, self.masses, self.chars, self._partial = runs, masses, chars, partial
        self._leader: str | None | bool = False  # False: not computed yet
        self._split_mass: float | None = None

    @property
    def split_mass(self) -> float:
        """Total mass of the tokens that end inside the next character."""
        if self._split_mass is None:
            self._split_mass = float(self.runs[self._partial].sum())
        return self._split_mass

    @property
    def leader(self) -> str | None:
        """The character of largest mass, the smallest code point among equals; None when none has mass."""
        if self._leader is False:
            best = int(np.argmax(self.masses)) if len(self.masses) else -1
            self._leader = self.chars[best] if best >= 0 and self.masses[best] > 0 else None
        return self._leader  # type: ignore[return-value]


def value_key(state: Any) -> Any:
    """``state`` itself when it is a plain value (ints, strings, bytes, tuples of them), else None.

    A TokenLM is a function of its state, so equal plain states are one state: coverings reaching it merge and
    share one distribution. Any other state (tensors, objects) is only known by identity.
    """
    if type(state) is tuple:
        for part in state:  # a plain loop: this runs for every LM call
            if type(part) is not int and value_key(part) is None:
                return None
        return state
    return state if type(state) in PLAIN_TYPES else None


class StateAnswers:
    """What the LM said about one identity-keyed state: its distribution, and the answers of the states its
    tokens led to (so a state reached again through its parent is remembered exactly as long as the parent)."""

    __slots__ = ("state", "dist", "steps", "aliases")

    def __init__(self, state: Any) -> None:
        self.state = state  # kept so its id stays unique while remembered
        self.dist: TokenDistribution | None = None
        self.steps: dict[int, StateAnswers] = {}
        self.aliases: list[Any] = []  # other objects of the same state (``StateMemo.alias``), kept for their ids


class StateMemo:
    """The LM's answers per state, so no state is asked twice: distributions by state, steps by (state, token).

    Plain states are keyed by value in LRUs (an n-gram context recurs across commits). Other states are keyed by
    identity and registered for the current and previous commit window only, since they may be large (KV
    caches); the previous window is what a commit's respelling of the buffer reuses. A state reached through a
    step answer is registered again with it: every state the adapter holds after a commit was reached from the
    new root that way, so no state it holds is ever forgotten and asked again.
    """

    def __init__(self, vocab_size: int) -> None:
        self.dists: OrderedDict[Any, TokenDistribution] = OrderedDict()
        self.dist_capacity = max(16, DIST_FLOATS // max(vocab_size, 1))
        self.steps: OrderedDict[tuple[Any, int], Any] = OrderedDict()  # -> plain state or StateAnswers
        self.recent: dict[int, StateAnswers] = {}
        self.older: dict[int, StateAnswers] = {}

    def answers(self, state: Any) -> StateAnswers:
        """The memo of an identity-keyed state, registered in the current window."""
        entry = self.recent.get(id(state))
        if entry is None:
            entry = self.older.pop(id(state), None) or StateAnswers(state)
            self.recent[id(state)] = entry
        return entry

    def keep(self, entry: StateAnswers) -> None:
        """Register ``entry`` (reached through a step answer) in the current window."""
        if id(entry.state) not in self.recent:
            self.older.pop(id(entry.state), None)
            self.recent[id(entry.state)] = entry

    def alias(self, other: Any, state: Any) -> None:
        """Remember ``other`` as the same LM state as ``state``: its answers are ``state``'s."""
        entry = self.answers(state)
        entry.aliases.append(other)
        self.recent[id(other)] = entry

    def age(self) -> None:
        """A commit happened: forget identity-keyed states untouched since the commit before."""
        self.older, self.recent = self.recent, {}


class LMAnswers:
    """Distributions and steps of one LM, asked once per state and in batches; counts calls in ``diagnostics``
    (an object with ``lm_logprobs_calls``, ``lm_step_calls`` and ``lm_batched_calls``)."""

    def __init__(self, lm: TokenLM, order: np.ndarray, diagnostics: Any) -> None:
        self.lm, self.order, self.diagnostics = capabilities_of(lm), order, diagnostics
        self.memo = StateMemo(lm.vocab_size)
        self.batched = self.lm.batched  # one call on many states costs about one call on one

    def age(self) -> None:
        self.memo.age()

    # --- one state -----------------------------------------------------------------------------------------
    def dist(self, state: Any) -> TokenDistribution:
        """The next-token distribution after ``state``."""
        known = self._known_dist(state)
        if known is None:
            self.prefetch_dists([state])
            known = self._known_dist(state)
        return known  # type: ignore[return-value]

    def step(self, state: Any, token: int) -> Any:
        """The state after ``token``."""
        known = self._remembered(state, token)
        return self.step_pairs([(state, token)])[0] if known is NOT_REMEMBERED else known

    def along(self, state: Any, tokens: Sequence[int]) -> Any:
        """The state after ``tokens`` (committed text). When every step is remembered (the canonical spelling was
        one of the coverings) it is the state reached, ``settle``d by the LM when it can (a Transformer moves the
        branch's keys and values into its shared trunk) and remembered as that same state, so respelling the buffer
        after the commit finds its steps remembered too. Else one ``states_along`` call when the LM has it (a model
        runs them as one teacher-forced pass), else steps. An LM that learns (``commit``, ``subchar.lm``) is told
        the tokens instead: its answers change with them, so no remembered step applies."""
        if self.lm.learns:
            self.diagnostics.lm_step_calls += len(tokens)
            return self.lm.commit(state, tokens)
        reached = state
        for token in tokens:
            reached = self._remembered(reached, token)
            if reached is NOT_REMEMBERED:
                break
        if reached is not NOT_REMEMBERED:
            if not self.lm.settles or value_key(reached) is not None:
                return reached
            settled = self.lm.settle(reached)
            if settled is not reached:
                self.memo.alias(settled, reached)
            return settled
        if not self.lm.teacher_forced:
            for token in tokens:
                state = self.step(state, token)
            return state
        self.diagnostics.lm_step_calls += len(tokens)
        self.diagnostics.lm_batched_calls += 1
        return self.lm.states_along(state, tokens, [len(tokens)])[0]

    # --- many states, one LM call --------------------------------------------------------------------------
    def step_pairs(self, pairs: Sequence[tuple[Any, int]]) -> list[Any]:
        """The state after each (state, token); the pairs not yet answered go to the LM in one call."""
        results = []
        for state, token in pairs:  # fast path: every answer is remembered
            known = self._remembered(state, token)
            if known is NOT_REMEMBERED:
                break
            results.append(known)
        else:
            return results
        memo = self.memo
        keys = [self._step_key(state, token) for state, token in pairs]
        missing: dict[Any, tuple[Any, int]] = {}
        for (state, token), key in zip(pairs, keys):
            if self._step_answer(state, key, token) is None and key not in missing:
                missing[key] = (state, token)
        if missing:
            asked = list(missing.values())
            self.diagnostics.lm_step_calls += len(asked)
            self.diagnostics.lm_batched_calls += 1
            answers = self.lm.step_many([s for s, _ in asked], [t for _, t in asked])
            for (state, token), after in zip(asked, answers):
                self._store_step(state, token, after)
        results = []
        for (state, token), key in zip(pairs, keys):
            known = self._step_answer(state, key, token)
            if type(known) is StateAnswers:
                memo.keep(known)
                known = known.state
            results.append(known)
        return results

    def prefetch_dists(self, states: Sequence[Any]) -> None:
        """Ask the LM, in one call, for the distributions of the ``states`` not yet known."""
        missing: dict[Any, Any] = {}
        for state in states:
            key = value_key(state)
            if self._known_dist(state, touch=False) is None:
                missing.setdefault(id(state) if key is None else ("plain", key), state)
        if not missing:
            return
        asked = list(missing.values())
        self.diagnostics.lm_logprobs_calls += len(asked)
        self.diagnostics.lm_batched_calls += 1
        if self.lm.probs_many is not None:  # probabilities straight from the LM, when it has them
            dists = [TokenDistribution.of_probs(probs, self.order) for probs in self.lm.probs_many(asked)]
        else:
            dists = [TokenDistribution(logprobs, self.order) for logprobs in self.lm.logprobs_many(asked)]
        for state, dist in zip(asked, dists):
            self._store_dist(state, dist)

    # --- memo access ---------------------------------------------------------------------------------------
    def _known_dist(self, state: Any, touch: bool = True) -> TokenDistribution | None:
        memo, key = self.memo, value_key(state)
        if key is None:
            return memo.answers(state).dist
        dist = memo.dists.get(key)
        if dist is not None and touch:
            memo.dists.move_to_end(key)
        return dist

    def _store_dist(self, state: Any, dist: TokenDistribution) -> None:
        memo, key = self.memo, value_key(state)
        if key is None:
            memo.answers(state).dist = dist
            return
        memo.dists[key] = dist
        if len(memo.dists) > memo.dist_capacity:
            memo.dists.popitem(last=False)

    @staticmethod
    def _step_key(state: Any, token: int) -> Any:
        key = value_key(state)
        return (id(state), token, None) if key is None else (key, token)

    def _step_answer(self, state: Any, key: Any, token: int) -> Any:
        """The remembered step answer (a plain state or a ``StateAnswers``), or None."""
        memo = self.memo
        if len(key) == 3:
            return memo.answers(state).steps.get(token)
        known = memo.steps.get(key)
        if known is not None:
            memo.steps.move_to_end(key)
        return known

    def _remembered(self, state: Any, token: int) -> Any:
        """The remembered state after ``token`` (LRU touched and entry kept as in ``step_pairs``), else
        NOT_REMEMBERED."""
        known = self._step_answer(state, self._step_key(state, token), token)
        if known is None:
            return NOT_REMEMBERED
        if type(known) is StateAnswers:
            self.memo.keep(known)
            return known.state
        return known

    def _store_step(self, state: Any, token: int, after: Any) -> None:
        memo = self.memo
        remembered = after if value_key(after) is not None else memo.answers(after)
        key = value_key(state)
        if key is None:
            memo.answers(state).steps[token] = remembered
            return
        memo.steps[(key, token)] = remembered
        if len(memo.steps) > STEP_CACHE:
            memo.steps.popitem(last=False)
