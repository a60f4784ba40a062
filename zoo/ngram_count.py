"""Kneser–Ney count tables in bounded memory, chunked and sort-based, on torch tensors (GPU when there is one).

Why: at the train split's ~130M tokens, zoo/ngram.py's one-shot counting holds several int64 arrays per order of
the whole corpus, and its sorts are CPU-seconds that the benchmark bills; a GPU sorts 10^8 keys in well under a
second. This module produces exactly the tables of :func:`zoo.ngram.count_tables` (same keys, same counts, so the
same KneserNeyLM), reading the ids a chunk at a time (a memory map is never copied whole):

1. every top-order n-gram is packed into one int64, first token in the highest bits (``bits`` per token), so
   numeric order is lexicographic order; each chunk is sorted and reduced to (unique keys, counts), and the
   partial tables are merged by one more sort and an index_add;
2. a lower order's k-grams are the prefixes of the (k+1)-gram keys (already sorted, so their rows come from
   unique_consecutive) plus the k-gram that starts at the last position; its continuation counts are the number
   of distinct (k+1)-grams with a given k-token suffix (sorted, counted, and looked up as sorted queries);
3. packed keys become zoo.ngram's ``context_id * V + word``: the context id is the rank of the k-gram's prefix
   among the sorted (k-1)-grams, and packed order equals zoo.ngram's (context id, word) order.

Memory: a chunk of ids, plus the unique top-order n-grams (at most one per position) a few times during merges.
When ``bits * order > 62`` the keys do not fit an int64 and :func:`count_tables_chunked` falls back to one shot.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from zoo.ngram import count_tables

DEFAULT_CHUNK_TOKENS = 1 << 24
PACKED_BITS = 62  # of an int64 key, leaving the sign bit and one spare
MERGE_FACTOR = 4  # partial tables are merged once they hold this many times the last merged size


def token_bits(vocab_size: int) -> int:
    return max(1, int(vocab_size - 1).bit_length())


def fits_packed(vocab_size: int, order: int) -> bool:
    return token_bits(vocab_size) * order <= PACKED_BITS


def max_packed_vocab(order: int) -> int:
    """The largest vocabulary whose ``order``-grams pack into one key."""
    return 1 << (PACKED_BITS // order)


def pack(window: torch.Tensor, length: int, order: int, bits: int) -> torch.Tensor:
    """Keys of the ``order``-grams starting at the first ``length`` positions of ``window`` (int64)."""
    keys = window[:length].clone()
    for j in range(1, order):
        keys = (keys << bits) | window[j : j + length]
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


def count_sorted(keys: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Unique keys of an unsorted tensor, sorted, with how often each occurs."""
    unique, counts = torch.unique_consecutive(sort_keys(keys), return_counts=True)
    return unique, counts.to(torch.int64)


def top_order_counts(ids: np.ndarray, order: int, bits: int, chunk_tokens: int, device: torch.device,
                     advanced: Callable[[int], object]):
    """(sorted unique packed n-gram keys, raw counts) over all len(ids) - order + 1 positions; ``advanced`` is
    told each chunk's length."""
    positions = len(ids) - order + 1
    parts: list[tuple[torch.Tensor, torch.Tensor]] = []
    merged_size = 0
    for start in range(0, positions, chunk_tokens):
        length = min(chunk_tokens, positions - start)
        window = torch.from_numpy(np.asarray(ids[start : start + length + order - 1], dtype=np.int64)).to(device)
        parts.append(count_sorted(pack(window, length, order, bits)))
        advanced(length)
        pending = sum(len(keys) for keys, _ in parts)
        if len(parts) > 1 and pending > MERGE_FACTOR * max(merged_size, chunk_tokens):
            parts = [merge(parts)]
            merged_size = len(parts[0][0])
    return merge(parts)


def merge(parts: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
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
    ``advanced`` is told how many positions each chunk counted (for progress).
    """
    if order < 1 or len(ids) < order:
        raise ValueError(f"need at least {order} ids and order >= 1 to count {order}-grams")
    if chunk_tokens < 1:
        raise ValueError(f"chunk_tokens must be positive, got {chunk_tokens}")
    if not fits_packed(vocab_size, order):
        return count_tables(np.asarray(ids, dtype=np.int64), order, vocab_size)
    device = torch.device(device)
    if order == 1:
        counts = torch.zeros(vocab_size, dtype=torch.int64, device=device)
        for start in range(0, len(ids), chunk_tokens):
            chunk = torch.from_numpy(np.asarray(ids[start : start + chunk_tokens], dtype=np.int64)).to(device)
            counts += torch.bincount(chunk, minlength=vocab_size)
        return [(np.arange(vocab_size, dtype=np.int64), counts.cpu().numpy())]
    bits = token_bits(vocab_size)
    keys, counts = top_order_counts(ids, order, bits, chunk_tokens, device, advanced)
    tables = []
    for k in range(order - 1, 0, -1):  # top down: each order needs the one above it
        tail = int(pack(torch.from_numpy(np.asarray(ids[len(ids) - k :], dtype=np.int64)), 1, k, bits))
        lower_keys, context_rows = lower_order(keys, tail, bits, vocab_size, k)
        word = keys & ((1 << bits) - 1)
        tables.append(((context_rows * vocab_size + word).cpu().numpy(), counts.cpu().numpy()))
        keys, counts = lower_keys, continuation_counts(keys, lower_keys, bits, k)
    tables.append((keys.cpu().numpy(), counts.cpu().numpy()))
    return tables[::-1]
