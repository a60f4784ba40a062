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
    The LM is asked once per state while it is remembered (``subchar.lm_cache.StateMemo``): plain states by value (an LM
    whose plain states are recyclable handles must wrap them in objects), other states by identity, each
    remembered while the adapter can still reach it; a covering in an identity state is stepped only when
    its distribution is first needed.

    ``beam=K`` (documented approximation) keeps, after each character, the K coverings (after merging) of most
    *reach*: weight times the probability of the tokens that continue past the buffer, which bounds all the mass a
    covering can still give to later characters (by weight alone the commit point's covering, weight 1, would crowd
    out the ones carrying the mass once few tokens spell on from it); it also follows at most K split-character
    expansions per position (heaviest first), and ``distribution`` none once what is left to expand weighs under
    ``EXPANSION_FLOOR`` (1e-3) of all the mass: each share is then within ~1e-3 of what following them all would
    give. Those expansions only refine the shares (ASCII characters get nothing from them), carry little of the mass
    and cost much of an evaluation's time (the README has the figures). ``prune=eps`` (also an
    approximation) drops the coverings of reach below ``eps`` times the total and stops following expansions once
    the queued mass is below ``eps`` times all the mass (instead of ``EXPANSION_FLOOR``). Either way no spellable
    true character is left at p=0 by pruning alone (with ``beam >= 2``): the covering of most reach that ends at the
    buffer's end is always kept, in the last place (from there a whole token or a first byte token starts any
    character), and ``distribution().get(c)`` of a character ``c`` not listed follows ``c``'s own unexpanded
    expansions and returns their mass over the found mass plus all the unexpanded mass (a conservative share; the
    listed shares still sum to 1). ``diagnostics.pruned_mass`` records per observed character the fraction of reach
    dropped, ``diagnostics.pruned_expansion_mass`` per distribution the fraction of mass left unexpanded (both bound
    the error). ``beam=None, prune=None`` is exact.

    ``canonical=True`` (exact mode only) — prefix-canonical coverings, counting only spellings the tokenizer
    itself produces (in the spirit of canonical-BPE marginals). At each character offset ``o`` of the buffer
    (``o = 0`` the commit point) it keeps exactly one covering: the tokenizer's own encoding of ``buffer[:o]``
    (skipped where that encoding does not spell ``buffer[:o]`` back), with weight ``P(enc(buffer[:o]) | T)`` and
    the LM state after it; no covering ends inside a character. The next token and the split-character
    expansions are read from these coverings exactly as above:

    M(b + x) = Σ_o P(enc(b[:o]) | T) · Σ_{t : surface(t) starts with b[o:] + x} P(t | T, enc(b[:o]))
             + (the split-character terms, from the same coverings)

    A covering's weight never changes as the buffer grows (it depends on ``b[:o]`` only); it is dropped once no
    token starts with ``b[o:]``. The commit rule is unchanged (commit points depend on the text only), so the
    batch engine's plan holds. Not checked: whether the completing token ``t`` (or the tokens of a split
    character) would itself be canonical after ``enc(b[:o])``, e.g. that ``enc(b[:o] + surface(t))`` ends in
    ``t``: that needs a per-pair test only BPE has. ``beam`` and ``prune`` apply to these coverings as above.
    ``zero_mass_chars`` counts a character no covering's token could start (a surface test, not the LM's).

    Batched LM calls. The LM work of one observed character is issued level by level: the distributions of
    all live coverings at once, and the extensions through each byte offset at once (``subchar.lm_cache``), so
    an LM with ``step_many`` / ``logprobs_many`` (``subchar.lm``) runs one forward pass per level.
    Split-character expansions stay one at a time: which one comes next depends on the masses the previous
    one found.

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

import math
from typing import Any, Callable, Literal, Optional

import numpy as np

from eval.contract import CharModel
from eval.errors import UserError
from subchar.commit_point import CommitPoints
from subchar.coverings import Covering, covering_reach, extend_coverings, prefetch_coverings, prune_coverings
from subchar.diagnostics import Diagnostics
from subchar.frontier import CharDistribution, CharTable, Expander, Frontier, decisive, unlisted_share
from subchar.lm import TokenLM
from subchar.lm_cache import LMAnswers
from subchar.surface_index import SurfaceIndex
from subchar.tokenizer_view import view_of

Mode = Literal["spec", "exact"]
ENCODE_CACHE = 1 << 16  # committed texts remembered with their encoding (words recur)
LOOKAHEAD = 8  # split-character expansions stepped per batched LM call
EXPANSION_FLOOR = 1e-3  # under a beam, distribution() leaves queued expansions lighter than this share of all mass
# ``batch_scores``'s work, handed in by whoever builds the adapter for evaluation (``subchar.batch_engine``):
# (adapter, text, bits, progress, processes) -> (predictions, P(true char) or None)
BatchScorer = Callable[["CharAdapter", str, bool, Optional[Callable[[int], None]], Optional[int]],
                       tuple[list[str], Optional[list[float]]]]


class CharAdapter(CharModel):
    """A token LM seen as a character model; the semantics are in the module docstring. ``batch``: the batch
    engine's scorer, which ``batch_scores`` runs (``subchar.batch_engine.batch_adapter`` hands it in); without it
    ``batch_scores`` returns None and ``eval.evaluate`` streams. ``like``: an adapter of the same tokenizer whose
    read-only tables this one shares (``worker``)."""

    def __init__(
        self, lm: TokenLM, tokenizer: Any, mode: Mode = "exact", beam: int | None = None, prune: float | None = None,
        batch: BatchScorer | None = None, *, like: CharAdapter | None = None, canonical: bool = False,
    ) -> None:
        if mode not in ("spec", "exact"):
            raise UserError(f"mode must be 'spec' or 'exact', not {mode!r}")
        if beam is not None and (isinstance(beam, bool) or not isinstance(beam, int) or beam < 1):
            raise UserError(f"beam must be a positive int or None (no pruning), not {beam!r}")
        if prune is not None and not (isinstance(prune, (int, float)) and 0 <= prune < 1):
            raise UserError(f"prune must be a relative weight in [0, 1) or None (no pruning), not {prune!r}")
        if not isinstance(canonical, bool) or (canonical and mode != "exact"):
            raise UserError(f"canonical must be True or False, and True only with mode='exact' (got {canonical!r}, "
                            f"mode {mode!r})")
        self.lm, self.mode, self.beam, self.prune, self.batch = lm, mode, beam, prune or None, batch
        self.canonical = canonical
        self.view = view_of(tokenizer)
        if lm.vocab_size < len(self.view.surfaces):
            raise UserError(
                f"LM vocab_size {lm.vocab_size} < tokenizer vocabulary {len(self.view.surfaces)}; "
                "build the LM for this tokenizer"
            )
        self.index = SurfaceIndex(self.view.surfaces) if like is None else like.index
        self.commit_point = CommitPoints(self.view) if like is None else like.commit_point
        self._encodings: dict[str, tuple[list[int], bool]] = {}
        self._chars = CharTable()
        self.reset()

    # --- CharModel -----------------------------------------------------------------------------------------
    def reset(self) -> None:
        self.diagnostics = Diagnostics()
        self._lm = LMAnswers(self.lm, self.index.order, self.diagnostics)
        self._expander = Expander(self._lm, self.index, self._chars, self.diagnostics)
        self._respell = True
        self._kept_now = 1.0
        self._restart(self.lm.start(), "")

    def _restart(self, state: Any, seen: str) -> None:
        """Nothing committed or buffered yet, the LM in ``state``; ``seen``: the text observed before."""
        self._committed: list[int] = []
        self._committed_text: list[str] = []
        self._buffer = ""
        self._bytes = b""
        self._seen: dict[str, None] = dict.fromkeys(seen)
        self._root = Covering(0, 1.0, state)
        self._coverings = [self._root]
        self._log_scale = 0.0  # canonical: log of what the covering weights were divided by since the commit
        self._current: Frontier | None = None  # the frontier of this position, once built

    def distribution(self) -> CharDistribution:
        frontier, found, unlisted = self._expanded()
        totals = frontier.totals
        present = np.flatnonzero(totals > 0)
        shares = (totals[present] / found).tolist()
        return CharDistribution(zip(map(self._chars.chars.__getitem__, present.tolist()), shares), unlisted)

    def probability(self, char: str) -> float:
        """``distribution().get(char, 0.0)``, the same float, without building the dict of every candidate: the batch
        engine asks it at every position for bits, where building the dict is a noticeable share of an n-gram's CPU."""
        frontier, found, unlisted = self._expanded()
        totals = frontier.totals
        number = self._chars.number.get(char)
        if number is not None and number < len(totals) and totals[number] > 0:
            return float(totals[number] / found)
        return unlisted_share(unlisted, char, 0.0)

    def _expanded(self) -> tuple[Frontier, float, Callable[[str], float] | None]:
        """The frontier after the expansions ``distribution`` follows, its found mass, and the share function of
        unlisted characters (None when nothing was left unexpanded)."""
        frontier = self._frontier()
        while frontier.heap and (self.beam is None or frontier.expanded < self.beam) and not self._negligible(frontier):
            self._expander.expand_next(frontier, self._ahead(frontier))
        totals = frontier.totals
        found = math.fsum(totals[np.flatnonzero(totals)].tolist())  # exactly rounded: the zeros change nothing
        if not frontier.heap:
            return frontier, found, None
        total = found + frontier.bound
        if not frontier.reported:
            frontier.reported = True
            self.diagnostics.pruned_expansion_mass.append(frontier.bound / total)
        return frontier, found, lambda char: self._expander.unlisted_mass(frontier, char) / total

    def _ahead(self, frontier: Frontier) -> int:
        """How many queued tokens an expansion may step along with its own (batched LMs): the rest of the beam."""
        return LOOKAHEAD - 1 if self.beam is None else min(LOOKAHEAD, self.beam - frontier.expanded) - 1

    def _negligible(self, frontier: Frontier) -> bool:
        """What is left to expand weighs less than ``prune`` (else, under a beam, ``EXPANSION_FLOOR``) times all the
        mass."""
        floor = self.prune if self.prune is not None else None if self.beam is None else EXPANSION_FLOOR
        return floor is not None and frontier.bound < floor * (float(frontier.totals.sum()) + frontier.bound)

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
            self._expander.expand_next(frontier, self._ahead(frontier))
        totals = frontier.totals
        tied = np.flatnonzero(totals == totals.max()).tolist()
        return min((self._chars.chars[i] for i in tied), key=ord)

    def observe(self, char: str) -> None:
        if not isinstance(char, str) or len(char) != 1:
            raise UserError(f"observe() takes exactly one character, got {char!r}")
        self.diagnostics.chars_observed += 1
        self._seen[char] = None
        self._current = None
        if self.mode == "spec":
            self._observe_spec(char)
        else:
            self._observe_exact(char)

    # --- for the batch engine (``subchar.batch_engine``, which hands in ``batch``) ----------------------------
    def batch_scores(
        self, text: str, bits: bool = True, progress: Callable[[int], None] | None = None,
        processes: int | None = None,
    ) -> tuple[list[str], list[float] | None] | None:
        """Every prediction the streaming loop would make over ``text`` from a reset (and P(true char) with
        ``bits``), computed by the batch engine (``processes``: forked processes sharing the work, default one per
        usable CPU core); None in spec mode (its loop is already one LM call per commit) and without a ``batch``
        scorer, so the caller streams instead. The adapter is left reset."""
        if self.mode != "exact" or self.batch is None:
            return None
        self.reset()
        return self.batch(self, text, bits, progress, processes)

    def worker(self, lm: TokenLM) -> CharAdapter:
        """A fresh adapter over ``lm`` sharing this one's read-only tables (one per batch-engine worker)."""
        return CharAdapter(lm, self.view, self.mode, self.beam, self.prune, self.batch, like=self,
                           canonical=self.canonical)

    def resume(self, state: Any, rest: str, seen: str = "") -> None:
        """Continue as right after a commit left the LM in ``state`` with ``rest`` still in the buffer (what
        ``_commit`` does); ``seen``: the text observed before, for the back-off distribution."""
        self.diagnostics = self._lm.diagnostics = self._expander.diagnostics = Diagnostics()
        self._lm.age()
        self._restart(state, seen)
        for char in rest:
            self._seen[char] = None
            self._consume(char)

    def end_segment(self, char: str) -> None:
        """``observe(char)`` as the last step of a batch-engine segment: it makes the segment's commit, checked by
        ``kept_to_plan``, but leaves the rest of the buffer unspelled (the next segment resumes there anyway)."""
        self._respell = False
        try:
            self.observe(char)
        finally:
            self._respell = True

    def kept_to_plan(self, commits: list[str | None]) -> bool:
        """True when, since ``resume``, the adapter made exactly the commits ``commits`` (None entries: none) and
        no LM-dependent fallback happened: then the batch engine's precomputed trunk stays valid after them."""
        d = self.diagnostics
        if d.forced_commits or d.eager_commits or d.backoff_distributions:
            return False
        return self._committed_text == [commit for commit in commits if commit is not None]

    def canonical_ids(self, text: str) -> list[int]:
        """The tokenizer's ids for ``text``: what committing ``text`` feeds the LM."""
        return self._encoding(text)[0]

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
        while self._current is None:
            frontier = self._complete_frontier()
            while frontier.heap and not frontier.has_mass():
                self._expander.expand_next(frontier)
            if frontier.has_mass():
                self._current = frontier
            elif self._buffer:
                self.diagnostics.eager_commits += 1
                self._commit_all()
            else:
                self.diagnostics.backoff_distributions += 1
                chars = sorted(self._seen) or [" "]
                self._current = Frontier(self._chars, self.index.order)
                self._current.add(chars, self._chars.ids(chars), np.ones(len(chars)))
        return self._current

    def _complete_frontier(self) -> Frontier:
        """Masses of the characters one token completes, from every covering, plus (exact mode) the tokens
        that end inside the next character, queued for expansion."""
        frontier = Frontier(self._chars, self.index.order)
        live = [(cover, self.index.groups(self._bytes[cover.offset :])) for cover in self._coverings]
        live = [(cover, groups) for cover, groups in live if groups.hi > groups.lo]
        prefetch_coverings(self._lm, [cover for cover, _ in live])
        for cover, groups in live:
            dist = cover.dist
            found = dist.char_masses(groups)
            if groups.chars:  # weight 1 (spec mode, a lone covering): the cached masses as they are
                masses = found.masses if cover.weight == 1.0 else cover.weight * found.masses
                frontier.add(groups.chars, self._chars.ids(groups.chars, groups.key), masses)
                if len(self._coverings) == 1 and cover.weight == 1.0:
                    frontier.leader = found.leader
            if self.mode == "exact":
                self._expander.queue(frontier, cover.weight, cover.state, dist, groups, found)
        return frontier

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
        self._kept_now = 1.0  # the product of the fractions each prune of this character kept
        if not self._consume(char):
            self.diagnostics.zero_mass_chars += 1
        cut = self.commit_point(self._buffer)
        if cut:
            self._commit(self._buffer[:cut])
        if self.beam is not None or self.prune is not None:
            self.diagnostics.pruned_mass.append(1.0 - self._kept_now)

    def _consume(self, char: str) -> bool:
        """Extend the coverings by ``char``; False when none could (then commit and respell from scratch)."""
        data = char.encode("utf-8")
        coverings, spelled = self._extended(char, data)
        if not coverings:
            self.diagnostics.forced_commits += 1
            if self._buffer:
                self._commit_all()
                coverings, _ = self._extended(char, data)
            if not coverings:
                self._commit(char)
                return False
        self._buffer += char
        self._bytes += data
        if self.canonical:  # new coverings are weighed from the commit state: keep what the weights were divided by
            self._log_scale += math.log(max(c.weight for c in coverings))  # (``prune_coverings`` divides by the top)
        self._coverings, kept = prune_coverings(coverings, len(self._bytes), self.beam, self.prune, self.diagnostics,
                                                lambda c: covering_reach(c, self._bytes, self.index))
        self._kept_now *= kept
        return spelled

    def _extended(self, char: str, data: bytes) -> tuple[list[Covering], bool]:
        """The coverings of the buffer + ``char`` (not yet pruned) and whether ``char`` was spelled from the old
        ones: every spelling in exact mode, one per character offset with ``canonical``."""
        if not self.canonical:
            coverings = extend_coverings(self._lm, self.index, self.diagnostics, self._coverings, self._bytes, data)
            return coverings, bool(coverings)
        old, index = len(self._bytes), self.index
        text = self._bytes + data
        # a surface test: some token from an old covering starts with its rest + char, or ends inside char
        spelled = any(index.extends(text[c.offset :]) or any(text[c.offset : end] in index.exact
                                                               for end in range(old + 1, len(text)))
                      for c in self._coverings)
        coverings = [c for c in self._coverings if index.extends(text[c.offset :])]
        end = self._canonical_covering(self._buffer + char, len(text))
        if end is not None:
            coverings.append(end)
        return coverings, spelled

    def _canonical_covering(self, text: str, offset: int) -> Covering | None:
        """The covering of ``text`` (the buffer's first ``offset`` bytes) by the tokenizer's own encoding, weighted
        by its probability from the commit state (over the weights' current scale); None when that encoding does
        not spell ``text`` back or has no probability left."""
        ids, lossless = self._encoding(text)
        if not lossless:
            return None
        state, logp = self._root.state, 0.0
        for token in ids:
            p = self._lm.dist(state).prob(token)
            if not p > 0:
                return None
            logp += math.log(p)
            state = self._lm.step(state, token)
        weight = math.exp(logp - self._log_scale)
        return Covering(offset, weight, state) if weight > 0 else None

    # --- commits and LM access -----------------------------------------------------------------------------
    def _commit_all(self) -> None:
        self._commit(self._buffer)

    def _commit(self, text: str) -> None:
        """Feed the tokenizer's encoding of ``text`` (the buffer's start, or an unspellable character) to the
        LM, restart the coverings there and (exact mode) respell the rest of the buffer from it."""
        ids, lossless = self._encoding(text)
        if not lossless:
            self.diagnostics.lossy_commits += 1
        self._lm.age()
        state = self._lm.along(self._root.state, ids)
        self._committed.extend(ids)
        self._committed_text.append(text)
        self.diagnostics.commits += 1
        self.diagnostics.committed_tokens += len(ids)
        self._root = Covering(0, 1.0, state)
        self._coverings = [self._root]
        self._log_scale = 0.0
        self._buffer = self._buffer[len(text) :] if self._buffer.startswith(text) else ""
        self._bytes = self._buffer.encode("utf-8")
        self._current = None
        if self._buffer and self.mode == "exact" and self._respell:  # respell what is left after the commit point
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
