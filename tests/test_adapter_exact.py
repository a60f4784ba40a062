"""CharAdapter against brute-force enumeration on random vocabularies and context-dependent random LMs."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from eval.errors import UserError
from subchar import CharAdapter
from subchar.adapter import EXPANSION_FLOOR
from test_adapter_reference import (
    RandomTrigramLM,
    ToyTokenizer,
    assert_close,
    brute_exact,
    brute_spec,
    state_after,
    tie_rule_argmax,
)

ALPHABET = ["a", "b", " ", "é", "€"]  # é and € are multi-byte: spellable only through split byte tokens too
SINGLE_BYTES = sorted({bytes([b]) for ch in ALPHABET for b in ch.encode("utf-8")})


def random_vocab(seed: int, extra: int) -> ToyTokenizer:
    """Every byte of the alphabet as a token (so any text is spellable), random multi-byte pieces (some cut
    inside a character), and one special token with no surface."""
    rng = np.random.default_rng(seed)
    pieces = set(SINGLE_BYTES)
    while len(pieces) < len(SINGLE_BYTES) + extra:
        text = "".join(rng.choice(ALPHABET, size=4)).encode("utf-8")
        start = int(rng.integers(0, len(text) - 1))
        pieces.add(text[start : start + int(rng.integers(2, 5))])
    surfaces = [b""] + sorted(pieces, key=lambda s: (len(s), s))  # id 0: the special
    return ToyTokenizer(surfaces, {0})


def random_text(seed: int, length: int) -> str:
    rng = np.random.default_rng(seed + 1)
    return "".join(rng.choice(ALPHABET, size=length, p=[0.35, 0.25, 0.2, 0.1, 0.1]))


CASES = st.tuples(st.integers(0, 10_000), st.integers(3, 12), st.integers(6, 16))
SETTINGS = settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize("mode", ["spec", "exact"])
@SETTINGS
@given(case=CASES)
def test_every_distribution_equals_brute_force(mode: str, case: tuple[int, int, int]) -> None:
    seed, extra, length = case
    tok = random_vocab(seed, extra)
    lm = RandomTrigramLM(tok.vocab_size, seed)
    adapter = CharAdapter(lm, tok, mode=mode)
    brute = brute_spec if mode == "spec" else brute_exact
    seen = ""
    for char in random_text(seed, length):
        dist = adapter.distribution()
        want = brute(tok.surfaces(), lm, adapter.committed, adapter.buffer)
        assert_close(dist, want)
        assert adapter.predict() == tie_rule_argmax(dist)
        adapter.observe(char)
        seen += char
        assert adapter.committed_text + adapter.buffer == seen
        assert tok.decode(list(adapter.committed)) == adapter.committed_text
        if mode == "exact":  # commits only at finished boundaries: always the canonical encoding's prefix
            assert list(adapter.committed) == tok.encode(seen)[: len(adapter.committed)]
    assert adapter.diagnostics.backoff_distributions == 0
    assert adapter.diagnostics.lossy_commits == 0


@SETTINGS
@given(case=CASES)
def test_exact_bits_never_exceed_canonical_path(case: tuple[int, int, int]) -> None:
    """Σ -log2 P(char) <= -log2 P(canonical tokens): the canonical path is one of the spellings summed."""
    seed, extra, length = case
    tok = random_vocab(seed, extra)
    lm = RandomTrigramLM(tok.vocab_size, seed)
    adapter = CharAdapter(lm, tok, mode="exact")
    text = random_text(seed, length)
    bits = 0.0
    for char in text:
        bits -= math.log2(adapter.distribution()[char])
        adapter.observe(char)
    state, canonical = lm.start(), 0.0
    for token in tok.encode(text):
        canonical -= lm.logprobs(state)[token] / math.log(2)
        state = lm.step(state, token)
    assert bits <= canonical + 1e-9


@SETTINGS
@given(case=CASES)
def test_wide_beam_is_exact_up_to_the_expansion_floor_and_narrow_beam_reports_pruning(
    case: tuple[int, int, int],
) -> None:
    seed, extra, length = case
    tok = random_vocab(seed, extra)
    lm = RandomTrigramLM(tok.vocab_size, seed)
    exact = CharAdapter(lm, tok, mode="exact")
    wide = CharAdapter(lm, tok, mode="exact", beam=10_000)
    narrow = CharAdapter(lm, tok, mode="exact", beam=1)
    differs = False
    for char in random_text(seed, length):
        want = exact.distribution()
        got = wide.distribution()  # the same coverings; only expansions under EXPANSION_FLOOR are left
        assert set(got) <= set(want) and abs(math.fsum(got.values()) - 1) < 1e-12
        assert max(abs(got.get(c, 0.0) - want[c]) for c in want) < EXPANSION_FLOOR
        dist = narrow.distribution()
        assert abs(math.fsum(dist.values()) - 1) < 1e-12 and min(dist.values()) > 0
        differs |= set(dist) != set(want) or max(abs(dist[c] - want[c]) for c in want) > 1e-9
        for adapter in (exact, wide, narrow):
            adapter.observe(char)
    assert len(narrow.diagnostics.pruned_mass) == length
    assert all(0 <= m < 1 for m in narrow.diagnostics.pruned_mass)
    assert wide.diagnostics.pruned_mass == [0.0] * length
    if differs:  # an approximation that changed an answer was reported (dropped reach, or unexpanded mass)
        assert max(narrow.diagnostics.pruned_mass + narrow.diagnostics.pruned_expansion_mass) > 0


def test_unspellable_characters_fall_back_and_are_counted() -> None:
    """A vocabulary without 'z': the char gets zero mass, is committed as the tokenizer's encoding, and
    the stream goes on with full distributions."""
    tok = ToyTokenizer([b"", b"a", b"b", b" ", b"ab"], {0})
    lm = RandomTrigramLM(tok.vocab_size, 3)
    for mode in ("spec", "exact"):
        adapter = CharAdapter(lm, tok, mode=mode)
        seen = ""
        for char in "ab zab a":
            dist = adapter.distribution()
            assert dist and abs(math.fsum(dist.values()) - 1) < 1e-12
            adapter.observe(char)
            seen += char
            assert adapter.committed_text + adapter.buffer == seen
        assert adapter.diagnostics.zero_mass_chars >= 1
        assert "z" not in adapter.distribution()


def test_spec_commits_when_no_token_extends_the_buffer() -> None:
    """'ab' is a whole token nothing extends: spec commits it eagerly and predicts from the next token."""
    tok = ToyTokenizer([b"", b"a", b"b", b"ab", b" "], {0})
    lm = RandomTrigramLM(tok.vocab_size, 7)
    adapter = CharAdapter(lm, tok, mode="spec")
    adapter.observe("a")
    adapter.observe("b")
    dist = adapter.distribution()
    assert adapter.committed == (3,) and adapter.buffer == ""
    assert adapter.diagnostics.eager_commits == 1
    assert_close(dist, brute_spec(tok.surfaces(), lm, (3,), ""))


def test_exact_commit_point_and_state() -> None:
    """A boundary is finished once a whole pre-token follows it: ' ab' commits when ' b' starts."""
    tok = ToyTokenizer([b"", b"a", b"b", b" ", b"ab", b" a"], {0})
    lm = RandomTrigramLM(tok.vocab_size, 11)
    adapter = CharAdapter(lm, tok, mode="exact")
    for char in "ab ab a":
        adapter.observe(char)
    assert adapter.committed_text == "ab" and adapter.buffer == " ab a"
    for char in " b":
        adapter.observe(char)
    assert adapter.committed_text == "ab ab" and adapter.buffer == " a b"
    assert adapter.committed == (4, 5, 2)  # greedy canonical encoding: "ab" | " a" "b"
    assert adapter.diagnostics.commits == 2 and adapter.diagnostics.lm_calls > 0
    assert adapter._root.state == state_after(lm, adapter.committed) == (5, 2)


def test_tie_rule_prefers_smallest_code_point() -> None:
    class FlatLM:
        vocab_size = 4

        def start(self) -> int:
            return 0

        def step(self, state: int, token: int) -> int:
            return state

        def logprobs(self, state: int) -> np.ndarray:
            return np.log(np.full(4, 0.25))

    tok = ToyTokenizer([b"", b"c", b"b", b"d"], {0})
    for mode in ("spec", "exact"):
        adapter = CharAdapter(FlatLM(), tok, mode=mode)
        assert adapter.distribution() == {"b": 1 / 3, "c": 1 / 3, "d": 1 / 3}
        assert adapter.predict() == "b"


class TableLM:
    """State = the last token; exact dyadic rows, so masses summed over coverings tie to the last bit."""

    vocab_size = 5  # "", "a", "ac", "b", "c"

    def start(self) -> int:
        return -1

    def step(self, state: int, token: int) -> int:
        return token

    def logprobs(self, state: int) -> np.ndarray:
        rows = {-1: [0, 0.5, 0.25, 0.125, 0.125], 1: [0, 0, 0, 0.75, 0.25]}
        with np.errstate(divide="ignore"):
            return np.log(np.array(rows.get(state, [0, 0.25, 0.25, 0.25, 0.25])))


def test_tie_over_several_coverings_prefers_smallest_code_point() -> None:
    """After "a": 'c' gets 1/4 from the covering [] (token "ac") plus 1/2 · 1/4 from [a] ("c"); 'b' gets
    1/2 · 3/4 from [a] ("b"): 3/8 each, from different coverings. 'c' is met first, 'b' is smaller."""
    tok = ToyTokenizer([b"", b"a", b"ac", b"b", b"c"], {0})
    for beam in (None, 8):
        adapter = CharAdapter(TableLM(), tok, mode="exact", beam=beam)
        adapter.observe("a")
        assert adapter.buffer == "a" and adapter.committed == ()
        assert adapter.predict() == "b"
        assert adapter.distribution() == {"c": 0.5, "b": 0.5}
        assert list(adapter.distribution()) == ["c", "b"]  # so a first-maximum rule would pick 'c'


def test_bad_arguments_are_user_errors() -> None:
    tok = ToyTokenizer([b"", b"a"], {0})
    lm = RandomTrigramLM(2, 0)
    with pytest.raises(UserError):
        CharAdapter(lm, tok, mode="fast")
    with pytest.raises(UserError):
        CharAdapter(lm, tok, beam=0)
    with pytest.raises(UserError):
        CharAdapter(RandomTrigramLM(1, 0), tok)
    with pytest.raises(UserError):
        CharAdapter(lm, tok).observe("ab")


class RandomBigramLM(RandomTrigramLM):
    """Context = the last token only: many coverings of one offset end in the same state, so they merge."""

    def step(self, state: tuple[int, int], token: int) -> tuple[int, int]:
        return (-1, token)


class Boxed:
    """A state known only by identity (like a tensor cache): never merged, stepped lazily."""

    __slots__ = ("inner",)

    def __init__(self, inner: tuple[int, int]) -> None:
        self.inner = inner


class BoxedLM:
    """``lm`` with every state boxed, counting the LM calls per state."""

    def __init__(self, lm: RandomTrigramLM) -> None:
        self.lm, self.vocab_size = lm, lm.vocab_size
        self.asked: dict[int, int] = {}
        self.alive: list[Boxed] = []

    def start(self) -> Boxed:
        return Boxed(self.lm.start())

    def step(self, state: Boxed, token: int) -> Boxed:
        return Boxed(self.lm.step(state.inner, token))

    def logprobs(self, state: Boxed) -> np.ndarray:
        self.asked[id(state)] = self.asked.get(id(state), 0) + 1
        self.alive.append(state)  # so no later state reuses its id
        return self.lm.logprobs(state.inner)


@SETTINGS
@given(case=CASES)
def test_merged_coverings_equal_brute_force(case: tuple[int, int, int]) -> None:
    """Coverings reaching one plain state at one offset are summed into one: the same distributions."""
    seed, extra, length = case
    tok = random_vocab(seed, extra)
    lm = RandomBigramLM(tok.vocab_size, seed)
    adapter = CharAdapter(lm, tok, mode="exact")
    for char in random_text(seed, length):
        assert_close(adapter.distribution(), brute_exact(tok.surfaces(), lm, adapter.committed, adapter.buffer))
        adapter.observe(char)


def test_merging_happens_and_each_plain_state_is_asked_once() -> None:
    tok = random_vocab(5, 12)
    lm = RandomBigramLM(tok.vocab_size, 5)
    asked: dict[tuple[int, int], int] = {}
    logprobs = lm.logprobs

    def counted(state: tuple[int, int]) -> np.ndarray:
        asked[state] = asked.get(state, 0) + 1
        return logprobs(state)

    lm.logprobs = counted  # type: ignore[method-assign]
    adapter = CharAdapter(lm, tok, mode="exact")
    for char in random_text(5, 40):
        adapter.distribution()
        adapter.observe(char)
    assert adapter.diagnostics.merged_coverings > 0
    assert max(asked.values()) == 1 and adapter.diagnostics.lm_logprobs_calls == len(asked)


@pytest.mark.parametrize("beam", [None, 2])
@SETTINGS
@given(case=CASES)
@example(case=(94, 6, 14))  # with beam 2 a state stepped two commits back was reached again through its parent
@example(case=(3485, 6, 14))
def test_identity_states_equal_plain_states(beam: int | None, case: tuple[int, int, int]) -> None:
    """States known only by identity take the lazy-step path: same distributions as brute force (no beam) and
    as a never-merging plain LM (beam), and the LM is asked about each state object at most once."""
    seed, extra, length = case
    tok = random_vocab(seed, extra)
    boxed = BoxedLM(RandomTrigramLM(tok.vocab_size, seed))
    adapter = CharAdapter(boxed, tok, mode="exact", beam=beam)
    for char in random_text(seed, length):
        dist = adapter.distribution()
        if beam is None:
            assert_close(dist, brute_exact(tok.surfaces(), boxed.lm, adapter.committed, adapter.buffer))
        assert adapter.predict() == tie_rule_argmax(dist)
        adapter.observe(char)
    assert max(boxed.asked.values()) == 1
    assert adapter.diagnostics.merged_coverings == 0
