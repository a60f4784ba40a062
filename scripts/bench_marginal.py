"""Marginalisation overhead of CharAdapter: chars/s of predict()+observe() with a constant-time dummy LM.

The dummy LM returns one of a few fixed random log-prob rows per state (no model cost), so the numbers are
the adapter's own work: range sums, coverings, commits, tokenizer calls. Vocabularies are byte-level BPEs
trained on the proxy train text (wiki.test.raw); the stream is the start of the validation window.

    .venv/bin/python scripts/bench_marginal.py [--chars 3000] [--sizes 1000 8000 32000 64000]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from eval.data import load_split, val_window
from subchar import CharAdapter

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


def byte_level_bpe(text: str, vocab_size: int) -> Tokenizer:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    tok.train_from_iterator([text], trainer)
    return tok


def run(adapter: CharAdapter, text: str) -> float:
    adapter.reset()
    start = time.perf_counter()
    for char in text:
        adapter.predict()
        adapter.observe(char)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chars", type=int, default=3000)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 8000, 32000, 64000])
    parser.add_argument("--data-dir", default=str(Path(__file__).resolve().parents[1].parent / "shared" / "wikitext"))
    args = parser.parse_args()
    train = load_split("train", train_file=str(Path(args.data_dir) / "wiki.test.raw")).text
    stream = val_window(args.data_dir, chars=args.chars).text
    configs = [("spec", None), ("exact", None), ("exact", 8)]
    print(f"{'V asked':>8} {'V':>6} {'mode':>10} {'chars/s':>9} {'LM calls/char':>14} {'coverings max':>13}")
    for size in args.sizes:
        tok = byte_level_bpe(train, size)
        lm = DummyLM(tok.get_vocab_size())
        for mode, beam in configs:
            adapter = CharAdapter(lm, tok, mode=mode, beam=beam)
            seconds = run(adapter, stream)
            d = adapter.diagnostics
            label = mode if beam is None else f"{mode}/b{beam}"
            print(
                f"{size:>8} {tok.get_vocab_size():>6} {label:>10} {len(stream) / seconds:>9.0f} "
                f"{d.lm_calls / len(stream):>14.2f} {d.max_coverings:>13}",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
