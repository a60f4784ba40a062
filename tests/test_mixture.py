"""subchar.mixture: a mixture's probabilities are the weighted sums of its components' (each recomputed on its own),
predict() follows the tie rule, and fit_weights picks the grid point of most correct guesses on held-out text."""

from __future__ import annotations

import numpy as np
import pytest

from eval.contract import CharModel
from eval.data import SplitText
from eval.errors import UserError
from eval.evaluate import evaluate
from subchar import CharAdapter
from subchar.mixture import HeldOut, Mixture, fit_weights, weight_grid
from test_adapter_exact import random_text, random_vocab
from zoo.char_baseline import CharKneserNey
from zoo.ngram import KneserNeyLM
from zoo.online_ngram import OnlineKneserNey


class Table(CharModel):
    """P(next char) from a fixed function of the position."""

    def __init__(self, dist_at) -> None:
        self.dist_at, self.position = dist_at, 0

    def reset(self) -> None:
        self.position = 0

    def distribution(self) -> dict[str, float]:
        return self.dist_at(self.position)

    def predict(self) -> str:
        dist = self.distribution()
        return min(dist, key=lambda c: (-dist[c], ord(c)))

    def observe(self, char: str) -> None:
        self.position += 1


def test_mixed_shares_and_tie_rule():
    a = Table(lambda i: {"x": 0.6, "y": 0.4})
    b = Table(lambda i: {"y": 0.6, "z": 0.4})
    mix = Mixture([a, b], [0.5, 0.5])
    dist = mix.distribution()
    assert dist == pytest.approx({"x": 0.3, "y": 0.5, "z": 0.2})
    assert dist.get("q") == 0.0 and mix.predict() == "y"
    tied = Mixture([Table(lambda i: {"b": 1.0}), Table(lambda i: {"a": 1.0})], [0.5, 0.5])
    assert tied.predict() == "a"  # equal shares: the smallest code point
    with pytest.raises(UserError, match="sum to 1"):
        Mixture([a, b], [0.5, 0.6])
    with pytest.raises(UserError, match="one weight per component"):
        Mixture([a, b], [1.0])


def test_a_mixture_of_real_models_equals_its_components_recomputed():
    """Char n-gram (learning online) + exact adapter over a learning token n-gram: at every position the mixed
    probability of every character is the weighted sum of what a separately driven copy of each component says."""
    tok = random_vocab(3, 12)
    train_text, text = random_text(30, 500), random_text(31, 150)
    train = SplitText(train_text, "train", "fixture")
    kn = KneserNeyLM.fit(np.array(tok.encode(train_text)), tok.vocab_size, 3)

    def parts():
        return [CharKneserNey.fit(train, order=4, adapt=True), CharAdapter(OnlineKneserNey(kn), tok)]

    mix, alone = Mixture(parts(), [0.3, 0.7]), parts()
    for model in (mix, *alone):
        model.reset()
    for char in text:
        dists = [model.distribution() for model in alone]
        mixed = mix.distribution()
        for candidate in set(mixed) | {char}:
            want = 0.3 * dists[0].get(candidate, 0.0) + 0.7 * dists[1].get(candidate, 0.0)
            assert mixed.get(candidate, 0.0) == pytest.approx(want, rel=1e-12, abs=1e-15)
        best = max(mixed.values())
        assert mix.predict() == min((c for c, p in mixed.items() if p == best), key=ord)
        for model in (mix, *alone):
            model.observe(char)
    stream = evaluate(Mixture(parts(), [0.3, 0.7]), text, None, progress=False, engine="stream")
    batch = evaluate(Mixture(parts(), [0.3, 0.7]), text, None, progress=False, engine="batch")
    assert (batch.correct, batch.bits_per_char) == (stream.correct, stream.bits_per_char)


def test_fit_weights_prefers_the_component_that_is_right():
    text = "abab" * 25
    right = Table(lambda i: {text[i] if i < len(text) else "a": 0.9, "z": 0.1})
    wrong = Table(lambda i: {"z": 0.7, "a": 0.2, "b": 0.1})
    weights, table = fit_weights([wrong, right], text, step=0.25)
    assert len(table) == len(weight_grid(2, 0.25)) == 5
    assert weights[1] >= 0.75  # any weight on `right` of 0.75+ is always right; ties go to the higher likelihood
    assert weights == (0.0, 1.0)
    seen = HeldOut([wrong, right], text)
    assert seen.score((1.0, 0.0))[0] == 0.0 and seen.score((0.0, 1.0))[0] == 1.0


def test_weight_grid_covers_the_simplex():
    grid = weight_grid(3, 0.5)
    assert sorted(grid) == sorted([(0, 0, 1), (0, 0.5, 0.5), (0, 1, 0), (0.5, 0, 0.5), (0.5, 0.5, 0), (1, 0, 0)])
    assert all(sum(w) == pytest.approx(1.0) for w in weight_grid(3, 0.05))


class Conservative(dict):
    """A distribution whose ``get`` gives an unlisted character a share, as an adapter's does under a beam."""

    def get(self, char, default=None):
        return self[char] if char in self else 0.01


def test_a_character_listed_by_one_component_takes_no_conservative_share_from_another():
    """Listed shares mix; a character no component lists gets what every component's ``get`` gives it."""
    plain = Table(lambda i: {"x": 1.0})
    beamed = Table(lambda i: Conservative({"y": 1.0}))
    dist = Mixture([plain, beamed], [0.5, 0.5]).distribution()
    assert dict(dist) == {"x": 0.5, "y": 0.5} and dist.get("x") == 0.5
    assert dist.get("q") == pytest.approx(0.5 * 0.01)
