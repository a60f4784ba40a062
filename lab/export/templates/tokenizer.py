"""The run's tokenizer, rebuilt in-process (nothing is downloaded), the part of the train text the run trained on
and a threaded encoder for it."""

from __future__ import annotations

import base64
import concurrent.futures
import itertools
import os

import numpy as np
import tiktoken

from lab.cell_phases import prefix_through
from lab.export.templates.run import (
    COUNTED_CHARS,
    ENCODE_CHUNK_CHARS,
    ENCODING_NAME,
    MERGEABLE_RANKS,
    PAT_STR,
    SPECIAL_TOKENS,
    TRAIN_CHARS,
    VOCAB_SIZE,
)
from tokenizers_local.text_stream import chunks


def build_encoding() -> tiktoken.Encoding:
    """The run's byte-level BPE as a tiktoken Encoding: same ids; its merges were learned on the train split."""
    special_ids = set(SPECIAL_TOKENS.values())
    ranks = (rank for rank in itertools.count() if rank not in special_ids)
    mergeable_ranks = {base64.b64decode(piece): rank for piece, rank in zip(MERGEABLE_RANKS.split(), ranks)}
    return tiktoken.Encoding(ENCODING_NAME, pat_str=PAT_STR, mergeable_ranks=mergeable_ranks,
                             special_tokens=SPECIAL_TOKENS, explicit_n_vocab=VOCAB_SIZE)


def run_text(train_text: str) -> str:
    """The part of ``train_text`` the run encoded and trained on: its first TRAIN_CHARS chars (the run's
    --train-chars), then the prefix its plan kept to fit the time and memory it planned for (COUNTED_CHARS, cut at
    the first pre-token boundary from there, as the plan cut: on the run's own text, exactly the run's prefix)."""
    text = train_text[:TRAIN_CHARS]
    return text if COUNTED_CHARS is None else prefix_through(text, COUNTED_CHARS)


def encode(encoding: tiktoken.Encoding, text: str) -> np.ndarray:
    """Token ids of ``text``, equal to encoding it whole: it is cut only at pre-token boundaries
    (text_stream.chunks) and the pieces are encoded in threads (tiktoken releases the GIL; the harness loads
    this file so that multiprocessing could not pickle its functions). uint16 when the vocabulary allows: the
    train split's ~130M ids then take 260 MB."""
    dtype = np.uint16 if VOCAB_SIZE <= 1 << 16 else np.int64
    pieces = list(chunks(text, ENCODE_CHUNK_CHARS))
    if not pieces:
        return np.zeros(0, dtype=dtype)

    def encode_piece(piece: str) -> np.ndarray:
        return np.asarray(encoding.encode_ordinary(piece), dtype=dtype)

    with concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        return np.concatenate(list(pool.map(encode_piece, pieces)))
