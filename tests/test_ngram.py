"""zoo.ngram: exact interpolated modified Kneser-Ney against a brute-force reference written from the formulas."""

from __future__ import annotations

import itertools
import math
from collections import Counter, defaultdict

import numpy as np
import pytest

from eval.errors import UserError
from subchar.lm import TokenLM
from zoo.ngram import KneserNeyLM
from zoo.train import train


def reference_discounts(counts: list[int]) -> tuple[float, float, float]:
    n = [sum(1 for c in counts if c == k) for k in (1, 2, 3, 4)]
    if 0 in n:
        return (0.5, 1.0, 1.5)
    y = n[0] / (n[0] + 2 * n[1])
    raw = [1 - 2 * y * n[1] / n[0], 2 - 3 * y * n[2] / n[1], 3 - 4 * y * n[3] / n[2]]
    return tuple(min(max(d, 0.01), k) for k, d in zip((1, 2, 3), raw))


class BruteForceKN:
    """Dictionaries of tuples, one formula per line (Chen & Goodman, interpolated, modified discounts).

    ``sequences``: token lists no n-gram spans (one text, or train text and an evaluated stream); ``discounts``:
    each order's (D1, D2, D3+), else estimated from the counts."""

    def __init__(self, sequences: list[list[int]], order: int, vocab_size: int, discounts: list | None = None):
        self.order, self.vocab_size = order, vocab_size
        self.counts: list[dict[tuple, int]] = []
        for k in range(1, order + 1):
            grams = [tuple(seq[i : i + k]) for seq in sequences for i in range(len(seq) - k + 1)]
            if k == order:
                self.counts.append(dict(Counter(grams)))
            else:
                left = defaultdict(set)
                for seq in sequences:
                    for i in range(1, len(seq) - k + 1):
                        left[tuple(seq[i : i + k])].add(seq[i - 1])
                self.counts.append({g: len(left[g]) for g in set(grams)})
        self.discounts = discounts or [reference_discounts([c for c in table.values() if c > 0]) for table in self.counts]

    def prob(self, history: tuple, word: int) -> float:
        history = history[len(history) - min(len(history), self.order - 1) :]
        return self._p(history, word)

    def _p(self, history: tuple, word: int) -> float:
        k = len(history) + 1
        lower = self._p(history[1:], word) if history else 1.0 / self.vocab_size
        table, (d1, d2, d3) = self.counts[k - 1], self.discounts[k - 1]
        following = {g[-1]: c for g, c in table.items() if g[:-1] == history and c > 0}
        total = sum(following.values())
        if total == 0:
            return lower
        discount = lambda c: d1 if c == 1 else d2 if c == 2 else d3  # noqa: E731
        gamma = sum(discount(c) for c in following.values()) / total
        c = following.get(word, 0)
        return max(c - discount(c), 0.0) / total * (c > 0) + gamma * lower


def test_hand_computed_bigram_values():
    # corpus a b a b c: bigrams ab x2, ba, bc; every count-of-count table is too small -> D = (0.5, 1, 1.5)
    lm = KneserNeyLM.fit(np.array([0, 1, 0, 1, 2]), vocab_size=3, order=2)
    assert lm.probs(()) == pytest.approx([1 / 3, 1 / 3, 1 / 3], abs=1e-15)
    assert lm.probs((1,)) == pytest.approx([5 / 12, 1 / 6, 5 / 12], abs=1e-15)
    assert lm.probs((0,)) == pytest.approx([1 / 6, 2 / 3, 1 / 6], abs=1e-15)
    assert lm.probs((2,)) == pytest.approx([1 / 3, 1 / 3, 1 / 3], abs=1e-15)  # context never followed by anything


@pytest.mark.parametrize("order,vocab_size,length,seed", [(3, 4, 400, 0), (4, 6, 600, 1), (5, 5, 2000, 2), (1, 3, 50, 3)])
def test_matches_brute_force_reference(order, vocab_size, length, seed):
    rng = np.random.default_rng(seed)
    # skewed draws so counts of 1..4 all occur; the top id never occurs (an out-of-train token)
    tokens = rng.choice(vocab_size - 1, size=length, p=np.linspace(2, 1, vocab_size - 1) / np.linspace(2, 1, vocab_size - 1).sum())
    lm = KneserNeyLM.fit(tokens, vocab_size, order)
    ref = BruteForceKN([tokens.tolist()], order, vocab_size)
    histories = [()] + [tuple(tokens[i : i + n]) for n in range(1, order) for i in range(0, 30, 7)]
    histories += [tuple(h) for h in itertools.product(range(vocab_size), repeat=min(order - 1, 2))][:20]
    for history in histories:
        state = lm.start()
        for token in history:
            state = lm.step(state, token)
        expected = [ref.prob(tuple(int(t) for t in history), w) for w in range(vocab_size)]
        np.testing.assert_allclose(lm.probs(state), expected, rtol=1e-12, atol=0)
        np.testing.assert_allclose(lm.logprobs(state), np.log(expected), rtol=1e-12)


def test_discounts_follow_count_of_counts():
    rng = np.random.default_rng(5)
    tokens = rng.choice(8, size=3000, p=np.arange(8, 0, -1) / 36)
    lm = KneserNeyLM.fit(tokens, 8, 3)
    ref = BruteForceKN([tokens.tolist()], 3, 8)
    for table, expected in zip(lm.tables, ref.discounts):
        assert tuple(table.discounts[1:]) == pytest.approx(expected, rel=1e-12)
    assert ref.discounts[2] != (0.5, 1.0, 1.5)  # the real estimates were exercised, not the fallback


def test_random_contexts_sum_to_one_and_cover_vocab():
    rng = np.random.default_rng(7)
    tokens = rng.integers(0, 50, size=5000)
    lm = KneserNeyLM.fit(tokens, vocab_size=64, order=4)
    assert isinstance(lm, TokenLM)
    for _ in range(100):
        state = lm.start()
        for token in rng.integers(0, 64, size=rng.integers(0, 6)):
            state = lm.step(state, token)
        probs = lm.probs(state)
        assert probs.shape == (64,) and probs.dtype == np.float64
        assert math.isclose(probs.sum(), 1.0, abs_tol=1e-12)
        assert (probs > 0).all()


def test_state_branching_and_cache_are_read_only():
    lm = KneserNeyLM.fit(np.array([0, 1, 2, 0, 1, 2, 1]), vocab_size=3, order=3)
    base = lm.step(lm.start(), 0)
    left, right = lm.step(base, 1), lm.step(base, 2)
    assert base == (0,) and left == (0, 1)
    assert right == (2,)  # "0 2" never occurs: the state keeps only the suffix the counts have seen
    assert np.array_equal(lm.probs(right), lm.probs((0, 2)))
    assert lm.step(left, 2) == (1, 2)  # keeps order - 1 tokens
    with pytest.raises(ValueError):
        lm.logprobs(left)[0] = 0.0


def test_save_load_round_trip(tmp_path):
    tokens = np.random.default_rng(3).integers(0, 9, size=500)
    lm = KneserNeyLM.fit(tokens, 10, 4)
    lm.save(tmp_path / "counts.npz")
    again = KneserNeyLM.load(tmp_path / "counts.npz")
    state = tuple(int(t) for t in tokens[:3])
    np.testing.assert_array_equal(lm.probs(state), again.probs(state))


@pytest.mark.parametrize(
    "tokens,vocab_size,order,message",
    [([0, 1, 5], 3, 2, "token ids must lie"), ([0, 1], 3, 3, "at least 3"), ([0, 1, 2], 3, 0, "order must be")],
)
def test_bad_input_is_a_value_error(tokens, vocab_size, order, message):
    with pytest.raises(ValueError, match=message):  # plain ValueError in the model file; UserError at the trainer
        KneserNeyLM.fit(np.array(tokens), vocab_size, order)


def test_the_trainer_turns_a_bad_order_into_a_user_error():
    with pytest.raises(UserError, match="order must be"):
        train("ngram", np.arange(32) % 3, 3, overrides={"order": 0})


def test_stepping_an_out_of_vocabulary_token_is_a_value_error():
    lm = KneserNeyLM.fit(np.array([0, 1, 2, 0]), vocab_size=3, order=2)
    with pytest.raises(ValueError, match="outside the model's vocabulary 0..2"):
        lm.step(lm.start(), 3)


def test_canonical_states_give_the_probabilities_of_the_full_history():
    """The state keeps only the longest suffix the counts have seen; the brute force sees the whole history."""
    rng = np.random.default_rng(11)
    tokens = rng.integers(0, 6, size=500)
    lm = KneserNeyLM.fit(tokens, vocab_size=8, order=5)
    ref = BruteForceKN([tokens.tolist()], 5, 8)
    shortened = 0
    for _ in range(20):
        state, history = lm.start(), ()
        for token in rng.integers(0, 8, size=rng.integers(1, 9)):
            state, history = lm.step(state, token), (*history, int(token))[-4:]
            assert history[len(history) - len(state):] == state
            shortened += len(state) < len(history)
            expected = [ref.prob(history, w) for w in range(8)]
            np.testing.assert_allclose(lm.probs(state), expected, rtol=1e-12, atol=0)
    assert shortened > 0  # unseen contexts (token 6 and 7 never occur) really were cut short
