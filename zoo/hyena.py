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

Training computes the long convolutions with FFTs, O(T log T). Streaming keeps, per layer, the last
``short_filter_size`` projected inputs (short conv) and the last ``block_size`` inputs of each long
convolution; the new output is one dot product with the filter: O(block_size) per token. The filters
themselves are evaluated once, in ``empty_cache`` (so a cache belongs to the weights it was made with).

Long context: the filters are finite (length ``block_size``), so at any length position i sees the inputs of
positions i-block_size+1 .. i in each long convolution; ``forward`` (FFT with the same truncated filter) and
``step`` agree at every length.

``extend`` (``zoo.interface.FastStreamingModel``) runs committed tokens teacher-forced from a cache, in chunks of
``EXTEND_CHUNK`` tokens, each long convolution over the cache's history followed by the chunk's inputs. The caches
it returns hold views of those inputs (the last ``block_size`` before each asked position), not copies.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from zoo.extend import in_chunks
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


@dataclass(frozen=True)
class HyenaCache:
    """Per layer: short-conv inputs [1, (order+1)*d, short_filter_size] (oldest first); each long conv's
    recent inputs [1, d, <= block_size] (oldest first); the time-reversed filters [order, d, block_size]."""

    short_states: tuple[torch.Tensor, ...]
    histories: tuple[tuple[torch.Tensor, ...], ...]
    reversed_filters: tuple[torch.Tensor, ...]


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

    def step(self, x, short_state, histories, reversed_filters):
        """One position x [B, d] of B branches; returns (y [B, d], new short_state, new histories).

        ``histories``: per long convolution, the branch's history [1, d, t] (B = 1) or the list of the branches'
        histories [1, d, t_b]."""
        short_state = torch.cat((short_state[:, :, 1:], self.in_proj(x).unsqueeze(-1)), dim=-1)
        u = (short_state * self.short_conv.weight.squeeze(1)).sum(-1) + self.short_conv.bias
        *gates, z = u.split(self.d, dim=-1)
        new_histories = []
        for n, gate in enumerate(gates):
            history = appended(histories[n], z, self.length)
            taps = reversed_filters[n, :, self.length - history.size(-1) :]
            z = gate * ((history * taps).sum(-1) + self.filter_bias[n] * z)
            new_histories.append(history)
        return self.out_proj(z), short_state, tuple(new_histories)

    def extend(self, x, short_state, histories, reversed_filters, at):
        """``step`` along positions x [T, d] from (short_state, histories): y [T, d], and for each ``i`` in ``at``
        the short state and the histories after ``x[:i]`` (views of this pass's inputs)."""
        projected = torch.cat((short_state[0], self.in_proj(x).t()), dim=-1)  # [(order+1)*d, short + T]
        size = short_state.size(-1)
        u = F.conv1d(projected[None, :, 1:], self.short_conv.weight, self.short_conv.bias, groups=projected.size(0))
        *gates, z = u[0].split(self.d, dim=0)  # [d, T] each
        short_states = [projected[None, :, i : i + size] for i in at]
        new_histories = []
        for n, gate in enumerate(gates):
            past = histories[n].size(-1)
            inputs = torch.cat((histories[n][0], z), dim=-1)  # [d, past + T]
            window = F.pad(inputs, (self.length - 1, 0))[None, :, past:]  # the block_size inputs each output sees
            long = F.conv1d(window, reversed_filters[n, :, None, :], groups=self.d)[0]
            z = gate * (long + self.filter_bias[n, :, None] * z)
            new_histories.append([inputs[None, :, max(0, past + i - self.length) : past + i] for i in at])
        return self.out_proj(z.t()), short_states, [tuple(h) for h in zip(*new_histories)]


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

    def step(self, x, short_state, histories, reversed_filters):
        y, short_state, histories = self.hyena.step(self.ln_1(x), short_state, histories, reversed_filters)
        x = x + y
        return x + self.mlp(self.ln_2(x)), short_state, histories

    def extend(self, x, short_state, histories, reversed_filters, at):
        y, short_states, histories = self.hyena.extend(self.ln_1(x), short_state, histories, reversed_filters, at)
        x = x + y
        return x + self.mlp(self.ln_2(x)), short_states, histories


class Model(nn.Module):
    def __init__(self, cfg: Config):
        super().__init__()
        self.cfg = cfg
        self.vocab_size, self.block_size = cfg.vocab_size, cfg.block_size  # zoo.interface.TokenModel
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

    @torch.no_grad()
    def empty_cache(self) -> HyenaCache:
        cfg, w = self.cfg, self.wte.weight
        short = w.new_zeros(1, (cfg.order + 1) * cfg.n_embd, cfg.short_filter_size)
        empty_history = (w.new_zeros(1, cfg.n_embd, 0),) * cfg.order
        return HyenaCache(
            short_states=(short,) * cfg.n_layer,
            histories=(empty_history,) * cfg.n_layer,
            reversed_filters=tuple(block.hyena.filters().flip(-1) for block in self.blocks),
        )

    @torch.no_grad()
    def step(self, cache: HyenaCache, token: int) -> tuple[torch.Tensor, HyenaCache]:
        """Append one token: logits [vocab] for the next one and a new cache (``cache`` is left untouched)."""
        x = self.wte(torch.tensor([token], device=self.wte.weight.device))
        short_states, histories = [], []
        for block, short, history, filters in zip(
            self.blocks, cache.short_states, cache.histories, cache.reversed_filters
        ):
            x, short, history = block.step(x, short, history, filters)
            short_states.append(short)
            histories.append(history)
        logits = self.lm_head(self.ln_f(x))[0]
        return logits, HyenaCache(tuple(short_states), tuple(histories), cache.reversed_filters)

    @torch.no_grad()
    def step_many(self, caches: list[HyenaCache], tokens: list[int]) -> tuple[torch.Tensor, list[HyenaCache]]:
        """``step`` for many branches in one pass: logits [B, vocab] and one new cache per branch.

        Histories shorter than the longest are left-padded with zeros: they meet taps that multiply zeros, so the
        sum is the same. Each new cache owns a copy of its rows: a view would keep the whole batch's histories
        (block_size steps per channel, order and layer, for every branch) alive as long as any one branch is
        remembered, which ran a 60k-char batch-engine evaluation out of memory.
        """
        x = self.wte(torch.tensor(tokens, device=self.wte.weight.device))
        layers = []
        for layer, block in enumerate(self.blocks):
            short = torch.cat([cache.short_states[layer] for cache in caches], dim=0)
            histories = [[cache.histories[layer][n] for cache in caches] for n in range(self.cfg.order)]
            x, short, histories = block.step(x, short, histories, caches[0].reversed_filters[layer])
            layers.append((short, histories))
        logits = self.lm_head(self.ln_f(x))
        new = [
            HyenaCache(
                tuple(short[b : b + 1].clone() for short, _ in layers),
                tuple(tuple(h[b : b + 1].clone() for h in histories) for _, histories in layers),
                caches[0].reversed_filters,
            )
            for b in range(len(caches))
        ]
        return logits, new

    @torch.no_grad()
    def extend(self, cache: HyenaCache, tokens: list[int], at: list[int]) -> tuple[torch.Tensor, list[HyenaCache]]:
        """The caches after ``tokens[:i]`` for each ``i`` in ``at`` (sorted, >= 1) and the features ``head`` maps
        to their logits [len(at), n_embd], teacher-forced in chunks of ``EXTEND_CHUNK`` tokens."""
        empty = self.wte.weight.new_zeros(0, self.cfg.n_embd)
        return in_chunks(self._extend_chunk, cache, tokens, at, EXTEND_CHUNK, empty)

    def _extend_chunk(self, cache: HyenaCache, tokens: list[int], at: list[int]):
        x = self.wte(torch.tensor(tokens, device=self.wte.weight.device))  # [T, n_embd]
        layers = []
        for block, short, history, filters in zip(
            self.blocks, cache.short_states, cache.histories, cache.reversed_filters
        ):
            x, shorts, histories = block.extend(x, short, history, filters, at)
            layers.append((shorts, histories))
        features = self.ln_f(x[torch.tensor(at, device=x.device) - 1])
        caches = [
            HyenaCache(
                tuple(shorts[k] for shorts, _ in layers),
                tuple(histories[k] for _, histories in layers),
                cache.reversed_filters,
            )
            for k in range(len(at))
        ]
        return features, caches

    @torch.no_grad()
    def head(self, features: torch.Tensor) -> torch.Tensor:
        """Logits [n, vocab] from ``extend``'s features (the final norm's output)."""
        return self.lm_head(features)


def appended(histories: torch.Tensor | list[torch.Tensor], z: torch.Tensor, length: int) -> torch.Tensor:
    """[B, d, t'] the last ``length`` inputs once z [B, d] is appended to each history [1, d, t_b]; shorter
    histories are left-padded with zeros (they meet taps that multiply zeros, so the sums are the same).

    Each branch's inputs are copied once, straight into the new tensor: stacking the histories first and
    appending after (two copies of B x d x block_size per long convolution) made ``step_many`` ~1.5x slower."""
    if isinstance(histories, torch.Tensor):
        histories = [histories]
    kept = min(max(h.size(-1) for h in histories), length - 1)
    out = z.new_empty(z.size(0), z.size(1), kept + 1)
    out[:, :, -1] = z
    if all(h.size(-1) >= kept for h in histories):
        torch.cat([h[..., h.size(-1) - kept :] for h in histories], dim=0, out=out[..., :-1])
    else:
        out[..., :-1].zero_()
        for row, h in zip(out, histories):
            part = h[0, :, max(0, h.size(-1) - kept) :]
            row[:, kept - part.size(-1) : kept] = part
    return out
