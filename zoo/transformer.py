"""Decoder-only Transformer over subword tokens, with a KV cache for streaming.

Recipe (small-model "modern GPT"), chosen for quality per parameter and per joule at a few million params:

- RoPE on queries and keys: relative positions only, so streaming past ``block_size`` can drop the oldest
  cached keys/values without recomputing anything (see "Long context" below).
- RMSNorm (pre-norm) everywhere, plus QK-norm (RMSNorm of each head's queries and keys): keeps attention
  logits bounded, which lets small models train at high learning rates without loss spikes.
- ReLU² MLP (``relu(x)**2``): as good as or better than GELU at this scale and cheaper than a gated MLP.
- ``F.scaled_dot_product_attention``: flash / memory-efficient kernels on GPU, the fused math path on CPU.
- Tied input/output embeddings by default (``tie_embeddings``): with a subword vocabulary of thousands of
  tokens and ``n_embd`` ~128, the embedding matrix is most of the parameters, and tying halves it; untie
  for larger models where the output head benefits from its own weights.
- No biases in linear layers.

Long context: ``forward`` and streaming both implement sliding-window attention with window ``block_size`` at
every layer: position i attends to positions i-block_size+1 .. i. For T <= block_size that is plain causal
attention (SDPA ``is_causal``, flash on GPU); beyond, ``forward`` builds the banded mask and streaming masks the
keys out of the window, so streaming equals teacher forcing at any length and costs O(block_size) per token.

Streaming state: a shared-prefix KV cache (``zoo.kv_tree``). ``extend`` runs committed tokens teacher-forced and
appends their keys and values to a trunk; ``step_batch`` steps a batch of branches off it, each attending to the
trunk's window (one view, masked per branch) and to its own few tokens. ``step`` is ``step_batch`` of one. On CUDA
``use_step_graphs`` replays those passes as CUDA graphs of padded shapes (``zoo.step_graphs``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial
from typing import Callable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from zoo.kv_tree import MAX_TRUNK, TreeCache, Trunk, tree_attention
from zoo.step_graphs import StepGraphs

# Widest union of branch windows, in block_size units, read as one shared view: scoring a few hundred extra keys per
# branch costs less than copying each branch's window.
SHARED_SPAN = 4
# Batch-engine chunks (subchar.lm ``batch_chunk_chars``): workers taking short chunks in order keep each step's branches
# within a few hundred trunk positions, so they share one trunk read; more, shorter chunks also make larger passes.
BATCH_CHUNK_CHARS = 32
# The smallest ``RopeTable``: room for a thousand positions at once, so a stream's first steps don't regrow it often.
ROPE_TABLE_MIN = 1024


@dataclass
class Config:
    vocab_size: int
    block_size: int = 256  # training context and attention window
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    mlp_ratio: int = 4
    dropout: float = 0.0
    rope_base: float = 10000.0
    tie_embeddings: bool = True

    def __post_init__(self) -> None:
        """Refuse a setting no model can be built from with a plain ValueError naming the field (the trainer and
        ``subchar train --set``, which runs this class without torch, show it as the user's one-line error)."""
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd", "mlp_ratio"):
            value = getattr(self, name)
            if type(value) is not int or value < 1:  # True and 2.0 are refused too
                raise ValueError(f"{name} must be a whole number >= 1, got {value!r}")
        if type(self.dropout) not in (int, float) or not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be a number >= 0 and < 1, got {self.dropout!r}")
        if type(self.rope_base) not in (int, float) or not 0 < self.rope_base < float("inf"):
            raise ValueError(f"rope_base must be a finite number > 0, got {self.rope_base!r}")
        if type(self.tie_embeddings) is not bool:
            raise ValueError(f"tie_embeddings must be true or false, got {self.tie_embeddings!r}")
        if self.n_embd % (2 * self.n_head):
            raise ValueError(f"n_embd={self.n_embd} must be a multiple of 2*n_head={2 * self.n_head} "
                            "(RoPE needs an even head size): change n_embd or n_head")


def rope_angles(positions: torch.Tensor, head_dim: int, base: float) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin [T, head_dim/2] for absolute positions, computed in float64 so that the angles of large
    positions stay exact and ``forward`` and ``step`` see bit-identical rotations."""
    inv_freq = base ** (-torch.arange(0, head_dim, 2, dtype=torch.float64, device=positions.device) / head_dim)
    angles = positions.to(torch.float64)[:, None] * inv_freq[None, :]
    return angles.cos().float(), angles.sin().float()


class RopeTable:
    """``rope_angles`` of positions 0 .. size-1, computed once and grown by doubling: a streaming step looks its rows'
    angles up instead of computing them (ten small torch calls a step). The rows are bit-identical to
    ``rope_angles`` of the same positions."""

    def __init__(self, head_dim: int, base: float) -> None:
        self.head_dim, self.base = head_dim, base
        self.table = self.angles(torch.arange(0))

    def angles(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """cos and sin of ``positions`` computed, not looked up (a CUDA graph replays the computation)."""
        return rope_angles(positions, self.head_dim, self.base)

    def rows(self, positions: list[int], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """cos and sin [len(positions), head_dim/2] on ``device``."""
        cos, sin = self.table  # one read: another thread may grow the table meanwhile
        needed = max(positions) + 1
        if needed > len(cos) or cos.device != device:
            size = max(ROPE_TABLE_MIN, len(cos))
            while size < needed:
                size *= 2
            cos, sin = self.table = self.angles(torch.arange(size, device=device))
        index = torch.tensor(positions, device=device)
        return cos[index], sin[index]


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate pairs (first half, second half) of the last dim of x [B, H, T, D] by the given angles."""
    x1, x2 = x.chunk(2, dim=-1)
    if cos.dtype != x.dtype:
        cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    return torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: Config):
        super().__init__()
        self.n_head = cfg.n_head
        self.head_dim = cfg.n_embd // cfg.n_head
        self.window = cfg.block_size
        self.c_attn = nn.Linear(cfg.n_embd, 3 * cfg.n_embd, bias=False)
        self.c_proj = nn.Linear(cfg.n_embd, cfg.n_embd, bias=False)
        self.q_norm = nn.RMSNorm(self.head_dim)
        self.k_norm = nn.RMSNorm(self.head_dim)
        self.dropout = cfg.dropout

    def qkv(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor):
        """Project x [B, T, C] to rotated, normalised q, k and v, each [B, H, T, D]. q and k are normalised and
        rotated as one tensor: half the small torch calls of a streaming step's attention, and on CPU bit-identical
        to ``q_norm`` and ``k_norm`` applied one at a time."""
        B, T, C = x.shape
        q_k_v = self.c_attn(x).view(B, T, 3, self.n_head, self.head_dim).permute(2, 0, 3, 1, 4)
        weight = torch.stack((self.q_norm.weight, self.k_norm.weight)).view(2, 1, 1, 1, -1)
        q, k = apply_rope(F.rms_norm(q_k_v[:2], (self.head_dim,), eps=self.q_norm.eps) * weight, cos, sin).unbind()
        return q, k, q_k_v[2]

    def merge_heads(self, y: torch.Tensor) -> torch.Tensor:
        B, H, T, D = y.shape
        return self.c_proj(y.transpose(1, 2).reshape(B, T, H * D))

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Teacher-forced sliding-window attention of q, k, v [B, H, T, D] over one sequence: heads [B, H, T, D]."""
        dropout_p = self.dropout if self.training else 0.0
        if q.size(2) <= self.window:
            return F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=dropout_p)
        i = torch.arange(q.size(2), device=q.device)
        offset = i[:, None] - i[None, :]
        band = (offset >= 0) & (offset < self.window)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=band, dropout_p=dropout_p)


class MLP(nn.Module):
    """Two-layer MLP with ReLU² activation."""

    def __init__(self, n_embd: int, ratio: int, dropout: float):
        super().__init__()
        self.c_fc = nn.Linear(n_embd, ratio * n_embd, bias=False)
        self.c_proj = nn.Linear(ratio * n_embd, n_embd, bias=False)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(F.relu(self.c_fc(x)).square()))


class Block(nn.Module):
    def __init__(self, cfg: Config):
        super().__init__()
        self.ln_1 = nn.RMSNorm(cfg.n_embd)
        self.attn = CausalSelfAttention(cfg)
        self.ln_2 = nn.RMSNorm(cfg.n_embd)
        self.mlp = MLP(cfg.n_embd, cfg.mlp_ratio, cfg.dropout)
        self.resid_dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, cos, sin, attend: Callable | None = None) -> torch.Tensor:
        """The block's math, once for training, streaming steps and trunk extends: x [B, T, C] plus the attention of
        ``ln_1(x)``, then plus the MLP of ``ln_2``. ``attend(q, k, v)`` gives the heads [B, H, T, D] from x's rotated
        queries, keys and values, adding what a cache holds; None: training's window over x, with residual dropout."""
        q, k, v = self.attn.qkv(self.ln_1(x), cos, sin)
        y = self.attn.merge_heads(self.attn.attend(q, k, v) if attend is None else attend(q, k, v))
        x = x + (self.resid_dropout(y) if attend is None else y)
        return x + self.mlp(self.ln_2(x))


class Model(nn.Module):
    def __init__(self, cfg: Config):
        super().__init__()
        self.cfg = cfg
        self.vocab_size, self.block_size = cfg.vocab_size, cfg.block_size  # zoo.interface.StreamingNetwork
        self.head_dim = cfg.n_embd // cfg.n_head
        self.wte = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.ln_f = nn.RMSNorm(cfg.n_embd)
        self.lm_head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        if cfg.tie_embeddings:
            self.lm_head.weight = self.wte.weight
        self.step_graphs: StepGraphs | None = None
        self.rope = RopeTable(self.head_dim, cfg.rope_base)
        self.apply(self._init_weights)
        # GPT-2 scaling: residual-branch outputs shrink with depth so the residual stream starts at unit scale.
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * cfg.n_layer))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        """Logits [B, T, vocab] for the next token at every position of idx [B, T]."""
        cos, sin = rope_angles(torch.arange(idx.size(1), device=idx.device), self.head_dim, self.cfg.rope_base)
        x = self.drop(self.wte(idx))
        for block in self.blocks:
            x = block(x, cos, sin)
        return self.lm_head(self.ln_f(x))

    def head(self, features: torch.Tensor) -> torch.Tensor:
        """Logits from final features (``ln_f`` output): what ``extend`` leaves for positions asked later."""
        return self.lm_head(features)

    @torch.inference_mode()
    def empty_cache(self) -> TreeCache:
        return TreeCache(self._trunk(start=0), 0)

    @torch.inference_mode()
    def step(self, cache: TreeCache, token: int) -> tuple[torch.Tensor, TreeCache]:
        """Append one token: logits [vocab] for the next one and a new cache (``cache`` is left untouched)."""
        logits, caches = self.step_batch([cache], [token])
        return logits[0], caches[0]

    @torch.inference_mode()
    def step_batch(self, caches: list[TreeCache], tokens: list[int]) -> tuple[torch.Tensor, list[TreeCache]]:
        """``step`` for many branches in one forward pass: logits [B, vocab] and one new cache per branch, whose
        chain gains the new token's keys and values (a view of this batch's [B, n_layer, 2, H, D] tensor). With
        ``use_step_graphs`` the pass of one trunk's branches is a CUDA graph replay (``zoo.step_graphs``)."""
        caches = [cache.rebased() for cache in caches]
        groups = self._trunk_groups(caches)
        graphs = self.step_graphs
        if graphs is not None and len(groups) == 1 and graphs.fits(len(caches), max(len(c.chain) for c in caches)):
            logits, new = graphs.step(caches, tokens, groups[0])
        else:
            logits, new = self._step_eager(caches, tokens, groups)
        return logits, [TreeCache(c.trunk, c.length, (*c.chain, new[b]), (*c.tokens, token))
                        for b, (c, token) in enumerate(zip(caches, tokens))]

    @property
    def batch_chunk_chars(self) -> int | None:
        """Small batch-engine chunks for the shared trunk reads of the eager step (``SHARED_SPAN``); none with step
        graphs, whose shared window is at most 2 * block_size (what chunks suit them is unmeasured)."""
        return BATCH_CHUNK_CHARS if self.step_graphs is None else None

    def use_step_graphs(self, on: bool, capture: bool = True) -> None:
        """Step branches through CUDA graphs of padded shapes (``zoo.step_graphs``; ``capture=False``: the same
        padding without graphs, for tests on CPU). Graphs read the weights where they were at capture: after moving or
        converting the model, call this again."""
        self.step_graphs = StepGraphs(self, capture) if on else None

    def forward_branches(self, tokens: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, chain: torch.Tensor | None,
                         attend: Callable) -> tuple[torch.Tensor, torch.Tensor]:
        """One new token per branch: tokens [B], their positions' rotation angles (``rope_angles``, [B, head_dim/2]
        each), the chains' keys and values [n_layer, 2, B, H, M, D] (or None) and ``attend(layer, q, own_k, own_v)``,
        which adds the trunk. Returns logits [B, vocab] and the new tokens' keys and values [B, n_layer, 2, H, D]."""
        x = self.wte(tokens[:, None])
        # per branch, broadcast over heads; in the model's dtype once, not at every layer
        cos, sin = cos.to(x.dtype)[:, None, None, :], sin.to(x.dtype)[:, None, None, :]
        nodes = []

        def own(layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
            nodes.extend((k, v))  # [B, H, 1, D] each
            if chain is not None:
                k, v = torch.cat((chain[layer][0], k), dim=2), torch.cat((chain[layer][1], v), dim=2)
            return attend(layer, q, k, v)

        for layer, block in enumerate(self.blocks):
            x = block(x, cos, sin, partial(own, layer))
        new = torch.stack(nodes, dim=1).view(len(tokens), self.cfg.n_layer, 2, self.cfg.n_head, self.head_dim)
        return self.lm_head(self.ln_f(x))[:, 0], new

    def _step_eager(self, caches: list[TreeCache], tokens: list[int], groups: list[tuple]
                    ) -> tuple[torch.Tensor, torch.Tensor]:
        device = self.wte.weight.device
        chain, own_bias = self.pad_chains(caches)
        reads = [[tuple(kv) for kv in trunk_keys(trunk, read)] for trunk, _, read, _ in groups]  # [group][layer]

        def attend(layer: int, q: torch.Tensor, own_k: torch.Tensor, own_v: torch.Tensor) -> torch.Tensor:
            if len(groups) == 1:
                return tree_attention(q, *reads[0][layer], groups[0][3], own_k, own_v, own_bias)
            y = torch.empty_like(q)
            for (_, rows, _, bias), read in zip(groups, reads):
                y[rows] = tree_attention(q[rows], *read[layer], bias, own_k[rows], own_v[rows], own_bias[rows])
            return y

        cos, sin = self.rope.rows([cache.pos for cache in caches], device)
        return self.forward_branches(torch.tensor(tokens, device=device), cos, sin, chain, attend)

    @torch.inference_mode()
    def settle(self, cache: TreeCache) -> TreeCache:
        """The same state as a trunk position: the chain's keys and values copied onto the trunk where it ends at
        the chain's start or already continues with its first tokens (then only the rest is copied); ``cache``
        itself where the trunk continues otherwise or is full."""
        trunk = cache.trunk
        if not cache.chain:
            return cache
        at = cache.length - trunk.start
        have = trunk.tokens[at : at + len(cache.tokens)]
        if list(cache.tokens[: len(have)]) != have or len(trunk.tokens) + len(cache.chain) - len(have) > MAX_TRUNK:
            return cache
        rest = cache.chain[len(have) :]
        if rest:
            trunk.reserve(len(rest))
            a = trunk.end - trunk.start
            trunk.kv[:, :, :, a : a + len(rest)] = torch.stack(rest, dim=3)
            trunk.tokens.extend(cache.tokens[len(have) :])
            trunk.featured.extend([False] * len(rest))
        return TreeCache(trunk, cache.pos)

    def _trunk_groups(self, caches: list[TreeCache]) -> list[tuple]:
        """Per trunk: its rows of the batch (None: all), what to read of it, and each row's bias over what is read
        (0 for the trunk positions below its length within block_size of its position, -inf elsewhere). What is
        read is the union of the rows' windows, ``(lo, hi)``, when it is at most ``SHARED_SPAN * block_size`` wide
        (one view for all: the stream's branches, the batch engine's workers taking neighbouring chunks; ``2 *
        block_size``, the graphs' fixed width, with ``use_step_graphs``), else a window per row, a [B, block_size -
        1] index of buffer positions (a copy). Built in numpy from Python ints and moved once: no device round trip
        per call, and no dozen torch calls on tiny tensors."""
        by_trunk: dict[int, list[int]] = {}
        for b, cache in enumerate(caches):
            by_trunk.setdefault(id(cache.trunk), []).append(b)
        device, window, groups = self.wte.weight.device, self.cfg.block_size, []
        for rows in by_trunk.values():
            trunk = caches[rows[0]].trunk
            first = np.array([max(trunk.start, caches[b].pos - window + 1) for b in rows])
            ends = np.array([caches[b].length for b in rows])
            hi = int(ends.max())
            lo = min(int(first.min()), hi)
            if hi - lo <= (2 if self.step_graphs is not None else SHARED_SPAN) * window:
                keys, read = np.arange(lo, hi)[None, :], (lo, hi)
            else:
                keys = ends[:, None] - window + 1 + np.arange(window - 1)[None, :]
                read = torch.from_numpy(np.maximum(keys, trunk.start) - trunk.start).to(device)
            seen = (keys >= first[:, None]) & (keys < ends[:, None])
            index = None if len(by_trunk) == 1 else torch.tensor(rows, device=device)
            groups.append((trunk, index, read, bias_of(seen, self.wte.weight)))
        return groups

    def pad_chains(self, caches: list[TreeCache], width: int | None = None, out: torch.Tensor | None = None
                   ) -> tuple[torch.Tensor | None, torch.Tensor]:
        """The branches' own tokens' keys and values [n_layer, 2, B, H, M, D] (padded to ``width``, default the
        longest chain M; None when that is 0; stacked into ``out`` [B * M, n_layer, 2, H, D] when given) and the bias
        [B, M + 1] over them and the new token (0 where seen: real and within block_size of the new position, -inf
        elsewhere)."""
        lengths = np.array([len(cache.chain) for cache in caches])[:, None]
        longest = int(lengths.max()) if width is None else width
        seen = np.ones((len(caches), longest + 1), dtype=bool)  # the last column: the new token itself
        seen[:, :longest] = (np.arange(longest) < lengths) & (lengths - np.arange(longest) < self.cfg.block_size)
        bias = bias_of(seen, self.wte.weight)
        if longest == 0:
            return None, bias
        pad = torch.zeros_like(next(cache.chain[0] for cache in caches if cache.chain))
        nodes = [node for cache in caches for node in (*cache.chain, *(pad,) * (longest - len(cache.chain)))]
        stacked = torch.stack(nodes, out=out)
        return stacked.view(len(caches), longest, *pad.shape).permute(2, 3, 0, 4, 1, 5), bias

    @torch.inference_mode()
    def extend(self, cache: TreeCache, tokens: list[int], at: list[int]) -> tuple[torch.Tensor, list[TreeCache]]:
        """Teacher-forced: the caches after ``tokens[:i]`` for each ``i`` in ``at`` (sorted, >= 1) and their final
        features (``head`` gives the logits). Where the trunk already continues with these tokens its positions
        are reused; the rest is appended to the trunk when ``cache`` is its end, else to a new trunk seeded with
        ``cache``'s window (a fork, or a trunk at ``MAX_TRUNK``)."""
        trunk, reused = cache.trunk, 0
        if not cache.chain:
            offset = cache.length - trunk.start
            known = trunk.tokens[offset : offset + len(tokens)]
            while reused < len(known) and known[reused] == tokens[reused] and trunk.featured[offset + reused]:
                reused += 1
        base = TreeCache(trunk, cache.length + reused) if reused else cache
        if reused < len(tokens):
            if not (base.at_trunk_end and len(trunk.tokens) + len(tokens) - reused <= MAX_TRUNK):
                trunk = self._fork(base)
            self._append(trunk, tokens[reused:])
        caches = [TreeCache(trunk if i > reused else cache.trunk, base.pos - reused + i) for i in at]
        rows = [c.length - 1 - c.trunk.start for c in caches]
        features = torch.stack([c.trunk.features[row] for c, row in zip(caches, rows)]) if caches else self.wte.weight[:0]
        return features, caches

    def _trunk(self, start: int) -> Trunk:
        cfg = self.cfg
        return Trunk(self.wte.weight, cfg.n_layer, cfg.n_head, self.head_dim, cfg.n_embd, start=start)

    def _fork(self, cache: TreeCache) -> Trunk:
        """A new trunk holding the block_size-1 positions ``cache`` ends with (its trunk's, then its chain's)."""
        old, end = cache.trunk, cache.pos
        lo = max(old.start, end - self.cfg.block_size + 1)
        trunk = self._trunk(start=lo)
        trunk.reserve(end - lo)
        from_trunk = max(0, cache.length - lo)
        if from_trunk:
            trunk.kv[:, :, :, :from_trunk] = old.kv[:, :, :, lo - old.start : cache.length - old.start]
        nodes = cache.chain[len(cache.chain) - (end - lo - from_trunk) :] if end - lo > from_trunk else ()
        if nodes:
            trunk.kv[:, :, :, from_trunk : end - lo] = torch.stack(nodes, dim=3)
        trunk.tokens = [-1] * (end - lo)  # never matched: caches on this trunk start at its end
        trunk.featured = [False] * (end - lo)
        return trunk

    def _append(self, trunk: Trunk, tokens: list[int]) -> None:
        """Run ``tokens`` through the model after the trunk's end (chunks of block_size queries, each attending to
        its band of the buffer), writing their keys, values and final features into the trunk."""
        window, device = self.cfg.block_size, self.wte.weight.device
        for i in range(0, len(tokens), window):
            chunk = tokens[i : i + window]
            first, count = trunk.end, len(chunk)
            trunk.reserve(count)
            lo, a = max(trunk.start, first - window + 1), first - trunk.start
            positions = torch.arange(first, first + count, device=device)
            offset = positions[:, None] - torch.arange(lo, first + count, device=device)[None, :]
            band = (offset >= 0) & (offset < window)
            cos, sin = rope_angles(positions, self.head_dim, self.cfg.rope_base)

            def attend(layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
                trunk.kv[layer, 0, :, a : a + count], trunk.kv[layer, 1, :, a : a + count] = k[0], v[0]
                keys, values = trunk.window(lo, first + count)[layer]
                return F.scaled_dot_product_attention(q, keys[None], values[None], attn_mask=band)

            x = self.wte(torch.tensor([chunk], device=device))
            for layer, block in enumerate(self.blocks):
                x = block(x, cos, sin, partial(attend, layer))
            trunk.features[a : a + count] = self.ln_f(x)[0]
            trunk.tokens.extend(chunk)
            trunk.featured.extend([True] * count)


def trunk_keys(trunk: Trunk, read: tuple[int, int] | torch.Tensor) -> torch.Tensor:
    """What ``_trunk_groups`` chose to read, for every layer: one shared window (lo, hi), or a window per row (an
    index)."""
    return trunk.window(*read) if isinstance(read, tuple) else trunk.gather(read)


def bias_of(seen: np.ndarray, like: torch.Tensor) -> torch.Tensor:
    """An attention bias on ``like``'s device and dtype: 0 where ``seen``, -inf elsewhere."""
    return torch.from_numpy(np.where(seen, 0.0, -np.inf)).to(like.device, like.dtype)
