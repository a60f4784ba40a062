"""The whole cell at the train split's scale, on synthetic WikiText corpora (scripts/make_corpus.py): a table.

Per corpus size and cell, each in a fresh process (so peak RSS is the cell's own): the planned and actual seconds
of each phase (probe, tokenizer on the planned sample, parallel encode into a memory-mapped id file, n-gram
counting or neural training), MB/s, peak RSS after the phase, ids on disk, n-grams per order, and for n-gram
cells at <= 100 MB the one-shot numpy count (zoo.ngram.count_tables) timed on the same ids, against torch's
chunked count. The id cache starts empty for every cell, so encoding is always measured. A short streaming
evaluation (``--eval-chars`` of the val split) shows that the trained model serves characters.

    .venv/bin/python scripts/bench_scale.py --mb 54 540 --cells bytebpe:4096:ngram bytebpe:16384:ngram \\
        bytebpe:4096:transformer [--order 4] [--budget 300] [--corpus-dir /tmp/subchar-scale]
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "wikitext"


def rss_gb() -> tuple[float, float]:
    """(current, peak) resident set size of this process in GB."""
    with open("/proc/self/statm") as handle:
        pages = int(handle.read().split()[1])
    current = pages * resource.getpagesize() / 1e9
    return current, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6


def run_one(spec: str, corpus: Path, order: int, budget: float, data_dir: str, eval_chars: int, work: Path) -> dict:
    """One cell in this process; returns its rows as a dict (printed as JSON for the parent)."""
    import numpy as np
    import torch

    from eval.cell_phases import prepare_ids
    from eval.data import load_split
    from eval.energy import EnergyMeter
    from eval.evaluate import evaluate
    from zoo.train import NGRAM, train as train_model

    family, vocab, model = spec.split(":")
    rows: dict = {"cell": spec, "phases": {}}
    started = time.monotonic()
    train = load_split("train", train_file=str(corpus))
    mb = len(train.text.encode("utf-8")) / 1e6  # a transient copy; counted in the load row's peak
    rows["load"] = {"s": time.monotonic() - started, "rss": rss_gb(), "mb": mb, "chars": len(train.text)}
    meter = EnergyMeter(gpu=True, cpu=False)
    rss_after: dict[str, tuple[float, float]] = {}
    prepared, cell_start = prepare_ids(family, int(vocab), order if model == NGRAM else None, train, budget, meter,
                                       work / "ids-cache")
    rss_after["tokenize"] = rss_gb()
    ids = prepared.id_file.ids()
    remaining = budget - (time.monotonic() - cell_start)
    overrides = {"order": order} if model == NGRAM else {}
    result = train_model(model, ids, prepared.tokenizer.vocab_size, budget_s=remaining, overrides=overrides,
                         meter=meter)
    rss_after["train"] = rss_gb()
    rows["cell_wall_s"] = time.monotonic() - cell_start
    rows["plan"] = prepared.plan.to_dict()
    rows["data"] = prepared.facts()
    rows["tokenizer_sample_chars"] = prepared.tokenizer.info.train_chars
    rows["chars_per_token"] = prepared.encoded_chars / max(1, prepared.id_file.tokens)
    for name, phase in meter.report.phases.items():
        rows["phases"][name] = {"s": phase.duration_s, "rss": rss_after.get(name)}
    rows["train"] = {k: v for k, v in result.summary().items() if k not in ("config", "val_losses")}
    if model == NGRAM:
        rows["ngrams"] = [len(table.keys) for table in result.model.tables]
        if mb <= 100:
            from zoo.ngram import count_tables

            numpy_started = time.monotonic()
            count_tables(np.asarray(ids, dtype=np.int64), order, prepared.tokenizer.vocab_size)
            rows["numpy_count_s"] = time.monotonic() - numpy_started
        rows["torch_threads"] = torch.get_num_threads()
    if eval_chars:
        from subchar import CharAdapter
        from zoo.streaming import TorchTokenLM

        torch.set_num_threads(1)
        lm = result.model if model == NGRAM else TorchTokenLM(result.model, result.device)
        valid = load_split("valid", data_dir).text
        scored = evaluate(CharAdapter(lm, prepared.tokenizer, mode="exact", beam=4), valid, eval_chars, progress=False)
        rows["eval"] = {"chars": scored.chars, "accuracy": scored.accuracy, "chars_per_s": scored.chars_per_s}
    rows["peak_rss_gb"] = rss_gb()[1]
    return rows


def print_table(results: list[dict]) -> None:
    print("| MB | cell | phase | planned s | actual s | MB/s | RSS after (GB) | peak RSS (GB) | notes |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        mb = r["load"]["mb"]
        planned = r["plan"]["planned_s"]
        print(f"| {mb:.0f} | {r['cell']} | load (not charged) | - | {r['load']['s']:.1f} | "
              f"{mb / max(r['load']['s'], 1e-9):.1f} | {r['load']['rss'][0]:.2f} | {r['load']['rss'][1]:.2f} | "
              f"{r['load']['chars']:,} chars |")
        for name, phase in r["phases"].items():
            seconds = phase["s"]
            rss = phase["rss"] or (float("nan"), float("nan"))
            if name == "tokenizer":
                rate_mb, note = r["tokenizer_sample_chars"] / 1e6, f"sample {r['tokenizer_sample_chars']:,} chars"
            elif name == "tokenize":
                data = r["data"]
                rate_mb = data["encoded_chars"] / 1e6
                note = (f"{data['encoder']}, {r['plan']['encode_threads']} threads, {data['ids_tokens']:,} ids "
                        f"{data['ids_dtype']}, {data['ids_bytes'] / 1e6:.0f} MB on disk, "
                        f"{r['chars_per_token']:.3f} chars/token")
            elif name == "train":
                rate_mb = mb
                if "ngrams" in r:
                    note = "n-grams per order " + " / ".join(f"{n:,}" for n in r["ngrams"])
                    if "numpy_count_s" in r:
                        note += f"; numpy one-shot count {r['numpy_count_s']:.1f} s"
                else:
                    note = f"{r['train']['steps']} steps, {r['train']['tokens_seen']:,} tokens, loss {r['train']['train_loss']:.3f}"
            else:
                rate_mb, note = float("nan"), ""
            print(f"| {mb:.0f} | {r['cell']} | {name} | {planned.get(name, 0):.1f} | {seconds:.1f} | "
                  f"{rate_mb / max(seconds, 1e-9):.1f} | {rss[0]:.2f} | {rss[1]:.2f} | {note} |")
        data_s = sum(r["phases"].get(name, {"s": 0})["s"] for name in ("probe", "tokenizer", "tokenize", "train"))
        summary = f"cell wall {r['cell_wall_s']:.1f} s (probe+tokenizer+encode+train {data_s:.1f} s), peak RSS {r['peak_rss_gb']:.2f} GB"
        if "eval" in r:
            summary += f", val acc {r['eval']['accuracy']:.3f} on {r['eval']['chars']} chars"
        print(f"| {mb:.0f} | {r['cell']} | **total** | {r['plan']['budget_s']:.0f} | {r['cell_wall_s']:.1f} | - | - | "
              f"{r['peak_rss_gb']:.2f} | {summary} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, nargs="+", default=[54.0])
    parser.add_argument("--cells", nargs="+", default=["bytebpe:4096:ngram", "bytebpe:16384:ngram",
                                                       "bytebpe:4096:transformer"])
    parser.add_argument("--order", type=int, default=4)
    parser.add_argument("--budget", type=float, default=300.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--eval-chars", type=int, default=500)
    parser.add_argument("--data-dir", default=str(DEFAULT_DATA))
    parser.add_argument("--corpus-dir", type=Path, default=Path("/tmp/subchar-scale"))
    parser.add_argument("--one-cell", help=argparse.SUPPRESS)
    parser.add_argument("--corpus", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one_cell:
        work = args.corpus_dir / f"work-{args.one_cell.replace(':', '-')}"
        shutil.rmtree(work, ignore_errors=True)
        try:
            rows = run_one(args.one_cell, args.corpus, args.order, args.budget, args.data_dir, args.eval_chars, work)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        print("RESULT " + json.dumps(rows))
        return

    sys.path.insert(0, str(ROOT / "scripts"))
    from make_corpus import DEFAULT_SOURCE, make_corpus

    results = []
    for mb in args.mb:
        corpus = args.corpus_dir / f"synthetic-{mb:g}mb-seed{args.seed}.raw"
        make_corpus(DEFAULT_SOURCE, mb, args.seed, corpus, progress=False)
        for spec in args.cells:
            command = [sys.executable, __file__, "--one-cell", spec, "--corpus", str(corpus), "--order",
                       str(args.order), "--budget", str(args.budget), "--eval-chars", str(args.eval_chars),
                       "--data-dir", args.data_dir, "--corpus-dir", str(args.corpus_dir)]
            done = subprocess.run(command, capture_output=True, text=True)
            lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
            if done.returncode or not lines:
                print(f"{mb:g} MB {spec}: failed (exit {done.returncode}): {done.stderr.strip()[-2000:]}", flush=True)
                continue
            results.append(json.loads(lines[-1][len("RESULT "):]))
            print_table(results[-1:])
            print(flush=True)
    print_table(results)


if __name__ == "__main__":
    main()
