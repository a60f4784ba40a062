"""Batched LM calls: each model's ``step_many`` equals per-state ``step`` (and teacher forcing), and the adapter
gives the same answers through a batched LM while asking it far less often."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from subchar import CharAdapter
from subchar.batch_engine import batch_adapter
from subchar.lm import states_along
from test_adapter_exact import random_text, random_vocab
from test_adapter_reference import RandomTrigramLM
from test_models import ATOL, BLOCK, NEURAL, VOCAB, sharpened, teacher_forced
from zoo.ngram import KneserNeyLM
from zoo.streaming import TorchTokenLM


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.parametrize("name", NEURAL)
def test_step_many_equals_step_on_a_tree_of_branches(name):
    """Branches of different lengths (some past block_size) stepped in one batch, then stepped again in a
    second batch from the batch's own outputs: every row equals the per-state path and teacher forcing."""
    model = sharpened(name, seed=3)
    lm = TorchTokenLM(model)
    rng = np.random.default_rng(0)
    paths = [list(rng.integers(0, VOCAB, size=n)) for n in (0, 1, 3, BLOCK - 1, BLOCK, BLOCK + 3, 2 * BLOCK + 1)]
    states = []
    for path in paths:
        state = lm.start()
        for token in path:
            state = lm.step(state, int(token))
        states.append(state)
    tokens = [int(t) for t in rng.integers(0, VOCAB, size=len(paths))]
    batched = lm.step_many(states, tokens)
    again = lm.step_many(batched, tokens[::-1])
    for state, path, token, once, twice, last in zip(states, paths, tokens, batched, again, tokens[::-1]):
        np.testing.assert_allclose(once.logprobs, lm.step(state, token).logprobs, atol=ATOL, rtol=0)
        np.testing.assert_allclose(once.logprobs, teacher_forced(model, path + [token])[-1], atol=ATOL, rtol=0)
        np.testing.assert_allclose(twice.logprobs, teacher_forced(model, path + [token, last])[-1], atol=ATOL, rtol=0)
        np.testing.assert_allclose(lm.step(once, last).logprobs, twice.logprobs, atol=ATOL, rtol=0)
        assert once.length == len(path) + 1 and twice.length == len(path) + 2
    # the input states are left valid (branching): stepping them again gives the same rows
    np.testing.assert_allclose(lm.step_many(states, tokens)[-1].logprobs, batched[-1].logprobs, atol=1e-12)


def test_threads_are_set_around_each_call_and_restored():
    torch.set_num_threads(2)
    model = sharpened("transformer")
    seen = []
    step = model.step_batch

    def spy(caches, tokens):
        seen.append(torch.get_num_threads())
        return step(caches, tokens)

    model.step_batch = spy  # before the LM reads the network's parts
    lm = TorchTokenLM(model, threads=1)
    lm.step_many([lm.start()], [1])
    assert seen == [1] and torch.get_num_threads() == 2


class BatchedLM(RandomTrigramLM):
    """The random LM with batched methods that count their calls (and answer exactly like the per-state ones)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.batches: list[int] = []

    def step_many(self, states, tokens):
        self.batches.append(len(states))
        return [self.step(s, t) for s, t in zip(states, tokens)]

    def logprobs_many(self, states):
        self.batches.append(len(states))
        return np.stack([self.logprobs(s) for s in states])


@pytest.mark.parametrize("beam", [None, 3])
@pytest.mark.parametrize("seed", [0, 7, 42])
def test_adapter_through_a_batched_lm_gives_identical_answers(seed, beam):
    tok = random_vocab(seed, 10)
    plain = CharAdapter(RandomTrigramLM(tok.vocab_size, seed), tok, mode="exact", beam=beam)
    batched_lm = BatchedLM(tok.vocab_size, seed)
    batched = CharAdapter(batched_lm, tok, mode="exact", beam=beam)
    for char in random_text(seed, 40):
        assert batched.distribution() == plain.distribution()
        assert batched.predict() == plain.predict()
        plain.observe(char)
        batched.observe(char)
    assert batched.committed == plain.committed
    assert batched.diagnostics.lm_logprobs_calls == plain.diagnostics.lm_logprobs_calls
    assert batched.diagnostics.lm_step_calls >= plain.diagnostics.lm_step_calls  # expansions stepped ahead
    assert max(batched_lm.batches) > 1 and len(batched_lm.batches) < batched.diagnostics.lm_calls


class PerState:
    """``lm`` without its batched methods: the adapter falls back to one call per state."""

    def __init__(self, lm) -> None:
        self.lm, self.vocab_size = lm, lm.vocab_size
        self.start, self.step, self.logprobs = lm.start, lm.step, lm.logprobs


@pytest.mark.parametrize("name", NEURAL)
def test_adapter_over_a_neural_lm_batches_its_steps(name):
    """Same distributions (to float tolerance) whether the model steps one branch at a time or in batches."""
    tok = random_vocab(11, VOCAB - 9)
    assert tok.vocab_size == VOCAB
    lm = TorchTokenLM(sharpened(name, seed=2))
    batched = CharAdapter(lm, tok, mode="exact", beam=4)
    single = CharAdapter(PerState(lm), tok, mode="exact", beam=4)
    for char in random_text(11, 3 * BLOCK):
        got, want = batched.distribution(), single.distribution()
        assert got.keys() == want.keys()
        assert max(abs(got[c] - want[c]) for c in want) < 1e-5
        batched.observe(char)
        single.observe(char)
    assert batched.committed == single.committed
    assert batched.diagnostics.lm_step_calls >= single.diagnostics.lm_step_calls  # expansions stepped ahead
    assert batched.diagnostics.lm_batched_calls < batched.diagnostics.lm_calls  # some calls held many states


def test_states_along_falls_back_to_steps_for_lms_without_it():
    lm = RandomTrigramLM(20, 1)
    tokens = [3, 7, 7, 1, 0]
    got = states_along(lm, lm.start(), tokens, [4, 0, 2, 5])
    state, want = lm.start(), {0: lm.start()}
    for i, token in enumerate(tokens, start=1):
        state = want[i] = lm.step(state, token)
    assert got == [want[4], want[0], want[2], want[5]]


class WithoutSettle:
    """A TokenLM seen without ``settle``: a commit whose steps are remembered keeps the covering's state as it is."""

    def __init__(self, lm) -> None:
        self.vocab_size = lm.vocab_size
        self.start, self.step, self.logprobs = lm.start, lm.step, lm.logprobs
        self.step_many, self.logprobs_many, self.states_along = lm.step_many, lm.logprobs_many, lm.states_along


def test_commits_settle_the_remembered_state_and_answer_the_same():
    """A commit reuses the canonical covering's state (its steps are remembered, so the respelling after it is too);
    settling moves that state onto the trunk, so branches stay a few tokens long instead of growing with the text."""
    tok = random_vocab(11, VOCAB - 9)
    lm = TorchTokenLM(sharpened("transformer", seed=2).double())
    settled, kept = CharAdapter(lm, tok, mode="exact", beam=3), CharAdapter(WithoutSettle(lm), tok, mode="exact", beam=3)
    longest = {id(settled): 0, id(kept): 0}
    for char in random_text(3, 80):
        assert settled.predict() == kept.predict()
        a, b = settled.distribution(), kept.distribution()
        assert set(a) == set(b) and max(abs(a[c] - b[c]) for c in a) < 1e-9
        for adapter in (settled, kept):
            adapter.observe(char)
            longest[id(adapter)] = max(longest[id(adapter)], len(adapter._root.state.cache.chain))
    assert settled.diagnostics.commits == kept.diagnostics.commits > 5
    assert longest[id(settled)] == 0 and longest[id(kept)] > 10  # the commit point is a trunk position
    assert settled.diagnostics.lm_step_calls == kept.diagnostics.lm_step_calls  # remembered steps either way


class LogprobsOnly:
    """A TokenLM seen without ``probs_many``: the adapter exponentiates its log-probabilities."""

    def __init__(self, lm) -> None:
        self.vocab_size = lm.vocab_size
        self.start, self.step, self.logprobs = lm.start, lm.step, lm.logprobs


class BatchedNgram(KneserNeyLM):
    """The n-gram with a batched step: the batch engine then steps it through a ``Cohort`` of workers."""

    def step_many(self, states, tokens):
        return [self.step(state, token) for state, token in zip(states, tokens)]


@pytest.mark.parametrize("beam", [None, 3])
def test_an_lm_with_probabilities_is_read_through_them_and_answers_the_same(beam):
    """The n-gram hands out P (``probs_many``): the adapter never asks it for log P, so it never takes a log nor
    the adapter an exp, and every answer equals the log-probability path's to rounding, in both engines."""
    tok = random_vocab(11, 14)
    tables = KneserNeyLM.fit(np.asarray(tok.encode(random_text(5, 300)), dtype=np.int64), tok.vocab_size, order=3)
    fresh = lambda kind=KneserNeyLM: kind([(t.keys, t.counts) for t in tables.tables], tok.vocab_size)  # noqa: E731
    direct, batched = fresh(), fresh(BatchedNgram)
    text = random_text(3, 60) + "z €é a" + random_text(8, 40)  # z: no token spells it
    a, b = batch_adapter(direct, tok, beam=beam), batch_adapter(LogprobsOnly(fresh()), tok, beam=beam)
    for char in text:
        assert a.predict() == b.predict()
        got, want = a.distribution(), b.distribution()
        assert got.keys() == want.keys() and max(abs(got[c] - want[c]) for c in want) < 1e-12
        a.observe(char)
        b.observe(char)
    assert a.committed == b.committed and a.diagnostics.expansions > 0
    guesses = b.batch_scores(text, processes=1)[0]
    assert a.batch_scores(text, processes=1)[0] == guesses
    assert batch_adapter(batched, tok, beam=beam).batch_scores(text, processes=1)[0] == guesses
    for lm in (direct, batched):
        assert lm._cache and all(logprobs is None for _, logprobs in lm._cache.values())
