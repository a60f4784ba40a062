"""The model zoo by name: ``MODELS[name] = (Config class, Model class)``, shared by the trainer and the CLI.

Which names there are and what kind each is (neural, token n-gram, character baseline) is :mod:`zoo.kinds`'s."""

from __future__ import annotations

import torch

from eval.errors import UserError
from zoo import hyena, mamba, transformer
from zoo.kinds import NEURAL_MODELS, NGRAM  # noqa: F401 (NGRAM: zoo.train offers the n-gram beside these by name)

# Neural models: Config(vocab_size, ...) and Model(cfg) with forward(idx), empty_cache() and step(cache, token).
# The count-based n-gram (zoo/ngram.py: no forward, no Config/Model pair) is not listed.
_MODULES = {module.__name__.rpartition(".")[2]: module for module in (transformer, mamba, hyena)}
MODELS: dict[str, tuple[type, type]] = {name: (_MODULES[name].Config, _MODULES[name].Model) for name in NEURAL_MODELS}


def lookup(name: str) -> tuple[type, type]:
    """(Config class, Model class) for ``name``."""
    if name not in MODELS:
        raise UserError(f"unknown model {name!r}: choose one of {', '.join(sorted(MODELS))}")
    return MODELS[name]


def num_params(model: torch.nn.Module) -> int:
    """Number of trainable parameters; tied weights count once."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
