"""CUDA graphs of the Transformer's branch step: one replay instead of ~170 kernel launches per forward pass.

Streaming steps a few branches at a time, so on a GPU a step is all launch overhead: each of its small kernels costs
more to launch from Python than to run (on an H100 the stream engine ran at ~155 chars/s eagerly, ~445 with graphs).
A CUDA graph records the step's kernels once and replays them with one launch, but only for fixed shapes and
fixed input addresses. So the branches' inputs are padded into static buffers per *shape bucket*: batch rows and
chain lengths rounded up to powers of two, the trunk read as a window of fixed width (``2 * block_size`` shared by
all rows, or ``block_size - 1`` per row, as ``Model._trunk_groups`` chose). Padding is inert: padded trunk keys and
chain slots have bias -inf (zero weight; the buffers only ever hold finite values), padded rows are dropped.

``capture=False`` runs the same padded buffers without recording a graph: how the CPU tests check the padding.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Callable

import torch

from zoo.kv_tree import tree_attention

MAX_ROWS = 256  # larger batches step eagerly (they are not launch-bound anyway)
MAX_CHAIN = 32  # branches this many tokens past their trunk step eagerly


def bucket(n: int) -> int:
    """The power of two at or above ``n`` (0 stays 0)."""
    return 0 if n == 0 else 1 << (n - 1).bit_length()


@dataclass
class Inputs:
    """Static inputs of one (trunk read, rows) pair, shared by its buckets of every chain length."""

    tokens: torch.Tensor  # [rows]
    positions: torch.Tensor  # [rows]
    trunk: torch.Tensor  # [n_layer, 2, H, width, D] (shared window) or [n_layer, 2, H, rows * width, D] (per row)
    trunk_bias: torch.Tensor  # [rows, width]


@dataclass
class Bucket:
    """One shape: its inputs, its chain buffers, and its graph and outputs (no graph with ``capture=False``)."""

    inputs: Inputs
    chain: torch.Tensor | None  # [rows * chain, n_layer, 2, H, D]
    own_bias: torch.Tensor  # [rows, chain + 1]
    run: Callable[[], tuple[torch.Tensor, torch.Tensor]]
    graph: Any = None
    logits: torch.Tensor | None = None
    new: torch.Tensor | None = None


class StepGraphs:
    """``Model.step_batch`` through padded static buffers, replayed as one CUDA graph per shape bucket."""

    def __init__(self, model: Any, capture: bool = True) -> None:  # model: zoo.transformer.Model
        self.model, self.capture = model, capture
        self.buckets: dict[tuple[bool, int, int], Bucket] = {}
        self.inputs: dict[tuple[bool, int], Inputs] = {}  # the trunk windows are the big buffers: one per row count
        self.pool = None
        self.lock = threading.Lock()  # one set of static buffers: the batch engine's threads take turns

    def fits(self, rows: int, chain: int) -> bool:
        return rows <= MAX_ROWS and chain <= MAX_CHAIN

    def step(self, caches: list, tokens: list[int], group: tuple) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits [B, vocab] and new keys/values [B, n_layer, 2, H, D] of one trunk group's branches (copies)."""
        trunk, _, read, bias = group
        rows, longest = len(caches), max(len(cache.chain) for cache in caches)
        shared = isinstance(read, tuple)
        with self.lock:
            b = self._bucket(shared, bucket(rows), bucket(longest))
            self._fill(b, caches, tokens, trunk, read, bias)
            if b.graph is not None:
                b.graph.replay()
                logits, new = b.logits, b.new
            else:
                logits, new = b.run()
            return logits[:rows].clone(), new[:rows].clone()

    def _fill(self, b: Bucket, caches: list, tokens: list[int], trunk: Any, read: Any, bias: torch.Tensor) -> None:
        inputs = b.inputs
        rows, padded = len(caches), inputs.tokens.size(0)
        pad = [0] * (padded - rows)
        inputs.tokens.copy_(torch.tensor(tokens + pad))
        inputs.positions.copy_(torch.tensor([cache.pos for cache in caches] + pad))
        inputs.trunk_bias.fill_(float("-inf"))
        if isinstance(read, tuple):  # one window [lo, hi) for all rows
            lo, hi = read
            a = lo - trunk.start
            inputs.trunk[:, :, :, : hi - lo] = trunk.kv[:, :, :, a : a + hi - lo]
            inputs.trunk_bias[:rows, : hi - lo] = bias
        else:  # a window per row: rows past the batch read row 0's positions, unseen
            index = torch.cat((read, read[:1].expand(padded - rows, -1))) if padded > rows else read
            torch.index_select(trunk.kv, 3, index.reshape(-1), out=inputs.trunk)
            inputs.trunk_bias[:rows] = bias
        width = b.own_bias.size(1) - 1  # the chains are stacked straight into the bucket's buffer
        _, own_bias = self.model.pad_chains(caches, width, None if b.chain is None else b.chain[: rows * width])
        b.own_bias.zero_()  # padded rows see only their own (zero) keys: finite, then dropped
        b.own_bias[:rows] = own_bias

    def _bucket(self, shared: bool, rows: int, chain: int) -> Bucket:
        key = (shared, rows, chain)
        if key not in self.buckets:
            self.buckets[key] = self._make(shared, rows, chain)
        return self.buckets[key]

    def _make(self, shared: bool, rows: int, chain: int) -> Bucket:
        model = self.model
        cfg, weight, head_dim = model.cfg, model.wte.weight, model.head_dim
        shape = (cfg.n_layer, 2, cfg.n_head)
        width = 2 * cfg.block_size if shared else cfg.block_size - 1
        if (shared, rows) not in self.inputs:
            self.inputs[shared, rows] = Inputs(
                tokens=torch.zeros(rows, dtype=torch.long, device=weight.device),
                positions=torch.zeros(rows, dtype=torch.long, device=weight.device),
                trunk=weight.new_zeros(*shape, width if shared else rows * width, head_dim),
                trunk_bias=weight.new_zeros(rows, width),
            )
        inputs = self.inputs[shared, rows]
        chain_kv = weight.new_zeros(rows * chain, *shape, head_dim) if chain else None
        own_bias = weight.new_zeros(rows, chain + 1)
        per_layer = inputs.trunk if shared else inputs.trunk.view(*shape, rows, width, head_dim)
        chains = None if chain_kv is None else chain_kv.view(rows, chain, *shape, head_dim).permute(2, 3, 0, 4, 1, 5)

        def attend(layer: int, q: torch.Tensor, own_k: torch.Tensor, own_v: torch.Tensor) -> torch.Tensor:
            return tree_attention(q, per_layer[layer, 0], per_layer[layer, 1], inputs.trunk_bias, own_k, own_v,
                                  own_bias)

        def run() -> tuple[torch.Tensor, torch.Tensor]:
            cos, sin = model.rope.angles(inputs.positions)  # computed in the graph: a table could not grow there
            return model.forward_branches(inputs.tokens, cos, sin, chains, attend)

        b = Bucket(inputs, chain_kv, own_bias, run)
        if self.capture:
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):  # a warm-up run off the capture, as CUDA graphs require
                run()
            torch.cuda.current_stream().wait_stream(side)
            b.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(b.graph, pool=self.pool):
                b.logits, b.new = run()
            self.pool = b.graph.pool()
        return b
