"""The batch engine's trunk: ``TorchTokenLM.states_along`` over the committed tokens of the val window, at every
segment start, through the model's teacher-forced ``extend`` against one step per token (its fallback).

The stepped path runs on the first ``--step-tokens`` trunk tokens only (it is slow); the table extrapolates its
speed to the whole trunk. Both paths' log-probs at the shared positions must agree (max |difference| shown).
Timings are wall-clock and noisy on a shared machine.

    .venv/bin/python scripts/bench_trunk.py RUN [RUN ...] [--chars 60000] [--step-tokens 1000]

RUN: checkpoint folders written by ``subchar train --out``.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch

from eval.data import VAL_WINDOW_CHARS, val_window
from subchar import CharAdapter
from subchar.replay_plan import plan
from zoo.checkpoint import load_checkpoint


class Stepped:
    """``lm`` without ``extend``: ``states_along`` steps one token at a time."""

    def __init__(self, lm) -> None:
        self.lm = lm

    def __getattr__(self, name):
        if name == "extend":
            raise AttributeError(name)
        return getattr(self.lm, name)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+")
    parser.add_argument("--chars", type=int, default=VAL_WINDOW_CHARS)
    parser.add_argument("--step-tokens", type=int, default=1000)
    parser.add_argument("--data-dir", default=str(Path(__file__).resolve().parents[1].parent / "shared" / "wikitext"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    text = val_window(args.data_dir, chars=args.chars).text
    print(f"trunk of the first {len(text):,} val chars, 1 torch thread; stepped path on {args.step_tokens:,} tokens")
    print("| model | trunk tokens | positions | path | tokens | wall s | tokens/s | whole trunk s | max |Δ logprob| |")
    print("|---|---|---|---|---|---|---|---|---|")
    for run in args.runs:
        checkpoint = load_checkpoint(run, device="cpu")
        lm = checkpoint.token_lm("cpu")
        segments, trunk = plan(CharAdapter(lm, checkpoint.tokenizer, mode="exact", beam=8), text)
        at = sorted({s.trunk_len for s in segments})
        rows = {}
        for path, model, length in (("extend", lm, len(trunk)), ("step", None, min(args.step_tokens, len(trunk)))):
            wanted = [i for i in at if i <= length]
            if model is None:
                lm.model = Stepped(lm.model)
            began = time.perf_counter()
            states = lm.states_along(lm.start(), trunk[:length], wanted)
            logprobs = lm.logprobs_many(states)
            wall = time.perf_counter() - began
            if model is None:
                lm.model = lm.model.lm
            rows[path] = {i: row for i, row in zip(wanted, logprobs) if i <= args.step_tokens}
            shared = [i for i in wanted if i in rows["extend"]]
            gap = max(np.abs(rows[path][i] - rows["extend"][i]).max() for i in shared[1:]) if len(shared) > 1 else 0
            print(f"| {checkpoint.model_name} | {len(trunk):,} | {len(at):,} | {path} | {length:,} | {wall:.2f} | "
                  f"{length / wall:,.0f} | {len(trunk) * wall / length:,.1f} | {gap:.1e} |", flush=True)
            del states, logprobs
    print(f"peak resident memory: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
