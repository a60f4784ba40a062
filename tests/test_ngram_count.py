"""Chunked, sort-based n-gram counting on torch against zoo.ngram's one-shot numpy counting: identical tables."""

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


def test_too_wide_keys_fall_back_to_one_shot():
    assert fits_packed(16_384, 4) and not fits_packed(65_536, 4)
    ids = np.arange(200) % 70_000
    assert_same_tables(count_tables_chunked(ids, 4, 70_000), count_tables(ids.astype(np.int64), 4, 70_000))


def test_bad_input():
    with pytest.raises(ValueError, match="at least 3"):
        count_tables_chunked(np.array([1, 2]), 3, 5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_counts_equal_cpu():
    ids = np.random.default_rng(1).integers(0, 4096, 200_000)
    assert_same_tables(count_tables_chunked(ids, 4, 4096, device="cuda", chunk_tokens=50_000),
                       count_tables(ids.astype(np.int64), 4, 4096))
