"""Hyena's shared-history cache (``zoo.hyena_trunk``): branches off one trunk, futures that run out and are
recomputed, settles, forks, bounded trunks and batches over several trunks all equal teacher forcing."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import zoo.hyena
import zoo.hyena_trunk
from test_kv_tree import commits_on_bounded_trunks
from test_models import ATOL, BLOCK, VOCAB, sharpened, teacher_forced
from zoo.streaming import TorchTokenLM

pytestmark = pytest.mark.usefixtures("one_torch_thread")
TOKENS = [int(t) for t in np.random.default_rng(7).integers(0, VOCAB, size=3 * BLOCK + 2)]


@pytest.fixture(params=[3, zoo.hyena_trunk.FUTURE])
def lm(request, monkeypatch) -> TorchTokenLM:
    """With the default future (longer than the tiny filters) and with one that runs out every three steps."""
    monkeypatch.setattr(zoo.hyena_trunk, "FUTURE", request.param)
    return TorchTokenLM(sharpened("hyena", seed=3))


def expect(lm: TorchTokenLM, state, path: list[int]) -> None:
    np.testing.assert_allclose(lm.logprobs(state), teacher_forced(lm.model, path)[-1], atol=ATOL, rtol=0)


def test_branches_share_one_trunk_and_carry_only_their_own_inputs(lm):
    root = lm.states_along(lm.start(), TOKENS, [len(TOKENS)])[0]
    assert root.cache.chain == () and root.cache.ahead is None and root.cache.pos == len(TOKENS)
    a, b = lm.step_many([root, root], [1, 2])
    c = lm.step(a, 3)
    assert a.cache.trunk is b.cache.trunk is c.cache.trunk is root.cache.trunk
    assert len(c.cache.chain) == 2 and c.cache.chain[0] is a.cache.chain[0]
    assert root.cache.ahead.valid == zoo.hyena_trunk.FUTURE  # filled in once, for the next steps from it
    assert c.cache.ahead.valid == zoo.hyena_trunk.FUTURE - 2
    expect(lm, b, TOKENS + [2])
    expect(lm, c, TOKENS + [1, 3])


def test_a_long_chain_recomputes_its_future_and_equals_teacher_forcing(lm):
    """Stepped token by token from the empty state, past block_size: the future runs out every FUTURE steps and
    is recomputed from the trunk's zeros and the chain."""
    state, path = lm.start(), []
    for token in TOKENS:
        state = lm.step(state, token)
        path.append(token)
        expect(lm, state, path)
    assert len(state.cache.chain) == len(TOKENS)


@pytest.mark.parametrize("cut", [0, 1, BLOCK - 1, BLOCK, 2 * BLOCK + 1])
def test_states_along_equals_stepping_from_trunk_ends_middles_and_branches(lm, cut):
    """From the trunk's end (append), from inside it (fork) and from a branch (fork seeded with its chain)."""
    head, tail = TOKENS[:cut], TOKENS[cut:]
    start = lm.states_along(lm.start(), head, [cut])[0]
    at = [0, 1, len(tail) // 2, len(tail)]
    along = lm.states_along(start, tail, at)
    assert along[0] is start and along[-1].cache.trunk is start.cache.trunk
    expected = teacher_forced(lm.model, TOKENS)
    for i, state in zip(at[1:], along[1:]):
        np.testing.assert_allclose(lm.logprobs(state), expected[cut + i - 1], atol=ATOL, rtol=0)
    other = lm.states_along(start, [7, 8, 9], [3])[0]  # the trunk continues otherwise: forked off
    assert other.cache.trunk is not start.cache.trunk
    expect(lm, other, head + [7, 8, 9])
    branch = lm.step(lm.step(start, 4), 5)
    expect(lm, lm.states_along(branch, tail, [len(tail)])[0], head + [4, 5] + tail)
    expect(lm, lm.step(along[-1], 6), TOKENS + [6])
    expect(lm, lm.step(other, 6), head + [7, 8, 9, 6])


def test_settle_moves_a_branch_onto_the_trunk_and_changes_nothing(lm):
    root = lm.states_along(lm.start(), TOKENS[:5], [5])[0]
    trunk = root.cache.trunk
    branch = lm.step(lm.step(root, 3), 4)
    settled = lm.settle(branch)
    assert settled.cache.chain == () and settled.cache.trunk is trunk and settled.cache.length == 7
    assert trunk.tokens[-2:] == [3, 4]
    np.testing.assert_array_equal(lm.logprobs(settled), lm.logprobs(branch))
    after = lm.step(settled, 9)
    np.testing.assert_allclose(lm.logprobs(after), lm.logprobs(lm.step(branch, 9)), atol=ATOL, rtol=0)
    expect(lm, after, TOKENS[:5] + [3, 4, 9])
    for _ in range(4):  # past every future: recomputed from the settled inputs on the trunk
        after = lm.step(after, 1)
    expect(lm, after, TOKENS[:5] + [3, 4, 9] + [1] * 4)
    again = lm.settle(lm.step(lm.step(root, 3), 4))  # the trunk already holds these tokens: nothing is copied
    assert again.cache.length == 7 and again.cache.chain == () and len(trunk.tokens) == 7
    other = lm.step(root, 5)  # the trunk continues with another token: it stays a branch
    assert lm.settle(other) is other
    expect(lm, lm.step(lm.step(other, 2), 2), TOKENS[:5] + [5, 2, 2])


def test_a_recomputed_future_is_kept_by_the_state_asked(lm):
    """A state whose future ran out gets a fresh one when stepped from, kept for its next steps, also when its
    chain was since taken by the trunk (the step reads it rebased)."""
    root = lm.states_along(lm.start(), TOKENS[:5], [5])[0]
    state = root
    for token in range(1, zoo.hyena_trunk.FUTURE + 1):
        state = lm.step(state, token)
    assert state.cache.ahead.valid == 0
    lm.settle(lm.step(root, 1))  # the trunk now continues with the chain's first token
    after = lm.step(state, 9)
    assert state.cache.ahead.valid == zoo.hyena_trunk.FUTURE and after.cache.ahead.valid == zoo.hyena_trunk.FUTURE - 1
    expect(lm, after, TOKENS[:5] + list(range(1, zoo.hyena_trunk.FUTURE + 1)) + [9])


def test_steps_leave_the_trunk_untouched(lm):
    root = lm.states_along(lm.start(), TOKENS[:5], [5])[0]
    trunk = root.cache.trunk
    before = trunk.long.clone(), trunk.short.clone()
    lm.step_many([root] * 3, [1, 2, 3])
    assert torch.equal(trunk.long, before[0]) and torch.equal(trunk.short, before[1]) and len(trunk.tokens) == 5


def test_a_full_trunk_continues_on_a_new_one_seeded_with_the_window(lm, monkeypatch):
    monkeypatch.setattr(zoo.hyena, "MAX_TRUNK", 2 * BLOCK)
    state = commits_on_bounded_trunks(lm, TOKENS, 2 * BLOCK)
    expect(lm, lm.step(state, 2), TOKENS + [2])


def test_one_batch_over_several_trunks_equals_stepping_each(lm):
    first = lm.states_along(lm.start(), TOKENS[: BLOCK + 3], [2, BLOCK + 3])
    other_trunk = lm.states_along(lm.start(), TOKENS[5:9], [4])[0]
    branch = lm.step(lm.step(lm.step(first[1], 9), 8), 7)
    states = [first[0], first[1], other_trunk, branch, lm.start(), first[1]]
    tokens = [1, 2, 3, 4, 5, 6]
    batched = lm.step_many(states, tokens)
    paths = [TOKENS[:2], TOKENS[: BLOCK + 3], TOKENS[5:9], TOKENS[: BLOCK + 3] + [9, 8, 7], [], TOKENS[: BLOCK + 3]]
    for state, path, token in zip(batched, paths, tokens):
        expect(lm, state, path + [token])


def test_a_filter_shorter_than_the_short_conv_streams_and_extends_exactly():
    """block_size 2 with the short conv's 3 taps: the trunk keeps what the wider of the two convolutions sees."""
    lm = TorchTokenLM(sharpened("hyena", seed=5, block_size=2))
    state, path = lm.start(), []
    for token in TOKENS[:9]:
        state = lm.step(state, token)
        path.append(token)
        expect(lm, state, path)
    along = lm.states_along(lm.start(), TOKENS, [4, len(TOKENS)])
    expect(lm, along[0], TOKENS[:4])
    expect(lm, lm.step(lm.states_along(along[0], [5, 6], [2])[0], 7), TOKENS[:4] + [5, 6, 7])  # a fork
