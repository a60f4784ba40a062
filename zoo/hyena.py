"""Hyena language model over subword tokens: attention replaced by gated implicit long convolutions.

Hyena operator of order N (Poli et al. 2023, definition 3.1), here N = ``order`` (default 2):

    x_1 .. x_N, v = short causal depthwise conv(in_proj(u)).split()    # N gates and a value, d channels each
    z = v
    for n in 1..N:  z = x_n * (h_n (*) z + bias_n * z)                # (*) causal convolution over time
    y = out_proj(z)

Each long filter h_n has one tap per position 0..block_size-1 per channel and is *implicit*: a small MLP with
sine activations maps positional features (t, cos 2πkt, sin 2πkt) to all channels' taps, and an exponential
decay window (per-channel rates spread between ``decay_fast`` and ``decay_slow``) biases channels towards
short or long memory. Parameters therefore do not grow with the filter length.

Training computes the long convolutions with FFTs, O(T log T). Streaming reads the committed positions'
convolution inputs from a shared trunk and carries, per branch, its inputs' sums for the next few positions
(``zoo.hyena_trunk``): a step is O(FUTURE) per channel, with no history copied. The filters themselves are
evaluated once, in ``empty_cache`` (so a cache belongs to the weights it was made with).

Long context: the filters are finite (length ``block_size``), so at any length position i sees the inputs of
positions i-block_size+1 .. i in each long convolution; ``forward`` (FFT with the same truncated filter) and
``step`` agree at every length.

``extend`` (``zoo.interface.BatchedStreamingNetwork``) runs committed tokens teacher-forced, in chunks of
``EXTEND_CHUNK`` tokens, writing their inputs onto the trunk; each convolution reads its window there, in place.
The caches it returns are trunk positions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from zoo.extend import in_chunks
from zoo.hyena_trunk import MAX_TRUNK, Ahead, Filters, HistoryTrunk, HyenaCache, futures
from zoo.transformer import MLP

EXTEND_CHUNK = 512  # tokens per teacher-forced pass of ``extend``: bounds its activations' memory


@dataclass
class Config:
    vocab_size: int
    block_size: int = 256  # training context and long-filter length
    n_layer: int = 4
    n_embd: int = 128
    order: int = 2
    short_filter_size: int = 3
    filter_width: int = 64  # hidden width of the implicit-filter MLP
    filter_bands: int = 8  # sin/cos frequency pairs in the filter's positional features
    filter_sine_freq: float = 10.0  # initial frequency of the MLP's sine activations (higher: finer filters)
    decay_fast: float = 0.3  # fraction of block_size at which the fastest channels' window reaches decay_target
    decay_slow: float = 1.5  # same for the slowest channels
    decay_target: float = 0.01
    mlp_ratio: int = 4
    dropout: float = 0.0
    tie_embeddings: bool = True

    def __post_init__(self) -> None:
        """Refuse a setting no model can be built from with a plain ValueError naming the field (the trainer and
        ``subchar train --set``, which runs this class without torch, show it as the user's one-line error)."""
        for name in ("vocab_size", "block_size", "n_layer", "n_embd", "order", "short_filter_size", "filter_width",
                     "filter_bands", "mlp_ratio"):
            value = getattr(self, name)
            if type(value) is not int or value < 1:  # True and 2.0 are refused too
                raise ValueError(f"{name} must be a whole number >= 1, got {value!r}")
        for name in ("filter_sine_freq", "decay_fast", "decay_slow"):
            value = getattr(self, name)
            if type(value) not in (int, float) or not 0 < value < float("inf"):
                raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
        if type(self.decay_target) not in (int, float) or not 0 < self.decay_target < 1:
            raise ValueError(f"decay_target must be a number > 0 and < 1, got {self.decay_target!r}")
        if type(self.dropout) not in (int, float) or not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be a number >= 0 and < 1, got {self.dropout!r}")
        if type(self.tie_embeddings) is not bool:
            raise ValueError(f"tie_embeddings must be true or false, got {self.tie_embeddings!r}")


def positional_features(length: int, n_bands: int) -> torch.Tensor:
    """[length, 1 + 2*n_bands]: normalised time t = i/length and cos/sin(2π k t) for k = 1..n_bands."""
    t = torch.arange(length, dtype=torch.float64) / length
    angles = 2 * math.pi * t[:, None] * torch.arange(1, n_bands + 1, dtype=torch.float64)
    return torch.cat((t[:, None], angles.cos(), angles.sin()), dim=1).float()


def fft_causal_conv(u: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """y[..., i] = sum_j h[..., j] u[..., i-j] for u [B, d, T], h [d, L]; zero-padded so nothing wraps around."""
    T = u.size(-1)
    h = h[..., :T]
    n = T + h.size(-1)
    spectrum = torch.fft.rfft(u.float(), n=n) * torch.fft.rfft(h.float(), n=n)
    return torch.fft.irfft(spectrum, n=n)[..., :T].to(u.dtype)


class Sine(nn.Module):
    """sin(freq * x) with a learnable frequency per unit: lets the filter MLP express oscillating taps."""

    def __init__(self, width: int, freq: float):
        super().__init__()
        self.freq = nn.Parameter(torch.full((width,), freq))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sin(self.freq * x)


class ImplicitFilter(nn.Module):
    """Filters [channels, length]: h(t) = decay_window(t) * MLP(positional_features(t))."""

    def __init__(self, channels: int, cfg: Config):
        super().__init__()
        width = cfg.filter_width
        self.register_buffer("features", positional_features(cfg.block_size, cfg.filter_bands), persistent=False)
        self.mlp = nn.Sequential(
            nn.Linear(1 + 2 * cfg.filter_bands, width), Sine(width, cfg.filter_sine_freq),
            nn.Linear(width, width), Sine(width, cfg.filter_sine_freq),
            nn.Linear(width, channels, bias=False),
        )
        t = torch.arange(cfg.block_size, dtype=torch.float32) / cfg.block_size
        fastest = math.log(1 / cfg.decay_target) / cfg.decay_fast
        slowest = math.log(1 / cfg.decay_target) / cfg.decay_slow
        rates = torch.linspace(fastest, slowest, channels)
        self.register_buffer("window", torch.exp(-rates[:, None] * t[None, :]), persistent=False)

    def forward(self) -> torch.Tensor:
        return self.mlp(self.features).t() * self.window


class HyenaOperator(nn.Module):
    def __init__(self, cfg: Config):
        super().__init__()
        d, order = cfg.n_embd, cfg.order
        self.d, self.order, self.length = d, order, cfg.block_size
        self.in_proj = nn.Linear(d, (order + 1) * d, bias=False)
        self.short_conv = nn.Conv1d(
            (order + 1) * d, (order + 1) * d, cfg.short_filter_size,
            groups=(order + 1) * d, padding=cfg.short_filter_size - 1,
        )
        self.filter = ImplicitFilter(order * d, cfg)
        self.filter_bias = nn.Parameter(torch.randn(order, d))  # the "D" skip term of each long convolution
        self.out_proj = nn.Linear(d, d, bias=False)

    def filters(self) -> torch.Tensor:
        """[order, d, block_size]."""
        return self.filter().view(self.order, self.d, self.length)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        T = x.size(1)
        u = self.short_conv(self.in_proj(x).transpose(1, 2))[..., :T]  # [B, (order+1)*d, T]
        *gates, z = u.split(self.d, dim=1)
        h = self.filters()
        for n, gate in enumerate(gates):
            z = gate * (fft_causal_conv(z, h[n]) + self.filter_bias[n, :, None] * z)
        return self.out_proj(z.transpose(1, 2))

    def step(self, x: torch.Tensor, tail: torch.Tensor, future: torch.Tensor, first_taps: torch.Tensor):
        """One position x [B, d] of B branches, from their last short-conv inputs tail [B, (order+1)*d, short-1] and
        their long convolutions' sums over the inputs before it, future [B, order, d]; first_taps [order, d] is h[0]
        of each filter. Returns y [B, d], the long convolutions' new inputs [B, order, d] and the new short-conv
        input [B, (order+1)*d]."""
        projected = self.in_proj(x)
        window = torch.cat((tail, projected.unsqueeze(-1)), dim=-1)
        u = (window * self.short_conv.weight.squeeze(1)).sum(-1) + self.short_conv.bias
        *gates, z = u.split(self.d, dim=-1)
        inputs = []
        for n, gate in enumerate(gates):
            inputs.append(z)
            z = gate * (future[:, n] + (first_taps[n] + self.filter_bias[n]) * z)
        return self.out_proj(z), torch.stack(inputs, dim=1), projected

    def extend(self, x: torch.Tensor, trunk: HistoryTrunk, layer: int, column: int) -> torch.Tensor:
        """``step`` along positions x [T, d] that continue ``trunk`` at buffer ``column``: their inputs are written
        into the trunk's columns and each convolution reads its window there, in place. Returns y [T, d]."""
        T, short_size = x.size(0), self.short_conv.kernel_size[0]
        short = trunk.short[layer]
        short[:, column : column + T] = self.in_proj(x).t()
        u = F.conv1d(short[None, :, column - short_size + 1 : column + T], self.short_conv.weight,
                     self.short_conv.bias, groups=short.size(0))[0]
        *gates, z = u.split(self.d, dim=0)  # [d, T] each
        reversed_filters = trunk.filters.reversed.view(-1, self.order, self.d, 1, self.length)[layer]
        for n, gate in enumerate(gates):
            long = trunk.long[layer, n]
            long[:, column : column + T] = z
            window = long[None, :, column - self.length + 1 : column + T]  # the block_size inputs each output sees
            z = gate * (F.conv1d(window, reversed_filters[n], groups=self.d)[0] + self.filter_bias[n, :, None] * z)
        return self.out_proj(z.t())


class Block(nn.Module):
    def __init__(self, cfg: Config):
        super().__init__()
        self.ln_1 = nn.RMSNorm(cfg.n_embd)
        self.hyena = HyenaOperator(cfg)
        self.ln_2 = nn.RMSNorm(cfg.n_embd)
        self.mlp = MLP(cfg.n_embd, cfg.mlp_ratio, cfg.dropout)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.dropout(self.hyena(self.ln_1(x)))
        return x + self.mlp(self.ln_2(x))

    def step(self, x, tail, future, first_taps):
        y, inputs, projected = self.hyena.step(self.ln_1(x), tail, future, first_taps)
        x = x + y
        return x + self.mlp(self.ln_2(x)), inputs, projected

    def extend(self, x, trunk, layer, column):
        x = x + self.hyena.extend(self.ln_1(x), trunk, layer, column)
        return x + self.mlp(self.ln_2(x))


class Model(nn.Module):
    def __init__(self, cfg: Config):
        super().__init__()
        self.cfg = cfg
        self.vocab_size, self.block_size = cfg.vocab_size, cfg.block_size  # zoo.interface.StreamingNetwork
        self.wte = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.ln_f = nn.RMSNorm(cfg.n_embd)
        self.lm_head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        nn.init.normal_(self.wte.weight, std=0.02)
        if cfg.tie_embeddings:
            self.lm_head.weight = self.wte.weight
        else:
            nn.init.normal_(self.lm_head.weight, std=0.02)
        # Residual-stream projections as in GPT-2; the filter MLPs keep PyTorch's fan-in init (their sines
        # need inputs of order one).
        residual_std = 0.02 / math.sqrt(2 * cfg.n_layer)
        for block in self.blocks:
            nn.init.normal_(block.hyena.in_proj.weight, std=0.02)
            nn.init.normal_(block.mlp.c_fc.weight, std=0.02)
            nn.init.normal_(block.hyena.out_proj.weight, std=residual_std)
            nn.init.normal_(block.mlp.c_proj.weight, std=residual_std)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        """Logits [B, T, vocab] for the next token at every position of idx [B, T]."""
        x = self.wte(idx)
        for block in self.blocks:
            x = block(x)
        return self.lm_head(self.ln_f(x))

    @torch.inference_mode()
    def empty_cache(self) -> HyenaCache:
        """The state before any token, on a new trunk; the filters are evaluated here, once (so a cache belongs to
        the weights it was made with)."""
        filters = Filters(torch.stack([block.hyena.filters() for block in self.blocks]))
        return HyenaCache(self._trunk(filters, start=0), 0)

    @torch.inference_mode()
    def step(self, cache: HyenaCache, token: int) -> tuple[torch.Tensor, HyenaCache]:
        """Append one token: logits [vocab] for the next one and a new cache (``cache`` is left untouched)."""
        logits, caches = self.step_batch([cache], [token])
        return logits[0], caches[0]

    @torch.inference_mode()
    def step_batch(self, caches: list[HyenaCache], tokens: list[int]) -> tuple[torch.Tensor, list[HyenaCache]]:
        """``step`` for many branches in one pass: logits [B, vocab] and one new cache per branch, whose chain gains
        the new token's inputs (a view of this batch's [B, inputs] tensor) and whose ``Ahead`` (its own copy) is the
        parent's shifted by one position plus the new inputs times the filters' taps (``zoo.hyena_trunk``)."""
        filters = caches[0].trunk.filters
        aheads = self._aheads(caches, filters)  # before rebasing: the caches asked keep what is computed
        caches = [cache.rebased() for cache in caches]
        future = torch.stack([ahead.future for ahead in aheads])  # [B, n_layer, order, d, FUTURE]
        tail = torch.stack([ahead.tail for ahead in aheads])  # [B, n_layer, (order+1)*d, short-1]
        x = self.wte(torch.tensor(tokens, device=self.wte.weight.device))
        inputs, projected = [], []
        for layer, block in enumerate(self.blocks):
            x, layer_inputs, layer_projected = block.step(x, tail[:, layer], future[:, layer, :, :, 0],
                                                          filters.taps[layer, :, :, 0])
            inputs.append(layer_inputs)
            projected.append(layer_projected)
        logits = self.lm_head(self.ln_f(x))
        inputs, projected = torch.stack(inputs, dim=1), torch.stack(projected, dim=1)
        future = F.pad(torch.addcmul(future[..., 1:], filters.ahead, inputs[..., None]), (0, 1))
        tail = torch.cat((tail[..., 1:], projected[..., None]), dim=-1)
        nodes = torch.cat((inputs.flatten(1), projected.flatten(1)), dim=1)
        return logits, [
            HyenaCache(cache.trunk, cache.length, (*cache.chain, nodes[b]), (*cache.tokens, token),
                       Ahead(future[b].clone(), ahead.valid - 1, tail[b].clone()))
            for b, (cache, token, ahead) in enumerate(zip(caches, tokens, aheads))
        ]

    def _aheads(self, caches: list[HyenaCache], filters: Filters) -> list[Ahead]:
        """Each cache's ``Ahead``, computed (``futures``) where it has none yet or its future has run out, and kept
        in the cache for its next steps."""
        stale = {id(cache): cache for cache in caches if cache.ahead is None or cache.ahead.valid == 0}
        if stale:
            fresh = futures(list(stale.values()), filters, self.cfg.short_filter_size - 1)
            for cache, ahead in zip(stale.values(), fresh):
                cache.ahead = ahead
        return [cache.ahead for cache in caches]

    @torch.inference_mode()
    def settle(self, cache: HyenaCache) -> HyenaCache:
        """The same state as a trunk position: the chain's inputs copied onto the trunk where it ends at the chain's
        start or already continues with its first tokens (then only the rest is copied); ``cache`` itself where the
        trunk continues otherwise or is full."""
        based = cache.rebased()
        trunk = based.trunk
        if not based.chain:
            return HyenaCache(trunk, based.length, ahead=based.ahead) if cache.chain else cache
        if based.length != trunk.end or len(trunk.tokens) + len(based.chain) > MAX_TRUNK:
            return cache
        nodes = torch.stack(based.chain, dim=-1)  # [inputs, chain]
        split = trunk.long[..., 0].numel()
        trunk.append(list(based.tokens), nodes[:split].view(*trunk.long.shape[:-1], -1),
                     nodes[split:].view(*trunk.short.shape[:-1], -1))
        return HyenaCache(trunk, based.pos, ahead=based.ahead)

    @torch.inference_mode()
    def extend(self, cache: HyenaCache, tokens: list[int], at: list[int]) -> tuple[torch.Tensor, list[HyenaCache]]:
        """Teacher-forced: the caches after ``tokens[:i]`` for each ``i`` in ``at`` (sorted, >= 1) and their final
        features (``head`` gives the logits), in chunks of ``EXTEND_CHUNK`` tokens. The tokens are appended to the
        trunk when ``cache`` is its end, else to a new trunk seeded with ``cache``'s window (a fork, or a trunk at
        ``MAX_TRUNK``)."""
        if not (cache.at_trunk_end and len(cache.trunk.tokens) + len(tokens) <= MAX_TRUNK):
            cache = HyenaCache(self._fork(cache), cache.pos, ahead=cache.ahead)
        cache.trunk.reserve(max(at, default=0))  # once: a whole window's pass would otherwise double its buffers
        empty = self.wte.weight.new_zeros(0, self.cfg.n_embd)
        return in_chunks(self._extend_chunk, cache, tokens, at, EXTEND_CHUNK, empty)

    def _extend_chunk(self, cache: HyenaCache, tokens: list[int], at: list[int]):
        """Append ``tokens`` to the trunk ``cache`` ends: one teacher-forced pass."""
        trunk = cache.trunk
        trunk.reserve(len(tokens))
        column, first = trunk.column(trunk.end), trunk.end
        x = self.wte(torch.tensor(tokens, device=self.wte.weight.device))  # [T, n_embd]
        for layer, block in enumerate(self.blocks):
            x = block.extend(x, trunk, layer, column)
        trunk.tokens.extend(tokens)
        features = self.ln_f(x[torch.tensor(at, device=x.device) - 1])
        return features, [HyenaCache(trunk, first + i) for i in at]

    def _trunk(self, filters: Filters, start: int) -> HistoryTrunk:
        cfg = self.cfg
        return HistoryTrunk(filters, (cfg.n_layer, cfg.order, cfg.n_embd), (cfg.n_layer, (cfg.order + 1) * cfg.n_embd),
                            lead=max(cfg.block_size, cfg.short_filter_size) - 1, start=start)

    def _fork(self, cache: HyenaCache) -> HistoryTrunk:
        """A new trunk starting at ``cache``'s position, seeded with the inputs of the block_size-1 positions
        before it (its trunk's, then its chain's)."""
        trunk = self._trunk(cache.trunk.filters, start=cache.pos)
        trunk.long.flatten(0, -2)[:, : trunk.lead] = cache.window(trunk.lead)
        size = self.cfg.short_filter_size - 1
        tail = cache.trunk_tail(size) if cache.ahead is None else cache.ahead.tail
        trunk.short[..., trunk.lead - size : trunk.lead] = tail
        return trunk

    @torch.inference_mode()
    def head(self, features: torch.Tensor) -> torch.Tensor:
        """Logits [n, vocab] from ``extend``'s features (the final norm's output)."""
        return self.lm_head(features)

