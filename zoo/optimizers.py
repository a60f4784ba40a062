"""The trainer's optimizers: AdamW on every parameter, or Muon on the hidden matrices with AdamW on the rest.

Muon (``torch.optim.Muon``, torch >= 2.9) orthogonalises each weight matrix's momentum by Newton-Schulz steps. It
is meant for the matrices of a network's hidden matrix products only; embeddings, the output head, gains, biases,
convolution kernels and the SSM's rates stay with AdamW. One rule picks them in every model, from the module tree
alone: the weights of ``nn.Linear`` layers, less any weight an ``nn.Embedding`` shares (a tied output head) and less
the output head (a Linear with ``vocab_size`` outputs). Its learning rate is scaled to match AdamW's update RMS
(``adjust_lr_fn="match_rms_adamw"``), so both take the trainer's one learning rate, schedule and weight decay.

Which optimizer a model trains with by default is :data:`DEFAULT_OPTIMIZER`: AdamW for every model. Muon won
``scripts/bench_train.py --compare optimizer`` for all three on a CPU (the README's table), but the benchmark's image
(and so every Modal cell and every exported submission) has torch 2.5.1, which lacks ``torch.optim.Muon``: a Muon
default would leave neural runs that cannot be submitted. It stays a choice (``--optimizer muon``) for local runs.
Standard library and torch only: exported submissions inline this module.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

OPTIMIZERS = ("adamw", "muon")
# per model; AdamW everywhere while the benchmark's torch lacks Muon (see the module's docstring)
DEFAULT_OPTIMIZER = {"transformer": "adamw", "mamba": "adamw", "hyena": "adamw"}
BETAS = (0.9, 0.95)


def default_optimizer(model_name: str) -> str:
    """The optimizer ``model_name`` trains with unless told (AdamW for a module of your own)."""
    return DEFAULT_OPTIMIZER.get(model_name, "adamw")


def muon_available() -> bool:
    return hasattr(torch.optim, "Muon")


def hidden_matrices(model: nn.Module) -> list[nn.Parameter]:
    """The weights Muon takes: every ``nn.Linear`` weight that is neither an embedding's (tied) nor the output
    head's (``vocab_size`` outputs), each once."""
    embedded = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    vocab = getattr(model, "vocab_size", None)
    chosen: dict[int, nn.Parameter] = {}
    for module in model.modules():
        if isinstance(module, nn.Linear) and module.weight.requires_grad and id(module.weight) not in embedded \
                and module.out_features != vocab:
            chosen[id(module.weight)] = module.weight
    return list(chosen.values())


def adamw_groups(params: list[nn.Parameter], weight_decay: float) -> list[dict[str, Any]]:
    """Weight decay on matrices (embeddings, projections), none on gains, biases and 1-D rates."""
    return [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]


class Optimizers:
    """Several optimizers stepped as one: the loop sets the learning rate of every group through ``param_groups``."""

    def __init__(self, parts: list[torch.optim.Optimizer], name: str, counts: dict[str, int]):
        self.parts = parts
        self.name = name
        self.counts = counts  # parameters (numbers, not tensors) each optimizer updates

    @property
    def param_groups(self) -> list[dict[str, Any]]:
        return [group for part in self.parts for group in part.param_groups]

    def zero_grad(self, set_to_none: bool = True) -> None:
        for part in self.parts:
            part.zero_grad(set_to_none=set_to_none)

    def step(self) -> None:
        for part in self.parts:
            part.step()

    def record(self) -> dict[str, Any]:
        return {"name": self.name, "parameters": dict(self.counts)}


def make_optimizer(model: nn.Module, name: str, lr: float, weight_decay: float, fused: bool) -> Optimizers:
    """``name`` ("adamw" or "muon") over ``model``'s trainable parameters; ``fused`` AdamW kernels (CUDA)."""
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; choose from {', '.join(OPTIMIZERS)}")
    params = [p for p in model.parameters() if p.requires_grad]
    matrices = hidden_matrices(model) if name == "muon" else []
    if matrices and not muon_available():
        raise ValueError(f"torch {torch.__version__} has no torch.optim.Muon (torch 2.9 added it); "
                         "use the optimizer adamw")
    taken = {id(p) for p in matrices}
    rest = [p for p in params if id(p) not in taken]
    parts: list[torch.optim.Optimizer] = [
        torch.optim.AdamW(adamw_groups(rest, weight_decay), lr=lr, betas=BETAS, fused=fused)]
    counts = {"adamw": sum(p.numel() for p in rest)}
    if matrices:
        parts.append(torch.optim.Muon(matrices, lr=lr, weight_decay=weight_decay,
                                      adjust_lr_fn="match_rms_adamw"))
        counts["muon"] = sum(p.numel() for p in matrices)
    return Optimizers(parts, name, counts)
