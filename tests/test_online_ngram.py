"""zoo.online_ngram: what the model answers after learning a stream equals a brute-force recount of the train text
and the stream (the discounts held at the train counts'), at random points, through the adapter, and under both
evaluation engines."""

from __future__ import annotations

import numpy as np
import pytest

from eval.evaluate import evaluate
from subchar import CharAdapter
from subchar.batch_engine import batch_adapter
from test_adapter_exact import random_text, random_vocab
from test_ngram import BruteForceKN
from zoo.ngram import KneserNeyLM
from zoo.online_ngram import OnlineKneserNey


def skewed_tokens(rng: np.random.Generator, vocab_size: int, length: int, tilt: float) -> list[int]:
    weights = np.linspace(tilt, 1, vocab_size) ** 2
    return rng.choice(vocab_size, size=length, p=weights / weights.sum()).tolist()


def recount(base: KneserNeyLM, train: list[int], stream: list[int]) -> BruteForceKN:
    """The model counted from scratch over the train text and the stream, with the train discounts."""
    discounts = [tuple(table.discounts[1:]) for table in base.tables]
    return BruteForceKN([train, stream], base.order, base.vocab_size, discounts)


@pytest.mark.parametrize("order,vocab_size,seed", [(1, 5, 0), (2, 6, 1), (3, 7, 2), (4, 6, 3), (5, 9, 4)])
def test_learned_probabilities_equal_a_recount(order, vocab_size, seed):
    rng = np.random.default_rng(seed)
    train = skewed_tokens(rng, vocab_size - 1, 600, tilt=4.0)  # the last id never occurs in train
    stream = skewed_tokens(rng, vocab_size, 300, tilt=0.2)  # other statistics: many new n-grams, the unseen id
    base = KneserNeyLM.fit(np.array(train), vocab_size, order)
    lm = OnlineKneserNey(base)
    state, done = lm.start(), 0
    while done < len(stream):
        upto = min(len(stream), done + int(rng.integers(1, 9)))  # commits of 1..8 tokens
        state = lm.commit(state, stream[done:upto])
        done = upto
        if rng.random() > 0.3:
            continue
        reference = recount(base, train, stream[:done])
        for extra in ([], stream[done : done + 1], skewed_tokens(rng, vocab_size, order, tilt=1.0)):
            probe = state
            for token in extra:  # a covering explored past the commit point, not learned
                probe = lm.step(probe, token)
            history = tuple(stream[:done] + extra)
            expected = [reference.prob(history, word) for word in range(vocab_size)]
            np.testing.assert_allclose(lm.probs(probe), expected, rtol=1e-12, atol=1e-15)
            assert lm.probs(probe).sum() == pytest.approx(1.0, abs=1e-12)


def test_stale_states_are_refused_and_start_forgets():
    rng = np.random.default_rng(7)
    train = skewed_tokens(rng, 6, 400, tilt=3.0)
    base = KneserNeyLM.fit(np.array(train), 6, 3)
    lm = OnlineKneserNey(base)
    first = lm.start()
    assert lm.start() == first  # nothing learned: the same stream
    after = lm.commit(first, [1, 2, 1, 2])
    with pytest.raises(ValueError, match="before the model last learned"):
        lm.probs(first)
    assert not np.allclose(lm.probs(after), base.probs(base.step(base.step(base.start(), 1), 2)))
    fresh = lm.start()
    with pytest.raises(ValueError, match="before the model last learned"):
        lm.step(after, 1)
    np.testing.assert_array_equal(lm.probs(fresh), base.probs(base.start()))


class RecountLM:
    """A TokenLM over a brute-force recount: the distribution the online model should give at one point."""

    def __init__(self, reference: BruteForceKN) -> None:
        self.reference, self.vocab_size = reference, reference.vocab_size

    def start(self):
        return ()

    def step(self, state, token):
        return (*state, int(token))[-(self.reference.order - 1) :] if self.reference.order > 1 else ()

    def logprobs(self, state):
        return np.log([self.reference.prob(state, word) for word in range(self.vocab_size)])


@pytest.mark.parametrize("seed", [0, 1])
def test_adapter_over_a_learning_model_equals_a_recount_and_both_engines_agree(seed):
    tok = random_vocab(seed, 10)
    text = random_text(seed, 160)
    train = tok.encode(random_text(seed + 50, 400))
    base = KneserNeyLM.fit(np.array(train), tok.vocab_size, 3)
    adapter = CharAdapter(OnlineKneserNey(base), tok)
    rng = np.random.default_rng(seed)
    checked = 0
    for position, char in enumerate(text):
        if rng.random() < 0.15:  # a fresh adapter over the model recounted with what was committed so far
            static = CharAdapter(RecountLM(recount(base, train, list(adapter.committed))), tok)
            for seen in text[:position]:
                static.observe(seen)
            assert static.committed == adapter.committed
            got, want = adapter.distribution(), static.distribution()
            assert got.keys() == want.keys()
            assert [got[c] for c in want] == pytest.approx([want[c] for c in want], rel=1e-9, abs=1e-12)
            assert adapter.predict() == static.predict()
            checked += 1
        adapter.observe(char)
    assert checked >= 5 and adapter.diagnostics.commits > 10

    engine = batch_adapter(OnlineKneserNey(base), tok)
    stream = evaluate(engine, text, None, progress=False, engine="stream")
    batch = evaluate(engine, text, None, progress=False, engine="batch")
    assert batch.engine == "batch" and stream.engine == "stream"
    assert batch.correct == stream.correct and batch.bits_per_char == pytest.approx(stream.bits_per_char, rel=1e-12)
    static = evaluate(batch_adapter(base, tok), text, None, progress=False, engine="stream")
    assert stream.bits_per_char != static.bits_per_char  # learning changed the answers


def test_a_kept_stream_counts_as_a_second_train_sequence():
    rng = np.random.default_rng(11)
    train = skewed_tokens(rng, 7, 500, tilt=4.0)
    held, stream = skewed_tokens(rng, 8, 200, tilt=0.3), skewed_tokens(rng, 8, 120, tilt=0.5)
    base = KneserNeyLM.fit(np.array(train), 8, 4)
    lm = OnlineKneserNey(base)
    lm.commit(lm.start(), held)
    lm.keep()
    state = lm.commit(lm.start(), stream[:60])
    discounts = [tuple(table.discounts[1:]) for table in base.tables]
    reference = BruteForceKN([train, held, stream[:60]], 4, 8, discounts)  # three sequences no n-gram spans
    expected = [reference.prob(tuple(stream[:60]), word) for word in range(8)]
    np.testing.assert_allclose(lm.probs(state), expected, rtol=1e-12, atol=1e-15)
    frozen = OnlineKneserNey(base, learn=False)  # counts fixed: committing only steps
    frozen.commit(frozen.start(), held)
    start = frozen.start()
    after = frozen.commit(start, stream[:60])
    assert frozen.version == start[0]
    np.testing.assert_allclose(frozen.probs(after), [recount(base, train, []).prob(tuple(stream[:60]), w) for w in range(8)],
                               rtol=1e-12, atol=1e-15)
