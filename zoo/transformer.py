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

Long context: ``forward`` and ``step`` both implement sliding-window attention with window ``block_size`` at
every layer: position i attends to positions i-block_size+1 .. i. For T <= block_size that is plain causal
attention (SDPA ``is_causal``, flash on GPU); beyond, ``forward`` builds the banded mask and ``step`` drops the
oldest KV entry, so streaming equals teacher forcing at any length and costs O(block_size) per token.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F


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
        if self.n_embd % (2 * self.n_head):
            raise ValueError(f"n_embd={self.n_embd} must be a multiple of 2*n_head={2 * self.n_head} "
                            "(RoPE needs an even head size): change n_embd or n_head")


@dataclass(frozen=True)
class KVCache:
    """Keys and values per layer, each [1, n_head, t, head_dim] with t <= block_size; ``pos`` tokens seen."""

    keys: tuple[torch.Tensor, ...]
    values: tuple[torch.Tensor, ...]
    pos: int


def rope_angles(positions: torch.Tensor, head_dim: int, base: float) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin [T, head_dim/2] for absolute positions, computed in float64 so that the angles of large
    positions stay exact and ``forward`` and ``step`` see bit-identical rotations."""
    inv_freq = base ** (-torch.arange(0, head_dim, 2, dtype=torch.float64, device=positions.device) / head_dim)
    angles = positions.to(torch.float64)[:, None] * inv_freq[None, :]
    return angles.cos().float(), angles.sin().float()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate pairs (first half, second half) of the last dim of x [B, H, T, D] by the given angles."""
    x1, x2 = x.chunk(2, dim=-1)
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
        """Project x [B, T, C] to rotated, normalised q, k and v, each [B, H, T, D]."""
        B, T, C = x.shape
        q, k, v = self.c_attn(x).view(B, T, 3, self.n_head, self.head_dim).permute(2, 0, 3, 1, 4)
        q = apply_rope(self.q_norm(q), cos, sin)
        k = apply_rope(self.k_norm(k), cos, sin)
        return q, k, v

    def merge_heads(self, y: torch.Tensor) -> torch.Tensor:
        B, H, T, D = y.shape
        return self.c_proj(y.transpose(1, 2).reshape(B, T, H * D))

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        q, k, v = self.qkv(x, cos, sin)
        T = x.size(1)
        dropout_p = self.dropout if self.training else 0.0
        if T <= self.window:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=dropout_p)
        else:
            i = torch.arange(T, device=x.device)
            offset = i[:, None] - i[None, :]
            band = (offset >= 0) & (offset < self.window)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=band, dropout_p=dropout_p)
        return self.merge_heads(y)

    def step(self, x, cos, sin, past_k, past_v):
        """One new position x [1, 1, C] attending to the cached window; returns (y, keys, values)."""
        q, k, v = self.qkv(x, cos, sin)
        k = torch.cat((past_k, k), dim=2)[:, :, -self.window :]
        v = torch.cat((past_v, v), dim=2)[:, :, -self.window :]
        return self.merge_heads(F.scaled_dot_product_attention(q, k, v)), k, v

    def step_many(self, x, cos, sin, past_k, past_v, lengths: list[int]):
        """``step`` for a batch x [B, 1, C] of branches; past_k/past_v [B, H, L, D] hold branch b's ``lengths[b]``
        cached positions right-aligned (left padding, masked out). Returns (y, keys, values) with the same
        layout, already cut to the window."""
        q, k, v = self.qkv(x, cos, sin)
        k = torch.cat((past_k, k), dim=2)[:, :, -self.window :]
        v = torch.cat((past_v, v), dim=2)[:, :, -self.window :]
        width = k.size(2)
        seen = torch.tensor([min(n + 1, width) for n in lengths], device=x.device)
        mask = torch.arange(width, device=x.device)[None, :] >= (width - seen)[:, None]  # [B, width]
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask[:, None, None, :])
        return self.merge_heads(y), k, v


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

    def forward(self, x, cos, sin):
        x = x + self.resid_dropout(self.attn(self.ln_1(x), cos, sin))
        return x + self.mlp(self.ln_2(x))

    def step(self, x, cos, sin, past_k, past_v):
        y, k, v = self.attn.step(self.ln_1(x), cos, sin, past_k, past_v)
        x = x + y
        return x + self.mlp(self.ln_2(x)), k, v

    def step_many(self, x, cos, sin, past_k, past_v, lengths):
        y, k, v = self.attn.step_many(self.ln_1(x), cos, sin, past_k, past_v, lengths)
        x = x + y
        return x + self.mlp(self.ln_2(x)), k, v


class Model(nn.Module):
    def __init__(self, cfg: Config):
        super().__init__()
        self.cfg = cfg
        self.vocab_size, self.block_size = cfg.vocab_size, cfg.block_size  # zoo.interface.TokenModel
        self.wte = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.ln_f = nn.RMSNorm(cfg.n_embd)
        self.lm_head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        if cfg.tie_embeddings:
            self.lm_head.weight = self.wte.weight
        self.apply(self._init_weights)
        # GPT-2 scaling: residual-branch outputs shrink with depth so the residual stream starts at unit scale.
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * cfg.n_layer))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    @property
    def head_dim(self) -> int:
        return self.cfg.n_embd // self.cfg.n_head

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        """Logits [B, T, vocab] for the next token at every position of idx [B, T]."""
        cos, sin = rope_angles(torch.arange(idx.size(1), device=idx.device), self.head_dim, self.cfg.rope_base)
        x = self.drop(self.wte(idx))
        for block in self.blocks:
            x = block(x, cos, sin)
        return self.lm_head(self.ln_f(x))

    def empty_cache(self) -> KVCache:
        empty = self.wte.weight.new_zeros(1, self.cfg.n_head, 0, self.head_dim)
        return KVCache(keys=(empty,) * self.cfg.n_layer, values=(empty,) * self.cfg.n_layer, pos=0)

    @torch.no_grad()
    def step(self, cache: KVCache, token: int) -> tuple[torch.Tensor, KVCache]:
        """Append one token: logits [vocab] for the next one and a new cache (``cache`` is left untouched)."""
        device = self.wte.weight.device
        cos, sin = rope_angles(torch.tensor([cache.pos], device=device), self.head_dim, self.cfg.rope_base)
        x = self.wte(torch.tensor([[token]], device=device))
        keys, values = [], []
        for block, past_k, past_v in zip(self.blocks, cache.keys, cache.values):
            x, k, v = block.step(x, cos, sin, past_k, past_v)
            keys.append(k)
            values.append(v)
        logits = self.lm_head(self.ln_f(x))[0, 0]
        return logits, KVCache(keys=tuple(keys), values=tuple(values), pos=cache.pos + 1)

    @torch.no_grad()
    def step_many(self, caches: list[KVCache], tokens: list[int]) -> tuple[torch.Tensor, list[KVCache]]:
        """``step`` for many branches in one forward pass: logits [B, vocab] and one new cache per branch.

        The caches (of different lengths) are left-padded into one [B, H, L, D] tensor per layer and the padding
        is masked out; each new cache is a view of the batch's output, so no per-branch copy is made.
        """
        device = self.wte.weight.device
        positions = torch.tensor([cache.pos for cache in caches], device=device)
        cos, sin = rope_angles(positions, self.head_dim, self.cfg.rope_base)
        cos, sin = cos[:, None, None, :], sin[:, None, None, :]  # per branch, broadcast over heads
        x = self.wte(torch.tensor(tokens, device=device)[:, None])
        lengths = [cache.keys[0].size(2) for cache in caches]
        slot: dict[int, int] = {}  # branches often share a parent (several tokens after one covering)
        for cache in caches:
            slot.setdefault(id(cache), len(slot))
        parents = list({id(cache): cache for cache in caches}.values())
        spread = torch.tensor([slot[id(cache)] for cache in caches], device=device) if len(parents) < len(caches) else None
        parent_lengths = [cache.keys[0].size(2) for cache in parents]
        layers = []
        for layer, block in enumerate(self.blocks):
            past_k = left_padded([cache.keys[layer] for cache in parents], parent_lengths)
            past_v = left_padded([cache.values[layer] for cache in parents], parent_lengths)
            if spread is not None:
                past_k, past_v = past_k[spread], past_v[spread]
            x, k, v = block.step_many(x, cos, sin, past_k, past_v, lengths)
            layers.append((k, v))
        logits = self.lm_head(self.ln_f(x))[:, 0]
        width = layers[0][0].size(2)
        new = []
        for b, cache in enumerate(caches):
            start = width - min(lengths[b] + 1, width)
            new.append(KVCache(
                keys=tuple(k[b : b + 1, :, start:] for k, _ in layers),
                values=tuple(v[b : b + 1, :, start:] for _, v in layers),
                pos=cache.pos + 1,
            ))
        return logits, new


def left_padded(tensors: list[torch.Tensor], lengths: list[int]) -> torch.Tensor:
    """[1, H, t_b, D] tensors stacked into [B, H, max t, D], each right-aligned (zeros before it)."""
    longest = max(lengths)
    if all(n == longest for n in lengths):
        return torch.cat(tensors, dim=0)
    return torch.cat([F.pad(t, (0, 0, longest - n, 0)) for t, n in zip(tensors, lengths)], dim=0)
