"""Shared-prefix KV cache: many branches of one token stream attend to a single copy of its keys and values.

CharAdapter steps a Transformer down many branches per character: the coverings of the buffer are a few tokens past
the last commit, and every one of them continues the same committed tokens. With one cache per branch, each step
copies a whole attention window of keys and values. Here the committed tokens live once, in a ``Trunk``
(preallocated, append-only buffers for all layers), and a branch (``TreeCache``) is a trunk length plus the keys and
values of its own few tokens (``chain``). A batch of branches reads the trunk through one view per layer, with a bias
(0 or -inf) per branch for its window (``tree_attention``): nothing is copied per step but the chains.

Append-only is what keeps every cache valid: a ``TreeCache`` reads trunk positions below its ``length`` only, and
those never change. A branch that becomes committed text is ``settle``d: its chain's keys and values are copied
onto the trunk's end (nothing is recomputed), so the next branches start from there with short chains. A trunk that would outgrow ``MAX_TRUNK`` positions is not grown: the pass continues on a new trunk
seeded with the last window (``Model.extend``), and the old one is freed once no cache refers to it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Self

import torch

MAX_TRUNK = 1 << 16  # positions one trunk holds (the 60k-char window commits ~19k tokens)


class Trunk:
    """Keys and values [n_layer, 2, n_head, capacity, head_dim] and final features [capacity, n_embd] of the
    positions ``start .. end-1`` of one token stream (``tokens``)."""

    def __init__(self, like: torch.Tensor, n_layer: int, n_head: int, head_dim: int, n_embd: int, start: int = 0,
                 capacity: int = 64) -> None:
        self.kv = like.new_empty(n_layer, 2, n_head, capacity, head_dim)
        self.features = like.new_empty(capacity, n_embd)
        self.tokens: list[int] = []
        self.featured: list[bool] = []  # per position: its features were computed (settled positions have none)
        self.start = start

    @property
    def end(self) -> int:
        return self.start + len(self.tokens)

    def reserve(self, count: int) -> None:
        """Room for ``count`` more positions (capacity doubles, so appends cost amortised O(1) copies)."""
        needed = len(self.tokens) + count
        capacity = self.kv.size(3)
        if needed <= capacity:
            return
        while capacity < needed:
            capacity *= 2
        kv = self.kv.new_empty(*self.kv.shape[:3], capacity, self.kv.size(4))
        kv[:, :, :, : len(self.tokens)] = self.kv[:, :, :, : len(self.tokens)]
        features = self.features.new_empty(capacity, self.features.size(1))
        features[: len(self.tokens)] = self.features[: len(self.tokens)]
        self.kv, self.features = kv, features

    def window(self, lo: int, hi: int) -> torch.Tensor:
        """Keys and values [n_layer, 2, n_head, hi-lo, head_dim] of absolute positions ``lo .. hi-1`` (a view)."""
        return self.kv[:, :, :, lo - self.start : hi - self.start]

    def gather(self, index: torch.Tensor) -> torch.Tensor:
        """Keys and values [n_layer, 2, n_head, B, G, head_dim] of buffer positions ``index`` [B, G] (one copy for
        all layers): for branches far apart on the trunk, whose windows share too little for one view of their
        union."""
        return self.kv.index_select(3, index.reshape(-1)).view(*self.kv.shape[:3], *index.shape, -1)


class TrunkBranch:
    """What the trunk caches (``TreeCache`` here, ``zoo.hyena_trunk.HyenaCache``) share: the state after ``trunk``'s
    positions up to ``length`` and then ``tokens``, one ``chain`` node per token (dataclasses with those fields)."""

    __slots__ = ()
    trunk: Any
    length: int
    chain: tuple[torch.Tensor, ...]
    tokens: tuple[int, ...]

    @property
    def pos(self) -> int:
        """Tokens seen: the position the next token takes."""
        return self.length + len(self.chain)

    @property
    def at_trunk_end(self) -> bool:
        return not self.chain and self.length == self.trunk.end

    def rebased(self) -> Self:
        """The same state with the start of its chain read from the trunk, where the trunk has since taken those
        tokens (settled or extended): chains stay the few tokens past the last commit instead of growing along
        every state remembered from before it."""
        if not self.chain:
            return self
        offset, k = self.length - self.trunk.start, 0
        for have, want in zip(self.trunk.tokens[offset : offset + len(self.tokens)], self.tokens):
            if have != want:
                break
            k += 1
        return replace(self, length=self.length + k, chain=self.chain[k:], tokens=self.tokens[k:]) if k else self


@dataclass(frozen=True, slots=True)
class TreeCache(TrunkBranch):
    """The state after ``trunk``'s positions up to ``length`` and then ``tokens``, whose keys and values are
    ``chain`` (one [n_layer, 2, n_head, head_dim] tensor per token)."""

    trunk: Trunk
    length: int
    chain: tuple[torch.Tensor, ...] = ()
    tokens: tuple[int, ...] = ()


def tree_attention(q: torch.Tensor, trunk_k: torch.Tensor, trunk_v: torch.Tensor, trunk_bias: torch.Tensor,
                   own_k: torch.Tensor, own_v: torch.Tensor, own_bias: torch.Tensor) -> torch.Tensor:
    """Attention of one new token per branch, q [B, H, 1, D], to trunk keys and values and to the branch's own
    tokens own_k/own_v [B, H, m, D] (its chain, then itself). The trunk part is either one window shared by all
    branches, trunk_k/trunk_v [H, n, D], or a window per branch, [H, B, n, D] (``Trunk.gather``). The biases (0
    where a key is seen, -inf where not) are trunk_bias [B, n] and own_bias [B, m]. Returns [B, H, 1, D].

    One softmax over both parts, as SDPA over their concatenation would compute it, without making the
    concatenation (that copy, a window per branch per layer, is what the shared trunk avoids). The shared window is
    one [H, B, D] x [H, D, n] product: heads first, so it is read in place, never broadcast to B copies."""
    q = q * q.size(-1) ** -0.5
    heads_first = q[:, :, 0].transpose(0, 1)  # [H, B, D]
    shared = trunk_k.dim() == 3
    if shared:
        trunk_scores = torch.bmm(heads_first, trunk_k.transpose(1, 2))
    else:
        trunk_scores = torch.matmul(heads_first[:, :, None], trunk_k.transpose(2, 3))[:, :, 0]
    own_scores = torch.matmul(q, own_k.transpose(-1, -2))[:, :, 0] + own_bias[:, None]  # [B, H, m]
    weights = torch.softmax(torch.cat((trunk_scores + trunk_bias, own_scores.transpose(0, 1)), dim=-1), dim=-1)
    n = trunk_bias.size(-1)
    if shared:
        from_trunk = torch.bmm(weights[..., :n], trunk_v)
    else:
        from_trunk = torch.matmul(weights[..., None, :n], trunk_v)[:, :, 0]
    return from_trunk.transpose(0, 1)[:, :, None] + torch.matmul(weights[..., n:].transpose(0, 1)[:, :, None], own_v)
