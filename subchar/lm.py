"""What a token language model must offer the adapter: a branching, incremental state machine."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

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
