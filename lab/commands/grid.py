"""``subchar compare`` (the tokenizer × model grid), ``subchar quickstart`` (a small grid) and ``subchar modal``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from eval.records import write_json_atomic
from lab.commands.common import (
    DEFAULT_BEAM,
    MODEL_CHOICES,
    add_data_args,
    add_mode_arg,
    beam_width,
    check_positive,
)

if TYPE_CHECKING:
    from lab.cell import CellOptions

QUICKSTART_TOKENIZERS = ("bytebpe:2048", "unigram:2048")
QUICKSTART_MODELS = ("ngram",)


def add_grid_args(parser: argparse.ArgumentParser, *, budget: float, eval_chars: int, test_chars: int) -> None:
    add_data_args(parser, train_file=True)
    parser.add_argument("--budget", type=float, default=budget, help=f"training seconds per cell (default {budget:g})")
    add_mode_arg(parser)
    parser.add_argument("--beam", type=beam_width, default=DEFAULT_BEAM,
                        help=f"exact mode: keep the K heaviest coverings (default {DEFAULT_BEAM}; 0 = no pruning, can be very slow)")
    parser.add_argument("--eval-chars", type=int, default=eval_chars, help=f"val chars scored (default {eval_chars})")
    parser.add_argument("--test-chars", type=int, default=test_chars, help=f"test chars reported, 0 to skip (default {test_chars})")
    parser.add_argument("--train-chars", type=int, help="use only the first N characters of the train text")
    parser.add_argument("--char-order", type=int, default=6, help="order of the char Kneser-Ney baseline (default 6)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--seed", type=int, default=0)


def register(subparsers) -> None:
    compare_parser = subparsers.add_parser("compare", help="tokenizer × model grid: energy to accuracy, resumable")
    compare_parser.add_argument("--tokenizers", nargs="+", required=True, metavar="FAMILY:VOCAB",
                                help="e.g. bytebpe:4096 unigram:8192 wordpiece:8192 word:16384")
    compare_parser.add_argument("--models", nargs="+", required=True, choices=MODEL_CHOICES, metavar="MODEL",
                                help=f"zoo models: {', '.join(MODEL_CHOICES)}")
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


def options_from(args: argparse.Namespace) -> CellOptions:
    check_positive(args.budget, "--budget")
    check_positive(args.eval_chars, "--eval-chars")
    from lab.cell import CellOptions  # deferred to the run, as below: `subchar --help` must not load torch

    return CellOptions(budget_s=args.budget, mode=args.mode, beam=args.beam, eval_chars=args.eval_chars,
                       test_chars=args.test_chars, train_chars=args.train_chars, char_order=args.char_order,
                       device=args.device, seed=args.seed)


def run_compare(args: argparse.Namespace) -> int:
    # deferred to the run: `subchar --help` must not load torch, matplotlib or modal
    from lab.compare import compare, grid, save_grid
    from lab.modal_backend import modal_backend

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
    code = run_compare(args)
    if args.json:
        from lab.compare import read_results  # deferred to the run: `subchar --help` must not load torch
        from lab.report import winner

        records = read_results(Path(args.out) / "results.jsonl")
        best = winner(records) or max(records, key=lambda r: r.get("val_char_accuracy") or 0.0)
        write_json_atomic(args.json, best)
        print(f"record: {args.json}")
    return code


def run_modal(args: argparse.Namespace) -> int:
    # deferred to the run: `subchar --help` must not load torch or modal
    from lab.compare import compare, load_grid
    from lab.modal_backend import modal_backend

    cells, options, out = load_grid(args.target)
    records, table, plot = compare(cells, options, out, modal_backend(dry_run=args.dry_run))
    if not args.dry_run:
        print(Path(table).read_text(encoding="utf-8"))
    return 0
