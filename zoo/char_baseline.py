"""Character-level Kneser–Ney: the benchmark's leading family (char n-grams) as a CharModel baseline.

The same counting model as :mod:`zoo.ngram`, with Unicode characters as tokens: every character of the train text
gets an id (sorted by code point) and one extra id stands for "a character the train text never had", so unseen
characters in the stream still move the context along.
"""

from __future__ import annotations

import numpy as np

from eval.contract import CharModel
from eval.data import SplitText, require_train
from eval.errors import UserError
from zoo.ngram import KneserNeyLM


def code_points(text: str) -> np.ndarray:
    """Code point of every character, without a Python loop (UTF-32 is one int per character)."""
    return np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32).astype(np.int64)


class CharKneserNey(CharModel):
    """Greedy char model: predict() = most probable known character, ties to the lowest code point."""

    def __init__(self, lm: KneserNeyLM, chars: str) -> None:
        if lm.vocab_size != len(chars) + 1:
            raise ValueError(f"model has {lm.vocab_size} ids for {len(chars)} chars + 1 unknown slot")
        self.lm = lm
        self.chars = chars
        self.char_ids = {char: i for i, char in enumerate(chars)}
        self.unknown_id = len(chars)
        self.state = lm.start()

    @classmethod
    def fit(cls, train: SplitText, order: int = 6) -> CharKneserNey:
        """Count ``order``-grams of characters of the train split (or a flagged proxy of it)."""
        text = require_train(train, "the char Kneser-Ney baseline").text
        points = code_points(text)
        vocab = np.unique(points)
        ids = np.searchsorted(vocab, points)
        chars = "".join(map(chr, vocab.tolist()))
        try:
            lm = KneserNeyLM.fit(ids, vocab_size=len(chars) + 1, order=order)
        except ValueError as err:  # the model file raises plain ValueError; here it is the user's setting
            raise UserError(str(err)) from None
        return cls(lm, chars)

    def reset(self) -> None:
        self.state = self.lm.start()

    def predict(self) -> str:
        known = self.lm.probs(self.state)[: self.unknown_id]
        return self.chars[int(np.argmax(known))]

    def observe(self, char: str) -> None:
        self.state = self.lm.step(self.state, self.char_ids.get(char, self.unknown_id))

    def distribution(self) -> dict[str, float]:
        """P(next char) over the train text's characters; the unknown slot's mass names no character, so is left out."""
        return dict(zip(self.chars, self.lm.probs(self.state)[: self.unknown_id].tolist()))
