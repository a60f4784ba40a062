"""Evaluation speed, old path against new path on the same checkpoints, in one run and one table.

Paths (all exact mode, same beam, 1 torch thread):

- ``old``: the streaming loop with the LM asked one state at a time (its batched methods hidden), as before
  batching: one forward pass per covering step;
- ``stream``: the streaming loop (``--engine stream``, what the benchmark harness runs) with batched LM calls;
- ``batch``: the batch engine (``--engine batch``, the default of ``subchar eval`` / ``compare``), once per count of
  ``--processes`` (default: one process per usable core; ``batch×N`` in the table).

The old path runs on the first ``--old-chars`` characters only (it is slow), the stream engine on
``--stream-chars`` (default: ``--chars``) and the batch engine on ``--chars``; each reports chars/s, and the 60k
column extrapolates its speed to the whole window. Where the stream and batch engines scored the same characters
their correct counts must be equal (the table says whether they are). Timings are wall-clock and noisy on a
shared machine.

    .venv/bin/python scripts/bench_eval.py RUN [RUN ...] [--chars 60000] [--old-chars 2000] [--stream-chars N]
        [--beam 8] [--prune EPS] [--paths old stream batch] [--processes N ...] [--device cpu|cuda]
        [--no-cuda-graphs] [--no-bits]

RUN: checkpoint folders written by ``subchar train --out``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from eval.data import VAL_WINDOW_CHARS, val_window
from eval.evaluate import eval_result, evaluate
from subchar.batch_engine import batch_adapter
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
    parser.add_argument("--stream-chars", type=int, default=None)
    parser.add_argument("--beam", type=int, default=8)
    parser.add_argument("--prune", type=float, default=None)
    parser.add_argument("--paths", nargs="+", choices=("old", "stream", "batch"), default=["old", "stream", "batch"])
    parser.add_argument("--processes", type=int, nargs="+", default=[None])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--cuda-graphs", action=argparse.BooleanOptionalAction, default=True,
                        help="on CUDA, step the Transformer through CUDA graphs (zoo.step_graphs)")
    parser.add_argument("--bits", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--data-dir", default=str(Path(__file__).resolve().parents[1].parent / "shared" / "wikitext"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    stream_chars = args.chars if args.stream_chars is None else args.stream_chars
    text = val_window(args.data_dir, chars=max(args.chars, stream_chars, args.old_chars)).text
    spans = {"old": f"old path on {args.old_chars:,} chars", "stream": f"stream engine on {stream_chars:,}",
             "batch": f"batch engine on {args.chars:,}"}
    graphs = "" if args.device == "cpu" else f", CUDA graphs {'on' if args.cuda_graphs else 'off'}"
    print(f"exact mode, beam {args.beam}, prune {args.prune}, bits {'on' if args.bits else 'off'}, 1 torch thread, "
          f"device {args.device}{graphs}; " + ", ".join(spans[path] for path in spans if path in args.paths))
    print("| model | path | chars | wall s | chars/s | 60k window s | accuracy | correct | bits/char |")
    print("|---|---|---|---|---|---|---|---|---|")
    for run in args.runs:
        checkpoint = load_checkpoint(run, device=args.device)
        lm = checkpoint.token_lm(args.device)
        if not args.cuda_graphs and hasattr(lm.model, "use_step_graphs"):
            lm.model.use_step_graphs(False)
        results = {}
        batches = [(f"batch×{n}" if n else "batch", lm, args.chars, "batch", n) for n in args.processes]
        for path, model, chars, engine, processes in (
            ("old", PerState(lm), args.old_chars, "stream", None),
            ("stream", lm, stream_chars, "stream", None),
            *batches,
        ):
            if path.split("×")[0] not in args.paths:
                continue
            adapter = batch_adapter(model, checkpoint.tokenizer, mode="exact", beam=args.beam, prune=args.prune)
            if engine == "batch":  # what ``evaluate(engine="batch")`` does, with the process count
                start = time.perf_counter()
                guesses, probs = adapter.batch_scores(text[:chars], args.bits, processes=processes)
                result = eval_result(text[:chars], guesses, probs, time.perf_counter() - start, engine)
            else:
                result = evaluate(adapter, text[:chars], chars, bits=args.bits, progress=False, engine=engine)
            results[path] = result
            bits = "n/a" if result.bits_per_char is None else f"{result.bits_per_char:.4f}"
            print(f"| {checkpoint.model_name} | {path} | {result.chars:,} | {result.wall_s:.1f} | "
                  f"{result.chars_per_s:,.0f} | {VAL_WINDOW_CHARS / result.chars_per_s:,.0f} | "
                  f"{result.accuracy:.4f} | {result.correct:,} | {bits} |", flush=True)
        stream, batch = results.get("stream"), [r for path, r in results.items() if path.startswith("batch")]
        if stream is not None and batch and all(stream.chars == r.chars for r in batch):
            same = all(stream.correct == r.correct for r in batch)
            print(f"| {checkpoint.model_name} | stream = batch correct counts | {'yes' if same else 'NO'} | | | | | | |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
