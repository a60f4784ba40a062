"""The benchmark's streaming contract, reproduced so subchar models run in its harness unchanged.

The runner calls ``reset()`` once, then for every character of the window calls ``predict()`` (the
committed guess for the next character) strictly before ``observe(char)`` reveals it. A prediction is
correct when it equals the true character exactly.
"""

from __future__ import annotations

from abc import ABC, abstractmethod


class CharModel(ABC):
    """A character-level language model driven one character at a time."""

    @abstractmethod
    def reset(self) -> None:
        """Forget all observed text; called once before the stream starts."""

    @abstractmethod
    def predict(self) -> str:
        """Return the committed guess (one character) for the next, not yet observed, character."""

    @abstractmethod
    def observe(self, char: str) -> None:
        """Append the true next character to the context."""

    def distribution(self) -> dict[str, float] | None:
        """P(next char) over characters with mass > 0, or None when the model cannot say.

        Optional: the evaluator uses it to report bits per character.
        """
        return None
