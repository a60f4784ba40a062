"""Evaluation speed, old path against new path on the same checkpoints, in one run and one table.

Paths (all exact mode, same beam, 1 torch thread):

- ``old``: the streaming loop with the LM asked one state at a time (its batched methods hidden), as before
  batching: one forward pass per covering step;
- ``stream``: the streaming loop (``--engine stream``, what the benchmark harness runs) with batched LM calls;
- ``batch``: the batch engine (``--engine batch``, the default of ``subchar eval`` / ``compare``).

The old path runs on the first ``--old-chars`` characters only (it is slow), the new ones on ``--chars``; both
report chars/s, and the 60k column extrapolates each path's speed to the whole window. Correct counts of the
stream and batch engines over the same characters must be equal (the table says whether they are). Timings
are wall-clock and noisy on a shared machine.

    .venv/bin/python scripts/bench_eval.py RUN [RUN ...] [--chars 60000] [--old-chars 2000] [--beam 8]

RUN: checkpoint folders written by ``subchar train --out``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from eval.data import VAL_WINDOW_CHARS, val_window
from eval.evaluate import evaluate
from subchar import CharAdapter
from zoo.checkpoint import load_checkpoint


class PerState:
    """``lm`` without its batched methods: one call per state, as the adapter asked before batching."""

    def __init__(self, lm) -> None:
        self.vocab_size = lm.vocab_size
        self.start, self.step, self.logprobs = lm.start, lm.step, lm.logprobs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+")
    parser.add_argument("--chars", type=int, default=VAL_WINDOW_CHARS)
    parser.add_argument("--old-chars", type=int, default=2000)
    parser.add_argument("--beam", type=int, default=8)
    parser.add_argument("--bits", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--data-dir", default=str(Path(__file__).resolve().parents[1].parent / "shared" / "wikitext"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    text = val_window(args.data_dir, chars=args.chars).text
    print(f"exact mode, beam {args.beam}, bits {'on' if args.bits else 'off'}, 1 torch thread; "
          f"old path on {args.old_chars:,} chars, new paths on {len(text):,} chars")
    print("| model | path | chars | wall s | chars/s | 60k window s | accuracy | correct | bits/char |")
    print("|---|---|---|---|---|---|---|---|---|")
    for run in args.runs:
        checkpoint = load_checkpoint(run, device="cpu")
        lm = checkpoint.token_lm("cpu")
        results = {}
        for path, model, chars, engine in (
            ("old", PerState(lm), args.old_chars, "stream"),
            ("stream", lm, len(text), "stream"),
            ("batch", lm, len(text), "batch"),
        ):
            adapter = CharAdapter(model, checkpoint.tokenizer, mode="exact", beam=args.beam)
            result = evaluate(adapter, text, chars, bits=args.bits, progress=False, engine=engine)
            results[path] = result
            bits = "n/a" if result.bits_per_char is None else f"{result.bits_per_char:.4f}"
            print(f"| {checkpoint.model_name} | {path} | {result.chars:,} | {result.wall_s:.1f} | "
                  f"{result.chars_per_s:,.0f} | {VAL_WINDOW_CHARS / result.chars_per_s:,.0f} | "
                  f"{result.accuracy:.4f} | {result.correct:,} | {bits} |", flush=True)
        same = results["stream"].correct == results["batch"].correct
        print(f"| {checkpoint.model_name} | stream = batch correct counts | {'yes' if same else 'NO'} | | | | | | |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
