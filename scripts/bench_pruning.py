"""Pruning defaults by measurement: a KN 5-gram over bytebpe-4096 (trained on the proxy train text) scored in
exact mode on the validation window under several beam / relative-mass settings, one table.

Columns: accuracy and correct count, true chars given p=0 (they make bits/char infinite), bits/char (over all
chars, and over the chars with mass), mean pruned covering mass per char, chars/s (noisy on a shared machine).

    .venv/bin/python scripts/bench_pruning.py [--chars 60000] [--settings none b8 b8,p1e-4 p1e-3]

A setting is ``none`` (exact; accuracy only: the exact distribution over byte-split characters costs millions of
LM calls), ``bK`` (beam K), ``pEPS`` (relative-mass threshold) or both joined by a comma.
Settings with ``p`` need a subchar with ``CharAdapter(prune=...)``; the rest also run on older checkouts (put them
first on PYTHONPATH) to measure "before" figures.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np

from eval.data import load_split, val_window
from eval.evaluate import evaluate
from subchar import CharAdapter
from tokenizers_local.training import train_tokenizer
from zoo.ngram import KneserNeyLM, count_tables


def parse(setting: str) -> dict:
    options: dict = {}
    for part in setting.split(","):
        if part.startswith("b"):
            options["beam"] = int(part[1:])
        elif part.startswith("p"):
            options["prune"] = float(part[1:])
        elif part != "none":
            raise SystemExit(f"bad setting {setting!r}: use none, bK, pEPS or bK,pEPS")
    return options


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chars", type=int, default=60_000)
    parser.add_argument("--settings", nargs="+", default=["b8", "b8,p1e-4", "b8,p1e-3", "p1e-4", "p1e-3"])
    parser.add_argument("--data-dir", default=str(Path(__file__).resolve().parents[1].parent / "shared" / "wikitext"))
    args = parser.parse_args()
    train = load_split("train", train_file=str(Path(args.data_dir) / "wiki.test.raw"))
    stream = val_window(args.data_dir, chars=args.chars).text
    tok = train_tokenizer(train, "bytebpe", 4096, progress=False)
    tables = count_tables(np.asarray(tok.encode(train.text), dtype=np.int64), 5, tok.vocab_size)
    print(f"KN 5-gram, bytebpe-{tok.vocab_size}, exact mode, first {len(stream):,} val chars")
    print("| setting | accuracy | correct | p=0 chars | bits/char | covered bits/char | pruned mass/char | chars/s |")
    print("|---|---|---|---|---|---|---|---|")
    for setting in args.settings:
        adapter = CharAdapter(KneserNeyLM(tables, tok.vocab_size), tok, mode="exact", **parse(setting))
        result = evaluate(adapter, stream, None, progress=False, bits=setting != "none", engine="stream")
        pruned = adapter.diagnostics.pruned_mass
        mean_pruned = math.fsum(pruned) / len(pruned) if pruned else 0.0
        bits = "n/a" if result.bits_per_char is None else f"{result.bits_per_char:.4f}"
        covered = "n/a" if result.covered_bits_per_char is None else f"{result.covered_bits_per_char:.4f}"
        print(f"| {setting} | {result.accuracy:.4f} | {result.correct} | {result.zero_prob_chars} | {bits} | "
              f"{covered} | {mean_pruned:.2e} | {result.chars_per_s:,.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
