"""Two families whose Hugging Face model can only say "unknown": WordPiece and word-level.

Both models map a pre-token they cannot cover to one unknown token. Here that never reaches the caller: the
pre-token is spelled instead, character by character with the vocabulary's single-character tokens, and any
character without one (never seen in the train text, or outside the ``alphabet_size`` most frequent) as its
UTF-8 bytes ``<0xNN>``. The unknown token stays in the vocabulary (the model needs it) but is never emitted.

``wordpiece``: WordPiece over GPT-2 pre-tokens, so spaces and newlines are pre-tokens or leading spaces and
survive. Continuations carry the ``##`` prefix, which adds nothing to the text: ``##x`` has surface ``x``. To
keep that unambiguous, every ``#`` is a pre-token of its own (WORDPIECE_PATTERN): no vocabulary string can then
start with ``##`` unless it is a continuation.

``word``: the most frequent GPT-2 pre-tokens of the train text (" the", " ,", "\\n\\n", ...) as whole tokens,
plus the ``alphabet_size`` most frequent characters and the 256 bytes to spell everything else.
"""

from __future__ import annotations

from tokenizers import Tokenizer, models, trainers

from tokenizers_local.base import BYTE_TOKENS, END_OF_TEXT
from tokenizers_local.hf_common import HFTokenizer, alphabet_limit, split_pretokenizer, with_extra_tokens
from tokenizers_local.text_stream import GPT2_PATTERN, WORDPIECE_PATTERN, char_counts, chunk_count, chunks

CONTINUATION = "##"


class SpelledTokenizer(HFTokenizer):
    """An HF tokenizer whose unknown tokens are replaced by the spelling of the text they stand for."""

    unknown_token: str

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        strings = self.token_strings()
        self._unknown_id = self.backend.token_to_id(self.unknown_token)
        self._byte_ids = [self.backend.token_to_id(token) for token in BYTE_TOKENS]
        self._initial_ids, self._continuation_ids = self._spelling_tables(strings)

    def _spelling_tables(self, strings: list[str]) -> tuple[dict[str, int], dict[str, int]]:
        """Single-character tokens usable at the start of a pre-token, and after its first character."""
        singles = {token: token_id for token_id, token in enumerate(strings) if len(token) == 1}
        return singles, singles

    def encode(self, text: str) -> list[int]:
        return self._encode_spelled(text)[0]

    def fallback_chars(self, text: str) -> int:
        """Characters of the pre-tokens the model could not cover, all spelled."""
        return self._encode_spelled(text)[1]

    def _encode_spelled(self, text: str) -> tuple[list[int], int]:
        """Ids with every unknown token replaced by the spelling of its text, and how many characters that was."""
        spelled: list[int] = []
        spelled_chars = 0
        for offset, encoding in self.encodings(text):
            if self._unknown_id not in encoding.ids:
                spelled.extend(encoding.ids)
                continue
            for token_id, (start, end) in zip(encoding.ids, encoding.offsets):
                if token_id == self._unknown_id:
                    spelled.extend(self.spell(text[offset + start : offset + end]))
                    spelled_chars += end - start
                else:
                    spelled.append(token_id)
        return spelled, spelled_chars

    def spell(self, piece: str) -> list[int]:
        """Ids spelling ``piece`` one character at a time, bytes for characters without a token."""
        ids: list[int] = []
        for position, char in enumerate(piece):
            table = self._continuation_ids if position else self._initial_ids
            token_id = table.get(char, self._initial_ids.get(char, self._continuation_ids.get(char)))
            if token_id is None:
                ids.extend(self._byte_ids[value] for value in char.encode("utf-8"))
            else:
                ids.append(token_id)
        return ids

    def _build_surfaces(self) -> list[bytes]:
        byte_of = {token: bytes([value]) for value, token in enumerate(BYTE_TOKENS)}
        specials = {END_OF_TEXT, self.unknown_token}
        return [
            b"" if token in specials else byte_of.get(token) or self.token_text(token).encode("utf-8")
            for token in self.token_strings()
        ]

    def token_text(self, token: str) -> str:
        """The text an ordinary (not special, not byte) token stands for."""
        return token

    def _build_special_ids(self) -> set[int]:
        return self.ids_of([END_OF_TEXT, self.unknown_token])

    def _build_byte_fallback_ids(self) -> set[int]:
        return self.ids_of(BYTE_TOKENS)


class WordPieceFamily(SpelledTokenizer):
    """WordPiece made lossless: whitespace kept by the pre-tokenizer, ``##`` stripped, unknowns spelled."""

    family = "wordpiece"
    unknown_token = "[UNK]"
    option_defaults = {"alphabet_size": None}

    @classmethod
    def train_backend(cls, text: str, vocab_size: int, progress: bool, alphabet_size: int | None = None) -> Tokenizer:
        tokenizer = Tokenizer(models.WordPiece(unk_token=cls.unknown_token, continuing_subword_prefix=CONTINUATION))
        tokenizer.pre_tokenizer = split_pretokenizer(WORDPIECE_PATTERN)
        trainer = trainers.WordPieceTrainer(
            vocab_size=vocab_size - len(BYTE_TOKENS) - 2,
            limit_alphabet=alphabet_limit(vocab_size, alphabet_size),
            continuing_subword_prefix=CONTINUATION,
            show_progress=progress,
        )
        tokenizer.train_from_iterator(chunks(text), trainer, length=chunk_count(text))
        # No pre-token length limit: a long run of spaces or digits must not turn into [UNK] wholesale.
        return with_extra_tokens(
            tokenizer,
            [*BYTE_TOKENS, cls.unknown_token, END_OF_TEXT],
            unk_token=cls.unknown_token,
            continuing_subword_prefix=CONTINUATION,
            max_input_chars_per_word=len(text) + 1,
        )

    def _spelling_tables(self, strings: list[str]) -> tuple[dict[str, int], dict[str, int]]:
        initial = {token: token_id for token_id, token in enumerate(strings) if len(token) == 1}
        continuation = {
            token[len(CONTINUATION):]: token_id
            for token_id, token in enumerate(strings)
            if token.startswith(CONTINUATION) and len(token) == len(CONTINUATION) + 1
        }
        return initial, continuation

    def token_text(self, token: str) -> str:
        return token[len(CONTINUATION):] if token.startswith(CONTINUATION) else token


class WordFamily(SpelledTokenizer):
    """Whole GPT-2 pre-tokens as tokens; anything else spelled with characters, then bytes."""

    family = "word"
    unknown_token = "<unk>"
    option_defaults = {"alphabet_size": None}

    @classmethod
    def train_backend(cls, text: str, vocab_size: int, progress: bool, alphabet_size: int | None = None) -> Tokenizer:
        alphabet = [char for char, _ in char_counts(text).most_common(alphabet_limit(vocab_size, alphabet_size))]
        word_budget = vocab_size - len(alphabet) - len(BYTE_TOKENS) - 2
        tokenizer = Tokenizer(models.WordLevel(unk_token=cls.unknown_token))
        tokenizer.pre_tokenizer = split_pretokenizer(GPT2_PATTERN)
        trainer = trainers.WordLevelTrainer(vocab_size=max(word_budget, 1), show_progress=progress)
        tokenizer.train_from_iterator(chunks(text), trainer, length=chunk_count(text))
        return with_extra_tokens(
            tokenizer, [*alphabet, *BYTE_TOKENS, cls.unknown_token, END_OF_TEXT], unk_token=cls.unknown_token
        )
