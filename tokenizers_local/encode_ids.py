"""Encode a whole train text into a memory-mapped id file, in parallel, cached by (tokenizer digest, text digest).

Why: the 540 MB train split is ~130M tokens; as a Python list that is several GB, and a single-threaded HF encode
takes minutes of a 300 s budget. Here the text is cut at pre-token boundaries (text_stream.chunks, exact for the
GPT-2-style regexes every family uses) into groups, each group is encoded by the fastest exact encoder the family
has — tiktoken's threaded batch for byte-level BPE, HF ``encode_batch`` (Rayon threads) for the other HF families,
the family's own ``encode`` otherwise — and its ids are appended to a uint16 (vocab <= 65,536) or uint32 file.
The file is renamed into place only when complete, so an interrupted run leaves no half cache entry, and a later
run with the same tokenizer and text (a resumed cell) maps the file instead of encoding again. The char
baseline's ids (one per character, zoo.char_baseline) are written through the same cache (:func:`id_file_of`).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from eval.data import text_sha256
from eval.errors import UserError
from eval.progress import phase
from eval.records import write_json_atomic
from tokenizers_local.base import LocalTokenizer
from tokenizers_local.hf_common import ENCODE_CHUNK_CHARS, HFTokenizer
from tokenizers_local.text_stream import chunks
from tokenizers_local.tiktoken_bridge import to_tiktoken

GROUP_CHARS = 1 << 24  # text encoded per batch call: bounds the transient Python ints to ~4M
PIECE_CHARS = 1 << 16  # one task of a tiktoken batch
ID_FILE_FORMAT = "subchar-ids"
ID_FILE_VERSION = 1

Encoder = Callable[[list[str]], list[list[int]]]


@dataclass(frozen=True)
class IdFile:
    """A finished id file: ``tokens`` ids of dtype ``dtype`` at ``path``; open it with :meth:`ids`."""

    path: Path
    dtype: str
    tokens: int
    vocab_size: int
    tokenizer_sha256: str
    text_sha256: str
    encoder: str

    def ids(self) -> np.ndarray:
        """The ids as a read-only memory map (an empty array for an empty text)."""
        if self.tokens == 0:
            return np.zeros(0, dtype=self.dtype)
        return np.memmap(self.path, dtype=self.dtype, mode="r", shape=(self.tokens,))

    @property
    def bytes_on_disk(self) -> int:
        return self.tokens * np.dtype(self.dtype).itemsize


def id_dtype(vocab_size: int) -> str:
    return "uint16" if vocab_size <= 1 << 16 else "uint32"


def tokenizer_sha256(tokenizer: LocalTokenizer) -> str:
    """sha256 of the family name and the library's saved file: two tokenizers encode alike iff these agree."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / tokenizer.backend_file
        tokenizer.write_backend(path)
        digest = hashlib.sha256(tokenizer.family.encode() + b"\0")
        digest.update(path.read_bytes())
    return digest.hexdigest()


def batch_encoder(tokenizer: LocalTokenizer, threads: int) -> tuple[str, Encoder]:
    """The fastest encoder whose ids equal ``tokenizer.encode`` on every piece, and its name."""
    if tokenizer.family == "bytebpe":
        try:
            encoding = to_tiktoken(tokenizer)
        except UserError:
            encoding = None
        if encoding is not None:
            return "tiktoken", lambda pieces: encoding.encode_ordinary_batch(pieces, num_threads=threads)
    if isinstance(tokenizer, HFTokenizer) and type(tokenizer).encode is HFTokenizer.encode:
        backend = tokenizer.backend

        def hf_batch(pieces: list[str]) -> list[list[int]]:
            small = [part for piece in pieces for part in chunks(piece, ENCODE_CHUNK_CHARS)]
            return [encoding.ids for encoding in backend.encode_batch(small, add_special_tokens=False)]

        return "hf-encode-batch", hf_batch
    return "encode", lambda pieces: [tokenizer.encode(piece) for piece in pieces]


def encode_groups(text: str, encoder: Encoder, dtype: str, progress: bool) -> Iterator[np.ndarray]:
    """Ids of consecutive groups of ``text``, one array per group."""
    with phase("encode", len(text), enabled=progress) as shown:
        for group in chunks(text, GROUP_CHARS):
            pieces = list(chunks(group, PIECE_CHARS))
            ids = [np.asarray(piece_ids, dtype=dtype) for piece_ids in encoder(pieces)]
            yield np.concatenate(ids) if ids else np.zeros(0, dtype=dtype)
            shown.update(len(group))


def cached_id_file(cache_dir: Path, tok_digest: str, txt_digest: str) -> IdFile | None:
    """The finished id file of (tokenizer, text) in ``cache_dir``, or None."""
    meta_path = cache_dir / f"{tok_digest[:20]}-{txt_digest[:20]}.json"
    try:
        meta = json.loads(meta_path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    if meta.get("format") != ID_FILE_FORMAT or meta.get("format_version") != ID_FILE_VERSION:
        return None
    fields = {k: meta[k] for k in ("dtype", "tokens", "vocab_size", "tokenizer_sha256", "text_sha256", "encoder")}
    found = IdFile(path=cache_dir / meta["file"], **fields)
    if (found.tokenizer_sha256, found.text_sha256) != (tok_digest, txt_digest):
        return None
    if not found.path.is_file() or found.path.stat().st_size != found.bytes_on_disk:
        return None
    return found


def encode_to_file(
    tokenizer: LocalTokenizer,
    text: str,
    cache_dir: str | os.PathLike,
    *,
    threads: int | None = None,
    progress: bool = False,
) -> tuple[IdFile, bool]:
    """The id file of ``tokenizer.encode(text)`` in ``cache_dir``: (file, True) when it was already there."""
    dtype = id_dtype(tokenizer.vocab_size)

    def groups() -> tuple[str, Iterator[np.ndarray]]:
        name, encoder = batch_encoder(tokenizer, threads or os.cpu_count() or 1)
        return name, encode_groups(text, encoder, dtype, progress)

    return id_file_of(cache_dir, tokenizer_sha256(tokenizer), text_sha256(text), tokenizer.vocab_size, dtype, groups)


def id_file_of(
    cache_dir: str | os.PathLike,
    vocab_digest: str,
    txt_digest: str,
    vocab_size: int,
    dtype: str,
    groups: Callable[[], tuple[str, Iterator[np.ndarray]]],
) -> tuple[IdFile, bool]:
    """The id file of (vocabulary, text) in ``cache_dir``, written from ``groups()`` (the encoder's name and its
    ids, group by group) unless it is there already: (file, True) when it was."""
    cache_dir = Path(cache_dir).expanduser()
    found = cached_id_file(cache_dir, vocab_digest, txt_digest)
    if found is not None:
        return found, True
    stem = f"{vocab_digest[:20]}-{txt_digest[:20]}"
    cache_dir.mkdir(parents=True, exist_ok=True)
    fd, partial = tempfile.mkstemp(prefix=f".{stem}.", suffix=".partial", dir=cache_dir)
    tokens = 0
    try:
        with os.fdopen(fd, "wb") as handle:
            name, id_groups = groups()
            for ids in id_groups:
                if ids.dtype != dtype:  # a cast would wrap ids that do not fit, silently
                    raise ValueError(f"{name} gave {ids.dtype} ids for a {dtype} id file")
                handle.write(ids.tobytes())
                tokens += len(ids)
        final = cache_dir / f"{stem}.{dtype}"
        os.replace(partial, final)
    except BaseException:
        Path(partial).unlink(missing_ok=True)
        raise
    made = IdFile(final, dtype, tokens, vocab_size, vocab_digest, txt_digest, name)
    meta = {"format": ID_FILE_FORMAT, "format_version": ID_FILE_VERSION, "file": final.name,
            **{k: v for k, v in asdict(made).items() if k != "path"}}
    write_json_atomic(cache_dir / f"{stem}.json", meta)  # written last: its presence marks a complete file
    return made, False
