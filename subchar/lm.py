"""What a token language model must offer the adapter: a branching, incremental state machine.

Required: ``vocab_size``, ``start()``, ``logprobs(state)``, ``step(state, token)`` (``TokenLM``).

Optional batched forms (``BatchedTokenLM``), for models where one call on many states costs about as much as one
call on one state (a neural network's forward pass), or that have the probabilities at hand:

- ``step_many(states, tokens) -> list of states``: ``[step(s, t) for s, t in zip(states, tokens)]``;
- ``logprobs_many(states) -> array [len(states), vocab_size]`` (or a list of rows): ``logprobs`` of each;
- ``probs_many(states) -> array [len(states), vocab_size]`` (or a list of rows): P(next token | state) of each,
  float64, ``exp(logprobs)`` up to rounding. The adapter only adds probabilities up, so when an LM has them it reads
  every distribution through this instead of ``logprobs_many``: that saves an exp over the vocabulary per state
  (and an LM that counts probabilities, the n-gram, its log; a network, its float64 log-softmax: ``zoo.streaming``);
- ``states_along(state, tokens, at) -> list of states``: the states after ``tokens[:i]``, stepped from ``state``,
  for each ``i`` in ``at``. The adapter feeds committed text through it, and the batch engine the whole window's
  committed tokens, so a model can run them as one teacher-forced pass (a Transformer appends them to the shared
  trunk its branches attend to, ``zoo.kv_tree``) instead of one step per token;
- ``settle(state) -> state``: the same state, re-expressed for long use. When the committed tokens were already
  stepped as one of the coverings, the adapter takes that covering's state as the new commit point and settles it
  (a Transformer copies the branch's keys and values into its trunk), and the answers it remembers for the old
  object hold for the new one;
- ``commit(state, tokens) -> state``: the state after ``tokens``, which are now committed text: an LM that learns
  while it is evaluated (``zoo.online_ngram``) counts them, and the state it returns is of its new version (its
  earlier states are stale from then on). The adapter calls it on every commit instead of stepping, and the batch
  engine replays the window in order, as one chunk (what the LM answers depends on everything committed before);
- ``batch_chunk_chars: int``: the batch engine (``subchar.batch_engine``) cuts the window into chunks of about
  this many characters, which its workers take in order, so the branches of one ``step_many`` lie close together
  (a Transformer's then read one shared window of its trunk). Without it, one chunk per worker.

Which of these an LM offers is read once, by ``LMCapabilities`` (``capabilities_of(lm)``): the rest of subchar asks
it ("batched? probabilities? settle? chunk size?") and calls through it, and never looks at the LM's attributes.

The adapter collects the LM work of one observed character level by level (the extensions of every covering
through one more byte offset, the distributions of every live covering) and issues each level as one call of
these methods when the LM has them, else one per-state call per question (``LMCapabilities.step_many`` /
``logprobs_many``). A batched method must answer exactly what the per-state method would: the adapter treats them
as the same function, and the batch-engine tests compare them.
"""

from __future__ import annotations

from typing import Any, Callable, Protocol, Sequence, runtime_checkable

import numpy as np

State = Any


@runtime_checkable
class TokenLM(Protocol):
    """Token model seen as states: ``step`` returns a new state and leaves the old one valid (branching).

    The adapter asks each state once: plain-value states (ints, strings, bytes, tuples of them, e.g. an n-gram's
    context) are cached and merged by value, so equal values must mean the same context; any other state object
    is cached by identity. An LM whose plain values are reusable handles must wrap its states in objects.
    """

    vocab_size: int

    def start(self) -> State:
        """State of the empty context."""
        ...

    def logprobs(self, state: State) -> np.ndarray:
        """log P(next token | state), float, shape [vocab_size]."""
        ...

    def step(self, state: State, token: int) -> State:
        """State after appending ``token``."""
        ...


@runtime_checkable
class BatchedTokenLM(TokenLM, Protocol):
    """A ``TokenLM`` that also answers many states in one call (one forward pass for a neural model)."""

    def step_many(self, states: Sequence[State], tokens: Sequence[int]) -> list[State]:
        """The state after each ``(states[i], tokens[i])``, every input state left valid."""
        ...

    def logprobs_many(self, states: Sequence[State]) -> np.ndarray | list[np.ndarray]:
        """``logprobs`` of each state, one row each."""
        ...

    def probs_many(self, states: Sequence[State]) -> np.ndarray | list[np.ndarray]:
        """P(next token | state) of each state, one float64 row each (``exp(logprobs)`` up to rounding)."""
        ...

    def states_along(self, state: State, tokens: Sequence[int], at: Sequence[int]) -> list[State]:
        """The state after ``tokens[:i]`` from ``state`` for each ``i`` in ``at`` (``i = 0``: ``state``)."""
        ...

    def settle(self, state: State) -> State:
        """``state`` as it is best kept once it is committed text (the same state: the same answers)."""
        ...

    def commit(self, state: State, tokens: Sequence[int]) -> State:
        """The state after ``tokens``, now committed text the LM may learn from (its earlier states go stale)."""
        ...

    batch_chunk_chars: int | None


class LMCapabilities:
    """One ``TokenLM`` with its optional methods (``BatchedTokenLM``) read once: itself a ``TokenLM`` that offers
    every batched method (answered per state where the LM has no batched form), and says which ones are the LM's
    own: ``batched`` (``step_many``: one call on many states costs about one call on one), ``probs_many`` (None when
    the LM has no probabilities at hand), ``settles``, ``learns`` (``commit``) and ``chunk_chars`` (``batch_chunk_chars``,
    or None).

    ``capabilities_of`` reads them from an LM; a wrapper that forwards to another LM (the batch engine's cohort)
    names them itself, through the keyword arguments."""

    def __init__(
        self, lm: TokenLM, *, batched: bool, probs_many: Callable[[Sequence[State]], Any] | None,
        settle: Callable[[State], State] | None, chunk_chars: int | None,
        step_many: Callable[[Sequence[State], Sequence[int]], Any] | None = None,
        logprobs_many: Callable[[Sequence[State]], Any] | None = None,
        states_along: Callable[[State, Sequence[int], Sequence[int]], Any] | None = None,
        commit: Callable[[State, Sequence[int]], State] | None = None,
    ) -> None:
        self.lm, self.vocab_size = lm, lm.vocab_size
        self.batched, self.probs_many, self.settles, self.chunk_chars = batched, probs_many, settle is not None, chunk_chars
        self._settle, self._step_many, self._logprobs_many, self._states_along = (
            settle, step_many, logprobs_many, states_along)
        self.learns, self._commit = commit is not None, commit

    def start(self) -> State:
        return self.lm.start()

    def logprobs(self, state: State) -> np.ndarray:
        return self.lm.logprobs(state)

    def step(self, state: State, token: int) -> State:
        return self.lm.step(state, token)

    def step_many(self, states: Sequence[State], tokens: Sequence[int]) -> list[State]:
        """The LM's ``step_many``, else one ``step`` per pair."""
        if self._step_many is not None:
            return list(self._step_many(states, tokens))
        return [self.lm.step(state, token) for state, token in zip(states, tokens)]

    def logprobs_many(self, states: Sequence[State]) -> list[np.ndarray]:
        """The LM's ``logprobs_many``, else one ``logprobs`` per state."""
        if self._logprobs_many is not None:
            return list(self._logprobs_many(states))
        return [self.lm.logprobs(state) for state in states]

    @property
    def teacher_forced(self) -> bool:
        """The LM has its own ``states_along`` (committed text as one pass)."""
        return self._states_along is not None

    def states_along(self, state: State, tokens: Sequence[int], at: Sequence[int]) -> list[State]:
        """The LM's ``states_along``, else one ``step`` per token."""
        if self._states_along is not None:
            return list(self._states_along(state, tokens, at))
        wanted, last, found = set(at), max(at, default=0), {}
        for i in range(last + 1):
            if i in wanted:
                found[i] = state
            if i < last:
                state = self.lm.step(state, tokens[i])
        return [found[i] for i in at]

    def settle(self, state: State) -> State:
        """The LM's ``settle``, else ``state`` itself."""
        return state if self._settle is None else self._settle(state)

    def commit(self, state: State, tokens: Sequence[int]) -> State:
        """The LM's ``commit`` (only for an LM that ``learns``)."""
        return self._commit(state, tokens)  # type: ignore[misc]


def capabilities_of(lm: TokenLM) -> LMCapabilities:
    """``lm``'s optional methods, read once (``lm`` itself when it already is an ``LMCapabilities``)."""
    if isinstance(lm, LMCapabilities):
        return lm
    step_many = getattr(lm, "step_many", None)
    return LMCapabilities(
        lm, batched=step_many is not None, probs_many=getattr(lm, "probs_many", None),
        settle=getattr(lm, "settle", None), chunk_chars=getattr(lm, "batch_chunk_chars", None) or None,
        step_many=step_many, logprobs_many=getattr(lm, "logprobs_many", None),
        states_along=getattr(lm, "states_along", None), commit=getattr(lm, "commit", None),
    )


def logprobs_many(lm: TokenLM, states: Sequence[State]) -> list[np.ndarray]:
    """``lm.logprobs_many`` when the LM has it, else one ``lm.logprobs`` per state."""
    return capabilities_of(lm).logprobs_many(states)


def states_along(lm: TokenLM, state: State, tokens: Sequence[int], at: Sequence[int]) -> list[State]:
    """``lm.states_along`` when the LM has it, else one ``lm.step`` per token."""
    return capabilities_of(lm).states_along(state, tokens, at)
