"""CharAdapter(canonical=True) against a brute-force float64 computation of the prefix-canonical formula:
M(b + x) = Σ_o P(enc(b[:o])) · Σ_{t: surface(t) starts with b[o:] + x} P(t | enc(b[:o]))
(+ the split-character terms)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given

from eval.errors import UserError
from eval.evaluate import evaluate
from subchar import CharAdapter
from subchar.batch_engine import batch_scores
from test_adapter_exact import CASES, SETTINGS, BoxedLM, RandomBigramLM, random_text, random_vocab
from test_adapter_reference import (
    RandomTrigramLM,
    ToyTokenizer,
    assert_close,
    first_char,
    normalise,
    state_after,
    tie_rule_argmax,
)


def brute_canonical(tok: ToyTokenizer, lm, committed, buffer: str) -> dict[str, float]:
    """Σ over character offsets o whose encoding spells buffer[:o] back: P(enc(buffer[:o])) times the mass of each
    next token starting with buffer[o:] + c, a token ending inside c followed on until c is finished."""
    surfaces = tok.surfaces()
    target = buffer.encode("utf-8")
    masses: dict[str, float] = {}

    def walk(spelled: bytes, weight: float, state) -> None:
        lp = lm.logprobs(state)
        for t, s in enumerate(surfaces):
            now = spelled + s
            if not s or len(now) <= len(target) or not now.startswith(target):
                continue  # one token must carry the covering past the buffer
            w = weight * math.exp(lp[t])
            char, unfinished = first_char(now[len(target) :])
            if char is not None:
                masses[char] = masses.get(char, 0.0) + w
            elif unfinished:
                walk(now, w, lm.step(state, t))

    root = state_after(lm, committed)
    for o in range(len(buffer) + 1):
        ids = tok.encode(buffer[:o])
        if b"".join(surfaces[i] for i in ids) != buffer[:o].encode("utf-8"):
            continue
        weight, state = 1.0, root
        for t in ids:
            weight *= math.exp(lm.logprobs(state)[t])
            state = lm.step(state, t)
        walk(buffer[:o].encode("utf-8"), weight, state)
    return normalise(masses)


@pytest.mark.parametrize("lm_kind", ["trigram", "bigram", "boxed"])
@SETTINGS
@given(case=CASES)
def test_every_canonical_distribution_equals_brute_force(lm_kind: str, case: tuple[int, int, int]) -> None:
    seed, extra, length = case
    tok = random_vocab(seed, extra)
    lm = {"trigram": RandomTrigramLM, "bigram": RandomBigramLM}.get(lm_kind, RandomTrigramLM)(tok.vocab_size, seed)
    plain = lm
    if lm_kind == "boxed":  # states known only by identity: the lazy-step path
        lm = BoxedLM(lm)
    adapter = CharAdapter(lm, tok, mode="exact", canonical=True)
    seen = ""
    for char in random_text(seed, length):
        dist = adapter.distribution()
        assert_close(dist, brute_canonical(tok, plain, adapter.committed, adapter.buffer))
        assert abs(math.fsum(dist.values()) - 1) < 1e-12
        assert adapter.predict() == tie_rule_argmax(dist)
        assert adapter.probability(char) == dist.get(char, 0.0)
        adapter.observe(char)
        seen += char
        assert adapter.committed_text + adapter.buffer == seen
        assert list(adapter.committed) == tok.encode(seen)[: len(adapter.committed)]  # the same commit rule
    assert adapter.diagnostics.backoff_distributions == 0 and adapter.diagnostics.lossy_commits == 0


def test_canonical_counts_fewer_spellings_than_exact() -> None:
    """"ab" encodes as one token, so the covering [a][b] is not counted: after "ab" canonical mode reads the next
    token from [ab] and [] only, exact mode from [a][b] too."""
    tok = ToyTokenizer([b"", b"a", b"b", b"ab", b"c", b"bc"], {0})
    lm = RandomTrigramLM(tok.vocab_size, 4)
    canonical = CharAdapter(lm, tok, mode="exact", canonical=True)
    exact = CharAdapter(lm, tok, mode="exact")
    for char in "ab":
        canonical.observe(char)
        exact.observe(char)
    assert len(canonical._coverings) < len(exact._coverings)
    assert_close(canonical.distribution(), brute_canonical(tok, lm, (), "ab"))
    assert canonical.distribution() != exact.distribution()


def test_batch_engine_equals_stream_for_canonical() -> None:
    tok = random_vocab(11, 12)
    text = random_text(3, 160)
    for beam in (None, 3):
        adapter = CharAdapter(RandomTrigramLM(tok.vocab_size, 2), tok, mode="exact", beam=beam, canonical=True,
                              batch=batch_scores)
        assert adapter.worker(adapter.lm).canonical
        stream = evaluate(adapter, text, None, progress=False, engine="stream")
        batch = evaluate(adapter, text, None, progress=False, engine="batch")
        assert stream.engine == "stream" and batch.engine == "batch"
        assert batch.correct == stream.correct and batch.zero_prob_chars == stream.zero_prob_chars
        assert abs(batch.covered_bits_per_char - stream.covered_bits_per_char) < 1e-9


def test_canonical_needs_exact_mode() -> None:
    tok = ToyTokenizer([b"", b"a"], {0})
    lm = RandomTrigramLM(2, 0)
    with pytest.raises(UserError):
        CharAdapter(lm, tok, mode="spec", canonical=True)
    with pytest.raises(UserError):
        CharAdapter(lm, tok, canonical="yes")  # type: ignore[arg-type]
