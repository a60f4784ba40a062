"""Write a synthetic WikiText-like train split of N MB (lab/synthetic_corpus.py), cached, and show its Heaps curve.

The source is the proxy train text (wiki.test.raw), never the validation split. The same arguments give the same
bytes; a file already written with them (its ``.json`` side file says so) is reused. ``--curve`` prints distinct
words, words seen >= 3 times and distinct word 4-grams at growing prefixes of the real source and of the corpus.

    .venv/bin/python scripts/make_corpus.py --mb 54 --seed 0 --out /tmp/synth54.raw [--curve]

Measured (seed 0, default GrowthParams; 540 MB written in ~70-90 s with 2 workers on the shared 2-core machine):

| text | MB | words | distinct words | words seen >= 3 times | distinct word 4-grams |
|---|---|---|---|---|---|
| real test split | 1.29 | 241,211 | 21,141 | 8,306 | 226,172 |
| synthetic | 1.31 | 236,867 | 27,670 | 9,094 | 226,742 |
| synthetic | 54.07 | 9,788,239 | 167,144 | 82,229 | 4,565,904 |
| synthetic | 540.00 | 97,766,239 | 677,460 | 292,049 | 38,505,384 |
| published train split | ~540 | 103,227,021 | - | 267,735 | - |

Heaps exponents (log-log slope against words): the real test split's sub-samples 0.66 (distinct words), 0.80 (seen
>= 3 times) over 0.1-1.3 MB, and 0.573 for words seen >= 3 times from the test split to the published train split;
the synthetic corpus 0.59 and 0.65 over 0.1-540 MB. Word 4-grams keep growing (0.88) but more slowly than real
text probably does, since sentences are reused with a fifth of their content words renamed: count tables built
on it are, if anything, smaller than the real split's.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path

from tqdm import tqdm

from eval.errors import UserError
from eval.records import file_sha256, write_json_atomic
from lab.synthetic_corpus import GrowthParams, generate, growth_curve, heaps_beta, line_pieces

DEFAULT_SOURCE = Path(__file__).resolve().parents[1].parent / "shared" / "wikitext" / "wiki.test.raw"
GENERATOR_VERSION = 1
# WikiText-103 train split as published (Merity et al. 2016): tokens, and vocabulary of words seen >= 3 times
PUBLISHED_TRAIN = {"words": 103_227_021, "words_count3": 267_735}


def make_corpus(source: Path, mb: float, seed: int, out: Path, workers: int = 2,
                params: GrowthParams = GrowthParams(), progress: bool = True) -> bool:
    """Write ``out`` unless it already holds this corpus; returns whether it was (re)generated."""
    if "valid" in source.name:
        raise UserError(f"{source} looks like the validation split; generate from the proxy train text (wiki.test.raw)")
    if not source.is_file():
        raise UserError(f"source text {source} not found; pass --source wiki.test.raw")
    meta = {"generator_version": GENERATOR_VERSION, "source_sha256": file_sha256(source), "mb": mb, "seed": seed,
            "params": asdict(params)}
    side = out.with_name(out.name + ".json")
    if out.is_file() and side.is_file() and json.loads(side.read_text()).get("meta") == meta:
        return False
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(f".{out.name}.partial")
    target = int(mb * 1e6)
    with open(partial, "wb") as handle, tqdm(total=target, unit="B", unit_scale=True, disable=not progress,
                                             desc="corpus") as bar:
        for data in generate(source.read_text(encoding="utf-8"), seed, target, params, workers):
            handle.write(data)
            bar.update(len(data))
    os.replace(partial, out)
    write_json_atomic(side, {"meta": meta, "bytes": out.stat().st_size, "sha256": file_sha256(out)})
    return True


def print_curve(source: Path, corpus: Path) -> None:
    real_text = source.read_text(encoding="utf-8")
    real = growth_curve(line_pieces(real_text), [0.1, 0.2, 0.4, 0.8, len(real_text.encode()) / 1e6])
    total = corpus.stat().st_size / 1e6
    sizes = [s for s in (0.1, 0.2, 0.4, 0.8, 1.3, 5.4, 13.5, 54, 135, 540) if s < total * 0.99] + [total]

    def corpus_pieces():
        with open(corpus, encoding="utf-8") as handle:
            while block := handle.read(1 << 22):
                yield from line_pieces(block + handle.readline())

    synthetic = growth_curve(corpus_pieces(), sizes)
    print("| text | MB | words | distinct words | words count>=3 | distinct word 4-grams |")
    print("|---|---|---|---|---|---|")
    for name, points in (("real test split", real), ("synthetic", synthetic)):
        for p in points:
            print(f"| {name} | {p.mb:.2f} | {p.words:,} | {p.distinct_words:,} | {p.words_count3:,} | "
                  f"{p.distinct_word_4grams:,} |")
    print(f"| published train split | ~540 | {PUBLISHED_TRAIN['words']:,} | - | {PUBLISHED_TRAIN['words_count3']:,} | - |")
    for name, points in (("real test split", real), ("synthetic", synthetic)):
        betas = ", ".join(f"{f} {heaps_beta(points, f):.3f}" for f in ("distinct_words", "words_count3",
                                                                          "distinct_word_4grams"))
        print(f"Heaps beta (log-log slope vs words), {name}: {betas}")
    last = real[-1]
    published = math.log(PUBLISHED_TRAIN["words_count3"] / last.words_count3) / math.log(PUBLISHED_TRAIN["words"] / last.words)
    print(f"Heaps beta of words count>=3, real test split -> published train split: {published:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, required=True, help="size in MB (10^6 bytes)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE, help="proxy train text (wiki.test.raw)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--curve", action="store_true", help="print the Heaps curve against the source")
    args = parser.parse_args()
    try:
        if args.mb <= 0:
            raise UserError(f"--mb must be positive, got {args.mb:g}")
        started = time.monotonic()
        made = make_corpus(args.source, args.mb, args.seed, args.out, args.workers)
        state = f"written in {time.monotonic() - started:.1f} s" if made else "reused (same arguments)"
        print(f"{args.out}: {args.out.stat().st_size:,} bytes, {state}")
        if args.curve:
            print_curve(args.source, args.out)
    except UserError as err:
        sys.exit(f"error: {err}")


if __name__ == "__main__":
    main()
