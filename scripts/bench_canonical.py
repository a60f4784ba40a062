"""Canonical coverings (``CharAdapter(canonical=True)``) against the full exact marginal, on held-out train text.

The train text (a proxy of the train split, e.g. wiki.test.raw) is cut: the last ``--held-out`` share is held out, the
tokenizers and the order-5 Kneser–Ney token LMs are trained on the rest, and the first ``--chars`` held-out characters
are scored with the benchmark's loop (``eval.evaluate``, batch engine) by the exact adapter and by the canonical one,
both with the grid's default beam (8), static LM. Never touches the val split. Prints a markdown table.

    python scripts/bench_canonical.py --data-dir ../shared/wikitext --train-file ../shared/wikitext/wiki.test.raw
"""

from __future__ import annotations

import argparse
from dataclasses import replace

import numpy as np

from eval.data import load_split
from eval.evaluate import evaluate
from subchar.batch_engine import batch_adapter
from tokenizers_local import train_tokenizer
from zoo.ngram import KneserNeyLM


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="../shared/wikitext")
    parser.add_argument("--train-file", default="../shared/wikitext/wiki.test.raw")
    parser.add_argument("--held-out", type=float, default=0.1, help="share of the train text held out (its end)")
    parser.add_argument("--chars", type=int, default=20_000, help="held-out characters scored")
    parser.add_argument("--tokenizers", default="unigram:2048,bytebpe:2048")
    parser.add_argument("--order", type=int, default=5)
    parser.add_argument("--beam", type=int, default=8)
    args = parser.parse_args()

    train = load_split("train", args.data_dir, train_file=args.train_file)
    cut = int(len(train.text) * (1 - args.held_out))
    fit_on, held_out = replace(train, text=train.text[:cut]), train.text[cut:][: args.chars]
    print(f"train {len(fit_on.text):,} chars, scored {len(held_out):,} held-out chars, order {args.order}, "
          f"beam {args.beam}\n")
    print("| tokenizer | adapter | accuracy | bits/char | covered bits/char | zero-prob chars | chars/s |")
    print("|---|---|---|---|---|---|---|")
    for spec in args.tokenizers.split(","):
        family, vocab = spec.split(":")
        tokenizer = train_tokenizer(fit_on, family, int(vocab))
        lm = KneserNeyLM.fit(np.asarray(tokenizer.encode(fit_on.text)), tokenizer.vocab_size, order=args.order)
        for name, canonical in (("exact", False), ("canonical", True)):
            adapter = batch_adapter(lm, tokenizer, mode="exact", beam=args.beam, canonical=canonical)
            result = evaluate(adapter, held_out, None, progress=False)
            bits = "inf" if result.bits_per_char is None or not np.isfinite(result.bits_per_char) else (
                f"{result.bits_per_char:.4f}")
            covered = "-" if result.covered_bits_per_char is None else f"{result.covered_bits_per_char:.4f}"
            print(f"| {spec} | {name} (beam {args.beam}) | {result.accuracy:.4f} | {bits} | {covered} | "
                  f"{result.zero_prob_chars} | {result.chars_per_s:,.0f} |", flush=True)


if __name__ == "__main__":
    main()
