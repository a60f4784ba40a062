"""Short budgeted runs of every zoo model through the whole pipeline, one table row per model.

Per model: parameters (n-gram: stored n-grams), training tokens/s, streaming tokens/s (TokenLM step + logprobs,
what the adapter pays per token), and the char accuracy / bits per char of the adapter on the first
``--eval-chars`` characters of the validation stream. Trained on a proxy train text (wiki.test.raw) by default,
so every number is a development figure, not a benchmark result.

    .venv/bin/python scripts/bench_zoo.py --budget 60 --eval-chars 5000
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np
import torch

import tokenizers_local
from eval.data import load_split, val_window
from eval.energy import EnergyMeter
from eval.evaluate import evaluate
from subchar.batch_engine import batch_adapter
from zoo.registry import num_params
from zoo.streaming import TorchTokenLM
from zoo.kinds import kind_of
from zoo.train import TrainSettings, model_names, train

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "wikitext"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=60.0, help="training seconds per model")
    parser.add_argument("--eval-chars", type=int, default=5000)
    parser.add_argument("--models", nargs="+", default=None, help="default: every model the zoo has")
    parser.add_argument("--device", default="auto", help="training device")
    parser.add_argument("--eval-device", default="cpu",
                        help="streaming/eval device (default cpu: one token at a time is latency-bound, CPU wins for small models)")
    parser.add_argument("--data-dir", default=str(SHARED))
    parser.add_argument("--train-file", default=str(SHARED / "wiki.test.raw"))
    parser.add_argument("--train-chars", type=int, default=None)
    parser.add_argument("--family", default="bytebpe")
    parser.add_argument("--vocab-size", type=int, default=4096)
    parser.add_argument("--ngram-order", type=int, default=4)
    parser.add_argument("--mode", choices=("spec", "exact"), default="exact")
    parser.add_argument("--beam", type=int, default=8, help="adapter beam (exact mode without one can be very slow)")
    parser.add_argument("--stream-tokens", type=int, default=300, help="tokens stepped to time streaming")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    return parser.parse_args()


def streaming_tokens_per_s(lm, ids: list[int]) -> float:
    state = lm.start()
    lm.logprobs(state)
    start = time.perf_counter()
    for token in ids:
        state = lm.step(state, token)
        lm.logprobs(state)
    return len(ids) / (time.perf_counter() - start)


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    train_text = load_split("train", train_file=args.train_file).prefix(args.train_chars)
    val = val_window(args.data_dir).text
    started = time.perf_counter()
    tokenizer = tokenizers_local.train_tokenizer(train_text, args.family, args.vocab_size)
    tokenizer_s = time.perf_counter() - started
    ids = np.asarray(tokenizer.encode(train_text.text), dtype=np.int64)
    val_ids = tokenizer.encode(val[:20_000])[: args.stream_tokens]
    print(f"tokenizer {args.family} {tokenizer.vocab_size} ids: {tokenizer_s:.1f} s; train {len(train_text.text):,} chars "
          f"-> {len(ids):,} tokens ({len(train_text.text) / len(ids):.2f} chars/token); proxy={train_text.proxy}")
    rows = []
    for name in args.models or model_names():
        overrides = {"order": args.ngram_order} if kind_of(name).counted else {}
        result = train(name, ids, tokenizer.vocab_size, budget_s=args.budget, overrides=overrides, device=args.device,
                       settings=TrainSettings(progress=True), meter=EnergyMeter())
        if kind_of(name).counted:
            lm, params = result.model, sum(len(t.keys) for t in result.model.tables)
        else:
            lm, params = TorchTokenLM(result.model.float(), args.eval_device), num_params(result.model)
        stream = streaming_tokens_per_s(lm, val_ids)
        adapter = batch_adapter(lm, tokenizer, mode=args.mode, beam=args.beam)
        scores = evaluate(adapter, val, max_chars=args.eval_chars)
        val_loss = result.val_losses[-1][1] if result.val_losses else math.nan
        rows.append((name, params, result.device, result.seconds, result.steps, result.tokens_seen / result.seconds,
                     val_loss, stream, scores.accuracy, scores.bits_per_char, scores.chars_per_s,
                     result.energy.total_energy_J))
    print(f"\nbudget {args.budget:g} s, eval {args.eval_chars} chars of valid on {args.eval_device}, adapter mode {args.mode}"
          f"{'' if args.beam is None else f' beam {args.beam}'}, {args.family} {tokenizer.vocab_size}")
    print("| model | params / n-grams | device | train s | steps | train tok/s | val loss | stream tok/s | "
          "char acc | bits/char | eval chars/s | train J |")
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, params, device, secs, steps, tps, vloss, stream, acc, bpc, cps, joules in rows:
        bpc_text = "n/a" if bpc is None else f"{bpc:.3f}"
        print(f"| {name} | {params:,} | {device} | {secs:.1f} | {steps:,} | {tps:,.0f} | {vloss:.3f} | {stream:,.0f} | "
              f"{acc:.4f} | {bpc_text} | {cps:,.0f} | {joules:,.0f} |")


if __name__ == "__main__":
    main()
