"""Pre-tokenisation patterns and streaming views of training text.

Trainers receive the train split as an iterator of chunks or lines, never as a list of copies, so the 540 MB
split is held once (the SplitText) plus one chunk at a time.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator

# GPT-2's pre-tokenisation regex (the one HF's ByteLevel pre-tokenizer and tiktoken's gpt2 use): a word keeps
# its single leading space, whitespace runs are their own pieces, every character lands in exactly one piece.
GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""

# The same, except that every '#' is a piece of its own (with an optional leading space). WordPiece marks
# continuations with '##'; when no piece can hold two '#' or start with '##', each vocabulary string has exactly
# one surface (see wordpiece.py).
WORDPIECE_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?#| ?[^\s\p{L}\p{N}#]+|\s+(?!\S)|\s+"""

# A position after a newline and before a single space and a non-space character is a piece boundary for both
# patterns above, also when the text is cut there: the whitespace run ending in that newline matches the same way
# with or without the " X" after it. (Before a non-space character it would not be: " \n\nX" splits " \n" + "\n",
# but a cut " \n\n" stays whole.) WikiText rows all start with a space, so cuts are plentiful.
CHUNK_BOUNDARY = re.compile(r"\n(?= \S)")
DEFAULT_CHUNK_CHARS = 1 << 20


def chunks(text: str, chunk_chars: int = DEFAULT_CHUNK_CHARS) -> Iterator[str]:
    """Consecutive slices of about ``chunk_chars`` characters, cut only at pre-token boundaries."""
    start = 0
    while start < len(text):
        cut = CHUNK_BOUNDARY.search(text, start + chunk_chars)
        end = cut.end() if cut else len(text)
        yield text[start:end]
        start = end


def chunk_count(text: str, chunk_chars: int = DEFAULT_CHUNK_CHARS) -> int:
    """Upper bound on the number of chunks, for progress bars."""
    return max(1, -(-len(text) // chunk_chars))


def lines(text: str) -> Iterator[str]:
    """Non-empty lines without their newline, one at a time (SentencePiece trains on sentences)."""
    for match in re.finditer(r"[^\n]+", text):
        yield match.group()


def char_counts(text: str, chunk_chars: int = DEFAULT_CHUNK_CHARS) -> Counter[str]:
    """How often each character occurs, counted chunk by chunk."""
    counts: Counter[str] = Counter()
    for chunk in chunks(text, chunk_chars):
        counts.update(chunk)
    return counts
