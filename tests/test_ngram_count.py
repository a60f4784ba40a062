"""Chunked, sort-based n-gram counting on torch against zoo.ngram's one-shot numpy counting: identical tables, for
orders that pack into one int64 key and for those built order by order past it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from zoo import ngram_count
from zoo.ngram import KneserNeyLM, count_tables
from zoo.ngram_count import count_tables_chunked, fits_packed


def assert_same_tables(got, expected):
    assert len(got) == len(expected)
    for (keys, counts), (ref_keys, ref_counts) in zip(got, expected):
        assert keys.dtype == np.int64 and counts.dtype == np.int64
        np.testing.assert_array_equal(keys, ref_keys)
        np.testing.assert_array_equal(counts, ref_counts)


@pytest.mark.parametrize("order", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("chunk_tokens", [1, 2, 5, 64, 10_000])
def test_chunked_counts_equal_one_shot(order, chunk_tokens):
    rng = np.random.default_rng(order * 100 + chunk_tokens)
    vocab = 37
    # a Zipf-ish stream with repeats, so counts of 1..4+ and shared contexts all occur
    ids = np.minimum(rng.zipf(1.3, 3000 if chunk_tokens > 5 else 200), vocab) - 1
    assert_same_tables(count_tables_chunked(ids, order, vocab, chunk_tokens=chunk_tokens),
                       count_tables(ids.astype(np.int64), order, vocab))


@pytest.mark.parametrize("ids", [[0, 0, 0, 0], [3, 1, 2], [1, 2, 1, 2, 1, 2, 1], [4, 4, 0, 4, 4, 0, 4]])
@pytest.mark.parametrize("order", [1, 2, 3])
def test_edge_sequences(ids, order):
    tokens = np.array(ids, dtype=np.uint16)  # a memory map's dtype, not int64
    for chunk_tokens in (1, 2, 3, 100):
        assert_same_tables(count_tables_chunked(tokens, order, 5, chunk_tokens=chunk_tokens),
                           count_tables(tokens.astype(np.int64), order, 5))


def test_merges_of_partial_tables_and_a_memmap(tmp_path, monkeypatch):
    monkeypatch.setattr(ngram_count, "MERGE_FACTOR", 1)  # merge after almost every chunk
    rng = np.random.default_rng(7)
    ids = rng.integers(0, 300, 20_000).astype(np.uint16)
    ids[5000:9000] = ids[:4000]  # long repeats: counts well above 1
    path = tmp_path / "ids.uint16"
    ids.tofile(path)
    mapped = np.memmap(path, dtype=np.uint16, mode="r")
    expected = count_tables(ids.astype(np.int64), 4, 300)
    assert_same_tables(count_tables_chunked(mapped, 4, 300, chunk_tokens=999), expected)


def test_language_model_from_chunked_counts_equals_fit():
    rng = np.random.default_rng(3)
    ids = np.minimum(rng.zipf(1.2, 5000), 60) - 1
    fitted = KneserNeyLM.fit(ids, 60, 4)
    chunked = KneserNeyLM(count_tables_chunked(ids, 4, 60, chunk_tokens=333), 60)
    for history in ([], [0], [0, 1], [1, 0, 2], [59, 59, 59], list(ids[100:103])):
        state_fit, state_chunked = fitted.start(), chunked.start()
        for token in history:
            state_fit, state_chunked = fitted.step(state_fit, int(token)), chunked.step(state_chunked, int(token))
        assert state_fit == state_chunked
        np.testing.assert_array_equal(fitted.probs(state_fit), chunked.probs(state_chunked))


def stream(rng: np.random.Generator, length: int, vocab: int) -> np.ndarray:
    """A Zipf-ish stream over the whole vocabulary whose second half repeats its first, so that long n-grams recur
    (counts above 1, shared contexts) and rare ids near the top of the vocabulary occur too."""
    half = np.minimum(rng.zipf(1.2, (length + 1) // 2), vocab) - 1
    half[::5] = rng.integers(0, vocab, len(half[::5]))
    return np.concatenate([half, half])[:length]


@pytest.mark.parametrize("order", range(1, 13))
@pytest.mark.parametrize("vocab", [300, 1000])  # 9 and 10 bits a token: no order above 6 packs into one key
@pytest.mark.parametrize("chunk_tokens", [1, 2, 7, 4096])
def test_orders_that_do_not_pack_equal_one_shot(order, vocab, chunk_tokens):
    assert fits_packed(vocab, order) == (order <= 6)
    rng = np.random.default_rng(order * 1000 + vocab + chunk_tokens)
    ids = stream(rng, 90 if chunk_tokens < 10 else 5000, vocab).astype(np.uint16)
    assert_same_tables(count_tables_chunked(ids, order, vocab, chunk_tokens=chunk_tokens),
                       count_tables(ids.astype(np.int64), order, vocab))


@pytest.mark.parametrize("ids", [[7] * 12, [7] * 13, [299, 0] * 9, [1, 2, 3] * 5 + [1], list(range(12)), [4] * 30])
@pytest.mark.parametrize("order", [8, 11, 12])
def test_short_and_repetitive_texts_past_the_packing(ids, order):
    """Texts as long as the order or barely longer, single repeated ids and short periods."""
    tokens = np.array(ids, dtype=np.uint16)
    if len(tokens) < order:
        with pytest.raises(ValueError, match=f"at least {order}"):
            count_tables_chunked(tokens, order, 300)
        return
    for chunk_tokens in (1, 2, 7, 100):
        assert_same_tables(count_tables_chunked(tokens, order, 300, chunk_tokens=chunk_tokens),
                           count_tables(tokens.astype(np.int64), order, 300))


@pytest.mark.parametrize("packed_bits", [9, 18, 40])  # with 9-bit ids: the orders packed below the chain are 1, 2, 4
@pytest.mark.parametrize("order", [2, 3, 5, 9])
def test_every_base_order_of_the_chain(order, packed_bits, monkeypatch):
    monkeypatch.setattr(ngram_count, "PACKED_BITS", packed_bits)
    ids = stream(np.random.default_rng(order), 700, 300)
    for chunk_tokens in (3, 256):
        assert_same_tables(count_tables_chunked(ids, order, 300, chunk_tokens=chunk_tokens),
                           count_tables(ids.astype(np.int64), order, 300))


def test_chain_through_temporary_files_with_merges_and_a_memmap(tmp_path, monkeypatch):
    monkeypatch.setattr(ngram_count, "SPILL_BYTES", 0)  # every per-position id column goes to a file
    monkeypatch.setattr(ngram_count, "MERGE_FACTOR", 1)
    ids = stream(np.random.default_rng(9), 20_000, 1000).astype(np.uint16)
    path = tmp_path / "ids.uint16"
    ids.tofile(path)
    mapped = np.memmap(path, dtype=np.uint16, mode="r")
    assert_same_tables(count_tables_chunked(mapped, 11, 1000, chunk_tokens=999),
                       count_tables(ids.astype(np.int64), 11, 1000))


@pytest.mark.parametrize("order, vocab", [(1, 300), (4, 300), (6, 1000), (7, 1000), (11, 300)])
def test_progress_adds_up_to_the_ids(order, vocab):
    """Callers size their progress bar to len(ids), however many passes a count makes."""
    ids = stream(np.random.default_rng(2), 1001, vocab)
    told: list[int] = []
    count_tables_chunked(ids, order, vocab, chunk_tokens=100, advanced=told.append)
    assert sum(told) == len(ids) and min(told) > 0 and len(told) >= 10


def test_language_model_from_chained_counts_equals_fit():
    ids = stream(np.random.default_rng(4), 4000, 300)
    fitted = KneserNeyLM.fit(ids, 300, 9)
    chunked = KneserNeyLM(count_tables_chunked(ids, 9, 300, chunk_tokens=333), 300)
    for history in ([], [0], list(ids[10:18]), list(ids[2500:2508]), [299] * 8):
        state_fit, state_chunked = fitted.start(), chunked.start()
        for token in history:
            state_fit, state_chunked = fitted.step(state_fit, int(token)), chunked.step(state_chunked, int(token))
        assert state_fit == state_chunked
        np.testing.assert_array_equal(fitted.probs(state_fit), chunked.probs(state_chunked))


def test_bad_input():
    with pytest.raises(ValueError, match="at least 3"):
        count_tables_chunked(np.array([1, 2]), 3, 5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("order, vocab", [(4, 4096), (11, 1000)])  # packed, chained
def test_cuda_counts_equal_cpu(order, vocab):
    ids = stream(np.random.default_rng(1), 200_000, vocab)
    assert_same_tables(count_tables_chunked(ids, order, vocab, device="cuda", chunk_tokens=50_000),
                       count_tables(ids.astype(np.int64), order, vocab))
