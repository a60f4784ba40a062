"""``extend`` (``zoo.interface.BatchedStreamingNetwork``) in chunks: a long run of committed tokens (the batch
engine's trunk of a whole window) goes through a model's teacher-forced pass a chunk at a time, so the pass's
activations stay bounded; each chunk starts from the cache the previous one ended with."""

from __future__ import annotations

from typing import Any, Callable

import torch

# (cache, tokens, at) -> (features [len(at), F], caches): one teacher-forced pass, ``at`` sorted in 1..len(tokens)
ChunkPass = Callable[[Any, list[int], list[int]], tuple[torch.Tensor, list[Any]]]


def in_chunks(extend_chunk: ChunkPass, cache: Any, tokens: list[int], at: list[int], size: int,
              empty_features: torch.Tensor) -> tuple[torch.Tensor, list[Any]]:
    """The caches after ``tokens[:i]`` for each ``i`` in ``at`` and their features, from ``extend_chunk`` on
    ``size`` tokens at a time (none past the last asked position); ``empty_features`` [0, F] when nothing is asked."""
    if at and not 1 <= at[0] <= at[-1] <= len(tokens):
        raise ValueError(f"positions {at[0]}..{at[-1]} must lie in 1..{len(tokens)} (the tokens given)")
    features, caches = [empty_features], []
    tokens = tokens[: max(at, default=0)]
    for start in range(0, len(tokens), size):
        chunk = tokens[start : start + size]
        wanted = [i - start for i in at if start < i <= start + len(chunk)]
        chunk_features, chunk_caches = extend_chunk(cache, chunk, wanted + [len(chunk)])
        features.append(chunk_features[: len(wanted)])
        caches += chunk_caches[: len(wanted)]
        cache = chunk_caches[-1]
    return torch.cat(features), caches
