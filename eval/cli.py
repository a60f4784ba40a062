"""``subchar data`` (fetch and inspect WikiText) and ``subchar quickstart`` (the main job on the data at hand)."""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

from eval.data import SPLITS, fetch, load_split
from eval.errors import UserError


def add_data_args(parser: argparse.ArgumentParser, *, train_file: bool = False) -> None:
    parser.add_argument("--data-dir", help="directory with wiki.<split>.raw or parquet shards (default: $SUBCHAR_DATA)")
    if train_file:
        parser.add_argument(
            "--train-file",
            help="proxy text standing in for the train split (default: $SUBCHAR_TRAIN_FILE); results are marked proxy",
        )


def register(subparsers) -> None:
    data = subparsers.add_parser("data", help="fetch or inspect WikiText-103-raw-v1")
    data_commands = data.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    fetch_parser = data_commands.add_parser("fetch", help="write wiki.<split>.raw from local parquet shards or the Hub")
    fetch_parser.add_argument("--data-dir", required=True)
    fetch_parser.add_argument("--splits", nargs="+", choices=SPLITS, default=list(SPLITS))
    fetch_parser.set_defaults(func=run_fetch)
    info_parser = data_commands.add_parser("info", help="length and checksum of each split's scored stream")
    add_data_args(info_parser, train_file=True)
    info_parser.add_argument("--splits", nargs="+", choices=SPLITS, default=["valid", "test"])
    info_parser.set_defaults(func=run_info)
    register_compare(subparsers)


def run_fetch(args: argparse.Namespace) -> int:
    for path in fetch(args.data_dir, tuple(args.splits)):
        print(f"ready: {path}")
    return 0


def run_info(args: argparse.Namespace) -> int:
    for split in args.splits:
        text = load_split(split, args.data_dir, getattr(args, "train_file", None))
        stream_sha = hashlib.sha256(text.text.encode("utf-8")).hexdigest()[:16]
        window_sha = hashlib.sha256(text.text[:60_000].encode("utf-8")).hexdigest()[:16]
        proxy = " (proxy train)" if text.proxy else ""
        print(f"{split}{proxy}: {len(text.text):,} chars, sha256 {stream_sha}, window sha256 {window_sha}  <- {text.source}")
    return 0


QUICKSTART_TOKENIZERS = ("bytebpe:2048", "unigram:2048")
QUICKSTART_MODELS = ("ngram",)


DEFAULT_BEAM = 8


def beam_width(text: str) -> int | None:
    """``--beam K``: K coverings kept; 0 means none pruned (the exact sum, whose cost grows with the buffer)."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("the beam must be 0 (no pruning) or positive")
    return value or None


def add_grid_args(parser: argparse.ArgumentParser, *, budget: float, eval_chars: int, test_chars: int) -> None:
    add_data_args(parser, train_file=True)
    parser.add_argument("--budget", type=float, default=budget, help=f"training seconds per cell (default {budget:g})")
    parser.add_argument("--mode", choices=("spec", "exact"), default="exact", help="adapter mode (default exact)")
    parser.add_argument("--beam", type=beam_width, default=DEFAULT_BEAM,
                        help=f"exact mode: keep the K heaviest coverings (default {DEFAULT_BEAM}; 0 = no pruning, can be very slow)")
    parser.add_argument("--eval-chars", type=int, default=eval_chars, help=f"val chars scored (default {eval_chars})")
    parser.add_argument("--test-chars", type=int, default=test_chars, help=f"test chars reported, 0 to skip (default {test_chars})")
    parser.add_argument("--train-chars", type=int, help="use only the first N characters of the train text")
    parser.add_argument("--char-order", type=int, default=6, help="order of the char Kneser-Ney baseline (default 6)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--seed", type=int, default=0)
    add_engine_arg(parser)


def add_engine_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--prune", type=float, default=None, metavar="EPS",
                        help="exact mode: also drop coverings and expansions lighter than EPS times the total (e.g. 1e-4)")
    parser.add_argument("--engine", choices=("batch", "stream"), default="batch",
                        help="batch (default): the stream's exact answers, many positions at a time; "
                             "stream: the benchmark's own predict/observe loop")


def register_compare(subparsers) -> None:
    compare_parser = subparsers.add_parser("compare", help="tokenizer × model grid: energy to accuracy, resumable")
    compare_parser.add_argument("--tokenizers", nargs="+", required=True, metavar="FAMILY:VOCAB",
                                help="e.g. bytebpe:4096 unigram:8192 wordpiece:8192 word:16384")
    compare_parser.add_argument("--models", nargs="+", required=True, help="zoo models, e.g. ngram transformer")
    compare_parser.add_argument("--out", required=True, help="output folder (results.jsonl, table.md, pareto.png)")
    compare_parser.add_argument("--backend", choices=("local", "modal"), default="local")
    compare_parser.add_argument("--dry-run", action="store_true", help="with --backend modal: print the plan, run nothing")
    add_grid_args(compare_parser, budget=300.0, eval_chars=60_000, test_chars=60_000)
    compare_parser.set_defaults(func=run_compare)

    quick = subparsers.add_parser("quickstart", help="the main job on a small grid that finishes in minutes on a CPU")
    quick.add_argument("--out", default="runs/quickstart", help="output folder (default runs/quickstart)")
    quick.add_argument("--json", help="also write the best run's record here")
    add_grid_args(quick, budget=60.0, eval_chars=60_000, test_chars=0)
    quick.set_defaults(func=run_quickstart, tokenizers=QUICKSTART_TOKENIZERS, models=QUICKSTART_MODELS,
                       backend="local", dry_run=False)

    modal_parser = subparsers.add_parser("modal", help="run a compare folder's grid (or one run) on Modal's A100-80GB")
    modal_parser.add_argument("target", help="a compare folder (grid.json) or a run folder (cell.json)")
    modal_parser.add_argument("--dry-run", action="store_true", help="build the app and print what would run")
    modal_parser.set_defaults(func=run_modal)


def options_from(args: argparse.Namespace):
    from eval.pipeline import CellOptions

    for name in ("budget", "eval_chars"):
        if getattr(args, name) <= 0:
            raise UserError(f"--{name.replace('_', '-')} must be positive")
    return CellOptions(budget_s=args.budget, mode=args.mode, beam=args.beam, eval_chars=args.eval_chars,
                       test_chars=args.test_chars, train_chars=args.train_chars, char_order=args.char_order,
                       device=args.device, seed=args.seed, engine=args.engine, prune=args.prune)


def run_compare(args: argparse.Namespace) -> int:
    from eval.compare import compare, grid, save_grid
    from eval.modal_backend import modal_backend

    cells = grid(args.tokenizers, args.models)
    options = options_from(args)
    save_grid(args.out, cells, options, args.data_dir, args.train_file)
    backend = modal_backend(dry_run=args.dry_run) if args.backend == "modal" else None
    records, table, plot = compare(cells, options, args.out, backend, args.data_dir, args.train_file,
                                   on_record=lambda r: print(f"done: {r['submission']}", flush=True))
    print(Path(table).read_text(encoding="utf-8"))
    print(f"table: {table}\nplot:  {plot}")
    return 0


def run_quickstart(args: argparse.Namespace) -> int:
    from eval.report import winner

    code = run_compare(args)
    if args.json:
        from eval.compare import read_results
        from eval.records import write_json_atomic

        records = read_results(Path(args.out) / "results.jsonl")
        best = winner(records) or max(records, key=lambda r: r.get("val_char_accuracy") or 0.0)
        write_json_atomic(args.json, best)
        print(f"record: {args.json}")
    return code


def run_modal(args: argparse.Namespace) -> int:
    from eval.compare import compare, load_grid
    from eval.modal_backend import modal_backend

    cells, options, out = load_grid(args.target)
    records, table, plot = compare(cells, options, out, modal_backend(dry_run=args.dry_run))
    if not args.dry_run:
        print(Path(table).read_text(encoding="utf-8"))
    return 0
