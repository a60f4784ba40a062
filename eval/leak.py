"""The one leak the benchmark exists to forbid: training on validation text.

A proxy train file (``--train-file``) may be any file, so the train loader checks its content against the
validation split before anything is trained on it. The check is exact and cheap: both texts are cut into
*passages* at line ends and at WikiText's sentence separator ``" . "``, and the long passages of the validation
split (``MIN_PASSAGE_CHARS`` or more, which different articles practically never share) are looked up in a set.
Cutting by content, not by offset, finds a validation paragraph wherever it was pasted, whole or mid-line.

A text is refused when it holds ``WINDOW_PASSAGES`` long passages of the scored window, or long passages of the
validation split adding up to ``SPLIT_CHARS`` characters (about a paragraph).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from eval.errors import UserError

MIN_PASSAGE_CHARS = 80
WINDOW_PASSAGES = 2
SPLIT_CHARS = 1_000
VAL_FILE_NAMES = ("wiki.valid.raw", "validation-")
CHUNK_CHARS = 1 << 22  # text read per step of the check: its passages are all the check holds at once


def passages(text: str) -> set[str]:
    """The long passages of ``text``: pieces between line ends and ``" . "`` separators."""
    return {piece for piece in text.replace(" . ", "\n").split("\n") if len(piece) >= MIN_PASSAGE_CHARS}


def line_chunks(text: str, chars: int = CHUNK_CHARS) -> Iterator[str]:
    """Consecutive slices of about ``chars`` characters, each ending after a line end (or at the text's end).

    No passage and no ``" . "`` crosses a line end, so the passages of the slices are those of the whole text.
    """
    start = 0
    while start < len(text):
        end = text.find("\n", start + chars) + 1 or len(text)
        yield text[start:end]
        start = end


@dataclass(frozen=True)
class LeakFinding:
    """How much validation text a train text holds: passages of the scored window, characters of the split."""

    window_passages: int
    split_chars: int

    @property
    def leaks(self) -> bool:
        return self.window_passages >= WINDOW_PASSAGES or self.split_chars >= SPLIT_CHARS

    def refuse(self, source: str) -> None:
        """Raise a one-line UserError when the finding is a leak."""
        if self.leaks:
            raise UserError(
                f"{source} contains validation text ({self.window_passages} passages of the scored window, "
                f"{self.split_chars:,} chars of the valid split): training on it would leak the score; pass a "
                "train-split file"
            )


@dataclass(frozen=True)
class ValFingerprint:
    """The long passages of the validation split, and those of its scored window."""

    split: frozenset[str]
    window: frozenset[str]

    @classmethod
    def of(cls, val_stream: str, window_chars: int) -> ValFingerprint:
        return cls(frozenset(passages(val_stream)), frozenset(passages(val_stream[:window_chars])))

    def find(self, text: str, advanced: Callable[[int], object] = lambda chars: None) -> LeakFinding:
        """What ``text`` holds of the split, read a chunk at a time (``advanced`` is told each chunk's length):
        only one chunk's passages are held, never the whole text's (3 GB for the 540 MB train split)."""
        found: set[str] = set()
        for chunk in line_chunks(text):
            found |= self.split.intersection(passages(chunk))
            advanced(len(chunk))
        return LeakFinding(len(found & self.window), sum(map(len, found)))

    def refuse_leak(self, text: str, source: str) -> None:
        """Raise a one-line UserError when ``text`` holds the scored window or a substantial part of the split."""
        self.find(text).refuse(source)


def refuse_val_file_name(path: Path) -> None:
    """Refuse a train file named as the validation split before reading it."""
    if any(path.name.startswith(name) for name in VAL_FILE_NAMES):
        raise UserError(f"{path} is the validation split: training on it would leak the score; pass a train-split file")
