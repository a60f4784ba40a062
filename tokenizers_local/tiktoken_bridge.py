"""A learned byte-level BPE as a ``tiktoken.Encoding``: same ids, tiktoken's faster encoder.

tiktoken ranks each byte string by its token id and repeatedly merges the adjacent pair whose concatenation
has the lowest rank. The HF trainer gives every merge result the next free id, so rank order is merge order,
and both libraries split text with the same GPT-2 regex first; the ids then agree (checked on the val split
by tests/test_tokenizers_real.py and scripts/bench_tokenizers.py).
"""

from __future__ import annotations

import tiktoken

from eval.errors import UserError
from tokenizers_local.base import LocalTokenizer

# tiktoken's spelling of GPT2_PATTERN (text_stream.py), the regex HF's ByteLevel pre-tokenizer uses.
TIKTOKEN_GPT2_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""


def to_tiktoken(tokenizer: LocalTokenizer) -> tiktoken.Encoding:
    """The tiktoken encoding with ``tokenizer``'s ids; use ``encode_ordinary`` to match ``tokenizer.encode``."""
    if tokenizer.family != "bytebpe":
        raise UserError(f"only a bytebpe tokenizer can become a tiktoken encoding, this one is {tokenizer.family!r}")
    surfaces, specials = tokenizer.surfaces(), tokenizer.special_ids()
    ranks = {surface: token_id for token_id, surface in enumerate(surfaces) if token_id not in specials}
    if len(ranks) != len(surfaces) - len(specials):
        raise UserError("this bytebpe vocabulary holds some bytes twice, so tiktoken cannot rank it; train it again")
    special_tokens = {tokenizer.backend.id_to_token(token_id): token_id for token_id in specials}
    return tiktoken.Encoding(
        name=f"subchar-bytebpe-{tokenizer.vocab_size}",
        pat_str=TIKTOKEN_GPT2_PATTERN,
        mergeable_ranks=ranks,
        special_tokens=special_tokens,
        explicit_n_vocab=tokenizer.vocab_size,
    )
