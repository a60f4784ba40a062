"""A zoo neural model seen as a subchar ``TokenLM``: branching token states with cached log-probabilities.

Each state holds the model's cache (immutable: ``Model.step`` returns a new one) and log P(next token) as a
read-only float64 array, computed once when the state is made, so ``logprobs`` is free and branching from
any state costs one ``Model.step``.

The empty context has no model prediction (the models predict token t+1 from tokens <= t and have no
begin-of-text token), so ``start()`` carries the uniform distribution. Context longer than the model's
``block_size`` follows each model's policy: sliding-window attention (Transformer), unbounded recurrence
(Mamba), finite long filters of ``block_size`` taps (Hyena) — in each case ``step`` equals ``forward``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from eval.errors import UserError


@dataclass(frozen=True)
class TokenState:
    cache: Any
    logprobs: np.ndarray  # log P(next token), float64 [vocab], read-only (shared between branches)
    length: int  # tokens seen


def _frozen(array: np.ndarray) -> np.ndarray:
    array.flags.writeable = False
    return array


class TorchTokenLM:
    """``subchar.lm.TokenLM`` over a model with ``vocab_size``, ``empty_cache()`` and ``step()`` (zoo.interface).

    The model is moved to ``device`` and put in eval mode (dropout off), and must not be trained while
    states made from it are in use.
    """

    def __init__(self, model: torch.nn.Module, device: str | torch.device = "cpu"):
        self.model = model.to(device).eval()
        self.vocab_size: int = model.vocab_size

    def start(self) -> TokenState:
        with torch.no_grad():
            cache = self.model.empty_cache()
        uniform = np.full(self.vocab_size, -math.log(self.vocab_size), dtype=np.float64)
        return TokenState(cache=cache, logprobs=_frozen(uniform), length=0)

    def logprobs(self, state: TokenState) -> np.ndarray:
        return state.logprobs

    def step(self, state: TokenState, token: int) -> TokenState:
        if not 0 <= token < self.vocab_size:
            raise UserError(f"token id {token} is outside the model's vocabulary 0..{self.vocab_size - 1}: "
                            "use the tokenizer the model was trained with")
        with torch.no_grad():
            logits, cache = self.model.step(state.cache, int(token))
            logprobs = torch.log_softmax(logits.double(), dim=-1).cpu().numpy()
        return TokenState(cache=cache, logprobs=_frozen(logprobs), length=state.length + 1)
