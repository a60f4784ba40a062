"""Every modelling choice of the default configuration, made on held-out train text: never on the val split.

The train text (a proxy of the train split, e.g. wiki.test.raw) is cut: the last ``--held-out`` share is held out,
and each candidate is trained on a prefix of the rest and scored on the first ``--eval-chars`` held-out characters
with the benchmark's loop. Prints two markdown tables:

1. selection, on the largest prefix: the char n-gram's order and the token n-gram's order per tokenizer, each
   without and with online adaptation (``zoo.online_ngram``), with how much text a cell could count at that order
   before its tables pass the memory plan's limit (``lab.phase_plan.chars_that_fit_memory``, from the cell's own
   probe: an order that fits only a small share of the 540 MB split trades its gain for data), and the weight of
   the char model in the mixture (``subchar.mixture``) of the best char and token models, adapting;
2. train sizes: the chosen configurations at each ``--sizes`` prefix, so a gain that shrinks as the train text
   grows (the real split is ~400x the proxy) shows.

    python scripts/select_on_heldout.py --data-dir ../shared/wikitext --train-file ../shared/wikitext/wiki.test.raw

Figures from a proxy are development figures. Exact adapter with the grid's default beam (8).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

import numpy as np

from eval.data import SplitText, load_split
from eval.evaluate import evaluate
from lab.cell_phases import probe_char_rates, probe_rates
from lab.phase_plan import chars_that_fit_memory
from subchar.batch_engine import batch_adapter
from subchar.mixture import HeldOut, weight_grid
from tokenizers_local import train_tokenizer
from zoo.char_baseline import CharKneserNey
from zoo.ngram import KneserNeyLM
from zoo.online_ngram import OnlineKneserNey

BEAM = 8
TOLERANCE = 0.005  # held-out accuracy a cheaper choice may give up: then the one whose tables fit the most text wins


def numbers(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part]


def char_model(train: SplitText, order: int, adapt: bool) -> CharKneserNey:
    return CharKneserNey.fit(train, order=order, adapt=adapt)


class TokenSetup:
    """One tokenizer learned on one train prefix, its ids, and n-grams of any order counted on them."""

    def __init__(self, train: SplitText, spec: str) -> None:
        family, vocab = spec.split(":")
        self.spec = spec
        self.tokenizer = train_tokenizer(train, family, int(vocab))
        self.ids = np.asarray(self.tokenizer.encode(train.text))

    def model(self, order: int, adapt: bool):
        counts = KneserNeyLM.fit(self.ids, self.tokenizer.vocab_size, order)
        return batch_adapter(OnlineKneserNey(counts) if adapt else counts, self.tokenizer, beam=BEAM)


def scored(model, text: str) -> tuple[float, float]:
    started = time.perf_counter()
    result = evaluate(model, text, None, progress=False)
    return result.accuracy, time.perf_counter() - started


def frugal(rows: list[tuple]) -> tuple:
    """Of (accuracy, chars that fit memory, ...) rows, those within TOLERANCE of the best accuracy, the one that fits
    the most text (then the more accurate)."""
    best = max(accuracy for accuracy, *_ in rows)
    return max((r for r in rows if r[0] >= best - TOLERANCE), key=lambda r: (r[1], r[0]))


def row(*cells: object) -> str:
    return "| " + " | ".join(str(cell) for cell in cells) + " |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default="../shared/wikitext")
    parser.add_argument("--train-file", default="../shared/wikitext/wiki.test.raw")
    parser.add_argument("--held-out", type=float, default=0.1, help="share of the train text held out (default 0.1)")
    parser.add_argument("--eval-chars", type=int, default=60_000)
    parser.add_argument("--char-orders", type=numbers, default=[6, 8, 10, 12, 14])
    parser.add_argument("--token-orders", type=numbers, default=[4, 5, 6])
    parser.add_argument("--tokenizers", nargs="+", default=["unigram:2048", "bytebpe:2048"])
    parser.add_argument("--sizes", type=numbers, default=[300_000, 650_000], help="smaller train prefixes (chars)")
    args = parser.parse_args()

    full = load_split("train", args.data_dir, args.train_file)
    cut = int(len(full.text) * (1 - args.held_out))
    held = full.text[cut : cut + args.eval_chars]
    train = replace(full, text=full.text[:cut])
    print(f"train {len(train.text):,} chars, held out {len(full.text) - cut:,} (scored: the first {len(held):,})\n")

    print("## Selection on held-out train text\n")
    print(row("model", "order", "static acc", "adapting acc", "gain", "fits memory (chars)", "seconds (static, adapting)"))
    print(row(*["---"] * 7))
    chars_rows = []
    for order in args.char_orders:
        (static, s1), (adapting, s2) = (scored(char_model(train, order, a), held) for a in (False, True))
        fits = chars_that_fit_memory(probe_char_rates(full, order))
        chars_rows.append((adapting, fits, order))
        print(row("char-kn", order, f"{static:.4f}", f"{adapting:.4f}", f"{adapting - static:+.4f}", f"{fits:,}",
                  f"{s1:.0f}, {s2:.0f}"), flush=True)
    token_rows = []
    setups = {}
    for spec in args.tokenizers:
        setups[spec] = setup = TokenSetup(train, spec)
        for order in args.token_orders:
            (static, s1), (adapting, s2) = (scored(setup.model(order, a), held) for a in (False, True))
            family, vocab = spec.split(":")
            fits = chars_that_fit_memory(probe_rates(full, family, int(vocab), order, [1]))
            token_rows.append((adapting, fits, spec, order))
            print(row(f"{spec} ngram", order, f"{static:.4f}", f"{adapting:.4f}", f"{adapting - static:+.4f}",
                      f"{fits:,}", f"{s1:.0f}, {s2:.0f}"), flush=True)
    *_, char_order = frugal(chars_rows)
    *_, spec, token_order = frugal(token_rows)
    print(f"\nchosen (adapting; within {TOLERANCE} of the best held-out accuracy, the one whose tables fit the most "
          f"text): char-kn order {char_order}, {spec} ngram order {token_order}\n")

    print(f"## Mixture weight of the char model (char-kn {char_order} + {spec} ngram {token_order}, adapting)\n")
    seen = HeldOut([char_model(train, char_order, True), setups[spec].model(token_order, True)], held)
    grid = [(w, *seen.score(w)) for w in weight_grid(2, 0.05)]
    print(row("char weight", "acc", "log-lik/char"))
    print(row("---", "---", "---"))
    for weights, accuracy, likelihood in grid:
        print(row(f"{weights[0]:.2f}", f"{accuracy:.4f}", f"{likelihood:.4f}"))
    chosen = max(grid, key=lambda g: (g[1], g[2]))[0]
    print(f"\nchosen char weight: {chosen[0]:.2f}\n")

    print("## Train sizes (held-out accuracy)\n")
    print(row("train chars", "char-kn static", "char-kn adapting", f"{spec} static", f"{spec} adapting",
              f"mixture ({chosen[0]:.2f})", "adaptation gain (char, token)", "mixture gain"))
    print(row(*["---"] * 8))
    for size in [*args.sizes, len(train.text)]:
        part = replace(train, text=train.text[:size])
        setup = setups[spec] if size == len(train.text) else TokenSetup(part, spec)
        char_static, _ = scored(char_model(part, char_order, False), held)
        token_static, _ = scored(setup.model(token_order, False), held)
        seen = HeldOut([char_model(part, char_order, True), setup.model(token_order, True)], held)
        char_adapting, token_adapting, mixed = (seen.score(w)[0] for w in ((1.0, 0.0), (0.0, 1.0), chosen))
        print(row(f"{size:,}", f"{char_static:.4f}", f"{char_adapting:.4f}", f"{token_static:.4f}",
                  f"{token_adapting:.4f}", f"{mixed:.4f}",
                  f"{char_adapting - char_static:+.4f}, {token_adapting - token_static:+.4f}",
                  f"{mixed - max(char_adapting, token_adapting):+.4f}"), flush=True)


if __name__ == "__main__":
    main()
