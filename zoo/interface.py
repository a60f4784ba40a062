"""What the trainer and the streaming wrapper need from a model: the small interface any ``nn.Module`` can follow.

The zoo's Transformer, Mamba and Hyena follow it; so can a model of your own, which ``zoo.train.train`` then
trains under the budget and ``zoo.streaming.TorchTokenLM`` reads for ``subchar.CharAdapter`` (README, "Training
your own model").
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import torch


@runtime_checkable
class StreamingNetwork(Protocol):
    """A next-token model over ids ``0 .. vocab_size-1``.

    Training needs ``forward`` and ``block_size`` (the length of the windows it is trained on); streaming needs
    ``empty_cache`` and ``step``, where ``step`` returns a *new* cache and leaves the old one valid (the adapter
    branches from old states). ``step`` after tokens t_1..t_n must give the logits ``forward`` gives at position n.
    """

    vocab_size: int
    block_size: int

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        """Logits [B, T, vocab_size] for the next token at every position of idx [B, T] (int64)."""
        ...

    def empty_cache(self) -> Any:
        """The streaming state before any token."""
        ...

    def step(self, cache: Any, token: int) -> tuple[torch.Tensor, Any]:
        """Logits [vocab_size] for the token after ``token`` and the state that includes it."""
        ...


class BatchedStreamingNetwork(StreamingNetwork, Protocol):
    """Optional methods ``zoo.streaming.TorchTokenLM`` uses when a model has them (the zoo's models do):

    - ``step_batch(caches, tokens) -> (logits [B, vocab_size], caches)``: ``step`` of many branches in one pass;
    - ``extend(cache, tokens, at) -> (features [len(at), F], caches)``: the caches after ``tokens[:i]`` for each
      ``i`` in ``at`` (sorted, all >= 1), from one teacher-forced pass, with the features ``head`` maps to the
      logits at those positions (kept small until asked: one per commit of a whole window);
    - ``head(features [n, F]) -> logits [n, vocab_size]``.
    """

    def step_batch(self, caches: list[Any], tokens: list[int]) -> tuple[torch.Tensor, list[Any]]: ...

    def extend(self, cache: Any, tokens: list[int], at: list[int]) -> tuple[torch.Tensor, list[Any]]: ...

    def head(self, features: torch.Tensor) -> torch.Tensor: ...
