"""The Transformer's shared-prefix KV cache: branches share one trunk, ``extend`` (teacher-forced appends, reuse of
a trunk that already continues, forks, bounded trunks) and batches over several trunks all equal teacher forcing,
stepped eagerly or through the padded buffers of ``zoo.step_graphs``."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import zoo.transformer
from test_models import ATOL, BLOCK, VOCAB, sharpened, teacher_forced
from zoo.streaming import TorchTokenLM

pytestmark = pytest.mark.usefixtures("one_torch_thread")
TOKENS = [int(t) for t in np.random.default_rng(5).integers(0, VOCAB, size=3 * BLOCK + 2)]


def rows(lm: TorchTokenLM, states) -> np.ndarray:
    return np.stack(lm.logprobs_many(states))


@pytest.fixture(params=["eager", "padded"])
def lm(request) -> TorchTokenLM:
    """Every test runs eagerly and through ``zoo.step_graphs``' padded static buffers (CUDA graphs without the
    capture: the padding, bucketing and buffer refills are what these tests can check on a CPU)."""
    model = sharpened("transformer", seed=4)
    if request.param == "padded":
        model.use_step_graphs(True, capture=False)
    return TorchTokenLM(model)


def test_branches_share_one_trunk_and_hold_only_their_own_tokens(lm):
    root = lm.states_along(lm.start(), TOKENS, [len(TOKENS)])[0]
    assert root.cache.chain == () and root.cache.length == len(TOKENS)
    a, b = lm.step_many([root, root], [1, 2])
    c = lm.step(a, 3)
    assert a.cache.trunk is b.cache.trunk is c.cache.trunk is root.cache.trunk
    assert len(a.cache.chain) == 1 and len(c.cache.chain) == 2 and c.cache.chain[0] is a.cache.chain[0]
    np.testing.assert_allclose(lm.logprobs(c), teacher_forced(lm.model, TOKENS + [1, 3])[-1], atol=ATOL, rtol=0)


@pytest.mark.parametrize("cut", [0, 1, BLOCK - 1, BLOCK, 2 * BLOCK + 1])
def test_states_along_equals_stepping_from_trunk_ends_middles_and_branches(lm, cut):
    """From the trunk's end (append), from inside it with the same tokens (reuse) or others (fork), and from a
    branch (fork with its chain): every state asked equals teacher forcing, and steps on from it equal too."""
    head, tail = TOKENS[:cut], TOKENS[cut:]
    expected = teacher_forced(lm.model, TOKENS)
    start = lm.states_along(lm.start(), head, [cut])[0]
    at = [0, 1, len(tail) // 2, len(tail)]
    along = lm.states_along(start, tail, at)
    assert along[0] is start
    for i, state in zip(at[1:], along[1:]):
        np.testing.assert_allclose(lm.logprobs(state), expected[cut + i - 1], atol=ATOL, rtol=0)
        assert state.length == cut + i
    again = lm.states_along(start, tail, [len(tail)])[0]  # the trunk continues with these tokens: reused
    assert again.cache.trunk is along[-1].cache.trunk and again.cache.length == along[-1].cache.length
    other = lm.states_along(start, [7, 8, 9], [3])[0]  # a different continuation: forked off
    np.testing.assert_allclose(lm.logprobs(other), teacher_forced(lm.model, head + [7, 8, 9])[-1], atol=ATOL, rtol=0)
    branch = lm.step(lm.step(start, 4), 5)  # from a branch: its chain's keys seed the fork
    from_branch = lm.states_along(branch, tail, [len(tail)])[0]
    np.testing.assert_allclose(lm.logprobs(from_branch), teacher_forced(lm.model, head + [4, 5] + tail)[-1],
                               atol=ATOL, rtol=0)
    stepped = lm.step(along[-1], 6)
    np.testing.assert_allclose(lm.logprobs(stepped), teacher_forced(lm.model, TOKENS + [6])[-1], atol=ATOL, rtol=0)


def commits_on_bounded_trunks(lm: TorchTokenLM, tokens: list[int], bound: int):
    """Commit ``tokens`` three at a time, as the adapter does, on trunks of at most ``bound`` positions (the
    model's MAX_TRUNK, set by the caller): every state equals teacher forcing, a new trunk starts only when the last
    could not take the commit, and more than one is used. Returns the last state."""
    state = lm.start()
    trunks = [state.cache.trunk]
    expected = teacher_forced(lm.model, tokens)
    for i in range(0, len(tokens), 3):
        commit = tokens[i : i + 3]
        before = state.cache.trunk
        state = lm.states_along(state, commit, [len(commit)])[0]
        if state.cache.trunk is not before:
            assert len(before.tokens) + len(commit) > bound
            trunks.append(state.cache.trunk)
        assert len(state.cache.trunk.tokens) <= bound
        np.testing.assert_allclose(lm.logprobs(state), expected[state.length - 1], atol=ATOL, rtol=0)
    assert len(trunks) > 1
    return state


def test_a_full_trunk_continues_on_a_new_one_seeded_with_the_window(lm, monkeypatch):
    monkeypatch.setattr(zoo.transformer, "MAX_TRUNK", 2 * BLOCK)
    commits_on_bounded_trunks(lm, TOKENS, 2 * BLOCK)


def test_one_batch_over_several_trunks_equals_stepping_each(lm):
    first = lm.states_along(lm.start(), TOKENS[:BLOCK + 3], [2, BLOCK + 3])
    other_trunk = lm.states_along(lm.start(), TOKENS[5:9], [4])[0]
    branch = lm.step(first[1], 9)
    states = [first[0], first[1], other_trunk, branch, lm.start()]
    tokens = [1, 2, 3, 4, 5]
    batched = lm.step_many(states, tokens)
    np.testing.assert_allclose(rows(lm, batched), rows(lm, [lm.step(s, t) for s, t in zip(states, tokens)]),
                               atol=1e-5, rtol=0)
    paths = [TOKENS[:2], TOKENS[:BLOCK + 3], TOKENS[5:9], TOKENS[:BLOCK + 3] + [9], []]
    for state, path, token in zip(batched, paths, tokens):
        np.testing.assert_allclose(lm.logprobs(state), teacher_forced(lm.model, path + [token])[-1], atol=ATOL, rtol=0)


def test_states_along_makes_log_probs_only_when_asked(lm):
    states = lm.states_along(lm.start(), TOKENS, [3, len(TOKENS)])
    assert all(state.logprobs is None for state in states)
    expected = teacher_forced(lm.model, TOKENS)
    np.testing.assert_allclose(rows(lm, states), expected[[2, len(TOKENS) - 1]], atol=ATOL, rtol=0)
    assert all(state.features is None and not state.logprobs.flags.writeable for state in states)


def test_steps_leave_the_trunk_untouched(lm):
    root = lm.states_along(lm.start(), TOKENS[:5], [5])[0]
    before = root.cache.trunk.kv[:, :, :, :5].clone()
    lm.step_many([root] * 3, [1, 2, 3])
    assert torch.equal(root.cache.trunk.kv[:, :, :, :5], before) and len(root.cache.trunk.tokens) == 5


def test_settle_moves_a_branch_onto_the_trunk_and_changes_nothing(lm):
    root = lm.states_along(lm.start(), TOKENS[:5], [5])[0]
    branch = lm.step(lm.step(root, 3), 4)
    settled = lm.settle(branch)
    trunk = root.cache.trunk
    assert settled.cache.chain == () and settled.cache.trunk is trunk and settled.cache.length == 7
    assert trunk.tokens[-2:] == [3, 4] and trunk.featured[-2:] == [False, False]
    np.testing.assert_array_equal(lm.logprobs(settled), lm.logprobs(branch))
    after = lm.step(settled, 9)
    np.testing.assert_allclose(lm.logprobs(after), lm.logprobs(lm.step(branch, 9)), atol=ATOL, rtol=0)
    np.testing.assert_allclose(lm.logprobs(after), teacher_forced(lm.model, TOKENS[:5] + [3, 4, 9])[-1], atol=ATOL,
                               rtol=0)
    again = lm.settle(lm.step(lm.step(root, 3), 4))  # the trunk already holds these tokens: nothing is copied
    assert again.cache.length == 7 and len(trunk.tokens) == 7
    other = lm.step(root, 5)  # the trunk continues with another token: it stays a branch
    assert lm.settle(other) is other
    forked = lm.states_along(root, [3, 4], [2])[0]  # settled positions have no features: extend forks
    assert forked.cache.trunk is not trunk
    np.testing.assert_allclose(lm.logprobs(forked), lm.logprobs(branch), atol=ATOL, rtol=0)


@pytest.mark.parametrize("span", [2, 4])
def test_branches_far_apart_on_one_trunk_read_a_window_each(lm, span, monkeypatch):
    """Rows whose windows span more than SHARED_SPAN * block_size of one trunk read a gathered window each; rows
    within it read one shared view (the batch engine's workers take neighbouring chunks). Both equal teacher
    forcing. With step graphs the shared view is at most 2 * block_size wide, whatever SHARED_SPAN."""
    monkeypatch.setattr(zoo.transformer, "SHARED_SPAN", span)
    far = lm.states_along(lm.start(), TOKENS, [1, 2, len(TOKENS)])
    branch = lm.step(far[2], 7)
    states, tokens = [far[0], far[1], far[2], branch], [4, 5, 6, 8]
    paths = [TOKENS[:1], TOKENS[:2], TOKENS, TOKENS + [7]]
    assert 2 * BLOCK + 2 < len(TOKENS) < 4 * BLOCK
    (_, _, read, _), = lm.model._trunk_groups([state.cache for state in states])
    shared = span == 4 and lm.model.step_graphs is None
    assert isinstance(read, tuple) == shared
    for path, token, after in zip(paths, tokens, lm.step_many(states, tokens)):
        np.testing.assert_allclose(lm.logprobs(after), teacher_forced(lm.model, path + [token])[-1], atol=ATOL, rtol=0)
    scrambled = [3, 0, 2, 1]  # rows out of position order: each keeps its own window and bias
    for k, after in zip(scrambled, lm.step_many([states[k] for k in scrambled], [tokens[k] for k in scrambled])):
        np.testing.assert_allclose(lm.logprobs(after), teacher_forced(lm.model, paths[k] + [tokens[k]])[-1],
                                   atol=ATOL, rtol=0)


def test_padded_buckets_round_rows_and_chains_up_and_equal_eager_steps():
    model = sharpened("transformer", seed=4)
    eager = TorchTokenLM(model)
    padded_model = sharpened("transformer", seed=4)
    padded_model.use_step_graphs(True, capture=False)
    padded = TorchTokenLM(padded_model)
    far = eager.states_along(eager.start(), TOKENS, [1, 2, len(TOKENS)])
    deep = eager.step(eager.step(eager.step(far[2], 7), 8), 9)  # a chain of 3
    cases = [
        ([far[0], far[1], far[2], deep, far[2]], [4, 5, 6, 8, 1]),  # rows far apart: a window each
        ([far[2], eager.step(far[2], 3), deep], [2, 3, 4]),  # near the trunk's end: one shared window
    ]
    for states, tokens in cases:
        stepped = padded.step_many(states, tokens)
        np.testing.assert_allclose(rows(padded, stepped), rows(eager, eager.step_many(states, tokens)), atol=1e-5,
                                   rtol=0)
        again = padded.step_many(stepped, tokens)  # chains made by the padded path step on
        np.testing.assert_allclose(rows(padded, again), rows(eager, eager.step_many(stepped, tokens)), atol=1e-5,
                                   rtol=0)
    assert set(padded_model.step_graphs.buckets) == {(False, 8, 4), (True, 4, 4)}  # 5 rows -> 8; chains 3, 4 -> 4
    assert set(padded_model.step_graphs.inputs) == {(False, 8), (True, 4)}
