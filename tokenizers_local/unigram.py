"""SentencePiece unigram, the ``unigram`` family, set up so that no character is ever lost.

Why SentencePiece rather than HF's Unigram: it is the reference implementation, trains faster on large text,
and learns byte-fallback pieces natively (``byte_fallback=True`` adds the 256 ``<0xNN>`` pieces).

Settings: identity normalisation, no dummy prefix, extra whitespace kept (runs of spaces survive), a newline
piece of its own (SentencePiece trains line by line and would otherwise never see one), characters outside
``character_coverage`` spelled in bytes. SentencePiece writes a space as U+2581 inside pieces and turns U+2581
back into a space when decoding; a literal U+2581 in the input is therefore encoded here as its three bytes.
"""

from __future__ import annotations

import io
import os
import re
from pathlib import Path

import sentencepiece as spm

from eval.errors import UserError
from tokenizers_local.base import END_OF_TEXT, LocalTokenizer
from tokenizers_local.text_stream import lines

SPACE_MARK = "\u2581"
NEWLINE = "\n"
# No piece holds a newline next to anything else, a U+2581 (spelled in bytes), or a space after a non-space
# character (whitespace only starts pieces), so these spans are never crossed.
SPANS = re.compile(rf"{NEWLINE}|{SPACE_MARK}| *[^ {NEWLINE}{SPACE_MARK}]+| +")


class SentencePieceUnigram(LocalTokenizer):
    """A ``SentencePieceProcessor`` (unigram model) wrapped to keep every string exactly."""

    family = "unigram"
    backend_file = "unigram.model"
    option_defaults = {"character_coverage": 0.9995}

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._space_mark_ids = [self.backend.piece_to_id(f"<0x{value:02X}>") for value in SPACE_MARK.encode("utf-8")]

    @classmethod
    def train_backend(
        cls, text: str, vocab_size: int, progress: bool, character_coverage: float = 0.9995
    ) -> spm.SentencePieceProcessor:
        if not 0 < character_coverage <= 1:
            raise UserError(f"character_coverage must be in (0, 1], got {character_coverage}")
        sentences = lines(text)  # no bar of its own: train_tokenizer reports the learning as a phase
        model = io.BytesIO()
        try:
            spm.SentencePieceTrainer.train(
                sentence_iterator=sentences,
                model_writer=model,
                model_type="unigram",
                vocab_size=vocab_size,
                hard_vocab_limit=False,  # tiny texts may not support the full size; take what they give
                character_coverage=character_coverage,
                byte_fallback=True,
                normalization_rule_name="identity",
                add_dummy_prefix=False,
                remove_extra_whitespaces=False,
                allow_whitespace_only_pieces=True,
                split_digits=False,
                user_defined_symbols=[NEWLINE],
                unk_id=0,
                bos_id=1,
                bos_piece=END_OF_TEXT,  # a control symbol: never matched in input text
                eos_id=-1,
                pad_id=-1,
                max_sentence_length=1 << 20,  # WikiText paragraphs can exceed the 4192-byte default
                num_threads=os.cpu_count() or 1,
                minloglevel=1 if progress else 2,
            )
        except RuntimeError as err:
            reason = str(err).splitlines()[0]
            raise UserError(f"SentencePiece could not train: {reason}; try a smaller --vocab-size") from None
        return spm.SentencePieceProcessor(model_proto=model.getvalue())

    @classmethod
    def read_backend(cls, path: Path) -> spm.SentencePieceProcessor:
        return spm.SentencePieceProcessor(model_proto=path.read_bytes())

    def write_backend(self, path: Path) -> None:
        path.write_bytes(self.backend.serialized_model_proto())

    def encode(self, text: str) -> list[int]:
        if SPACE_MARK not in text:
            return self.backend.encode(text)
        ids: list[int] = []
        for index, part in enumerate(text.split(SPACE_MARK)):
            if index:
                ids.extend(self._space_mark_ids)
            ids.extend(self.backend.encode(part))
        return ids

    def pretokenize(self, text: str) -> list[tuple[int, int]]:
        return [match.span() for match in SPANS.finditer(text)]

    def _build_surfaces(self) -> list[bytes]:
        sp = self.backend
        surfaces = []
        for i in range(sp.get_piece_size()):
            piece = sp.id_to_piece(i)
            if sp.is_control(i) or sp.is_unknown(i):
                surfaces.append(b"")
            elif sp.is_byte(i):
                surfaces.append(bytes([int(piece[3:5], 16)]))
            else:
                surfaces.append(piece.replace(SPACE_MARK, " ").encode("utf-8"))
        return surfaces

    def _build_special_ids(self) -> set[int]:
        sp = self.backend
        return {i for i in range(sp.get_piece_size()) if sp.is_control(i) or sp.is_unknown(i)}

    def _build_byte_fallback_ids(self) -> set[int]:
        return {i for i in range(self.backend.get_piece_size()) if self.backend.is_byte(i)}
