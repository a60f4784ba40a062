"""The tokenizer families by name."""

from __future__ import annotations

from eval.errors import UserError
from tokenizers_local.base import LocalTokenizer
from tokenizers_local.bpe import ByteBPE, CharBPE
from tokenizers_local.spelled import WordFamily, WordPieceFamily
from tokenizers_local.unigram import SentencePieceUnigram

FAMILIES: dict[str, type[LocalTokenizer]] = {
    cls.family: cls for cls in (CharBPE, ByteBPE, SentencePieceUnigram, WordPieceFamily, WordFamily)
}


def family_class(family: str) -> type[LocalTokenizer]:
    try:
        return FAMILIES[family]
    except KeyError:
        raise UserError(f"unknown tokenizer family {family!r}; use one of {', '.join(FAMILIES)}") from None
