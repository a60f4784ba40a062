"""A zoo neural model seen as a subchar ``TokenLM``: branching token states with cached next-token probabilities.

Each state holds the model's cache (immutable: ``Model.step`` returns a new one) and P(next token) as a
read-only float64 array, computed once (when a step makes the state, or when first asked for a state made by
``states_along``), so branching from any state costs one ``Model.step``. The adapter reads those probabilities
directly (``probs_many``); ``logprobs`` takes their log when asked.

Precision: the softmax runs in the logits' own dtype (float32, or float64 for a float64 model; half-precision
logits in float32), then widens to float64, where each row is renormalised to sum to 1. For a float32 model that is
as exact as the logits themselves (~1e-7 relative), and cheaper than a float64 log-softmax followed by the
adapter's float64 exp of each row. A row in which float32 would take some token below its normal range (a logit
~87 below the row's largest) is computed in float64 instead, so no token loses the mass the model gives it.

The empty context has no model prediction (the models predict token t+1 from tokens <= t and have no
begin-of-text token), so ``start()`` carries the uniform distribution. Context longer than the model's
``block_size`` follows each model's policy: sliding-window attention (Transformer), unbounded recurrence
(Mamba), finite long filters of ``block_size`` taps (Hyena) — in each case ``step`` equals ``forward``.

``step_many`` (``subchar.lm.BatchedTokenLM``) steps many branches in one forward pass (``Model.step_batch``):
the adapter asks one batch per expansion level, so the per-call overhead of a small network is paid once per
level, not once per covering. ``states_along`` runs committed tokens through the model's teacher-forced
``extend`` when it has one (the Transformer appends them to the trunk its branches share, ``zoo.kv_tree``); the
states it makes get their log-probabilities from ``head`` when first asked, in one call for all asked together.

Inference mode: every model call runs under ``torch.inference_mode`` (the models' streaming methods too), not
just ``no_grad``: tensors made there carry no version counters or view tracking, a real share of a streaming
step of a few rows on CPU, where a step is a few hundred small torch calls. Their caches are
inference tensors, written in place (trunks, settles) only inside inference mode.

Threads: on CPU every call runs with ``threads`` torch threads (default 1), set around the call and restored
after. A branch step is a handful of tiny matrix products: intra-op threads cost more in synchronisation than
they save, and on a shared or loaded machine their spinning oversubscribes the cores (a transformer step went
from 1.2 ms to 35 ms with torch's default of 2 threads on a busy 2-core machine). Pass ``threads=None`` to
leave torch's setting alone.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator, Sequence

import numpy as np
import torch

from eval.errors import UserError


STREAM_THREADS = 1  # torch threads for streaming on CPU (see the module docstring)


class TokenState:
    """One branch: the model's cache (immutable: a step returns a new one), tokens seen, and P(next token) as a
    read-only float64 array. States made by a teacher-forced pass (``states_along``) hold the model's ``features``
    instead until first asked: the batch engine makes one per commit of the window, and most are asked once."""

    __slots__ = ("cache", "length", "probs", "features", "_logprobs")

    def __init__(self, cache: Any, length: int, probs: np.ndarray | None = None, features: Any = None) -> None:
        self.cache, self.length, self.probs, self.features = cache, length, probs, features
        self._logprobs: np.ndarray | None = None

    @property
    def logprobs(self) -> np.ndarray | None:
        """log P(next token), read-only, made from ``probs`` when first asked (None while only features are held)."""
        if self._logprobs is None and self.probs is not None:
            with np.errstate(divide="ignore"):
                self._logprobs = _frozen(np.log(self.probs))
        return self._logprobs


def _frozen(array: np.ndarray) -> np.ndarray:
    array.flags.writeable = False
    return array


def next_token_probs(logits: torch.Tensor) -> np.ndarray:
    """P(next token) of each row of ``logits`` [B, vocab] as float64 numpy rows, the softmax in the logits' dtype
    (at least float32; see "Precision" in the module docstring)."""
    if logits.dtype not in (torch.float32, torch.float64):
        logits = logits.float()
    probs = torch.softmax(logits, dim=-1)
    if probs.dtype != torch.float64:
        underflow = probs.amin(dim=-1) < torch.finfo(probs.dtype).tiny  # one reduction (any(probs < tiny): 10x)
        probs = probs.double()
        probs /= probs.sum(dim=-1, keepdim=True)  # rows that sum to 1 in float64 too
        if underflow.any():
            probs[underflow] = torch.softmax(logits[underflow].double(), dim=-1)
    return probs.cpu().numpy()


class TorchTokenLM:
    """``subchar.lm.TokenLM`` over a model with ``vocab_size``, ``empty_cache()`` and ``step()`` (zoo.interface).

    The model is moved to ``device`` and put in eval mode (dropout off), and must not be trained while
    states made from it are in use. On CUDA a model with ``use_step_graphs`` (the Transformer) steps its branches
    as CUDA graph replays unless ``cuda_graphs`` is False: a streaming step is a few rows, so without graphs its
    time is kernel launches.
    """

    def __init__(self, model: torch.nn.Module, device: str | torch.device = "cpu", threads: int | None = STREAM_THREADS,
                 cuda_graphs: bool = True):
        self.model = model.to(device).eval()
        self.vocab_size: int = model.vocab_size
        kind = torch.device(device).type
        self.threads = threads if kind == "cpu" else None
        # the network's optional parts (zoo.interface.BatchedStreamingNetwork), read once: None where it has none
        self._step_batch = getattr(model, "step_batch", None)
        self._extend, self._settle = getattr(model, "extend", None), getattr(model, "settle", None)
        self.batch_chunk_chars: int | None = getattr(model, "batch_chunk_chars", None)  # for subchar.lm's engine
        use_step_graphs = getattr(model, "use_step_graphs", None)
        if kind == "cuda" and use_step_graphs is not None:
            use_step_graphs(cuda_graphs)

    def start(self) -> TokenState:
        with torch.inference_mode():
            cache = self.model.empty_cache()
        uniform = np.full(self.vocab_size, 1.0 / self.vocab_size, dtype=np.float64)
        return TokenState(cache=cache, probs=_frozen(uniform), length=0)

    def logprobs(self, state: TokenState) -> np.ndarray:
        return self.logprobs_many([state])[0]

    def logprobs_many(self, states: Sequence[TokenState]) -> list[np.ndarray]:
        """log ``probs_many``."""
        self.probs_many(states)
        return [state.logprobs for state in states]

    def probs_many(self, states: Sequence[TokenState]) -> list[np.ndarray]:
        """P(next token) of each state; those still holding features get theirs from one ``head`` call."""
        todo = [state for state in states if state.probs is None]
        if todo:
            with torch.inference_mode(), torch_threads(self.threads):
                rows = next_token_probs(self.model.head(torch.stack([state.features for state in todo])))
            for state, row in zip(todo, rows):
                state.probs, state.features = _frozen(row), None
        return [state.probs for state in states]

    def states_along(self, state: TokenState, tokens: Sequence[int], at: Sequence[int]) -> list[TokenState]:
        """The states after ``tokens[:i]`` for each ``i`` in ``at``: one teacher-forced pass when the model has
        ``extend`` (``zoo.interface``), else one step per token."""
        for token in tokens:
            self._check(token)
        after = sorted({i for i in at if i > 0})
        made = {0: state}
        if self._extend is not None:
            with torch.inference_mode(), torch_threads(self.threads):
                features, caches = self._extend(state.cache, [int(t) for t in tokens], after)
            made.update((i, TokenState(cache, state.length + i, features=row))
                        for i, cache, row in zip(after, caches, features))
        else:
            for i, token in enumerate(tokens[: max(after, default=0)], start=1):
                state = made[i] = self.step(state, token)
        return [made[i] for i in at]

    def settle(self, state: TokenState) -> TokenState:
        """The same state, kept cheaply for long use (the model's ``settle``: a Transformer moves a branch's own
        keys and values into its shared trunk); ``state`` itself for a model without one."""
        if self._settle is None:
            return state
        with torch.inference_mode():
            cache = self._settle(state.cache)
        return state if cache is state.cache else TokenState(cache, state.length, state.probs, state.features)

    def step(self, state: TokenState, token: int) -> TokenState:
        self._check(token)
        with torch.inference_mode(), torch_threads(self.threads):
            logits, cache = self.model.step(state.cache, int(token))
            probs = next_token_probs(logits[None])[0]
        return TokenState(cache=cache, probs=_frozen(probs), length=state.length + 1)

    def step_many(self, states: Sequence[TokenState], tokens: Sequence[int]) -> list[TokenState]:
        """``step`` of every (state, token) pair, in one forward pass when the model has ``step_batch``."""
        if self._step_batch is None:
            return [self.step(state, token) for state, token in zip(states, tokens)]
        for token in tokens:
            self._check(token)
        if not states:
            return []
        with torch.inference_mode(), torch_threads(self.threads):
            logits, caches = self._step_batch([state.cache for state in states], [int(t) for t in tokens])
            rows = next_token_probs(logits)
        return [
            TokenState(cache=cache, probs=_frozen(row), length=state.length + 1)
            for state, cache, row in zip(states, caches, rows)
        ]

    def _check(self, token: int) -> None:
        if not 0 <= token < self.vocab_size:
            raise UserError(f"token id {token} is outside the model's vocabulary 0..{self.vocab_size - 1}: "
                            "use the tokenizer the model was trained with")


@contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Run the block with ``threads`` intra-op threads (None: as set), restoring the previous setting after."""
    saved = torch.get_num_threads()
    if threads is None or threads == saved:
        yield
        return
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(saved)
