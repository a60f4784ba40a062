"""The adapter's fast paths give exactly what their reference paths give.

Each remembered or pre-ranked answer (split-token runs ranked once per distribution, commit points and prefix
lookups remembered per text, plain step answers without ``step_pairs``'s bookkeeping, split-run masses and
n-gram rows computed once) is checked here two ways: directly against its reference on inputs that hit its
edge cases, and end to end, where an adapter with every fast path replaced by its reference must give
bit-identical predictions, distributions and diagnostics over streams with commit points, split UTF-8
characters, unknown characters, beams, relative pruning and spec mode.
"""

from __future__ import annotations

import bisect
import math

import numpy as np
import pytest

from subchar import CharAdapter
from subchar.batch_engine import batch_adapter
from subchar.commit_point import CommitPoints, finished_boundary
from subchar.frontier import TokenRun
from subchar.lm_cache import NOT_REMEMBERED, CharMasses, LMAnswers, TokenDistribution
from subchar.surface_index import SurfaceIndex
from test_adapter_exact import BoxedLM, random_text, random_vocab
from test_adapter_reference import RandomTrigramLM
from zoo.ngram import KneserNeyLM, OrderTable


def test_split_runs_ranked_once_equal_the_reference_ranking_under_any_weight():
    """Weighting keeps the cached ranking unless rounding ties two different probabilities (tiny weights:
    subnormal masses) or flushes a mass to 0; both must come out as the reference ranks them."""
    surfaces = [b"", b"a", b"\xc3", b"\xc4", b"\xc5", b"\xe2", b"\xe2\x82", b"\xf0\x9f"]
    index = SurfaceIndex(surfaces)
    groups = index.groups(b"")
    assert len(groups.partial_at) == 6
    top = np.log(0.25)
    logprobs = np.array([-np.inf, np.log(0.2), np.nextafter(top, -np.inf), top, np.nextafter(top, -np.inf),
                         np.log(1e-5), np.log(1e-5), -np.inf])
    dist = TokenDistribution(logprobs, index.order)
    probs = np.exp(logprobs)
    assert probs[3] > probs[2] == probs[4]  # the heaviest token comes after a lighter one in push order
    tied = False
    for weight in (1.0, 0.3, 1e-300, 1e-310, 1e-318, 5e-324, 1e-320, 2.0):
        run = TokenRun.of(groups, index.order, weight, dist)
        want = TokenRun.ranked(groups, index.order, weight, dist)
        assert (run.tokens, run.masses, run.pendings) == want
        assert all(mass > 0 for mass in run.masses) and 7 not in run.tokens
        tied |= bool(want[0]) and want[0][0] != 3  # rounding tied the heaviest with the lighter tokens before it
    assert tied
    assert TokenRun.of(groups, index.order, 1e-330, dist).tokens == []  # every mass flushed to 0


def test_summing_only_the_nonzero_masses_gives_the_same_float():
    """``distribution`` sums the character masses with math.fsum over the nonzero ones only (the table numbers
    every character ever met); fsum is exactly rounded, so the zeros change nothing."""
    rng = np.random.default_rng(1)
    for _ in range(200):
        totals = rng.random(300) * 10.0 ** rng.integers(-320, 5, size=300)
        totals[rng.random(300) < 0.7] = 0.0
        assert math.fsum(totals[np.flatnonzero(totals)].tolist()) == math.fsum(totals.tolist())


def test_remembered_commit_points_equal_finished_boundary(monkeypatch):
    monkeypatch.setattr("subchar.commit_point.BOUNDARIES_REMEMBERED", 5)  # forgets and relearns on the way
    tok = random_vocab(4, 12)
    adapter = CharAdapter(RandomTrigramLM(tok.vocab_size, 0), tok)
    points = CommitPoints(adapter.view)
    text = random_text(9, 200)
    for start in range(0, 180, 7):
        for end in range(start, start + 20):
            assert points(text[start:end]) == finished_boundary(adapter.view, text[start:end])
    assert len(points._known) <= 5


def test_remembered_prefix_lookups_equal_bisection(monkeypatch):
    monkeypatch.setattr("subchar.surface_index.EXTENDS_REMEMBERED", 3)
    tok = random_vocab(2, 20)
    index = SurfaceIndex(tok.surfaces())
    rng = np.random.default_rng(0)
    for _ in range(300):
        prefix = bytes(rng.choice([0x20, 0x61, 0x62, 0xC3, 0xA9, 0xE2, 0x82, 0xAC, 0xFF], size=rng.integers(0, 4)))
        for _ in range(2):  # asked, then remembered
            assert index.extends(prefix) == any(s.startswith(prefix) for s in index.sorted)


def test_plain_step_answers_equal_the_lm_and_each_pair_is_asked_once():
    tok = random_vocab(1, 10)
    lm = RandomTrigramLM(tok.vocab_size, 3)

    class Counted:
        vocab_size = lm.vocab_size
        asked: list[tuple[object, int]] = []

        def start(self):
            return lm.start()

        def logprobs(self, state):
            return lm.logprobs(state)

        def step(self, state, token):
            self.asked.append((state, token))
            return lm.step(state, token)

    from subchar.diagnostics import Diagnostics

    diagnostics = Diagnostics()
    answers = LMAnswers(Counted(), SurfaceIndex(tok.surfaces()).order, diagnostics)
    rng = np.random.default_rng(5)
    pairs = [((int(a), int(b)), int(t)) for a, b, t in rng.integers(0, 4, size=(60, 3))]
    for chunk in (pairs[:10], pairs[5:30], pairs[:1], pairs[20:60], pairs):
        assert answers.step_pairs(chunk) == [lm.step(s, t) for s, t in chunk]
    for state, token in pairs:
        assert answers.step(state, token) == lm.step(state, token)
    assert len(Counted.asked) == len(set(Counted.asked)) == len(set(pairs)) == diagnostics.lm_step_calls


def reference_extends(self: SurfaceIndex, prefix: bytes) -> bool:
    lo = bisect.bisect_left(self.sorted, prefix)
    return lo < self.size and self.sorted[lo].startswith(prefix)


def reference_gram_id(self: OrderTable, context_id: int, word: int) -> int:
    key = context_id * self.vocab_size + word
    row = int(np.searchsorted(self.keys, key))
    return row if row < len(self.keys) and self.keys[row] == key else -1


def use_reference_paths(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(TokenRun, "of", classmethod(lambda cls, groups, order, weight, dist:
                                                    cls(*cls.ranked(groups, order, weight, dist))))
    monkeypatch.setattr(CommitPoints, "__call__", lambda self, text: finished_boundary(self.view, text))
    monkeypatch.setattr(SurfaceIndex, "extends", reference_extends)
    monkeypatch.setattr(LMAnswers, "_remembered", lambda self, state, token: NOT_REMEMBERED)
    monkeypatch.setattr(CharMasses, "split_mass", property(lambda self: float(self.runs[self._partial].sum())))
    monkeypatch.setattr(OrderTable, "gram_id", reference_gram_id)


def record(make_lm, tok, text: str, **options) -> tuple:
    """Everything the adapter says over ``text``: predictions, full distributions, shares of the true and of
    an unlisted character, diagnostics, commits; then the batch engine's answers (exact mode)."""
    adapter = batch_adapter(make_lm(), tok, **options)
    rows = []
    for char in text:
        dist = adapter.distribution()
        rows.append((adapter.predict(), sorted(dist.items()), dist.get(char), dist.get("€"), dist.get("b")))
        adapter.observe(char)
    streamed = rows, dict(vars(adapter.diagnostics)), adapter.committed
    return *streamed, adapter.batch_scores(text, bits=True)


OPTIONS = [dict(mode="spec"), dict(), dict(beam=1), dict(beam=3), dict(prune=0.05), dict(beam=2, prune=0.01)]


CASES = [("ngram", options) for options in OPTIONS] + [("boxed", options) for options in OPTIONS if options]


@pytest.mark.parametrize(("family", "options"), CASES,
                         ids=[f"{f}-" + (",".join(f"{k}={v}" for k, v in o.items()) or "exact") for f, o in CASES])
def test_fast_paths_equal_reference_paths_end_to_end(monkeypatch, family, options):
    """Identity-keyed states (boxed) only under pruning: unbeamed, their coverings never merge (slow)."""
    tok = random_vocab(11, 14)
    ids = np.asarray(tok.encode(random_text(5, 300)), dtype=np.int64)
    tables = KneserNeyLM.fit(ids, tok.vocab_size, order=3)
    make_lm = (lambda: KneserNeyLM([(t.keys, t.counts) for t in tables.tables], tok.vocab_size)) \
        if family == "ngram" else (lambda: BoxedLM(RandomTrigramLM(tok.vocab_size, 7)))
    text = random_text(3, 40) + "z €é a" + random_text(8, 30)  # z: no token spells it
    fast = record(make_lm, tok, text, **options)
    use_reference_paths(monkeypatch)
    assert record(make_lm, tok, text, **options) == fast
    assert fast[1]["commits"] > 3 and fast[1]["zero_mass_chars"] >= 1
    assert options.get("mode") == "spec" or fast[1]["expansions"] > 0
