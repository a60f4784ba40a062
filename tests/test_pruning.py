"""Pruning by relative mass, and the guarantee that pruning never leaves a spellable true character at p=0."""

from __future__ import annotations

import math

import numpy as np
import pytest

from subchar import CharAdapter
from subchar.adapter import EXPANSION_FLOOR
from test_adapter_exact import SINGLE_BYTES, random_text, random_vocab
from test_adapter_reference import RandomTrigramLM, ToyTokenizer, assert_close


def bytes_only_vocab() -> ToyTokenizer:
    """ASCII pieces and single bytes: é and € are spelled only by byte tokens, so only split expansions (which a
    beam limits) can give them mass."""
    return ToyTokenizer([b""] + SINGLE_BYTES + [b"ab", b"ba", b" a", b"a ", b"bb", b" b"], {0})


@pytest.mark.parametrize("seed", range(6))
def test_no_true_character_gets_zero_mass_under_a_narrow_beam(seed):
    tok = bytes_only_vocab()
    adapter = CharAdapter(RandomTrigramLM(tok.vocab_size, seed, scale=4.0), tok, mode="exact", beam=2)
    unlisted = 0
    for char in random_text(seed, 60):
        dist = adapter.distribution()
        assert abs(math.fsum(dist.values()) - 1) < 1e-12
        unlisted += char not in dist
        assert dist.get(char, 0.0) > 0, char
        adapter.observe(char)
    assert adapter.diagnostics.kept_end_coverings + unlisted > 0  # the guarantee was needed, not idle


class RareBytesLM(RandomTrigramLM):
    """The trigram LM with every lone byte of a multi-byte character made 1e-6 times as likely (then renormalised):
    the split expansions a character distribution could follow then weigh well under ``EXPANSION_FLOOR``."""

    def __init__(self, tok: ToyTokenizer, seed: int) -> None:
        super().__init__(tok.vocab_size, seed)
        self.rare = [i for i, s in enumerate(tok.surfaces()) if len(s) == 1 and s[0] >= 0x80]

    def logprobs(self, state: tuple[int, int]) -> np.ndarray:
        row = super().logprobs(state).copy()
        row[self.rare] += math.log(1e-6)
        return row - np.log(np.exp(row).sum())


@pytest.mark.parametrize("seed", range(3))
def test_a_beam_leaves_expansions_under_the_floor_and_stays_within_it(seed):
    """Under a beam, ``distribution`` follows no expansion once what is queued weighs under EXPANSION_FLOOR of all the
    mass: the shares stay within the floor of the exact ones, the unexpanded share is recorded, and the LM is not
    asked for them. Without a beam every expansion is followed (exact)."""
    tok = bytes_only_vocab()
    lm = RareBytesLM(tok, seed)
    exact, beamed = CharAdapter(lm, tok, mode="exact"), CharAdapter(lm, tok, mode="exact", beam=8)
    for char in "é€ é€€ ".join(random_text(seed, 40).split()):
        want, got = exact.distribution(), beamed.distribution()
        assert abs(math.fsum(got.values()) - 1) < 1e-12
        assert max(abs(got.get(c, 0.0) - want[c]) for c in want) < EXPANSION_FLOOR
        exact.observe(char)
        beamed.observe(char)
    unexpanded = beamed.diagnostics.pruned_expansion_mass
    assert unexpanded and max(unexpanded) < EXPANSION_FLOOR and not exact.diagnostics.pruned_expansion_mass
    assert beamed.diagnostics.expansions == 0 < exact.diagnostics.expansions  # without the floor: 400-500


@pytest.mark.parametrize("beam", [None, 2, 8])
def test_probability_is_the_distributions_share_bit_for_bit(beam):
    """``probability(c)`` (the batch engine's bits) equals ``distribution().get(c, 0.0)`` exactly, for listed,
    unlisted (under a narrow beam) and unspellable characters, whichever is asked first."""
    tok = bytes_only_vocab()
    adapter = CharAdapter(RandomTrigramLM(tok.vocab_size, 1, scale=4.0), tok, mode="exact", beam=beam)
    kinds = set()
    for k, char in enumerate("é€ é€€ ".join(random_text(1, 40).split())):
        asked = [*"abé€ ", "z", "\n"]
        first = [adapter.probability(c) for c in asked] if k % 2 else None
        dist = adapter.distribution()
        want = [dist.get(c, 0.0) for c in asked]
        assert [adapter.probability(c) for c in asked] == want
        assert first is None or first == want
        kinds.update("listed" if c in dist else "unlisted" if p > 0 else "none" for c, p in zip(asked, want))
        adapter.observe(char)
    assert kinds >= ({"listed", "none"} if beam is None else {"listed", "unlisted", "none"})


def test_unlisted_share_is_conservative():
    """get(c) of an unlisted character is its unexpanded mass over found + all unexpanded mass: below what the
    exact adapter gives it whenever both adapters kept the same coverings (one covering: right after a commit)."""
    tok = bytes_only_vocab()
    checked = 0
    for seed in range(4):
        lm = RandomTrigramLM(tok.vocab_size, seed)
        narrow = CharAdapter(lm, tok, mode="exact", beam=1)
        exact = CharAdapter(lm, tok, mode="exact")
        for char in "é€ é€€ ".join(random_text(seed, 30).split()):
            dist, want = narrow.distribution(), exact.distribution()
            if len(narrow._coverings) == len(exact._coverings) == 1 and char not in dist and char in want:
                assert 0 < dist.get(char) <= want[char]
                checked += 1
            narrow.observe(char)
            exact.observe(char)
    assert checked > 0


@pytest.mark.parametrize("seed", [2, 9])
def test_relative_pruning(seed):
    tok = random_vocab(seed, 10)
    lm = RandomTrigramLM(tok.vocab_size, seed)
    exact = CharAdapter(lm, tok, mode="exact")
    negligible = CharAdapter(lm, tok, mode="exact", prune=1e-300)
    coarse = CharAdapter(lm, tok, mode="exact", prune=0.2)
    for char in random_text(seed, 30):
        assert_close(negligible.distribution(), exact.distribution())
        dist = coarse.distribution()
        assert abs(math.fsum(dist.values()) - 1) < 1e-12 and dist.get(char, 0.0) > 0
        for adapter in (exact, negligible, coarse):
            adapter.observe(char)
    assert max(coarse.diagnostics.pruned_mass) > 0 and negligible.diagnostics.pruned_mass == [0.0] * 30
    assert exact.diagnostics.pruned_mass == []


def test_prune_must_be_a_fraction():
    tok = random_vocab(0, 3)
    with pytest.raises(Exception, match="prune must be"):
        CharAdapter(RandomTrigramLM(tok.vocab_size, 0), tok, prune=1.5)
