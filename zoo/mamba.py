"""Mamba (selective state-space) language model over subword tokens, with O(1)-per-token recurrent streaming.

Each layer is ``x + Mixer(RMSNorm(x))`` (no separate MLP, as in the Mamba paper). The mixer:

    x, z   = in_proj(x).chunk(2)                       # d_inner channels each
    x      = silu(causal depthwise conv1d(x))          # kernel d_conv
    dt,B,C = x_proj(x)                                 # input-dependent ("selective") SSM parameters
    dt     = softplus(dt_proj(dt))                     # per-channel step size
    h_t    = exp(dt_t * A) * h_{t-1} + dt_t * B_t * x_t    # d_state per channel, A = -exp(A_log)
    y_t    = C_t . h_t + D * x_t
    out    = out_proj(y * silu(z))

Kernels: on CUDA tensors with the ``mamba-ssm`` package (extra ``cuda``), training runs its fused
``selective_scan_fn`` (if its compiled ``selective_scan_cuda`` is installed; ``causal_conv1d_fn`` too if
``causal-conv1d`` is) and streaming its Triton ``selective_state_update``. Otherwise (CPU, tests) a pure-torch
scan computes the same recurrence. Parameter names and shapes match ``mamba_ssm.Mamba``, so both paths run on
the same weights; ``tests/test_models_cuda.py`` checks that they agree (forward, gradients and step).

Streaming state per layer: the last ``d_conv`` conv inputs and the SSM state h, [d_inner, d_state]. The
recurrence has no context limit: ``block_size`` is only the training context.

``extend`` (``zoo.interface.BatchedStreamingNetwork``) runs committed tokens teacher-forced from a cache: the
projections and the conv of ``EXTEND_CHUNK`` tokens at once, then only the state update stepped in time, keeping
the states at the asked positions (a cache's conv state is a view of the chunk's conv inputs).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from zoo.extend import in_chunks


try:  # fused kernels, optional extra ``cuda``; mamba-ssm >= 2.3 installs its compiled scan only on request
    import selective_scan_cuda  # noqa: F401
    from mamba_ssm.ops.selective_scan_interface import selective_scan_fn
except ImportError:
    selective_scan_fn = None
try:
    from mamba_ssm.ops.triton.selective_state_update import selective_state_update
except ImportError:
    selective_state_update = None
try:
    from causal_conv1d import causal_conv1d_fn
except ImportError:
    causal_conv1d_fn = None

FUSED_AVAILABLE = selective_scan_fn is not None or selective_state_update is not None
EXTEND_CHUNK = 512  # tokens per teacher-forced pass of ``extend``: bounds its activations' memory


@dataclass
class Config:
    vocab_size: int
    block_size: int = 256  # training context; streaming is unbounded
    n_layer: int = 4
    d_model: int = 128
    d_state: int = 16
    d_conv: int = 4
    expand: int = 2
    dt_rank: int | None = None  # None: ceil(d_model / 16)
    dt_min: float = 0.001
    dt_max: float = 0.1
    dropout: float = 0.0
    tie_embeddings: bool = True

    def __post_init__(self) -> None:
        """Refuse a setting no model can be built from with a plain ValueError naming the field (the trainer and
        ``subchar train --set``, which runs this class without torch, show it as the user's one-line error)."""
        for name in ("vocab_size", "block_size", "n_layer", "d_model", "d_state", "d_conv", "expand"):
            value = getattr(self, name)
            if type(value) is not int or value < 1:  # True and 2.0 are refused too
                raise ValueError(f"{name} must be a whole number >= 1, got {value!r}")
        if self.dt_rank is not None and (type(self.dt_rank) is not int or self.dt_rank < 1):
            raise ValueError(f"dt_rank must be a whole number >= 1 or null (ceil(d_model / 16)), got {self.dt_rank!r}")
        for name in ("dt_min", "dt_max"):
            value = getattr(self, name)
            if type(value) not in (int, float) or not 0 < value < float("inf"):
                raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
        if self.dt_min > self.dt_max:
            raise ValueError(f"dt_min={self.dt_min} must not exceed dt_max={self.dt_max}")
        if type(self.dropout) not in (int, float) or not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be a number >= 0 and < 1, got {self.dropout!r}")
        if type(self.tie_embeddings) is not bool:
            raise ValueError(f"tie_embeddings must be true or false, got {self.tie_embeddings!r}")

    @property
    def d_inner(self) -> int:
        return self.expand * self.d_model

    @property
    def resolved_dt_rank(self) -> int:
        return self.dt_rank if self.dt_rank is not None else math.ceil(self.d_model / 16)


@dataclass(frozen=True)
class MambaCache:
    """Per layer: conv inputs [1, d_inner, d_conv] (oldest first) and SSM state [1, d_inner, d_state]."""

    conv_states: tuple[torch.Tensor, ...]
    ssm_states: tuple[torch.Tensor, ...]


def selective_scan(x, dt, A, B, C, D):
    """Reference scan. x, dt [b, T, d]; A [d, n]; B, C [b, T, n]; D [d] -> y [b, T, d].

    The discretised inputs are computed for all steps at once; only the cheap state update is sequential.
    """
    decay = torch.exp(dt.unsqueeze(-1) * A)  # [b, T, d, n]
    drive = (dt * x).unsqueeze(-1) * B.unsqueeze(2)  # [b, T, d, n]
    h = x.new_zeros(x.size(0), x.size(2), A.size(1))
    states = []
    for decay_t, drive_t in zip(decay.unbind(1), drive.unbind(1)):  # unbind: cheap backward, unlike indexing
        h = decay_t * h + drive_t
        states.append(h)
    y = torch.einsum("btdn,btn->btd", torch.stack(states, dim=1), C)
    return y + D * x


class Mixer(nn.Module):
    def __init__(self, cfg: Config):
        super().__init__()
        d_inner, dt_rank, n = cfg.d_inner, cfg.resolved_dt_rank, cfg.d_state
        self.d_conv, self.dt_rank, self.d_state = cfg.d_conv, dt_rank, n
        self.in_proj = nn.Linear(cfg.d_model, 2 * d_inner, bias=False)
        self.conv1d = nn.Conv1d(d_inner, d_inner, cfg.d_conv, groups=d_inner, padding=cfg.d_conv - 1)
        self.x_proj = nn.Linear(d_inner, dt_rank + 2 * n, bias=False)
        self.dt_proj = nn.Linear(dt_rank, d_inner, bias=True)
        self.out_proj = nn.Linear(d_inner, cfg.d_model, bias=False)
        # S4D-real init: A = -(1..n) per channel; D = 1 (skip); dt log-uniform in [dt_min, dt_max].
        self.A_log = nn.Parameter(torch.log(torch.arange(1, n + 1, dtype=torch.float32)).repeat(d_inner, 1))
        self.D = nn.Parameter(torch.ones(d_inner))
        nn.init.uniform_(self.dt_proj.weight, -(dt_rank**-0.5), dt_rank**-0.5)
        dt = torch.exp(torch.rand(d_inner) * (math.log(cfg.dt_max) - math.log(cfg.dt_min)) + math.log(cfg.dt_min))
        with torch.no_grad():
            self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # inverse softplus
        self.use_fused = FUSED_AVAILABLE

    def ssm_params(self, x: torch.Tensor):
        """Split x_proj(x) into low-rank dt, B and C."""
        return self.x_proj(x).split([self.dt_rank, self.d_state, self.d_state], dim=-1)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        T = hidden.size(1)
        x, z = self.in_proj(hidden).chunk(2, dim=-1)  # [b, T, d_inner] each
        A = -torch.exp(self.A_log.float())
        if self.use_fused and hidden.is_cuda and selective_scan_fn is not None:
            return self.fused_forward(x, z, A)
        x = F.silu(self.conv1d(x.transpose(1, 2))[..., :T].transpose(1, 2))
        dt, B, C = self.ssm_params(x)
        dt = F.softplus(self.dt_proj(dt))
        y = selective_scan(x, dt, A, B, C, self.D)
        return self.out_proj(y * F.silu(z))

    def fused_forward(self, x, z, A):
        """Same computation through mamba-ssm's kernels (channels-first layout)."""
        T = x.size(1)
        x, z = x.transpose(1, 2).contiguous(), z.transpose(1, 2).contiguous()  # [b, d_inner, T]
        conv_weight = self.conv1d.weight.squeeze(1)
        if causal_conv1d_fn is not None:
            x = causal_conv1d_fn(x, conv_weight, self.conv1d.bias, activation="silu")
        else:
            x = F.silu(self.conv1d(x)[..., :T])
        dt, B, C = self.ssm_params(x.transpose(1, 2))
        dt = (dt @ self.dt_proj.weight.t()).transpose(1, 2).contiguous()  # bias goes in as delta_bias
        y = selective_scan_fn(
            x, dt, A, B.transpose(1, 2).contiguous(), C.transpose(1, 2).contiguous(), self.D.float(),
            z=z, delta_bias=self.dt_proj.bias.float(), delta_softplus=True,
        )
        return self.out_proj(y.transpose(1, 2))

    def step(self, hidden: torch.Tensor, conv_state: torch.Tensor, ssm_state: torch.Tensor):
        """One position hidden [1, d_model]; returns (out [1, d_model], new conv_state, new ssm_state)."""
        x, z = self.in_proj(hidden).chunk(2, dim=-1)  # [1, d_inner]
        conv_state = torch.cat((conv_state[:, :, 1:], x.unsqueeze(-1)), dim=-1)
        x = F.silu((conv_state * self.conv1d.weight.squeeze(1)).sum(-1) + self.conv1d.bias)
        dt, B, C = self.ssm_params(x)
        A = -torch.exp(self.A_log.float())
        if self.use_fused and hidden.is_cuda and selective_state_update is not None:
            ssm_state = ssm_state.clone()  # the kernel updates in place; the old cache must stay valid
            y = selective_state_update(
                ssm_state, x, dt @ self.dt_proj.weight.t(), A, B, C, self.D.float(),
                z=z, dt_bias=self.dt_proj.bias.float(), dt_softplus=True,
            )
        else:
            dt = F.softplus(self.dt_proj(dt))
            ssm_state = torch.exp(dt.unsqueeze(-1) * A) * ssm_state + (dt * x).unsqueeze(-1) * B.unsqueeze(1)
            y = (ssm_state * C.unsqueeze(1)).sum(-1) + self.D * x
            y = y * F.silu(z)
        return self.out_proj(y), conv_state, ssm_state


    def extend(self, hidden: torch.Tensor, conv_state: torch.Tensor, ssm_state: torch.Tensor, at: list[int]):
        """``step`` along positions hidden [T, d_model] from (conv_state, ssm_state): out [T, d_model], the conv
        states after ``hidden[:i]`` for each ``i`` in ``at`` (views [1, d_inner, d_conv] of the conv inputs) and
        the SSM states after them [len(at), d_inner, d_state]."""
        x, z = self.in_proj(hidden).chunk(2, dim=-1)  # [T, d_inner]
        inputs = torch.cat((conv_state[0], x.t()), dim=-1)  # [d_inner, d_conv + T]; after i tokens: [i, i + d_conv)
        x = F.conv1d(inputs[None, :, 1:], self.conv1d.weight, self.conv1d.bias, groups=inputs.size(0))
        x = F.silu(x[0].t())
        dt, B, C = self.ssm_params(x)
        dt = F.softplus(self.dt_proj(dt))
        A = -torch.exp(self.A_log.float())
        decay = torch.exp(dt.unsqueeze(-1) * A)  # [T, d_inner, d_state]
        states = (dt * x).unsqueeze(-1) * B.unsqueeze(1)  # the drive, turned into the states in place
        previous = ssm_state[0].to(states.dtype)
        for decay_t, state_t in zip(decay.unbind(0), states.unbind(0)):
            state_t.addcmul_(decay_t, previous)
            previous = state_t
        y = torch.einsum("tdn,tn->td", states, C) + self.D * x
        conv_states = [inputs[None, :, i : i + self.d_conv] for i in at]
        return self.out_proj(y * F.silu(z)), conv_states, states[torch.tensor(at, device=states.device) - 1]


# Parameter names before the zoo's models shared one scheme (wte, ln_1, ln_f): old checkpoints still load.
LEGACY_PREFIXES = (("embedding.", "wte."), ("norm_f.", "ln_f."))


def rename_legacy_keys(state_dict: dict, prefix: str, *args) -> None:
    """Load-state-dict pre-hook: rename in place the parameters of a checkpoint saved with the old names."""
    for key in list(state_dict):
        name = key[len(prefix):]
        renamed = next((new + name[len(old):] for old, new in LEGACY_PREFIXES if name.startswith(old)), None)
        if renamed is None and name.startswith("blocks.") and ".norm." in name:
            renamed = name.replace(".norm.", ".ln_1.", 1)
        if renamed is not None:
            state_dict[prefix + renamed] = state_dict.pop(key)


class Block(nn.Module):
    def __init__(self, cfg: Config):
        super().__init__()
        self.ln_1 = nn.RMSNorm(cfg.d_model)
        self.mixer = Mixer(cfg)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.dropout(self.mixer(self.ln_1(x)))

    def step(self, x, conv_state, ssm_state):
        y, conv_state, ssm_state = self.mixer.step(self.ln_1(x), conv_state, ssm_state)
        return x + y, conv_state, ssm_state

    def extend(self, x, conv_state, ssm_state, at):
        y, conv_states, ssm_states = self.mixer.extend(self.ln_1(x), conv_state, ssm_state, at)
        return x + y, conv_states, ssm_states


class Model(nn.Module):
    def __init__(self, cfg: Config):
        super().__init__()
        self.cfg = cfg
        self.vocab_size, self.block_size = cfg.vocab_size, cfg.block_size  # zoo.interface.StreamingNetwork
        self.wte = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.ln_f = nn.RMSNorm(cfg.d_model)
        self.lm_head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        nn.init.normal_(self.wte.weight, std=0.02)
        if cfg.tie_embeddings:
            self.lm_head.weight = self.wte.weight
        else:
            nn.init.normal_(self.lm_head.weight, std=0.02)
        for block in self.blocks:  # residual-branch outputs shrink with depth (GPT-2 scaling)
            nn.init.normal_(block.mixer.out_proj.weight, std=0.02 / math.sqrt(cfg.n_layer))
        self._register_load_state_dict_pre_hook(rename_legacy_keys)

    def use_fused_kernels(self, enabled: bool) -> None:
        """Choose mamba-ssm's kernels (used on CUDA tensors only) or the pure-torch path."""
        if enabled and not FUSED_AVAILABLE:
            raise ValueError("mamba-ssm is not installed: pip install 'subchar[cuda]' on a CUDA machine")
        for block in self.blocks:
            block.mixer.use_fused = enabled

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        """Logits [B, T, vocab] for the next token at every position of idx [B, T]."""
        x = self.wte(idx)
        for block in self.blocks:
            x = block(x)
        return self.lm_head(self.ln_f(x))

    @torch.inference_mode()
    def empty_cache(self) -> MambaCache:
        w = self.wte.weight
        conv = w.new_zeros(1, self.cfg.d_inner, self.cfg.d_conv)
        ssm = w.new_zeros(1, self.cfg.d_inner, self.cfg.d_state, dtype=torch.float32)
        return MambaCache(conv_states=(conv,) * self.cfg.n_layer, ssm_states=(ssm,) * self.cfg.n_layer)

    @torch.inference_mode()
    def step(self, cache: MambaCache, token: int) -> tuple[torch.Tensor, MambaCache]:
        """Append one token: logits [vocab] for the next one and a new cache (``cache`` is left untouched)."""
        x = self.wte(torch.tensor([token], device=self.wte.weight.device))
        conv_states, ssm_states = [], []
        for block, conv, ssm in zip(self.blocks, cache.conv_states, cache.ssm_states):
            x, conv, ssm = block.step(x, conv, ssm)
            conv_states.append(conv)
            ssm_states.append(ssm)
        return self.lm_head(self.ln_f(x))[0], MambaCache(tuple(conv_states), tuple(ssm_states))

    @torch.inference_mode()
    def step_batch(self, caches: list[MambaCache], tokens: list[int]) -> tuple[torch.Tensor, list[MambaCache]]:
        """``step`` for many branches in one pass (the recurrent states stacked on the batch axis): logits
        [B, vocab] and one new cache per branch (views of the batch's states, no per-branch copy)."""
        x = self.wte(torch.tensor(tokens, device=self.wte.weight.device))
        layers = []
        for layer, block in enumerate(self.blocks):
            conv = torch.cat([cache.conv_states[layer] for cache in caches], dim=0)
            ssm = torch.cat([cache.ssm_states[layer] for cache in caches], dim=0)
            x, conv, ssm = block.step(x, conv, ssm)
            layers.append((conv, ssm))
        logits = self.lm_head(self.ln_f(x))
        new = [
            MambaCache(tuple(conv[b : b + 1] for conv, _ in layers), tuple(ssm[b : b + 1] for _, ssm in layers))
            for b in range(len(caches))
        ]
        return logits, new

    @torch.inference_mode()
    def extend(self, cache: MambaCache, tokens: list[int], at: list[int]) -> tuple[torch.Tensor, list[MambaCache]]:
        """The caches after ``tokens[:i]`` for each ``i`` in ``at`` (sorted, >= 1) and the features ``head`` maps
        to their logits [len(at), d_model], teacher-forced in chunks of ``EXTEND_CHUNK`` tokens."""
        empty = self.wte.weight.new_zeros(0, self.cfg.d_model)
        return in_chunks(self._extend_chunk, cache, tokens, at, EXTEND_CHUNK, empty)

    def _extend_chunk(self, cache: MambaCache, tokens: list[int], at: list[int]):
        x = self.wte(torch.tensor(tokens, device=self.wte.weight.device))  # [T, d_model]
        layers = []
        for block, conv, ssm in zip(self.blocks, cache.conv_states, cache.ssm_states):
            x, convs, ssms = block.extend(x, conv, ssm, at)
            layers.append((convs, ssms))
        features = self.ln_f(x[torch.tensor(at, device=x.device) - 1])
        caches = [
            MambaCache(tuple(convs[k] for convs, _ in layers), tuple(ssms[k : k + 1] for _, ssms in layers))
            for k in range(len(at))
        ]
        return features, caches

    @torch.inference_mode()
    def head(self, features: torch.Tensor) -> torch.Tensor:
        """Logits [n, vocab] from ``extend``'s features (the final norm's output)."""
        return self.lm_head(features)
