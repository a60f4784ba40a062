"""Shared-history cache for Hyena: many branches of one token stream read a single copy of its convolution inputs.

A Hyena step needs, per layer, the last ``short_filter_size - 1`` short-conv inputs and, per long convolution, the
last ``block_size`` inputs. Copying those into every branch (what a cache per branch does) was ~70% of a batched
step. Here the committed positions live once, in a ``HistoryTrunk`` (append-only columns: every long convolution's
input and every short-conv input of each position), and a branch (``HyenaCache``) is a trunk length plus its own
few tokens' inputs (``chain``) and an ``Ahead``:

- ``future``: its inputs' contributions to the long convolutions of the next ``FUTURE`` positions. A step adds the
  new input times the filter's first tap to ``future[..., 0]``, and the child's future is the parent's shifted by
  one plus the new input times the taps: O(FUTURE) per channel instead of O(block_size);
- ``tail``: its last short-conv inputs.

A future runs out after ``FUTURE`` steps; it is then recomputed from the trunk and the chain (``futures``, one
grouped convolution for all the branches that need one). A trunk position's cache gets its ``Ahead`` the same
way, the first time it is stepped from: the batch engine asks for one per commit of a whole window, and most are
stepped once.

As in ``zoo.kv_tree``, append-only is what keeps every cache valid; ``settle`` copies a committed branch's inputs
onto the trunk's end, and a trunk that would outgrow ``MAX_TRUNK`` positions is not grown (a new one is seeded with
the last window).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from zoo.kv_tree import TrunkBranch

FUTURE = 8  # positions ahead whose long-convolution sums a branch carries (chains past the commit are ~1-7 tokens)
MAX_TRUNK = 1 << 16  # positions one trunk holds (the 60k-char window commits ~19k tokens)


class Filters:
    """The long convolutions' filters of one set of weights, all layers, from ``taps`` [n_layer, order, d,
    block_size] (h[t], t = 0 .. block_size-1): ``reversed`` [n_layer * order * d, 1, block_size] for ``F.conv1d``
    and ``ahead`` [n_layer, order, d, FUTURE-1], taps 1 .. FUTURE-1 (zero past the filter's end): what a new input
    adds to the next positions' sums."""

    def __init__(self, taps: torch.Tensor) -> None:
        self.taps, self.length = taps, taps.size(-1)
        self.reversed = taps.flip(-1).reshape(-1, 1, self.length).contiguous()
        self.ahead = F.pad(taps, (0, max(0, FUTURE - self.length)))[..., 1:FUTURE].contiguous()


class HistoryTrunk:
    """The inputs of positions ``start .. end-1`` of one token stream (``tokens``): ``long`` [n_layer, order, d,
    columns] for the long convolutions and ``short`` [n_layer, (order+1) * d, columns] for the short ones. The
    first ``lead`` columns (at least what either convolution sees before a position) hold the ``lead`` positions
    before ``start``: zeros before the stream's start (the convolutions' zero padding), a fork's seed otherwise."""

    def __init__(self, filters: Filters, long_shape: tuple[int, int, int], short_shape: tuple[int, int], lead: int,
                 start: int = 0, capacity: int = 64) -> None:
        self.filters, self.lead = filters, lead
        like = filters.taps
        self.long = like.new_zeros(*long_shape, self.lead + capacity)
        self.short = like.new_zeros(*short_shape, self.lead + capacity)
        self.tokens: list[int] = []
        self.start = start

    @property
    def end(self) -> int:
        return self.start + len(self.tokens)

    def column(self, pos: int) -> int:
        """The buffer column of absolute position ``pos`` (``start - lead`` .. ``end - 1``)."""
        return self.lead + pos - self.start

    def reserve(self, count: int) -> None:
        """Room for ``count`` more positions (at least doubling, so appends cost amortised O(1) copies)."""
        used = self.column(self.end)
        if used + count <= self.long.size(-1):
            return
        size = max(used + count, 2 * self.long.size(-1))
        for name in ("long", "short"):
            old = getattr(self, name)
            new = old.new_zeros(*old.shape[:-1], size)
            new[..., :used] = old[..., :used]
            setattr(self, name, new)

    def append(self, tokens: list[int], long: torch.Tensor, short: torch.Tensor) -> None:
        """Positions after the end: their inputs long [n_layer, order, d, T] and short [n_layer, (order+1)*d, T]."""
        self.reserve(len(tokens))
        a = self.column(self.end)
        self.long[..., a : a + len(tokens)] = long
        self.short[..., a : a + len(tokens)] = short
        self.tokens.extend(tokens)


@dataclass(frozen=True, slots=True)
class Ahead:
    """A state's sums for the next positions: ``future`` [n_layer, order, d, FUTURE], of which the first ``valid``
    columns are complete, and ``tail`` [n_layer, (order+1)*d, short_filter_size-1], its last short-conv inputs."""

    future: torch.Tensor
    valid: int
    tail: torch.Tensor


@dataclass(slots=True, eq=False)
class HyenaCache(TrunkBranch):
    """The state after ``trunk``'s positions up to ``length`` and then ``tokens``, whose inputs are ``chain`` (one
    [n_layer * order * d + n_layer * (order+1) * d] tensor per token: long-conv inputs, then short-conv inputs).
    ``ahead`` is None for a trunk position until it is first stepped from (then filled in, once)."""

    trunk: HistoryTrunk
    length: int
    chain: tuple[torch.Tensor, ...] = ()
    tokens: tuple[int, ...] = ()
    ahead: Ahead | None = None

    def window(self, width: int) -> torch.Tensor:
        """The long-conv inputs [n_layer * order * d, width] of the ``width`` positions before ``pos``: the
        trunk's, then the chain's (``width`` is at most the trunk's ``lead``)."""
        trunk, own = self.trunk, self.chain[max(0, len(self.chain) - width) :]
        a = trunk.column(self.length)
        long = trunk.long.flatten(0, -2)[:, a - (width - len(own)) : a]
        if not own:
            return long
        return torch.cat((long, torch.stack([node[: long.size(0)] for node in own], dim=1)), dim=1)

    def trunk_tail(self, size: int) -> torch.Tensor:
        """The short-conv inputs [n_layer, (order+1)*d, size] of the ``size`` trunk positions before ``length``."""
        a = self.trunk.column(self.length)
        return self.trunk.short[..., a - size : a]


def futures(caches: list[HyenaCache], filters: Filters, tail_size: int) -> list[Ahead]:
    """A fresh ``Ahead`` for each cache: its last block_size-1 inputs, followed by ``FUTURE`` zeros, through each
    long convolution (one grouped ``F.conv1d`` for all) give the sums of the next ``FUTURE`` positions over the
    inputs already seen. A chain's cache keeps its tail; a trunk position's is read from the trunk."""
    windows = torch.stack([cache.window(filters.length - 1) for cache in caches])  # [R, channels, block_size-1]
    padded = F.pad(windows, (0, FUTURE))
    sums = F.conv1d(padded, filters.reversed, groups=padded.size(1)).view(len(caches), *filters.taps.shape[:3], FUTURE)
    tails = [cache.trunk_tail(tail_size).clone() if cache.ahead is None else cache.ahead.tail for cache in caches]
    return [Ahead(sums[r].clone(), FUTURE, tail) for r, tail in enumerate(tails)]
