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

from dataclasses import dataclass
from pathlib import Path

from eval.errors import UserError

MIN_PASSAGE_CHARS = 80
WINDOW_PASSAGES = 2
SPLIT_CHARS = 1_000
VAL_FILE_NAMES = ("wiki.valid.raw", "validation-")


def passages(text: str) -> set[str]:
    """The long passages of ``text``: pieces between line ends and ``" . "`` separators."""
    return {piece for piece in text.replace(" . ", "\n").split("\n") if len(piece) >= MIN_PASSAGE_CHARS}


@dataclass(frozen=True)
class ValFingerprint:
    """The long passages of the validation split, and those of its scored window."""

    split: frozenset[str]
    window: frozenset[str]

    @classmethod
    def of(cls, val_stream: str, window_chars: int) -> ValFingerprint:
        return cls(frozenset(passages(val_stream)), frozenset(passages(val_stream[:window_chars])))

    def refuse_leak(self, text: str, source: str) -> None:
        """Raise a one-line UserError when ``text`` holds the scored window or a substantial part of the split."""
        found = self.split.intersection(passages(text))
        in_window = len(found & self.window)
        found_chars = sum(map(len, found))
        if in_window >= WINDOW_PASSAGES or found_chars >= SPLIT_CHARS:
            raise UserError(
                f"{source} contains validation text ({in_window} passages of the scored window, {found_chars:,} "
                "chars of the valid split): training on it would leak the score; pass a train-split file"
            )


def refuse_val_file_name(path: Path) -> None:
    """Refuse a train file named as the validation split before reading it."""
    if any(path.name.startswith(name) for name in VAL_FILE_NAMES):
        raise UserError(f"{path} is the validation split: training on it would leak the score; pass a train-split file")
