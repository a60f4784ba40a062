"""Benchmark every tokenizer family at several vocabulary sizes on WikiText (a table on stdout).

Trains on the proxy train text (wiki.test.raw, loaded as a flagged proxy of the train split), then measures on
the validation split: chars/token on the scored 60k-char window, exact round trip on the whole split, encode
speed on the whole split (HF / SentencePiece, and tiktoken for bytebpe, with a check that its ids agree).

    .venv/bin/python scripts/bench_tokenizers.py [--data-dir ../shared/wikitext] [--vocab 4000 16000 32000]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from eval.data import load_split, val_window
from tokenizers_local import FAMILIES, to_tiktoken, train_tokenizer
from tokenizers_local.stats import encode_throughput, measure

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "wikitext"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=str(DEFAULT_DATA))
    parser.add_argument("--vocab", type=int, nargs="+", default=[4000, 16000, 32000])
    parser.add_argument("--families", nargs="+", default=list(FAMILIES), choices=list(FAMILIES))
    args = parser.parse_args()

    train = load_split("train", train_file=Path(args.data_dir) / "wiki.test.raw")
    window = val_window(args.data_dir).text
    valid = load_split("valid", args.data_dir).text
    print(f"train: {train.source} ({len(train.text):,} chars, PROXY={train.proxy}); "
          f"val window {len(window):,} chars; whole val {len(valid):,} chars")
    header = ("family", "vocab asked", "vocab", "train s", "chars/tok", "fallback", "round trip", "MB/s", "tiktoken MB/s", "tiktoken ids")
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" for _ in header) + "|")
    for family in args.families:
        for vocab in args.vocab:
            tokenizer = train_tokenizer(train, family, vocab)
            stats = measure(tokenizer, window, valid)
            tik_speed, tik_same = "-", "-"
            if family == "bytebpe":
                ids, speed = encode_throughput(to_tiktoken(tokenizer).encode_ordinary, valid)
                tik_speed, tik_same = f"{speed:.1f}", "equal" if ids == tokenizer.encode(valid) else "DIFFER"
            row = (
                family, vocab, stats.vocab_size, f"{stats.training_seconds:.2f}", f"{stats.chars_per_token:.3f}",
                f"{stats.fallback_share:.4%}", "OK" if stats.round_trip_ok else "FAILED",
                f"{stats.encode_mb_per_s:.1f}", tik_speed, tik_same,
            )
            print("| " + " | ".join(map(str, row)) + " |", flush=True)


if __name__ == "__main__":
    main()
