"""What the Hugging Face ``tokenizers`` families share: file format, pre-tokenizer spans, vocabulary edits."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tokenizers import Encoding, Regex, Tokenizer, pre_tokenizers

from eval.errors import UserError
from tokenizers_local.base import LocalTokenizer
from tokenizers_local.text_stream import chunks

# Long texts are cut at pre-token boundaries and encoded as a batch: several times faster than one long call
# (which also tracks offsets over the whole string) and spread over the cores, with identical ids.
ENCODE_CHUNK_CHARS = 1 << 12


def split_pretokenizer(pattern: str) -> pre_tokenizers.Split:
    """Every regex match is a piece and so is every gap between matches: no character is ever dropped."""
    return pre_tokenizers.Split(Regex(pattern), behavior="isolated")


def with_extra_tokens(tokenizer: Tokenizer, tokens: list[str], **model_fields: Any) -> Tokenizer:
    """A copy whose model vocabulary also holds ``tokens`` (appended in order, existing ones skipped).

    They go into the model's own vocabulary, not the added-token list, so their text is never matched in the
    input: the string "<|endoftext|>" in a document encodes as ordinary characters.
    """
    spec = json.loads(tokenizer.to_str())
    vocab: dict[str, int] = spec["model"]["vocab"]
    for token in tokens:
        vocab.setdefault(token, len(vocab))
    spec["model"].update(model_fields)
    spec["added_tokens"] = []
    return Tokenizer.from_str(json.dumps(spec))


def alphabet_limit(vocab_size: int, alphabet_size: int | None) -> int:
    """Characters kept as tokens: the most frequent ones, at most a quarter of the vocabulary unless told."""
    if alphabet_size is None:
        return min(1000, vocab_size // 4)
    if alphabet_size < 1:
        raise UserError(f"alphabet_size must be at least 1, got {alphabet_size}")
    return alphabet_size


class HFTokenizer(LocalTokenizer):
    """A family whose backend is a ``tokenizers.Tokenizer`` saved as tokenizer.json."""

    backend_file = "tokenizer.json"
    library_bars = True  # the trainers' show_progress: pre-processing, counting and merge bars

    @classmethod
    def read_backend(cls, path: Path) -> Tokenizer:
        return Tokenizer.from_file(str(path))

    def write_backend(self, path: Path) -> None:
        self.backend.save(str(path))

    def encode(self, text: str) -> list[int]:
        return [token_id for _, encoding in self.encodings(text) for token_id in encoding.ids]

    def encodings(self, text: str) -> list[tuple[int, Encoding]]:
        """The backend's encodings of consecutive pieces of ``text``, each with the offset where it starts.

        Every family here pre-tokenises with a GPT-2-style regex, for which text_stream.chunks cuts are exact.
        """
        if len(text) <= ENCODE_CHUNK_CHARS:
            return [(0, self.backend.encode(text, add_special_tokens=False))]
        pieces = list(chunks(text, ENCODE_CHUNK_CHARS))
        starts = [0]
        for piece in pieces[:-1]:
            starts.append(starts[-1] + len(piece))
        return list(zip(starts, self.backend.encode_batch(pieces, add_special_tokens=False)))

    def pretokenize(self, text: str) -> list[tuple[int, int]]:
        return [span for _, span in self.backend.pre_tokenizer.pre_tokenize_str(text)]

    def token_strings(self) -> list[str]:
        """The backend's string for each id, in id order."""
        vocab = self.backend.get_vocab(with_added_tokens=False)
        strings = [""] * len(vocab)
        for token, token_id in vocab.items():
            strings[token_id] = token
        return strings

    def ids_of(self, tokens: tuple[str, ...] | list[str]) -> set[int]:
        return {token_id for token in tokens if (token_id := self.backend.token_to_id(token)) is not None}
