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

    Shared states. A TokenLM is a function of its state, so coverings that end at the same offset in equal
    *plain* states (ints, strings, bytes or tuples of them: an n-gram context, a token tuple) have the same
    future: they are merged into one covering carrying the sum of their weights (``merged_coverings``).
    The LM is asked once per state while it is remembered (``StateMemo``): plain states by value (an LM
    whose plain states are recyclable handles must wrap them in objects), other states by identity, each
    remembered while the adapter can still reach it; a covering in an identity state is stepped only when
    its distribution is first needed.

    ``beam=K`` (documented approximation) keeps the K heaviest coverings (after merging) after each
    character and follows at most K split-character expansions per position (heaviest first);
    ``diagnostics.pruned_mass`` records per observed character the fraction of covering weight dropped,
    ``diagnostics.pruned_expansion_mass`` per distribution the fraction of mass left unexpanded (both bound
    the error). ``beam=None`` is exact.

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
from collections import OrderedDict
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
Expansion = tuple[float, Any, int, bytes]  # weight so far, LM state, token ending mid-character, pending bytes
PLAIN_TYPES = (int, str, bytes)
ENCODE_CACHE = 1 << 16  # committed texts remembered with their encoding (words recur)
STEP_CACHE = 1 << 16  # (plain state, token) -> next state entries kept
DIST_FLOATS = 1 << 23  # float64s of cached distributions of plain states (64 MiB, plus the LM's own arrays)


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
    merged_coverings: int = 0
    max_coverings: int = 0
    pruned_mass: list[float] = field(default_factory=list)
    pruned_expansion_mass: list[float] = field(default_factory=list)

    @property
    def lm_calls(self) -> int:
        return self.lm_logprobs_calls + self.lm_step_calls


class TokenDistribution:
    """One LM next-token distribution, read in sorted-surface order; run masses are cached per prefix."""

    __slots__ = ("logprobs", "order", "runs")

    def __init__(self, logprobs: np.ndarray, order: np.ndarray) -> None:
        self.logprobs = np.asarray(logprobs, dtype=np.float64)
        self.order = order
        self.runs: dict[tuple[bytes, bytes], CharMasses] = {}

    def char_masses(self, groups: Groups, scratch: np.ndarray) -> CharMasses:
        """Run and character masses of ``groups`` under this distribution, cached per prefix: one LM state is
        asked about the same prefix again and again (spec mode after each commit, coverings sharing a state).
        ``scratch`` (one float per token) takes the range's probabilities: a reused buffer is several times
        faster than fresh vocabulary-sized arrays, which the allocator maps and faults in page by page."""
        cached = self.runs.get(groups.key)
        if cached is None:
            probs = scratch[: groups.hi - groups.lo]
            np.take(self.logprobs, self.order[groups.lo : groups.hi], out=probs, mode="clip")  # ids are valid
            np.exp(probs, out=probs)
            runs = groups.run_masses(probs)
            cached = self.runs[groups.key] = CharMasses(runs, runs[groups.chars_at], groups.chars)
        return cached

    def prob(self, token: int) -> float:
        return math.exp(self.logprobs[token])


class CharMasses:
    """One distribution over one prefix's runs: every run's mass, the completed characters' masses (in
    ``Groups.chars`` order) and, computed once when first asked, the most probable character."""

    __slots__ = ("runs", "masses", "chars", "_leader")

    def __init__(self, runs: np.ndarray, masses: np.ndarray, chars: list[str]) -> None:
        self.runs, self.masses, self.chars = runs, masses, chars
        self._leader: str | None | bool = False  # False: not computed yet

    @property
    def leader(self) -> str | None:
        """The character of largest mass, the smallest code point among equals; None when none has mass."""
        if self._leader is False:
            best = int(np.argmax(self.masses)) if len(self.masses) else -1
            self._leader = self.chars[best] if best >= 0 and self.masses[best] > 0 else None
        return self._leader  # type: ignore[return-value]


def value_key(state: Any) -> Any:
    """``state`` itself when it is a plain value (ints, strings, bytes, tuples of them), else None.

    A TokenLM is a function of its state, so equal plain states are one state: coverings reaching it merge and
    share one distribution. Any other state (tensors, objects) is only known by identity.
    """
    if type(state) is tuple:
        for part in state:  # a plain loop: this runs for every LM call
            if type(part) is not int and value_key(part) is None:
                return None
        return state
    return state if type(state) in PLAIN_TYPES else None


class StateAnswers:
    """What the LM said about one identity-keyed state: its distribution, and the answers of the states its
    tokens led to (so a state reached again through its parent is remembered exactly as long as the parent)."""

    __slots__ = ("state", "dist", "steps")

    def __init__(self, state: Any) -> None:
        self.state = state  # kept so its id stays unique while remembered
        self.dist: TokenDistribution | None = None
        self.steps: dict[int, StateAnswers] = {}


class StateMemo:
    """The LM's answers per state, so no state is asked twice: distributions by state, steps by (state, token).

    Plain states are keyed by value in LRUs (an n-gram context recurs across commits). Other states are keyed by
    identity and registered for the current and previous commit window only, since they may be large (KV
    caches); the previous window is what a commit's respelling of the buffer reuses. A state reached through a
    step answer is registered again with it: every state the adapter holds after a commit was reached from the
    new root that way, so no state it holds is ever forgotten and asked again.
    """

    def __init__(self, vocab_size: int) -> None:
        self.dists: OrderedDict[Any, TokenDistribution] = OrderedDict()
        self.dist_capacity = max(16, DIST_FLOATS // max(vocab_size, 1))
        self.steps: OrderedDict[tuple[Any, int], Any] = OrderedDict()  # -> plain state or StateAnswers
        self.recent: dict[int, StateAnswers] = {}
        self.older: dict[int, StateAnswers] = {}

    def answers(self, state: Any) -> StateAnswers:
        """The memo of an identity-keyed state, registered in the current window."""
        entry = self.recent.get(id(state))
        if entry is None:
            entry = self.older.pop(id(state), None) or StateAnswers(state)
            self.recent[id(state)] = entry
        return entry

    def keep(self, entry: StateAnswers) -> None:
        """Register ``entry`` (reached through a step answer) in the current window."""
        if id(entry.state) not in self.recent:
            self.older.pop(id(entry.state), None)
            self.recent[id(entry.state)] = entry

    def age(self) -> None:
        """A commit happened: forget identity-keyed states untouched since the commit before."""
        self.older, self.recent = self.recent, {}


@dataclass(slots=True)
class Covering:
    """A token sequence spelling exactly ``buffer[:offset]`` (bytes), with its probability and LM state.

    With ``token >= 0`` the last step is still to take: ``state`` is the state before ``token``. Coverings
    of identity-keyed LMs (where a step is the expensive call) are stepped only once their distribution is
    needed, so the ones the beam drops, or that die first, never cost an LM call.
    """

    offset: int
    weight: float
    state: Any
    dist: TokenDistribution | None = None
    token: int = -1


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
        self._encodings: dict[str, tuple[list[int], bool]] = {}
        self._scratch = np.empty(self.index.size)
        self._chars = CharTable()
        self.reset()

    # --- CharModel -----------------------------------------------------------------------------------------
    def reset(self) -> None:
        self.diagnostics = Diagnostics()
        self._committed: list[int] = []
        self._committed_text: list[str] = []
        self._buffer = ""
        self._bytes = b""
        self._seen: dict[str, None] = {}
        self._lm_memo = StateMemo(self.lm.vocab_size)
        self._root = Covering(0, 1.0, self.lm.start())
        self._coverings = [self._root]
        self._memo: Frontier | None = None
        self._pruned_now = 0.0

    def distribution(self) -> dict[str, float]:
        frontier = self._frontier()
        while frontier.heap and (self.beam is None or frontier.expanded < self.beam):
            self._expand_next(frontier)
        totals = frontier.totals
        if frontier.heap and not frontier.reported:
            frontier.reported = True
            total = math.fsum(totals.tolist()) + frontier.bound
            self.diagnostics.pruned_expansion_mass.append(frontier.bound / total)
        present = np.flatnonzero(totals > 0)
        shares = totals[present] / math.fsum(totals.tolist())
        chars = self._chars.chars
        return {chars[i]: share for i, share in zip(present.tolist(), shares.tolist())}

    def predict(self) -> str:
        frontier = self._frontier()
        if frontier.single is not None:
            if frontier.leader is not None:
                return frontier.leader
            chars, _, masses = frontier.single
            return chars[int(np.argmax(masses))]  # first maximum = smallest code point (UTF-8 byte order)
        while (
            frontier.heap
            and (self.beam is None or frontier.expanded < self.beam)
            and not decisive(frontier.totals, frontier.bound)
        ):
            self._expand_next(frontier)
        totals = frontier.totals
        tied = np.flatnonzero(totals == totals.max()).tolist()
        return min((self._chars.chars[i] for i in tied), key=ord)

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
                self._memo = Frontier(self._chars, self.index.order)
                self._memo.add(chars, self._chars.ids(chars), np.ones(len(chars)))
        return self._memo

    def _complete_frontier(self) -> Frontier:
        """Masses of the characters one token completes, from every covering, plus (exact mode) the tokens
        that end inside the next character, queued for expansion."""
        frontier = Frontier(self._chars, self.index.order)
        for cover in self._coverings:
            groups = self.index.groups(self._bytes[cover.offset :])
            if groups.hi == groups.lo:
                continue
            dist = self._dist(cover)
            found = dist.char_masses(groups, self._scratch)
            if groups.chars:  # weight 1 (spec mode, a lone covering): the cached masses as they are
                masses = found.masses if cover.weight == 1.0 else cover.weight * found.masses
                frontier.add(groups.chars, self._chars.ids(groups.chars, groups.key), masses)
                if len(self._coverings) == 1 and cover.weight == 1.0:
                    frontier.leader = found.leader
            if self.mode == "exact":
                self._queue(frontier, cover.weight, cover.state, dist, groups, found.runs)
        return frontier

    def _queue(
        self, frontier: Frontier, weight: float, state: Any, dist: TokenDistribution, groups: Groups, runs: np.ndarray
    ) -> None:
        """Queue the tokens of ``groups`` that end inside a character, all as one entry with their total mass,
        split into single tokens only if it ever becomes the heaviest (usually it never does)."""
        if len(groups.partial_runs):
            mass = weight * float(runs[groups.partial_runs].sum())
            if mass > 0:
                frontier.push_group(mass, weight, state, dist, groups)

    def _expand_next(self, frontier: Frontier) -> None:
        """Follow the heaviest queued token that ends inside a character (one LM call): add the characters
        the next token completes, queue the next tokens that still end inside it."""
        expansion = frontier.pop()
        if expansion is None:
            return
        weight, state, token, pending = expansion
        self.diagnostics.expansions += 1
        after = self._step(state, token)
        groups = self.index.groups(b"", pending)
        if groups.hi == groups.lo:
            return
        dist = self._dist_of(after)
        found = dist.char_masses(groups, self._scratch)
        if groups.chars:
            frontier.add(groups.chars, self._chars.ids(groups.chars, groups.key), weight * found.masses)
        self._queue(frontier, weight, after, dist, groups, found.runs)

    # --- spec mode -----------------------------------------------------------------------------------------
    def _observe_spec(self, char: str) -> None:
        groups = self.index.groups(self._bytes)
        if self._buffer and not groups.chars:
            self.diagnostics.eager_commits += 1  # no character can follow: what distribution() does too
            self._commit_all()
            groups = self.index.groups(b"")
        data = char.encode("utf-8")
        if char in groups.char_set:  # some token starts with buffer + char
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
            arrived: dict[Any, Covering] = {}  # plain state -> the covering ending at ``end`` in it
            fresh: list[Covering] = []
            for cover in (*coverings, *grown):
                tokens = index.exact.get(text[cover.offset : end])
                if not tokens:
                    continue
                dist = self._dist(cover)
                plain = value_key(cover.state) is not None
                for token in tokens:
                    weight = cover.weight * dist.prob(token)
                    if weight <= 0:
                        continue
                    if not plain:
                        fresh.append(Covering(end, weight, cover.state, token=token))
                        continue
                    state = self._step(cover.state, token)
                    key = value_key(state)
                    twin = None if key is None else arrived.get(key)
                    if twin is None:  # same offset and state: same future, so one covering with both weights
                        fresh.append(Covering(end, weight, state))
                        if key is not None:
                            arrived[key] = fresh[-1]
                    else:
                        twin.weight += weight
                        self.diagnostics.merged_coverings += 1
            grown.extend(fresh)
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
        ids, lossless = self._encoding(text)
        if not lossless:
            self.diagnostics.lossy_commits += 1
        self._lm_memo.age()
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

    def _encoding(self, text: str) -> tuple[list[int], bool]:
        """The tokenizer's ids for ``text`` and whether they spell it back, memoised: committed words recur."""
        cached = self._encodings.get(text)
        if cached is None:
            ids = list(self.view.encode(text))
            cached = (ids, self.view.spelled(ids) == text.encode("utf-8"))
            if len(self._encodings) >= ENCODE_CACHE:
                self._encodings.clear()
            self._encodings[text] = cached
        return cached

    def _dist(self, cover: Covering) -> TokenDistribution:
        if cover.dist is None:
            if cover.token >= 0:
                cover.state, cover.token = self._step(cover.state, cover.token), -1
            cover.dist = self._dist_of(cover.state)
        return cover.dist

    def _dist_of(self, state: Any) -> TokenDistribution:
        """The next-token distribution after ``state``; the LM is asked once per state (``StateMemo``)."""
        memo, key = self._lm_memo, value_key(state)
        if key is None:
            answers = memo.answers(state)
            if answers.dist is None:
                answers.dist = self._ask_logprobs(state)
            return answers.dist
        dist = memo.dists.get(key)
        if dist is None:
            dist = memo.dists[key] = self._ask_logprobs(state)
            if len(memo.dists) > memo.dist_capacity:
                memo.dists.popitem(last=False)
        else:
            memo.dists.move_to_end(key)
        return dist

    def _ask_logprobs(self, state: Any) -> TokenDistribution:
        self.diagnostics.lm_logprobs_calls += 1
        return TokenDistribution(self.lm.logprobs(state), self.index.order)

    def _step(self, state: Any, token: int) -> Any:
        """The state after ``token``; the LM is asked once per (state, token) (``StateMemo``)."""
        memo, key = self._lm_memo, value_key(state)
        if key is None:
            parent = memo.answers(state)
            known = parent.steps.get(token)
            if known is None:
                known = parent.steps[token] = self._remembered(self._ask_step(state, token))
        else:
            pair = (key, token)
            known = memo.steps.get(pair)
            if known is None:
                known = memo.steps[pair] = self._remembered(self._ask_step(state, token))
                if len(memo.steps) > STEP_CACHE:
                    memo.steps.popitem(last=False)
            else:
                memo.steps.move_to_end(pair)
        if type(known) is StateAnswers:
            memo.keep(known)
            return known.state
        return known

    def _remembered(self, state: Any) -> Any:
        """What a step answer stores: a plain state itself, an identity-keyed one as its memo entry."""
        return state if value_key(state) is not None else self._lm_memo.answers(state)

    def _ask_step(self, state: Any, token: int) -> Any:
        self.diagnostics.lm_step_calls += 1
        return self.lm.step(state, token)


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
    split-character expansions still to follow, heaviest first; ``bound`` (their total weight) bounds what
    they can still add to any character.

    Queue entries are single tokens or all the split tokens of one ``Groups`` (``push_group``): a group is split
    into its tokens when it is popped, so tokens still leave the queue heaviest first (up to the rounding of a
    group's sum) and only popped tokens count as expanded.
    """

    def __init__(self, table: CharTable, order: np.ndarray) -> None:
        self.table, self.order = table, order  # order: token ids in sorted-surface order
        self.parts: list[tuple[list[str], np.ndarray, np.ndarray]] = []  # characters, their numbers, masses
        self._totals: np.ndarray | None = None
        self.leader: str | None = None  # argmax of the only part, known in advance (cached per distribution)
        self.heap: list[tuple[float, int, float, Any, TokenDistribution, bytes, Any]] = []
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

    def push_token(self, weight: float, state: Any, token: int, pending: bytes, dist: TokenDistribution) -> None:
        mass = weight * dist.prob(token)
        if mass > 0:
            self._push(mass, mass, state, dist, pending, token)

    def push_group(self, mass: float, weight: float, state: Any, dist: TokenDistribution, groups: Groups) -> None:
        self._push(mass, weight, state, dist, b"", groups)

    def _push(self, mass: float, weight: float, state: Any, dist: TokenDistribution, pending: bytes, what: Any):
        heapq.heappush(self.heap, (-mass, self.pushed, weight, state, dist, pending, what))
        self.pushed += 1
        self.bound += mass

    def pop(self) -> Expansion | None:
        """The heaviest queued token (weight so far, state, token, pending bytes); None if only zero-mass
        tokens were left."""
        while self.heap:
            negative, _, weight, state, dist, pending, what = heapq.heappop(self.heap)
            self.bound = self.bound + negative if self.heap else 0.0
            if isinstance(what, int):
                self.expanded += 1
                return weight, state, what, pending
            order = self.order
            for pending, (start, end) in zip(what.partial_bytes, what.partial_at):
                for token in order[start:end].tolist():
                    self.push_token(weight, state, token, pending, dist)
        return None


def decisive(totals: np.ndarray, bound: float) -> bool:
    """True when unexpanded mass ``bound`` cannot change the argmax: the leader beats everyone by more."""
    if len(totals) == 0:
        return False
    best = int(np.argmax(totals))
    first = float(totals[best])
    second = max(float(totals[:best].max(initial=0.0)), float(totals[best + 1 :].max(initial=0.0)))
    return first > second + bound and first > bound
