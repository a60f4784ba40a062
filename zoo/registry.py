"""The model zoo by name: ``MODELS[name] = (Config class, Model class)``, shared by the trainer and the CLI."""

from __future__ import annotations

import torch

from eval.errors import UserError
from zoo import hyena, mamba, transformer

# Neural models: Config(vocab_size, ...) and Model(cfg) with forward(idx), empty_cache() and step(cache, token).
MODELS: dict[str, tuple[type, type]] = {
    "transformer": (transformer.Config, transformer.Model),
    "mamba": (mamba.Config, mamba.Model),
    "hyena": (hyena.Config, hyena.Model),
}
# The count-based n-gram (zoo/ngram.py: no forward, no Config/Model pair) is not listed; zoo.train offers it
# beside these by this name.
NGRAM = "ngram"


def lookup(name: str) -> tuple[type, type]:
    """(Config class, Model class) for ``name``."""
    if name not in MODELS:
        raise UserError(f"unknown model {name!r}: choose one of {', '.join(sorted(MODELS))}")
    return MODELS[name]


def num_params(model: torch.nn.Module) -> int:
    """Number of trainable parameters; tied weights count once."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
