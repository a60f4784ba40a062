"""Two BPE families from Hugging Face ``tokenizers``: character-level with byte fallback, and GPT-2 byte-level.

``bpe`` learns merges over characters. Its alphabet is the ``alphabet_size`` most frequent characters of the
train text; any other character (one never seen, or too rare) is spelled by its UTF-8 bytes as ``<0xNN>``
tokens through the BPE model's byte fallback, so every string encodes and decodes exactly.

``bytebpe`` is GPT-2's scheme: text becomes bytes before BPE, so there is nothing to fall back to, and the
learned merges can be handed to tiktoken unchanged (tiktoken_bridge.py).
"""

from __future__ import annotations

from typing import Any

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from tokenizers_local.base import BYTE_TOKENS, END_OF_TEXT
from tokenizers_local.hf_common import HFTokenizer, alphabet_limit, split_pretokenizer, with_extra_tokens
from tokenizers_local.text_stream import GPT2_PATTERN, chunk_count, chunks


class CharBPE(HFTokenizer):
    """Character-level BPE over GPT-2 pre-tokens (spaces and newlines kept), bytes for unknown characters."""

    family = "bpe"
    option_defaults = {"alphabet_size": None}

    @classmethod
    def train_backend(cls, text: str, vocab_size: int, progress: bool, alphabet_size: int | None = None) -> Tokenizer:
        tokenizer = Tokenizer(models.BPE(byte_fallback=True))
        tokenizer.pre_tokenizer = split_pretokenizer(GPT2_PATTERN)
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size - len(BYTE_TOKENS) - 1,
            limit_alphabet=alphabet_limit(vocab_size, alphabet_size),
            show_progress=progress,
        )
        tokenizer.train_from_iterator(chunks(text), trainer, length=chunk_count(text))
        learned = with_extra_tokens(tokenizer, [*BYTE_TOKENS, END_OF_TEXT], byte_fallback=True)
        learned.decoder = decoders.Sequence([decoders.ByteFallback(), decoders.Fuse()])
        return learned

    def _build_surfaces(self) -> list[bytes]:
        byte_of = {token: bytes([value]) for value, token in enumerate(BYTE_TOKENS)}
        return [
            b"" if token == END_OF_TEXT else byte_of.get(token, token.encode("utf-8")) for token in self.token_strings()
        ]

    def _build_special_ids(self) -> set[int]:
        return self.ids_of([END_OF_TEXT])

    def _build_byte_fallback_ids(self) -> set[int]:
        return self.ids_of(BYTE_TOKENS)


def byte_level_alphabet() -> dict[str, int]:
    """GPT-2's printable stand-in character for each byte, mapped back to the byte value.

    Printable Latin-1 bytes stand for themselves; the other 68 bytes take the code points 256, 257, ... in order.
    """
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    others = [value for value in range(256) if value not in printable]
    alphabet = {chr(value): value for value in printable}
    alphabet.update({chr(256 + index): value for index, value in enumerate(others)})
    return alphabet


class ByteBPE(HFTokenizer):
    """GPT-2-style byte-level BPE: ByteLevel pre-tokenizer (GPT-2 regex, no prefix space) and decoder."""

    family = "bytebpe"

    @classmethod
    def train_backend(cls, text: str, vocab_size: int, progress: bool, **options: Any) -> Tokenizer:
        tokenizer = Tokenizer(models.BPE())
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size - 1, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=progress
        )
        tokenizer.train_from_iterator(chunks(text), trainer, length=chunk_count(text))
        learned = with_extra_tokens(tokenizer, [END_OF_TEXT])
        learned.decoder = decoders.ByteLevel()
        return learned

    def _build_surfaces(self) -> list[bytes]:
        byte_of = byte_level_alphabet()
        return [
            b"" if token == END_OF_TEXT else bytes(byte_of[char] for char in token) for token in self.token_strings()
        ]

    def _build_special_ids(self) -> set[int]:
        return self.ids_of([END_OF_TEXT])

    def _build_byte_fallback_ids(self) -> set[int]:
        return set()
