"""Kneser–Ney count tables in bounded memory, chunked and sort-based, on torch tensors (GPU when there is one).

Why: at the train split's ~130M tokens (540M characters for a char model), zoo/ngram.py's one-shot counting holds
an int64 array per order of the whole corpus, and its sorts are CPU-seconds that the benchmark bills; a GPU sorts
10^8 keys in well under a second. This module produces exactly the tables of :func:`zoo.ngram.count_tables` (same
keys, same counts, so the same KneserNeyLM) for any order and vocabulary, reading the ids a chunk at a time (a
memory map is never copied whole).

Packed, when ``bits * order <= 62`` (``bits`` per token):

1. every top-order n-gram is packed into one int64, first token in the highest bits, so numeric order is
   lexicographic order; each chunk is sorted and reduced to (unique keys, counts), and the partial tables are
   merged by one more sort and an index_add;
2. a lower order's k-grams are the prefixes of the (k+1)-gram keys (already sorted, so their rows come from
   unique_consecutive) plus the k-gram that starts at the last position; its continuation counts are the number
   of distinct (k+1)-grams with a given k-token suffix (sorted, counted, and looked up as sorted queries);
3. packed keys become zoo.ngram's ``context_id * V + word``: the context id is the rank of the k-gram's prefix
   among the sorted (k-1)-grams, and packed order equals zoo.ngram's (context id, word) order.

Chained, when they do not fit (a char model past order 6, with a few hundred characters): the orders up to the
highest one that packs, ``base``, are counted as above, and each order k above it is built from the one below, as
zoo.ngram.gram_ids does but a chunk at a time. The k-gram at a position is the pair (id of its (k-1)-gram there,
next token), one int64 ``prefix_id * V + token`` (the prefix id is below the number of (k-1)-grams, so it always
fits, and it is already zoo.ngram's key). Two passes per order:

A. each chunk's pairs are reduced to (sorted unique pairs, counts, and each position's index among them); the
   indices are kept per position, the partial tables merged as above;
B. each chunk's unique pairs are rebuilt from the pairs and the kept indices (a scatter, not a sort), found in the
   merged table (sorted queries), and so every position gets its k-gram's id: kept for order k + 1, and scattered
   per k-gram as the id of its suffix, the (k-1)-gram at the next position, whose bincount is order k-1's
   continuation counts.

Why this design: the per-position ids are the only state that grows with the text, one int32 per position for the
order being read and one for the order being built; past ``SPILL_BYTES`` they live in a temporary file, read and
written a chunk at a time, so the RAM is the tables plus a chunk's work. Two int64 words per key instead would
need a two-key sort (numpy and torch have none without argsort passes) and still the suffix of every n-gram; the
chain sorts once per order above ``base`` but only int64 keys, and the orders that pack cost nothing extra.
On the CPU, torch.unique with inverse indices was measured as fast as numpy's sort alone (16M keys: ~2 s on this
project's 2-core machine; numpy's unique with inverse took 8 s, and a search of unsorted queries 30 s). Measured
there on 100M characters of the synthetic corpus (264 ids), order 11: 117 s and 3.0 GB peak RSS, where the
one-shot count took 842 s and 15.2 GB; order 8: 52 s and 1.9 GB against 595 s and 12.4 GB.

Memory: a chunk of ids, the unique n-grams of the order being built (at most one per position) a few times
during merges, and the two per-position id columns (in temporary files when large).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator

import numpy as np
import torch

DEFAULT_CHUNK_TOKENS = 1 << 24
PACKED_BITS = 62  # of an int64 key, leaving the sign bit and one spare
MERGE_FACTOR = 4  # partial tables are merged once they hold this many times the last merged size
SPILL_BYTES = 1 << 28  # a per-position id column larger than this is kept in a temporary file

Table = tuple[torch.Tensor, torch.Tensor]


def token_bits(vocab_size: int) -> int:
    return max(1, int(vocab_size - 1).bit_length())


def fits_packed(vocab_size: int, order: int) -> bool:
    return token_bits(vocab_size) * order <= PACKED_BITS


def pack(window: torch.Tensor, length: int, order: int, bits: int) -> torch.Tensor:
    """Keys of the ``order``-grams starting at the first ``length`` positions of ``window`` (int64)."""
    keys = window[:length].clone()
    for j in range(1, order):  # in place: a new tensor per step was 4x slower on the CPU (page faults)
        keys.bitwise_left_shift_(bits).bitwise_or_(window[j : j + length])
    return keys


def sort_keys(keys: torch.Tensor) -> torch.Tensor:
    """Sorted copy of int64 ``keys``. On the CPU numpy's sort is used: measured 2.5x faster than torch.sort there
    (4M int64 keys: 0.5 s against 1.3 s on this project's 2-core machine); on a GPU, torch.sort."""
    if keys.device.type == "cpu":
        return torch.from_numpy(np.sort(keys.numpy()))
    return torch.sort(keys).values


def rows_of(table: torch.Tensor, sorted_queries: torch.Tensor) -> torch.Tensor:
    """Rows of ``sorted_queries`` (all present) in the sorted ``table``; sorted queries keep the search cache-local
    (random queries were 15x slower on the CPU)."""
    return torch.searchsorted(table, sorted_queries)


def count_sorted(keys: torch.Tensor) -> Table:
    """Unique keys of an unsorted tensor, sorted, with how often each occurs."""
    unique, counts = torch.unique_consecutive(sort_keys(keys), return_counts=True)
    return unique, counts.to(torch.int64)


def spans(positions: int, chunk_tokens: int) -> Iterator[tuple[int, int]]:
    """(start, length) of each chunk of ``positions``."""
    for start in range(0, positions, chunk_tokens):
        yield start, min(chunk_tokens, positions - start)


def read_ids(ids: np.ndarray, start: int, stop: int, device: torch.device) -> torch.Tensor:
    return torch.from_numpy(np.asarray(ids[start:stop], dtype=np.int64)).to(device)


class Progress:
    """Tells ``advanced`` shares of ``total`` as chunks of ``passes`` passes over the text are done, adding up to
    ``total`` exactly (the callers' progress bars count the ids once, however many passes the counting makes)."""

    def __init__(self, advanced: Callable[[int], object], total: int, passes: int) -> None:
        self.advanced, self.total, self.passes = advanced, total, passes
        self.done = 0.0  # passes done, fractional
        self.told = 0

    def pass_over(self, positions: int) -> Callable[[int], None]:
        """What to tell each chunk's length, in a pass over ``positions`` positions."""
        def counted(length: int) -> None:
            self.done += length / positions
            self.tell(min(self.total, round(self.total * self.done / self.passes)))
        return counted

    def tell(self, target: int) -> None:
        if target > self.told:
            self.advanced(target - self.told)
            self.told = target

    def finish(self) -> None:
        self.tell(self.total)


class MergedParts:
    """Partial (sorted unique keys, counts) tables of successive chunks, merged once they hold MERGE_FACTOR times
    the last merged size (so merges cost O(n log n) in all, and memory stays a few times the merged table)."""

    def __init__(self, chunk_tokens: int) -> None:
        self.parts: list[Table] = []
        self.merged_size = 0
        self.chunk_tokens = chunk_tokens

    def add(self, part: Table) -> None:
        self.parts.append(part)
        pending = sum(len(keys) for keys, _ in self.parts)
        if len(self.parts) > 1 and pending > MERGE_FACTOR * max(self.merged_size, self.chunk_tokens):
            self.parts = [merge(self.parts)]
            self.merged_size = len(self.parts[0][0])

    def table(self) -> Table:
        return merge(self.parts)


def top_order_counts(ids: np.ndarray, order: int, bits: int, chunk_tokens: int, device: torch.device,
                     advanced: Callable[[int], object]) -> Table:
    """(sorted unique packed n-gram keys, raw counts) over all len(ids) - order + 1 positions; ``advanced`` is
    told each chunk's length."""
    parts = MergedParts(chunk_tokens)
    for start, length in spans(len(ids) - order + 1, chunk_tokens):
        parts.add(count_sorted(pack(read_ids(ids, start, start + length + order - 1, device), length, order, bits)))
        advanced(length)
    return parts.table()


def merge(parts: list[Table]) -> Table:
    """One table from partial (sorted unique keys, counts) tables: counts of equal keys are summed."""
    if len(parts) == 1:
        return parts[0]
    keys = torch.unique_consecutive(sort_keys(torch.cat([k for k, _ in parts])))
    counts = torch.zeros(len(keys), dtype=torch.int64, device=keys.device)
    for part_keys, part_counts in parts:
        counts.index_add_(0, rows_of(keys, part_keys), part_counts)
    return keys, counts


def lower_order(upper: torch.Tensor, tail: int, bits: int, vocab_size: int, k: int):
    """The k-gram keys below the sorted (k+1)-gram keys ``upper``, and each (k+1)-gram's prefix row in them.

    The k-grams are the prefixes of the (k+1)-grams plus ``tail``, the k-gram at the last position; prefixes of
    sorted keys are sorted, so their rows come from unique_consecutive without any search.
    """
    prefixes = upper >> bits
    if k == 1:  # zoo.ngram keeps every word at order 1, so the row of a word is the word
        return torch.arange(vocab_size, dtype=torch.int64, device=upper.device), prefixes
    unique, rows = torch.unique_consecutive(prefixes, return_inverse=True)
    at = int(torch.searchsorted(unique, torch.tensor([tail], device=unique.device)))
    if at < len(unique) and int(unique[at]) == tail:
        return unique, rows
    keys = torch.cat((unique[:at], torch.tensor([tail], device=unique.device), unique[at:]))
    return keys, rows + (rows >= at).to(torch.int64)


def continuation_counts(upper: torch.Tensor, keys: torch.Tensor, bits: int, k: int) -> torch.Tensor:
    """For each k-gram, how many distinct (k+1)-grams end with it (N1+(• g))."""
    suffixes = upper & ((1 << (bits * k)) - 1)
    if k == 1:
        return torch.bincount(suffixes, minlength=len(keys)).to(torch.int64)
    unique, counts = count_sorted(suffixes)
    result = torch.zeros(len(keys), dtype=torch.int64, device=keys.device)
    result[rows_of(keys, unique)] = counts
    return result


def packed_tables(ids: np.ndarray, keys: torch.Tensor, counts: torch.Tensor, order: int, bits: int,
                  vocab_size: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Tables of orders 1..``order`` from the sorted packed ``order``-gram ``keys`` of all positions, top down
    (each order needs the one above it); ``counts`` are the top order's."""
    tables = []
    for k in range(order - 1, 0, -1):
        tail = int(pack(read_ids(ids, len(ids) - k, len(ids), torch.device("cpu")), 1, k, bits))
        lower_keys, context_rows = lower_order(keys, tail, bits, vocab_size, k)
        word = keys & ((1 << bits) - 1)
        tables.append(((context_rows * vocab_size + word).cpu().numpy(), counts.cpu().numpy()))
        keys, counts = lower_keys, continuation_counts(keys, lower_keys, bits, k)
    tables.append((keys.cpu().numpy(), counts.cpu().numpy()))
    return tables[::-1]


class PositionIds:
    """An id per position of the text (the k-gram that starts there), in memory or, past SPILL_BYTES, in an
    anonymous temporary file (gone when closed or when the process ends), read and written a chunk at a time so
    that it never sits in RAM whole."""

    def __init__(self, length: int) -> None:
        self.dtype = np.dtype(np.int32 if length <= 1 << 31 else np.int64)  # an id is below the number of positions
        in_memory = length * self.dtype.itemsize <= SPILL_BYTES
        self.array = np.empty(length, dtype=self.dtype) if in_memory else None
        self.file = None if in_memory else tempfile.TemporaryFile(prefix="ngram-ids-")

    def read(self, start: int, stop: int, device: torch.device) -> torch.Tensor:
        if self.file is None:
            values = self.array[start:stop]
        else:
            values = np.empty(stop - start, dtype=self.dtype)
            self.file.seek(start * self.dtype.itemsize)
            if self.file.readinto(memoryview(values).cast("B")) != values.nbytes:
                raise OSError("short read from the n-gram counter's temporary id file")
        return torch.from_numpy(values.astype(np.int64)).to(device)

    def write(self, start: int, values: torch.Tensor) -> None:
        values = values.cpu().numpy().astype(self.dtype)
        if self.file is None:
            self.array[start : start + len(values)] = values
        else:
            self.file.seek(start * self.dtype.itemsize)
            self.file.write(memoryview(values).cast("B"))

    def close(self) -> None:
        if self.file is not None:
            self.file.close()


class Tokens:
    """The ids themselves as the per-position ids of order 1 (zoo.ngram's unigram id is the token)."""

    def __init__(self, ids: np.ndarray) -> None:
        self.ids = ids

    def read(self, start: int, stop: int, device: torch.device) -> torch.Tensor:
        return read_ids(self.ids, start, stop, device)


def ranked_table(keys_at: Callable[[int, int], torch.Tensor], positions: int, ranks: PositionIds,
                 chunk_tokens: int, progress: Progress) -> tuple[Table, Iterator[tuple[int, torch.Tensor]]]:
    """Pass A over ``positions``: the sorted unique keys (``keys_at(start, length)`` gives a chunk's) with their
    counts; and pass B, an iterator of (start, each position's row in that table) per chunk. ``ranks`` holds each
    position's index among its chunk's unique keys between the passes (pass B's caller may then overwrite it)."""
    parts, sizes = MergedParts(chunk_tokens), []
    counted = progress.pass_over(positions)
    for start, length in spans(positions, chunk_tokens):
        unique, inverse, counts = torch.unique(keys_at(start, length), return_inverse=True, return_counts=True)
        ranks.write(start, inverse)
        sizes.append(len(unique))
        parts.add((unique, counts))
        counted(length)
    table = parts.table()

    def rows() -> Iterator[tuple[int, torch.Tensor]]:
        counted = progress.pass_over(positions)
        for (start, length), size in zip(spans(positions, chunk_tokens), sizes):
            inverse = ranks.read(start, start + length, table[0].device)
            # the chunk's sorted unique keys again, by a scatter (equal indices carry equal keys), not a sort
            unique = torch.empty(size, dtype=torch.int64, device=inverse.device).index_copy_(0, inverse,
                                                                                            keys_at(start, length))
            yield start, rows_of(table[0], unique).index_select(0, inverse)
            counted(length)

    return table, rows()


def packed_at(ids: np.ndarray, order: int, bits: int, device: torch.device) -> Callable[[int, int], torch.Tensor]:
    """Packed keys of the ``order``-grams at a chunk of positions (start, length)."""
    return lambda start, size: pack(read_ids(ids, start, start + size + order - 1, device), size, order, bits)


def pairs_at(below: PositionIds | Tokens, ids: np.ndarray, k: int, vocab_size: int,
             device: torch.device) -> Callable[[int, int], torch.Tensor]:
    """zoo.ngram's keys of the k-grams at a chunk of positions: id of the (k-1)-gram there * V + the k-th token."""
    def keys(start: int, size: int) -> torch.Tensor:
        words = read_ids(ids, start + k - 1, start + k - 1 + size, device)
        return torch.mul(below.read(start, start + size, device), vocab_size).add_(words)  # a read may view ids
    return keys


def chained_tables(ids: np.ndarray, order: int, vocab_size: int, chunk_tokens: int, device: torch.device,
                   advanced: Callable[[int], object]) -> list[tuple[np.ndarray, np.ndarray]]:
    """The tables when ``order``-grams do not pack: orders up to ``base`` packed, each order above it from the one
    below (see the module docstring)."""
    bits, length = token_bits(vocab_size), len(ids)
    base = max(1, min(order - 1, PACKED_BITS // bits))  # the highest order that packs (order 1: ids are their id)
    progress = Progress(advanced, length, 2 * (order - base + (base > 1)))
    columns = [PositionIds(length), PositionIds(length)]
    try:
        below: PositionIds | Tokens = Tokens(ids)
        # the top order of ``tables`` so far gets its continuation counts from the order above it, in the loop
        tables = [(np.arange(vocab_size, dtype=np.int64), np.zeros(0, dtype=np.int64))]
        if base > 1:
            below = columns[0]
            (keys, _), rows = ranked_table(packed_at(ids, base, bits, device), length - base + 1, below,
                                           chunk_tokens, progress)
            for start, gram_ids in rows:
                below.write(start, gram_ids)
            tables = packed_tables(ids, keys, torch.zeros(0, dtype=torch.int64), base, bits, vocab_size)
        for k in range(base + 1, order + 1):
            above = columns[1] if below is columns[0] else columns[0]
            (keys, counts), rows = ranked_table(pairs_at(below, ids, k, vocab_size, device), length - k + 1, above,
                                                chunk_tokens, progress)
            suffixes = torch.empty(len(keys), dtype=torch.int64, device=device)  # per k-gram: id of its last k-1
            for start, gram_ids in rows:
                if k < order:
                    above.write(start, gram_ids)
                suffixes.index_copy_(0, gram_ids, below.read(start + 1, start + 1 + len(gram_ids), device))
            below_keys = tables[-1][0]
            tables[-1] = (below_keys, torch.bincount(suffixes, minlength=len(below_keys)).cpu().numpy())
            tables.append((keys.cpu().numpy(), counts.cpu().numpy()))
            below = above
    finally:
        for column in columns:
            column.close()
    progress.finish()
    return tables


def count_tables_chunked(
    ids: np.ndarray,
    order: int,
    vocab_size: int,
    *,
    chunk_tokens: int = DEFAULT_CHUNK_TOKENS,
    device: str | torch.device = "cpu",
    advanced: Callable[[int], object] = lambda tokens: None,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """The tables of ``zoo.ngram.count_tables(ids, order, vocab_size)``, counted chunk by chunk on ``device``.

    ``ids`` may be any 1-D integer array, a read-only memory map included; ids must lie in [0, vocab_size).
    ``advanced`` is told the progress in ids: its numbers add up to len(ids), however many passes the count makes.
    """
    if order < 1 or len(ids) < order:
        raise ValueError(f"need at least {order} ids and order >= 1 to count {order}-grams")
    if chunk_tokens < 1:
        raise ValueError(f"chunk_tokens must be positive, got {chunk_tokens}")
    device = torch.device(device)
    if order == 1:
        counts = torch.zeros(vocab_size, dtype=torch.int64, device=device)
        for start, length in spans(len(ids), chunk_tokens):
            counts += torch.bincount(read_ids(ids, start, start + length, device), minlength=vocab_size)
            advanced(length)
        return [(np.arange(vocab_size, dtype=np.int64), counts.cpu().numpy())]
    if not fits_packed(vocab_size, order):
        return chained_tables(ids, order, vocab_size, chunk_tokens, device, advanced)
    bits = token_bits(vocab_size)
    progress = Progress(advanced, len(ids), 1)
    keys, counts = top_order_counts(ids, order, bits, chunk_tokens, device, progress.pass_over(len(ids) - order + 1))
    tables = packed_tables(ids, keys, counts, order, bits, vocab_size)
    progress.finish()
    return tables
