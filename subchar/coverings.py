"""Coverings of the buffer: token sequences spelling exactly its first bytes, extended byte by byte and pruned.

``CharAdapter`` (exact mode) keeps every covering of the buffer since the commit point; observing a character
extends them through its bytes (``extend_coverings``), merging the ones that meet in one plain LM state, and
``prune_coverings`` rescales them and applies the beam / relative-mass pruning by reach (``covering_reach``) with
the end-covering anchor (semantics in ``subchar.adapter``). The LM is asked through ``LMAnswers``, one batched call per byte offset.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

from subchar.lm_cache import LMAnswers, TokenDistribution, value_key
from subchar.surface_index import SurfaceIndex


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


def prefetch_coverings(answers: LMAnswers, coverings: list[Covering]) -> None:
    """Give every covering its distribution: pending steps in one LM call, then distributions in one."""
    lazy = [cover for cover in coverings if cover.dist is None and cover.token >= 0]
    if lazy:
        for cover, state in zip(lazy, answers.step_pairs([(c.state, c.token) for c in lazy])):
            cover.state, cover.token = state, -1
    todo = [cover for cover in coverings if cover.dist is None]
    if todo:
        answers.prefetch_dists([cover.state for cover in todo])
        for cover in todo:
            cover.dist = answers.dist(cover.state)


def extend_coverings(answers: LMAnswers, index: SurfaceIndex, diagnostics: Any, coverings: list[Covering], old: bytes,
           data: bytes) -> list[Covering]:
    """Coverings of ``old + data``: the live old ones plus those whose last token ends inside ``data``.
    Each end offset is one level: its distributions, then its steps, each asked in one batch; coverings that
    end at one offset in one plain state are merged (``diagnostics.merged_coverings``)."""
    text = old + data
    exact = index.exact
    grown: list[Covering] = []
    for end in range(len(old) + 1, len(text) + 1):
        movers = [(c, tokens) for c in (*coverings, *grown) if (tokens := exact.get(text[c.offset : end]))]
        if not movers:
            continue
        prefetch_coverings(answers, [cover for cover, _ in movers])
        moves: list[tuple[float, Any, int, bool]] = []  # weight, state before, token, plain state
        for cover, tokens in movers:
            plain = value_key(cover.state) is not None
            for token in tokens:
                weight = cover.weight * cover.dist.prob(token)  # type: ignore[union-attr]
                if weight > 0:
                    moves.append((weight, cover.state, token, plain))
        stepped = iter(answers.step_pairs([(state, token) for _, state, token, plain in moves if plain]))
        arrived: dict[Any, Covering] = {}  # plain state -> the covering ending at ``end`` in it
        for weight, state, token, plain in moves:
            if not plain:
                grown.append(Covering(end, weight, state, token=token))
                continue
            after = next(stepped)
            key = value_key(after)
            twin = None if key is None else arrived.get(key)
            if twin is None:  # same offset and state: same future, so one covering with both weights
                grown.append(Covering(end, weight, after))
                if key is not None:
                    arrived[key] = grown[-1]
            else:
                twin.weight += weight
                diagnostics.merged_coverings += 1
    size = len(text)
    return [c for c in (*coverings, *grown) if c.offset == size or index.extends(text[c.offset :])]


def prune_coverings(coverings: list[Covering], end: int, beam: int | None, floor: float | None, diagnostics: Any,
                    reach: Callable[[Covering], float]) -> tuple[list[Covering], float]:
    """Rescale; with ``beam`` / ``floor`` (relative), drop the coverings of least ``reach`` but keep the one of
    most reach ending at ``end`` (unless only one covering is kept: ``beam=1`` keeps the first, wherever it ends).
    Returns the kept coverings and the fraction of reach they keep."""
    diagnostics.max_coverings = max(diagnostics.max_coverings, len(coverings))
    top = max(c.weight for c in coverings)
    for cover in coverings:  # rescale: only ratios matter, and long buffers would underflow
        cover.weight /= top
    if floor is None and (beam is None or len(coverings) <= beam):  # nothing to drop: no reach needed
        return coverings, 1.0
    reaches = {id(c): reach(c) for c in coverings}
    ranked = sorted(coverings, key=lambda c: -reaches[id(c)])
    total = math.fsum(reaches.values())
    kept = ranked[:beam] if beam is not None else ranked
    if floor is not None:
        least = floor * total
        kept = kept[:1] + [c for c in kept[1:] if reaches[id(c)] >= least]
    if len(kept) == len(ranked):
        return coverings, 1.0
    if beam != 1 and not any(c.offset == end for c in kept):
        anchor = next((c for c in ranked if c.offset == end), None)
        if anchor is not None:  # a beam of K still keeps K coverings: it takes the last place if full
            if beam is not None and len(kept) == beam:
                kept.pop()
            kept.append(anchor)
            diagnostics.kept_end_coverings += 1
    return kept, (math.fsum(reaches[id(c)] for c in kept) / total if total > 0 else 1.0)


def covering_reach(cover: Covering, buffer: bytes, index: SurfaceIndex) -> float:
    """What ``cover`` can still give to all later characters together: its weight times the probability of the
    tokens that continue it past the end of ``buffer`` (a covering at the end: its weight, every token continues
    it). Ranking by weight alone would keep the commit point's covering (weight 1) even when almost no token
    spells on from it, at the cost of the coverings that carry the mass."""
    if cover.offset == len(buffer) or cover.dist is None:
        return cover.weight
    groups = index.groups(buffer[cover.offset :])
    return cover.weight * float(cover.dist.char_masses(groups).runs.sum())
