"""The recurrent models' teacher-forced ``extend`` equals stepping token by token: from an empty cache and from
caches past block_size, across chunk boundaries, through the caches it returns (they step on to the same
log-probs) and through ``head`` (the logits at the asked positions); and ``TorchTokenLM.states_along`` with it."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from test_models import ATOL, BLOCK, VOCAB, sharpened, teacher_forced
from zoo import hyena, mamba
from zoo.streaming import TorchTokenLM


pytestmark = pytest.mark.usefixtures("one_torch_thread")

RECURRENT = {"mamba": mamba, "hyena": hyena}
CHUNK = 5  # small chunks, so the passes below cross several chunk boundaries


def tokens_of(seed: int, n: int) -> list[int]:
    return torch.randint(0, VOCAB, (n,), generator=torch.Generator().manual_seed(seed)).tolist()


def stepped(model, cache, tokens):
    """The caches and log-probs after each token, one ``step`` at a time."""
    caches, rows = [], []
    for token in tokens:
        logits, cache = model.step(cache, token)
        caches.append(cache)
        rows.append(torch.log_softmax(logits.double(), dim=-1).numpy())
    return caches, rows


def cache_shapes(part) -> list[tuple[int, ...]]:
    """The shapes of a cache's tensors, in order."""
    if isinstance(part, torch.Tensor):
        return [tuple(part.shape)]
    if dataclasses.is_dataclass(part):
        part = [getattr(part, field.name) for field in dataclasses.fields(part)]
    return [shape for item in part for shape in cache_shapes(item)]


@pytest.mark.parametrize("name", RECURRENT)
@pytest.mark.parametrize("prefix", [0, 3, BLOCK + 2, 2 * BLOCK + 1])  # from empty, within and past block_size
def test_extend_equals_stepping(name, prefix, monkeypatch):
    monkeypatch.setattr(RECURRENT[name], "EXTEND_CHUNK", CHUNK)
    model = sharpened(name, seed=4)
    before, tokens = tokens_of(1, prefix), tokens_of(2, 3 * BLOCK + 3)
    cache = model.empty_cache()
    for token in before:
        cache = model.step(cache, token)[1]
    at = [1, 2, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK, BLOCK + 1, 2 * BLOCK + 3, len(tokens) - 1]
    features, caches = model.extend(cache, tokens, at)
    want_caches, want_rows = stepped(model, cache, tokens)
    assert features.shape == (len(at), features.size(1)) and len(caches) == len(at)
    got_rows = torch.log_softmax(model.head(features).double(), dim=-1).numpy()
    following = tokens_of(3, len(at))
    for i, row, got, token in zip(at, got_rows, caches, following):
        want = want_caches[i - 1]
        np.testing.assert_allclose(row, want_rows[i - 1], atol=ATOL, rtol=0)
        np.testing.assert_allclose(row, teacher_forced(model, before + tokens[:i])[-1], atol=ATOL, rtol=0)
        if name == "mamba":
            assert cache_shapes(got) == cache_shapes(want)  # same state shapes as stepping
        else:  # hyena: a position of the trunk the pass wrote, as many tokens seen as stepping
            assert got.chain == () and got.trunk is caches[0].trunk and got.pos == want.pos
        on, want_on = model.step(got, token)[0], model.step(want, token)[0]
        np.testing.assert_allclose(on.numpy(), want_on.numpy(), atol=ATOL, rtol=0)
    # a returned cache extends on (the adapter's next commit starts from the last one)
    more = tokens_of(5, 2 * CHUNK + 1)
    again, _ = model.extend(caches[-1], more, [1, len(more)])
    _, rows = stepped(model, want_caches[at[-1] - 1], more)
    np.testing.assert_allclose(torch.log_softmax(model.head(again).double(), -1).numpy(), [rows[0], rows[-1]],
                               atol=ATOL, rtol=0)


@pytest.mark.parametrize("name", RECURRENT)
def test_extend_with_nothing_asked_makes_nothing(name):
    model = sharpened(name)
    features, caches = model.extend(model.empty_cache(), [1, 2, 3], [])
    assert features.shape == (0, features.size(1)) and caches == []


@pytest.mark.parametrize("name", RECURRENT)
def test_states_along_equals_stepping(name, monkeypatch):
    """``TorchTokenLM`` runs ``extend`` (lazy log-probs from ``head``) and gives the stepped states' answers."""
    monkeypatch.setattr(RECURRENT[name], "EXTEND_CHUNK", CHUNK)
    model = sharpened(name, seed=6)
    lm = TorchTokenLM(model)
    state = lm.start()
    for token in tokens_of(7, BLOCK + 1):
        state = lm.step(state, token)
    tokens = tokens_of(8, 2 * BLOCK)
    at = [0, 1, CHUNK, BLOCK, 2 * BLOCK - 2]  # the last tokens are not needed
    states = lm.states_along(state, tokens, at)
    assert states[0] is state
    reference = [state]
    for token in tokens:
        reference.append(lm.step(reference[-1], token))
    rows = lm.logprobs_many(states[1:])
    for i, got, row in zip(at[1:], states[1:], rows):
        want = reference[i]
        assert got.length == want.length
        np.testing.assert_allclose(row, lm.logprobs(want), atol=ATOL, rtol=0)
        np.testing.assert_allclose(lm.step(got, 3).logprobs, lm.step(want, 3).logprobs, atol=ATOL, rtol=0)
    batched = lm.step_many(states[1:], [4] * (len(at) - 1))  # extended caches batch with each other
    for got, i in zip(batched, at[1:]):
        np.testing.assert_allclose(got.logprobs, lm.step(reference[i], 4).logprobs, atol=ATOL, rtol=0)


def test_positions_past_the_tokens_are_refused():
    model = sharpened("mamba")
    with pytest.raises(ValueError, match=r"positions 1..4 must lie in 1..3"):
        model.extend(model.empty_cache(), [1, 2, 3], [1, 4])
