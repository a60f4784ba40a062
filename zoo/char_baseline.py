"""Character-level Kneser–Ney: the benchmark's leading family (char n-grams) as a CharModel baseline.

The same counting model as :mod:`zoo.ngram`, with Unicode characters as tokens, counted by the same chunked counter
(:mod:`zoo.ngram_count`) from a small-integer id per character, so the 540 MB train split costs a 1-2 byte id per
character and the counter's bounded tables, never an int64 copy of the text.

Every character of the vocabulary's text gets an id, sorted by code point, and one extra id stands for "any other
character", so unseen characters in the stream still move the context along. The counter counts any order over
any alphabet in bounded memory (orders whose n-grams do not pack into one int64 are built from the order below,
see :mod:`zoo.ngram_count`), so a cell on the 540 MB split keeps every character of the text it learns from, as
:meth:`CharKneserNey.fit` does.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from eval.contract import CharModel
from eval.data import SplitText, require_train
from eval.errors import UserError
from eval.progress import phase
from zoo.ngram import KneserNeyLM
from zoo.ngram_count import count_tables_chunked
from zoo.online_ngram import OnlineKneserNey

CODE_POINTS = 0x110000
CHUNK_CHARS = 1 << 24  # characters turned into code points at a time (64 MB of UTF-32)
DEFAULT_ORDER = 10  # chosen on held-out train text: scripts/select_on_heldout.py, the README's selection table


def code_points(text: str) -> np.ndarray:
    """Code point of every character, without a Python loop (UTF-32 is one int per character)."""
    return np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)


def code_point_counts(text: str) -> np.ndarray:
    """How often each code point occurs in ``text``, counted a chunk at a time."""
    counts = np.zeros(CODE_POINTS, dtype=np.int64)
    for start in range(0, len(text), CHUNK_CHARS):
        counts += np.bincount(code_points(text[start : start + CHUNK_CHARS]), minlength=CODE_POINTS)
    return counts


@dataclass(frozen=True)
class CharVocabulary:
    """The characters with an id of their own (``chars[i]`` has id i); id ``len(chars)`` is every other one."""

    chars: str

    @classmethod
    def learn(cls, text: str) -> CharVocabulary:
        """Every character of ``text``, sorted by code point."""
        if not text:
            raise UserError("the char baseline's train text is empty; check --train-chars / --train-file")
        return cls("".join(map(chr, np.flatnonzero(code_point_counts(text)).tolist())))

    @property
    def unknown_id(self) -> int:
        return len(self.chars)

    @property
    def size(self) -> int:
        return len(self.chars) + 1

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(np.uint8 if self.size <= 1 << 8 else np.uint16 if self.size <= 1 << 16 else np.uint32)

    def id_chunks(self, text: str) -> Iterator[np.ndarray]:
        """The id of every character of ``text``, a chunk at a time."""
        table = np.full(CODE_POINTS, self.unknown_id, dtype=self.dtype)
        table[code_points(self.chars)] = np.arange(len(self.chars), dtype=self.dtype)
        for start in range(0, len(text), CHUNK_CHARS):
            yield table[code_points(text[start : start + CHUNK_CHARS])]

    def encode(self, text: str) -> np.ndarray:
        return np.concatenate([np.zeros(0, dtype=self.dtype), *self.id_chunks(text)])

    def digest(self) -> str:
        """Two vocabularies encode alike iff their digests agree (the key of their id files)."""
        return hashlib.sha256(b"char\0" + self.chars.encode("utf-8")).hexdigest()

    def facts(self) -> dict[str, int]:
        return {"chars": len(self.chars)}


class CharKneserNey(CharModel):
    """Greedy char model: predict() = most probable known character, ties to the lowest code point. ``adapt``: also
    count the characters observed (``zoo.online_ngram``); ``counts`` is the train counts either way."""

    def __init__(self, lm: KneserNeyLM, chars: str, adapt: bool = False) -> None:
        if lm.vocab_size != len(chars) + 1:
            raise ValueError(f"model has {lm.vocab_size} ids for {len(chars)} chars + 1 unknown slot")
        self.counts, self.adapt = lm, adapt
        self.lm: KneserNeyLM | OnlineKneserNey = OnlineKneserNey(lm) if adapt else lm
        self.chars = chars
        self.char_ids = {char: i for i, char in enumerate(chars)}
        self.unknown_id = len(chars)
        self.state = lm.start()

    @classmethod
    def count(cls, ids: np.ndarray, vocabulary: CharVocabulary, order: int, device: str = "cpu",
              progress: bool = False, adapt: bool = False) -> CharKneserNey:
        """Count ``order``-grams of the character ids (a memory map is read a chunk at a time) on ``device``;
        ``adapt``: the model also learns the characters it observes."""
        try:
            with phase(f"count char {order}-grams", len(ids), enabled=progress) as shown:
                tables = count_tables_chunked(ids, order, vocabulary.size, device=device, advanced=shown.update)
        except ValueError as err:  # the counter raises plain ValueError; here it is the user's setting
            raise UserError(str(err)) from None
        return cls(KneserNeyLM(tables, vocabulary.size), vocabulary.chars, adapt)

    @classmethod
    def fit(cls, train: SplitText, order: int = DEFAULT_ORDER, device: str = "cpu",
            adapt: bool = False) -> CharKneserNey:
        """Count ``order``-grams of characters of the train split (or a flagged proxy of it), held in memory."""
        text = require_train(train, "the char Kneser-Ney baseline").text
        vocabulary = CharVocabulary.learn(text)
        return cls.count(vocabulary.encode(text), vocabulary, order, device, adapt=adapt)

    def reset(self) -> None:
        self.state = self.lm.start()

    def predict(self) -> str:
        known = self.lm.probs(self.state)[: self.unknown_id]
        return self.chars[int(np.argmax(known))]

    def observe(self, char: str) -> None:
        char_id = self.char_ids.get(char, self.unknown_id)
        if self.adapt:  # every observed character is committed text: learn it (zoo.online_ngram)
            self.state = self.lm.commit(self.state, (char_id,))
        else:
            self.state = self.lm.step(self.state, char_id)

    def distribution(self) -> dict[str, float]:
        """P(next char) over the train text's characters; the unknown slot's mass names no character, so is left out."""
        return dict(zip(self.chars, self.lm.probs(self.state)[: self.unknown_id].tolist()))
