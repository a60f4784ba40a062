"""The expansion frontier of one position: character masses found so far and the split-character queue.

A token that ends inside the next character (a lone lead byte, say) needs one more LM call to see how the
character ends. Those expansions wait in a heap, heaviest first; their total queued mass (``bound``) bounds what
they can still add to any character, so ``predict`` stops as soon as the leader cannot be overtaken
(``decisive``).
"""

from __future__ import annotations

import heapq
from typing import Any, Iterable, NamedTuple

import numpy as np

from subchar.lm_cache import CharMasses, TokenDistribution
from subchar.surface_index import Groups


class TokenRun:
    """The split tokens of one popped group, heaviest first (sorted once with numpy): the heap holds the run,
    keyed by the mass of its next token, instead of one entry per token."""

    __slots__ = ("tokens", "masses", "pendings", "at")

    def __init__(self, tokens: list[int], masses: list[float], pendings: list[bytes]) -> None:
        self.tokens, self.masses, self.pendings, self.at = tokens, masses, pendings, 0

    @classmethod
    def of(cls, groups: Groups, order: np.ndarray, weight: float, dist: TokenDistribution) -> TokenRun:
        """The run of ``groups``' split tokens under ``dist`` from a covering of weight ``weight``: the tokens
        ranked once per (distribution, groups) by probability, then weighted. Weighting keeps that ranking
        unless it rounds two different probabilities to one mass (or a mass to 0, cut off at the end); for a
        tie the reference ranking decides (``ranked``), so the run is always the one ``ranked`` gives."""
        cached = dist.splits.get(groups.key)
        if cached is None:
            cached = dist.splits[groups.key] = cls.ranked(groups, order, 1.0, dist)
        tokens, probs, pendings = cached
        weight = float(weight)
        masses = [weight * p for p in probs]  # the same products numpy forms (IEEE), without its per-call cost
        kept = len(masses)
        while kept and not masses[kept - 1] > 0:  # masses are non-increasing, so the positive ones come first
            kept -= 1
        for at in range(1, kept):
            if masses[at] == masses[at - 1] and probs[at] != probs[at - 1]:
                return cls(*cls.ranked(groups, order, weight, dist))
        return cls(tokens[:kept], masses[:kept], pendings[:kept])

    @staticmethod
    def ranked(groups: Groups, order: np.ndarray, weight: float,
               dist: TokenDistribution) -> tuple[list[int], list[float], list[bytes]]:
        """The reference ranking: split tokens with positive mass, heaviest first, ties in push order."""
        spans = groups.partial_at
        tokens = np.concatenate([order[start:end] for start, end in spans])
        which = np.repeat(np.arange(len(spans)), [end - start for start, end in spans])
        masses = weight * dist.probs_of(tokens)
        ranked = np.flatnonzero(masses > 0)
        ranked = ranked[np.argsort(-masses[ranked], kind="stable")]  # ties keep the push order of old
        pending = groups.partial_bytes
        return tokens[ranked].tolist(), masses[ranked].tolist(), [pending[i] for i in which[ranked].tolist()]


class QueuedExpansion(NamedTuple):
    """One heap entry: every split token of ``groups`` at once (keyed by their total mass), or a ``TokenRun``
    (keyed by its next token's mass). ``pop`` hands out single tokens in this form (``token >= 0``).

    Ordered by ``(-mass, seq)`` only (``seq`` is unique), so the other fields are never compared.
    """

    neg_mass: float
    seq: int
    weight: float  # a popped token's: the mass through it; a group's or run's: the covering's weight before it
    state: Any  # LM state before the token
    dist: TokenDistribution  # its distribution
    pending: bytes  # bytes of the unfinished character, after the token
    token: int = -1
    groups: Groups | None = None
    run: TokenRun | None = None


class CharTable:
    """Every candidate character met so far, numbered: one position's masses from many coverings then add up
    in one dense array (``np.bincount``) instead of a dict, in the same order, so to the same floats."""

    def __init__(self) -> None:
        self.number: dict[str, int] = {}
        self.chars: list[str] = []
        self._ids: dict[Any, np.ndarray] = {}

    def ids(self, chars: list[str], key: Any = None) -> np.ndarray:
        """The numbers of ``chars`` (cached under ``key``: the ``Groups.key`` the characters come from)."""
        ids = self._ids.get(key) if key is not None else None
        if ids is None:
            for char in chars:
                if char not in self.number:
                    self.number[char] = len(self.chars)
                    self.chars.append(char)
            ids = np.array([self.number[char] for char in chars], dtype=np.int64)
            if key is not None:
                self._ids[key] = ids
        return ids


class Frontier:
    """Character masses found so far at one position (dense, numbered by a ``CharTable``), and the queue of
    split-character expansions still to follow, heaviest first; ``bound`` (their total mass) bounds what they
    can still add to any character.

    Queue entries are all the split tokens of one ``Groups`` (``push_group``): a group popped becomes a
    ``TokenRun``, so tokens still leave the queue heaviest first (up to the rounding of a group's sum) and only
    popped tokens count as expanded.
    """

    def __init__(self, table: CharTable, order: np.ndarray) -> None:
        self.table, self.order = table, order  # order: token ids in sorted-surface order
        self.parts: list[tuple[list[str], np.ndarray, np.ndarray]] = []  # characters, their numbers, masses
        self._totals: np.ndarray | None = None
        self.leader: str | None = None  # argmax of the only part, known in advance (cached per distribution)
        self.heap: list[QueuedExpansion] = []
        self.bound = 0.0
        self.pushed = 0
        self.expanded = 0
        self.reported = False

    @property
    def single(self) -> tuple[list[str], np.ndarray, np.ndarray] | None:
        """The only part when nothing is queued: its argmax needs no merging."""
        return self.parts[0] if len(self.parts) == 1 and not self.heap else None

    @property
    def totals(self) -> np.ndarray:
        """Mass per character number, summed over the parts in the order they came (as a dict would)."""
        if self._totals is None:
            size = len(self.table.chars)
            if self.parts:
                ids = np.concatenate([ids for _, ids, _ in self.parts])
                masses = np.concatenate([masses for _, _, masses in self.parts])
                self._totals = np.bincount(ids, weights=masses, minlength=size)
            else:
                self._totals = np.zeros(size)
        return self._totals

    def has_mass(self) -> bool:
        if self.leader is not None:
            return True
        return any(masses.max() > 0 for _, _, masses in self.parts)

    def add(self, chars: list[str], ids: np.ndarray, masses: np.ndarray) -> None:
        if not chars:
            return
        self.parts.append((chars, ids, masses))
        if self._totals is not None:
            grow = len(self.table.chars) - len(self._totals)
            if grow > 0:
                self._totals = np.concatenate((self._totals, np.zeros(grow)))
            self._totals[ids] += masses  # the characters of one part are distinct

    def push_group(self, mass: float, weight: float, state: Any, dist: TokenDistribution, groups: Groups) -> None:
        self._push(QueuedExpansion(-mass, self.pushed, weight, state, dist, b"", groups=groups))

    def _push(self, entry: QueuedExpansion, mass: float | None = None) -> None:
        heapq.heappush(self.heap, entry)
        self.pushed += 1
        self.bound += -entry.neg_mass if mass is None else mass

    def _push_run(self, entry: QueuedExpansion, run: TokenRun, mass: float | None = None) -> None:
        self._push(QueuedExpansion(-run.masses[run.at], self.pushed, entry.weight, entry.state, entry.dist,
                                   entry.pending, entry.token, None, run), mass or 0.0)

    def next_tokens(self, count: int) -> list[tuple[Any, int]]:
        """(state, token) of up to ``count`` of the heaviest tokens queued in runs (groups not yet split are
        skipped: their tokens' order is not known yet)."""
        found: list[tuple[float, Any, int]] = []
        for entry in self.heap:
            run = entry.run
            if run is not None:
                stop = min(run.at + count, len(run.tokens))
                found.extend((run.masses[i], entry.state, run.tokens[i]) for i in range(run.at, stop))
        found.sort(key=lambda item: -item[0])
        return [(state, token) for _, state, token in found[:count]]

    def pop(self) -> QueuedExpansion | None:
        """The heaviest queued single token; None if only zero-mass tokens were left."""
        while self.heap:
            entry = heapq.heappop(self.heap)
            run = entry.run
            if run is not None:
                at = run.at
                run.at += 1
                if run.at < len(run.tokens):
                    self._push_run(entry, run)
                self.bound = self.bound - run.masses[at] if self.heap else 0.0
                self.expanded += 1
                return QueuedExpansion(entry.neg_mass, entry.seq, run.masses[at], entry.state, entry.dist,
                                       run.pendings[at], token=run.tokens[at])
            self.bound = self.bound + entry.neg_mass if self.heap else 0.0
            run = TokenRun.of(entry.groups, self.order, entry.weight, entry.dist)
            if run.tokens:
                self._push_run(entry, run, float(sum(run.masses)))
        return None


def decisive(totals: np.ndarray, bound: float) -> bool:
    """True when unexpanded mass ``bound`` cannot change the argmax: the leader beats everyone by more."""
    if len(totals) == 0:
        return False
    best = int(np.argmax(totals))
    first = float(totals[best])
    second = max(float(totals[:best].max(initial=0.0)), float(totals[best + 1 :].max(initial=0.0)))
    return first > second + bound and first > bound


class Expander:
    """Follows split-character expansions: one LM step per queued token (``LMAnswers``), the characters the
    next token completes added to the frontier, the tokens that still end inside the character queued."""

    def __init__(self, answers: Any, index: Any, table: CharTable, diagnostics: Any) -> None:
        self.answers, self.index, self.table, self.diagnostics = answers, index, table, diagnostics

    def queue(self, frontier: Frontier, weight: float, state: Any, dist: TokenDistribution, groups: Groups,
              found: CharMasses) -> None:
        """Queue the tokens of ``groups`` that end inside a character, all as one entry with their total mass,
        split into single tokens only if it ever becomes the heaviest (usually it never does)."""
        if len(groups.partial_runs):
            mass = weight * found.split_mass
            if mass > 0:
                frontier.push_group(mass, weight, state, dist, groups)

    def expand_next(self, frontier: Frontier, ahead: int = 0) -> None:
        """Follow the heaviest queued token (one LM call). With ``ahead`` and a batched LM, the same call also
        steps the next ``ahead`` heaviest queued tokens, which the next expansions most likely follow (their
        answers are remembered; which tokens are followed does not change)."""
        entry = frontier.pop()
        if entry is None:
            return
        self.diagnostics.expansions += 1
        if ahead and self.answers.batched:
            self.answers.step_pairs([(entry.state, entry.token), *frontier.next_tokens(ahead)])
        after = self.answers.step(entry.state, entry.token)
        groups = self.index.groups(b"", entry.pending)
        if groups.hi == groups.lo:
            return
        dist = self.answers.dist(after)
        found = dist.char_masses(groups)
        if groups.chars:
            frontier.add(groups.chars, self.table.ids(groups.chars, groups.key), entry.weight * found.masses)
        self.queue(frontier, entry.weight, after, dist, groups, found)

    def unlisted_mass(self, frontier: Frontier, char: str) -> float:
        """The mass the still-queued expansions give ``char`` (exactly, following only the tokens that spell
        its own bytes): what a beam left unexpanded for one character."""
        data = char.encode("utf-8")
        mass = 0.0
        for entry in frontier.heap:
            if entry.run is not None:
                run = entry.run
                for token, through, pending in zip(run.tokens[run.at :], run.masses[run.at :], run.pendings[run.at :]):
                    mass += self._follow(data, through, entry.state, token, pending)
                continue
            for pending, (start, end) in zip(entry.groups.partial_bytes, entry.groups.partial_at):
                if data.startswith(pending):
                    for token in self.index.order[start:end].tolist():
                        mass += self._follow(data, entry.weight * entry.dist.prob(token), entry.state, token, pending)
        return mass

    def _follow(self, data: bytes, weight: float, state: Any, token: int, pending: bytes) -> float:
        if weight <= 0 or not data.startswith(pending):
            return 0.0
        after = self.answers.step(state, token)
        groups = self.index.groups(b"", pending)
        if groups.hi == groups.lo:
            return 0.0
        dist = self.answers.dist(after)
        found = dist.char_masses(groups)
        char = data.decode("utf-8")
        mass = weight * float(found.masses[groups.chars.index(char)]) if char in groups.char_set else 0.0
        for rest, (start, end) in zip(groups.partial_bytes, groups.partial_at):
            if data.startswith(rest):
                for next_token in self.index.order[start:end].tolist():
                    mass += self._follow(data, weight * dist.prob(next_token), after, next_token, rest)
        return mass


class CharDistribution(dict):
    """``CharAdapter.distribution()``: the characters found, with shares summing to 1. Under a beam, ``get`` of a
    character not listed follows that character's own unexpanded split expansions and returns its mass over the
    found mass plus everything left unexpanded (a conservative share), so no character the vocabulary spells
    gets p=0 from pruning alone; ``default`` only when even that finds nothing."""

    def __init__(self, shares: Iterable[tuple[str, float]], unlisted: Any = None) -> None:
        super().__init__(shares)
        self._unlisted = unlisted  # char -> share, or None when nothing was left unexpanded

    def get(self, char: Any, default: Any = None) -> Any:
        return self[char] if char in self else unlisted_share(self._unlisted, char, default)


def unlisted_share(unlisted: Any, char: Any, default: Any) -> Any:
    """What ``unlisted`` (char -> share, or None) gives ``char``, a character not listed; ``default`` where it gives
    nothing (nothing left unexpanded, not one character, or no unexpanded mass of its own)."""
    if unlisted is None or not isinstance(char, str) or len(char) != 1:
        return default
    share = unlisted(char)
    return share if share > 0 else default
