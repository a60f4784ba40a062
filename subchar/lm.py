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
- ``batch_chunk_chars: int``: the batch engine (``subchar.batch_engine``) cuts the window into chunks of about
  this many characters, which its workers take in order, so the branches of one ``step_many`` lie close together
  (a Transformer's then read one shared window of its trunk). Without it, one chunk per worker.

The adapter collects the LM work of one observed character level by level (the extensions of every covering
through one more byte offset, the distributions of every live covering) and issues each level as one call of
these methods when the LM has them, else one per-state call per question (``step_many`` / ``logprobs_many``
below). A batched method must answer exactly what the per-state method would: the adapter treats them as the
same function, and the batch-engine tests compare them.
"""

from __future__ import annotations

from typing import Any, Protocol, Sequence, runtime_checkable

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


def step_many(lm: TokenLM, states: Sequence[State], tokens: Sequence[int]) -> list[State]:
    """``lm.step_many`` when the LM has it, else one ``lm.step`` per pair."""
    batched = getattr(lm, "step_many", None)
    if batched is not None:
        return list(batched(states, tokens))
    return [lm.step(state, token) for state, token in zip(states, tokens)]


def logprobs_many(lm: TokenLM, states: Sequence[State]) -> list[np.ndarray]:
    """``lm.logprobs_many`` when the LM has it, else one ``lm.logprobs`` per state."""
    batched = getattr(lm, "logprobs_many", None)
    if batched is not None:
        return list(batched(states))
    return [lm.logprobs(state) for state in states]


def states_along(lm: TokenLM, state: State, tokens: Sequence[int], at: Sequence[int]) -> list[State]:
    """``lm.states_along`` when the LM has it, else one ``lm.step`` per token."""
    batched = getattr(lm, "states_along", None)
    if batched is not None:
        return list(batched(state, tokens, at))
    wanted, last, found = set(at), max(at, default=0), {}
    for i in range(last + 1):
        if i in wanted:
            found[i] = state
        if i < last:
            state = lm.step(state, tokens[i])
    return [found[i] for i in at]
