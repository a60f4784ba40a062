r"""CharAdapter: the next-character distribution of a token language model, by exact marginalisation.

Notation. ``surface(t)`` is the byte string token ``t`` adds to the stream (``subchar.tokenizer_view``);
tokens with an empty surface (specials) never take part in a spelling, so their probability is simply lost.
``T`` are the committed tokens (fed to the LM), ``b`` the UTF-8 bytes of the text observed since the commit
(the *buffer*), ``c`` a candidate character with bytes ``x``. Characters, not bytes, are the candidates.

mode="spec" — the benchmark's formula, normalised over characters (the baseline):

    P(c) ∝ Σ_t P(t | T) · 1[surface(t) starts with b + x]

    Commit rule: on observing ``c``, if no token's surface starts with ``b + x``, commit the tokenizer's own
    encoding of the buffer and start the new buffer at ``c``; otherwise append ``c`` to the buffer.

mode="exact" — every spelling of the buffer from the commit point:

    M(s) = Σ_{k≥1} Σ_{t_1..t_k : surface(t_1..t_{k-1}) is a proper prefix of s,
                                 surface(t_1..t_k) starts with s}  Π_i P(t_i | T, t_<i)
    P(c) = M(b + x) / Σ_{c'} M(b + x')

    A spelling may split a multi-byte character between tokens (byte tokens), so P(c) counts those too.
    It is computed from the *coverings* of the buffer: token sequences whose surface is exactly ``b[:o]``
    (weight = their probability, plus the LM state after them). With ``h`` a covering at offset ``o``:

    M(b + x) = Σ_h w_h · Σ_{t : surface(t) starts with b[o:] + x} P(t | h)
             + Σ_h Σ_{t : surface(t) = b[o:] + x[:j], 0<j<|x|} w_h · P(t | h) · (the same, one level down)

    Observing ``c`` extends the coverings through ``x`` (new coverings end inside or at the end of ``x``)
    and drops those no token can continue. Commit rule: when the buffer text has a *finished* pre-token
    boundary (``subchar.commit_point``: one no later character can move), the text before it is committed
    as the tokenizer's canonical encoding and the coverings restart at the boundary. The canonical
    tokenization never crosses such a boundary, so it stays one of the spellings summed; hence over any
    text the sum of -log2 P(char) is at most -log2 P(canonical tokens), whenever the canonical encoding
    spells the text back.

    Split characters. A token ending inside the next character (a lone lead byte, say) needs one LM call
    to see how the character ends. Such expansions are queued heaviest first; their queued weight bounds
    what they can still add to any character, so ``predict`` follows them only until the leader cannot be
    overtaken (exact argmax, usually without any). ``distribution`` follows all of them: with a vocabulary
    holding all 256 byte tokens that spells every code point (over a million characters, millions of LM
    calls) — use a beam there.

    ``beam=K`` (documented approximation) keeps the K heaviest coverings after each character and follows
    at most K split-character expansions per position (heaviest first); ``diagnostics.pruned_mass`` records
    per observed character the fraction of covering weight dropped, ``diagnostics.pruned_expansion_mass``
    per distribution the fraction of mass left unexpanded (both bound the error). ``beam=None`` is exact.

Fallbacks (each counted in ``diagnostics``; the distribution is never empty):

1. No character has mass (e.g. spec mode when the buffer is a whole token nothing extends, or a buffer no
   token can continue): the buffer is committed at once (what observing any character would do anyway) and
   the distribution is that of the fresh commit point (``eager_commits``).
2. Still nothing (a vocabulary that spells no character at all): uniform over the characters observed so far,
   or a space before any (``backoff_distributions``).
3. An observed character the formula gave zero mass (a word-level vocabulary without that word, an unknown
   character) is counted in ``zero_mass_chars``; exact mode then commits the buffer (``forced_commits``) and,
   if even a fresh commit point cannot spell it, commits the tokenizer's encoding of that character alone,
   e.g. ``[UNK]`` (``lossy_commits`` counts commits whose encoding does not spell the text back).

``committed_text + buffer`` always equals the observed text; ``decode(committed) == committed_text``
whenever no commit was lossy.

Tie rule: ``predict`` returns the most probable character; among equal masses the smallest code point.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from eval.contract import CharModel
from eval.errors import UserError
from subchar.commit_point import finished_boundary
from subchar.lm import TokenLM
from subchar.surface_index import Groups, SurfaceIndex
from subchar.tokenizer_view import view_of

Mode = Literal["spec", "exact"]
Part = tuple[list[str], np.ndarray]  # candidate characters and their (unnormalised) masses
Expansion = tuple[float, Any, int, bytes]  # weight so far, LM state, token ending mid-character, pending bytes


@dataclass
class Diagnostics:
    """What the adapter did: LM traffic, commits, and every fallback or approximation it used."""

    chars_observed: int = 0
    lm_logprobs_calls: int = 0
    lm_step_calls: int = 0
    commits: int = 0
    committed_tokens: int = 0
    lossy_commits: int = 0
    forced_commits: int = 0
    eager_commits: int = 0
    zero_mass_chars: int = 0
    backoff_distributions: int = 0
    expansions: int = 0
    max_coverings: int = 0
    pruned_mass: list[float] = field(default_factory=list)
    pruned_expansion_mass: list[float] = field(default_factory=list)

    @property
    def lm_calls(self) -> int:
        return self.lm_logprobs_calls + self.lm_step_calls


class TokenDistribution:
    """One LM next-token distribution, read in sorted-surface order; exp is taken once per range needed."""

    __slots__ = ("logprobs", "order", "sorted_probs")

    def __init__(self, logprobs: np.ndarray, order: np.ndarray) -> None:
        self.logprobs = np.asarray(logprobs, dtype=np.float64)
        self.order = order
        self.sorted_probs: np.ndarray | None = None

    def range_probs(self, lo: int, hi: int) -> np.ndarray:
        """Probabilities of sorted positions [lo, hi); a large range pays for the whole vocabulary once."""
        if self.sorted_probs is None:
            if (hi - lo) * 8 < len(self.order):
                return np.exp(self.logprobs[self.order[lo:hi]])
            self.sorted_probs = np.exp(self.logprobs[self.order])
        return self.sorted_probs[lo:hi]

    def prob(self, token: int) -> float:
        return math.exp(self.logprobs[token])


@dataclass(slots=True)
class Covering:
    """A token sequence spelling exactly ``buffer[:offset]`` (bytes), with its probability and LM state."""

    offset: int
    weight: float
    state: Any
    dist: TokenDistribution | None = None


class CharAdapter(CharModel):
    """A token LM seen as a character model; the semantics are in the module docstring."""

    def __init__(self, lm: TokenLM, tokenizer: Any, mode: Mode = "exact", beam: int | None = None) -> None:
        if mode not in ("spec", "exact"):
            raise UserError(f"mode must be 'spec' or 'exact', not {mode!r}")
        if beam is not None and (isinstance(beam, bool) or not isinstance(beam, int) or beam < 1):
            raise UserError(f"beam must be a positive int or None (no pruning), not {beam!r}")
        self.lm, self.mode, self.beam = lm, mode, beam
        self.view = view_of(tokenizer)
        if lm.vocab_size < len(self.view.surfaces):
            raise UserError(
                f"LM vocab_size {lm.vocab_size} < tokenizer vocabulary {len(self.view.surfaces)}; "
                "build the LM for this tokenizer"
            )
        self.index = SurfaceIndex(self.view.surfaces)
        self.reset()

    # --- CharModel -----------------------------------------------------------------------------------------
    def reset(self) -> None:
        self.diagnostics = Diagnostics()
        self._committed: list[int] = []
        self._committed_text: list[str] = []
        self._buffer = ""
        self._bytes = b""
        self._seen: dict[str, None] = {}
        self._root = Covering(0, 1.0, self.lm.start())
        self._coverings = [self._root]
        self._memo: Frontier | None = None
        self._pruned_now = 0.0

    def distribution(self) -> dict[str, float]:
        frontier = self._frontier()
        while frontier.heap and (self.beam is None or frontier.expanded < self.beam):
            self._expand_next(frontier)
        if frontier.heap and not frontier.reported:
            frontier.reported = True
            total = math.fsum(frontier.masses.values()) + frontier.bound
            self.diagnostics.pruned_expansion_mass.append(frontier.bound / total)
        masses = frontier.masses
        total = math.fsum(masses.values())
        return {char: mass / total for char, mass in masses.items() if mass > 0}

    def predict(self) -> str:
        frontier = self._frontier()
        if frontier.single is not None:
            chars, masses = frontier.single
            return chars[int(np.argmax(masses))]  # first maximum = smallest code point (UTF-8 byte order)
        while (
            frontier.heap
            and (self.beam is None or frontier.expanded < self.beam)
            and not decisive(frontier.masses, frontier.bound)
        ):
            self._expand_next(frontier)
        return max(frontier.masses.items(), key=lambda item: (item[1], -ord(item[0])))[0]

    def observe(self, char: str) -> None:
        if not isinstance(char, str) or len(char) != 1:
            raise UserError(f"observe() takes exactly one character, got {char!r}")
        self.diagnostics.chars_observed += 1
        self._seen[char] = None
        self._memo = None
        if self.mode == "spec":
            self._observe_spec(char)
        else:
            self._observe_exact(char)

    # --- public state --------------------------------------------------------------------------------------
    @property
    def committed(self) -> tuple[int, ...]:
        return tuple(self._committed)

    @property
    def committed_text(self) -> str:
        return "".join(self._committed_text)

    @property
    def buffer(self) -> str:
        return self._buffer

    # --- candidate masses ----------------------------------------------------------------------------------
    def _frontier(self) -> Frontier:
        """Candidate masses at the current position (cached until the next observe), after the fallbacks."""
        while self._memo is None:
            frontier = self._complete_frontier()
            while frontier.heap and not frontier.has_mass():
                self._expand_next(frontier)
            if frontier.has_mass():
                self._memo = frontier
            elif self._buffer:
                self.diagnostics.eager_commits += 1
                self._commit_all()
            else:
                self.diagnostics.backoff_distributions += 1
                chars = sorted(self._seen) or [" "]
                self._memo = Frontier([(chars, np.ones(len(chars)))])
        return self._memo

    def _complete_frontier(self) -> Frontier:
        """Masses of the characters one token completes, from every covering, plus (exact mode) the tokens
        that end inside the next character, queued for expansion."""
        parts: list[Part] = []
        expansions: list[Expansion] = []
        for cover in self._coverings:
            groups = self.index.groups(self._bytes[cover.offset :])
            if groups.hi == groups.lo:
                continue
            dist = self._dist(cover)
            runs = groups.run_masses(dist.range_probs(groups.lo, groups.hi))
            if groups.chars:
                parts.append((groups.chars, cover.weight * runs[groups.chars_at]))
            if self.mode == "exact":
                self._collect(cover.weight, cover.state, dist, groups, expansions)
        frontier = Frontier(parts)
        for expansion in expansions:
            frontier.push(expansion)
        return frontier

    def _collect(
        self, weight: float, state: Any, dist: TokenDistribution, groups: Groups, into: list[Expansion]
    ) -> None:
        for pending, (start, end) in zip(groups.partial_bytes, groups.partial_at):
            for token in self.index.order[start:end].tolist():
                mass = weight * dist.prob(token)
                if mass > 0:
                    into.append((mass, state, token, pending))

    def _expand_next(self, frontier: Frontier) -> None:
        """Follow the heaviest queued token that ends inside a character (one LM call): add the characters
        the next token completes, queue the next tokens that still end inside it."""
        weight, state, token, pending = frontier.pop()
        self.diagnostics.expansions += 1
        after = self._step(state, token)
        groups = self.index.groups(b"", pending)
        if groups.hi == groups.lo:
            return
        dist = TokenDistribution(self._logprobs(after), self.index.order)
        runs = groups.run_masses(dist.range_probs(groups.lo, groups.hi))
        if groups.chars:
            frontier.add((groups.chars, weight * runs[groups.chars_at]))
        children: list[Expansion] = []
        self._collect(weight, after, dist, groups, children)
        for child in children:
            frontier.push(child)

    # --- spec mode -----------------------------------------------------------------------------------------
    def _observe_spec(self, char: str) -> None:
        if self._buffer and not self.index.groups(self._bytes).chars:
            self.diagnostics.eager_commits += 1  # no character can follow: what distribution() does too
            self._commit_all()
        data = char.encode("utf-8")
        if self.index.extends(self._bytes + data):
            self._buffer += char
            self._bytes += data
            return
        self.diagnostics.zero_mass_chars += 1
        if self._buffer:
            self._commit_all()
        self._buffer, self._bytes = char, data

    # --- exact mode ----------------------------------------------------------------------------------------
    def _observe_exact(self, char: str) -> None:
        self._pruned_now = 0.0
        if not self._consume(char):
            self.diagnostics.zero_mass_chars += 1
        cut = finished_boundary(self.view, self._buffer)
        if cut:
            self._commit(self._buffer[:cut])
        if self.beam is not None:
            self.diagnostics.pruned_mass.append(self._pruned_now)

    def _consume(self, char: str) -> bool:
        """Extend the coverings by ``char``; False when none could (then commit and respell from scratch)."""
        data = char.encode("utf-8")
        coverings = self._extend(self._coverings, self._bytes, data)
        spelled = bool(coverings)
        if not spelled:
            self.diagnostics.forced_commits += 1
            if self._buffer:
                self._commit_all()
                coverings = self._extend(self._coverings, b"", data)
            if not coverings:
                self._commit(char)
                return False
        self._buffer += char
        self._bytes += data
        self._coverings = self._prune(coverings)
        return spelled

    def _extend(self, coverings: list[Covering], old: bytes, data: bytes) -> list[Covering]:
        """Coverings of ``old + data``: the live old ones plus those whose last token ends inside ``data``."""
        text = old + data
        index = self.index
        grown: list[Covering] = []
        for end in range(len(old) + 1, len(text) + 1):
            for cover in (*coverings, *grown):
                if cover.offset >= end:
                    continue
                tokens = index.exact.get(text[cover.offset : end])
                if not tokens:
                    continue
                dist = self._dist(cover)
                for token in tokens:
                    weight = cover.weight * dist.prob(token)
                    if weight > 0:
                        grown.append(Covering(end, weight, self._step(cover.state, token)))
        return [c for c in (*coverings, *grown) if c.offset == len(text) or index.extends(text[c.offset :])]

    def _prune(self, coverings: list[Covering]) -> list[Covering]:
        self.diagnostics.max_coverings = max(self.diagnostics.max_coverings, len(coverings))
        top = max(c.weight for c in coverings)
        for cover in coverings:  # rescale: only ratios matter, and long buffers would underflow
            cover.weight /= top
        if self.beam is None:
            return coverings
        dropped = 0.0
        if len(coverings) > self.beam:
            coverings = sorted(coverings, key=lambda c: -c.weight)
            total = math.fsum(c.weight for c in coverings)
            dropped = math.fsum(c.weight for c in coverings[self.beam :]) / total
            coverings = coverings[: self.beam]
        self._pruned_now += dropped
        return coverings

    # --- commits and LM access -----------------------------------------------------------------------------
    def _commit_all(self) -> None:
        self._commit(self._buffer)

    def _commit(self, text: str) -> None:
        """Feed the tokenizer's encoding of ``text`` (the buffer's start, or an unspellable character) to the
        LM, restart the coverings there and (exact mode) respell the rest of the buffer from it."""
        ids = list(self.view.encode(text))
        if self.view.spelled(ids) != text.encode("utf-8"):
            self.diagnostics.lossy_commits += 1
        state = self._root.state
        for token in ids:
            state = self._step(state, token)
        self._committed.extend(ids)
        self._committed_text.append(text)
        self.diagnostics.commits += 1
        self.diagnostics.committed_tokens += len(ids)
        self._root = Covering(0, 1.0, state)
        self._coverings = [self._root]
        self._buffer = self._buffer[len(text) :] if self._buffer.startswith(text) else ""
        self._bytes = self._buffer.encode("utf-8")
        self._memo = None
        if self._buffer and self.mode == "exact":  # respell what is left after the commit point
            rest, self._buffer, self._bytes = self._buffer, "", b""
            for char in rest:
                self._consume(char)

    def _dist(self, cover: Covering) -> TokenDistribution:
        if cover.dist is None:
            cover.dist = TokenDistribution(self._logprobs(cover.state), self.index.order)
        return cover.dist

    def _logprobs(self, state: Any) -> np.ndarray:
        self.diagnostics.lm_logprobs_calls += 1
        return self.lm.logprobs(state)

    def _step(self, state: Any, token: int) -> Any:
        self.diagnostics.lm_step_calls += 1
        return self.lm.step(state, token)


class Frontier:
    """Character masses found so far at one position, and the queue of split-character expansions still to
    follow, heaviest first; ``bound`` (their total weight) bounds what they can still add to any character."""

    def __init__(self, parts: list[Part]) -> None:
        self.parts = [part for part in parts if part[0]]
        self._masses: dict[str, float] | None = None
        self.heap: list[tuple[float, int, Any, int, bytes]] = []
        self.bound = 0.0
        self.pushed = 0
        self.expanded = 0
        self.reported = False

    @property
    def single(self) -> Part | None:
        """The only part when nothing is queued: its argmax needs no merging."""
        return self.parts[0] if len(self.parts) == 1 and not self.heap else None

    @property
    def masses(self) -> dict[str, float]:
        if self._masses is None:
            self._masses = {}
            for part in self.parts:
                self._merge(part)
        return self._masses

    def has_mass(self) -> bool:
        return any(masses.max() > 0 for _, masses in self.parts)

    def add(self, part: Part) -> None:
        if part[0]:
            self.parts.append(part)
            if self._masses is not None:
                self._merge(part)

    def _merge(self, part: Part) -> None:
        masses = self._masses
        for char, mass in zip(part[0], part[1].tolist()):
            masses[char] = masses.get(char, 0.0) + mass

    def push(self, expansion: Expansion) -> None:
        weight, state, token, pending = expansion
        heapq.heappush(self.heap, (-weight, self.pushed, state, token, pending))
        self.pushed += 1
        self.bound += weight

    def pop(self) -> Expansion:
        negative, _, state, token, pending = heapq.heappop(self.heap)
        self.expanded += 1
        self.bound = self.bound + negative if self.heap else 0.0
        return -negative, state, token, pending


def decisive(masses: dict[str, float], bound: float) -> bool:
    """True when unexpanded mass ``bound`` cannot change the argmax: the leader beats everyone by more."""
    top = heapq.nlargest(2, masses.values())
    first = top[0] if top else 0.0
    second = top[1] if len(top) > 1 else 0.0
    return first > second + bound and first > bound
