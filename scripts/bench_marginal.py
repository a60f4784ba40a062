"""Marginalisation overhead of CharAdapter: chars/s of predict()+observe() with a constant-time dummy LM.

The dummy LM returns one of a few fixed random log-prob rows per state (no model cost), so the numbers are
the adapter's own work: range sums, coverings, commits, tokenizer calls. Vocabularies are tokenizers_local
byte-level BPEs trained on the proxy train text (wiki.test.raw); the stream is the start of the validation window.

``--ngram-chars N`` adds a real measurement: a Kneser-Ney 5-gram (zoo.ngram) over bytebpe-4096 ids of the
proxy train text, scored on the first N validation chars (greedy accuracy, chars/s, LM calls per char).

    .venv/bin/python scripts/bench_marginal.py [--chars 3000] [--sizes 1000 8000 32000 64000] [--ngram-chars 5000]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from eval.data import SplitText, load_split, val_window
from subchar import CharAdapter
from tokenizers_local.training import train_tokenizer
from zoo.ngram import KneserNeyLM, count_tables

ROWS = 64  # distinct dummy distributions; a state's row is picked by hashing its last token


class DummyLM:
    """Constant-time LM: log-probs are fixed random rows, chosen by the last token."""

    def __init__(self, vocab_size: int, seed: int = 0) -> None:
        self.vocab_size = vocab_size
        logits = np.random.default_rng(seed).normal(scale=3.0, size=(ROWS, vocab_size))
        self.rows = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))

    def start(self) -> int:
        return 0

    def step(self, state: int, token: int) -> int:
        return token

    def logprobs(self, state: int) -> np.ndarray:
        return self.rows[(state * 2654435761) % ROWS]


def run(adapter: CharAdapter, text: str) -> tuple[float, float]:
    """Greedy accuracy and seconds of predict()+observe() over ``text``."""
    adapter.reset()
    hits, start = 0, time.perf_counter()
    for char in text:
        hits += adapter.predict() == char
        adapter.observe(char)
    return hits / len(text), time.perf_counter() - start


def ngram_table(train: SplitText, stream: str, configs: list[tuple[str, int | None]]) -> None:
    """Greedy accuracy and speed of each adapter mode over a KN 5-gram token LM (the LM's own cost included)."""
    tok = train_tokenizer(train, "bytebpe", 4096)
    tables = count_tables(np.asarray(tok.encode(train.text), dtype=np.int64), 5, tok.vocab_size)
    print(f"\nKN 5-gram, bytebpe-{tok.vocab_size}, first {len(stream)} val chars")
    print(f"{'mode':>10} {'accuracy':>9} {'chars/s':>9} {'LM calls/char':>14} {'merged/char':>12}")
    for mode, beam in configs:
        lm = KneserNeyLM(tables, tok.vocab_size)  # every mode starts with a cold LM cache
        adapter = CharAdapter(lm, tok, mode=mode, beam=beam)
        accuracy, seconds = run(adapter, stream)
        d = adapter.diagnostics
        label = mode if beam is None else f"{mode}/b{beam}"
        print(
            f"{label:>10} {accuracy:>9.4f} {len(stream) / seconds:>9.0f} "
            f"{d.lm_calls / len(stream):>14.2f} {d.merged_coverings / len(stream):>12.2f}",
            flush=True,
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chars", type=int, default=3000)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 8000, 32000, 64000])
    parser.add_argument("--ngram-chars", type=int, default=0, help="also time a KN 5-gram on this many chars")
    parser.add_argument("--ngram-modes", nargs="+", default=["spec", "exact/8"], help="mode or mode/beam")
    parser.add_argument("--data-dir", default=str(Path(__file__).resolve().parents[1].parent / "shared" / "wikitext"))
    args = parser.parse_args()
    split = load_split("train", train_file=str(Path(args.data_dir) / "wiki.test.raw"))
    stream = val_window(args.data_dir, chars=args.chars).text
    configs = [("spec", None), ("exact", None), ("exact", 8)]
    print(f"{'V asked':>8} {'V':>6} {'mode':>10} {'chars/s':>9} {'LM calls/char':>14} {'coverings max':>13}")
    for size in args.sizes:
        tok = train_tokenizer(split, "bytebpe", size)
        lm = DummyLM(tok.vocab_size)
        for mode, beam in configs:
            adapter = CharAdapter(lm, tok, mode=mode, beam=beam)
            _, seconds = run(adapter, stream)
            d = adapter.diagnostics
            label = mode if beam is None else f"{mode}/b{beam}"
            print(
                f"{size:>8} {tok.vocab_size:>6} {label:>10} {len(stream) / seconds:>9.0f} "
                f"{d.lm_calls / len(stream):>14.2f} {d.max_coverings:>13}",
                flush=True,
            )
    if args.ngram_chars:
        modes = [(m.split("/")[0], int(m.split("/")[1]) if "/" in m else None) for m in args.ngram_modes]
        ngram_table(split, val_window(args.data_dir, chars=args.ngram_chars).text, modes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
