"""A per-character mixture of character models, with weights learned on held-out train text.

Why: eval is not charged, so reading several models at every character costs no joules, and models that err
differently help each other: the leaderboard's hybrid entries mix a small network with an n-gram (weight 0.6-0.65)
and gain about 3 points over the n-gram alone. Any ``CharModel`` whose ``distribution()`` gives P(next char) can be
a component: the exact adapter over a token LM, the char n-gram, a network read through the adapter.

    P(c) = Σ_i w_i P_i(c)        predict() = argmax_c P(c), ties to the smallest code point

Each component is driven through the same stream (``observe`` is passed on), so a component that learns online
still learns only from the past. ``fit_weights`` chooses the weights on a text the caller holds out of the train
split: the grid point of most correct greedy guesses (ties: the higher mean log-likelihood).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np

from eval.contract import CharModel
from eval.errors import UserError
from eval.progress import phase

WEIGHT_STEP = 0.05  # the grid of fit_weights: multiples of this on the simplex
CANDIDATES = 16  # characters of each component's distribution kept per position when fitting weights


class MixedDistribution(dict):
    """P(next char) of a mixture: every character some component lists, with the weighted sum of the shares the
    components list for it; ``get`` of a character no component lists asks every component's ``get`` (an adapter's
    distribution can still give a character it left unexpanded a conservative share).

    A character one component lists takes no such conservative share from the others: the char baseline lists its
    whole vocabulary, and asking the adapter for the share of every character it does not list (following its
    unexpanded split-character expansions once per character) took about 25 ms a position. On the quickstart's
    bytebpe2048 ``ngram+char-kn`` cell (proxy train text, 2 CPU cores shared with other work) the 60,000-char
    window took 580 s with those shares and 57 s without, at the same accuracy (0.6433; over its first 3,000
    characters every prediction was the same) and bits/char 1.81992 against 1.81995."""

    def __init__(self, parts: Sequence[tuple[float, dict[str, float]]]) -> None:
        super().__init__()
        self.parts = parts
        for char in dict.fromkeys(itertools.chain.from_iterable(dist for _, dist in parts)):
            dict.__setitem__(self, char, sum(weight * dict.get(dist, char, 0.0) for weight, dist in parts))

    def get(self, char: str, default: float = 0.0) -> float:  # type: ignore[override]
        if char in self:
            return self[char]
        share = sum(weight * dist.get(char, 0.0) for weight, dist in self.parts)
        return share if share > 0 else default


class Mixture(CharModel):
    """Components mixed per character with fixed ``weights`` (non-negative, summing to 1)."""

    def __init__(self, components: Sequence[CharModel], weights: Sequence[float]) -> None:
        if len(components) < 1 or len(components) != len(weights):
            raise UserError(f"a mixture needs one weight per component, got {len(components)} components and "
                            f"{len(weights)} weights")
        if min(weights) < 0 or abs(sum(weights) - 1.0) > 1e-9:
            raise UserError(f"mixture weights must be non-negative and sum to 1, got {list(weights)}")
        self.components, self.weights = list(components), [float(w) for w in weights]
        self._current: MixedDistribution | None = None

    def reset(self) -> None:
        for component in self.components:
            component.reset()
        self._current = None

    def distribution(self) -> MixedDistribution:
        if self._current is None:
            self._current = MixedDistribution([(w, c.distribution()) for w, c in zip(self.weights, self.components)
                                               if w > 0])
        return self._current

    def predict(self) -> str:
        dist = self.distribution()
        if not dist:
            return ""
        best = max(dist.values())
        return min((char for char, share in dist.items() if share == best), key=ord)

    def observe(self, char: str) -> None:
        for component in self.components:
            component.observe(char)
        self._current = None


class HeldOut:
    """What the components said over a held-out text: each position's candidates (the union of every component's
    ``CANDIDATES`` most probable characters, in code point order), their probabilities under each component, and
    where the true character is among them (-1: none)."""

    def __init__(self, components: Sequence[CharModel], text: str, progress: bool = False) -> None:
        for component in components:
            component.reset()
        rows: list[np.ndarray] = []
        truth: list[int] = []
        true_probs: list[list[float]] = []
        with phase("mixture weights: reading held-out text", len(text), enabled=progress) as shown:
            for char in text:
                dists = [component.distribution() for component in components]
                candidates = sorted({c for dist in dists for c in top(dist, CANDIDATES)}, key=ord)
                rows.append(np.array([[dist.get(c, 0.0) for c in candidates] for dist in dists]))
                truth.append(candidates.index(char) if char in candidates else -1)
                true_probs.append([dist.get(char, 0.0) for dist in dists])
                for component in components:
                    component.observe(char)
                shown.update(1)
        width = max((row.shape[1] for row in rows), default=1)
        self.probs = np.zeros((len(rows), len(components), width))  # [position, component, candidate]
        for i, row in enumerate(rows):
            self.probs[i, :, : row.shape[1]] = row
        self.truth = np.array(truth)
        self.true_probs = np.array(true_probs).reshape(len(text), len(components))

    def score(self, weights: Sequence[float]) -> tuple[float, float]:
        """(greedy accuracy, mean natural log-likelihood of the true chars) under ``weights``. Padding candidates
        have probability 0, and argmax takes the first maximum: the smallest code point, as ``predict`` does."""
        w = np.asarray(weights, dtype=np.float64)
        guesses = np.argmax(np.einsum("pcn,c->pn", self.probs, w), axis=1)
        accuracy = float(np.mean(guesses == self.truth)) if len(self.truth) else 0.0
        likelihood = self.true_probs @ w
        return accuracy, float(np.mean(np.log(np.maximum(likelihood, 1e-300))))


def top(dist: dict[str, float], count: int) -> list[str]:
    return sorted(dist, key=lambda c: (-dist[c], ord(c)))[:count]


def weight_grid(components: int, step: float = WEIGHT_STEP) -> list[tuple[float, ...]]:
    """Every weight vector on the simplex whose entries are multiples of ``step``."""
    units = round(1 / step)
    return [tuple(k / units for k in (*cut, units - sum(cut)))
            for cut in itertools.product(range(units + 1), repeat=components - 1) if sum(cut) <= units]


def fit_weights(components: Sequence[CharModel], held_out: str, progress: bool = False,
                step: float = WEIGHT_STEP) -> tuple[tuple[float, ...], list[dict[str, object]]]:
    """The weights of most correct guesses over ``held_out`` (a text the components were not trained on, from the
    train split; never the val split), ties to the higher log-likelihood, and every grid point's scores."""
    if not held_out:
        raise UserError("fitting mixture weights needs held-out text; the train text is too short to hold any out")
    seen = HeldOut(components, held_out, progress)
    table = [dict(zip(("weights", "accuracy", "log_likelihood"), (w, *seen.score(w)))) for w in weight_grid(len(components), step)]
    best = max(table, key=lambda row: (row["accuracy"], row["log_likelihood"]))
    return best["weights"], table  # type: ignore[return-value]

