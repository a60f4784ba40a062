"""``subchar compare`` (the tokenizer × model grid), ``subchar quickstart`` (a small grid) and ``subchar modal``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

from eval.data import VAL_WINDOW_CHARS, fetch, has_split, load_split, resolve_data_dir, resolve_train_file
from eval.errors import UserError
from eval.guard import MAX_TRAIN_SECONDS
from eval.records import write_json_atomic
from lab.commands.common import (
    COUNT,
    COUNT_OR_ZERO,
    DEFAULT_BEAM,
    SECONDS,
    SEED,
    MODEL_CHOICES,
    PROPORTION,
    add_adapt_arg,
    add_data_args,
    add_engine_arg,
    add_mode_arg,
    add_optimizer_arg,
    beam_width,
    char_order_default,
    char_weight_default,
    tokenizer_spec,
)
from lab.commands.folders import check_results_folder

if TYPE_CHECKING:
    from collections.abc import Iterator

    from lab.cell import Cell, CellOptions
    from lab.compare import Backend

QUICKSTART_TOKENIZERS = ("bytebpe:2048", "unigram:2048")
QUICKSTART_MODELS = ("ngram", "ngram+char-kn")
REMOTE_TRAIN = "remote:wikitext-103-raw-v1/train"  # what a Modal cell trains on: the real split, in the container


def add_grid_args(parser: argparse.ArgumentParser, *, budget: float, eval_chars: int, test_chars: int) -> None:
    add_data_args(parser, train_file=True)
    parser.add_argument("--budget", type=SECONDS, default=budget, help=f"training seconds per cell (default {budget:g})")
    add_mode_arg(parser)
    parser.add_argument("--beam", type=beam_width, default=DEFAULT_BEAM,
                        help=f"exact mode: keep the K coverings of most reach (default {DEFAULT_BEAM}; 0 = no pruning, can be very slow)")
    parser.add_argument("--eval-chars", type=COUNT, default=eval_chars, help=f"val chars scored (default {eval_chars})")
    parser.add_argument("--test-chars", type=COUNT_OR_ZERO, default=test_chars, help=f"test chars reported, 0 to skip (default {test_chars})")
    parser.add_argument("--train-chars", type=COUNT, help="use only the first N characters of the train text")
    order = char_order_default()
    parser.add_argument("--char-order", type=COUNT, default=order,
                        help=f"order of the char Kneser-Ney baseline, alone and in ngram+char-kn (default {order})")
    weight = char_weight_default()
    parser.add_argument("--char-weight", type=PROPORTION, default=weight,
                        help="ngram+char-kn: the char model's weight in the per-character mixture, the token n-gram "
                             f"getting the rest (default {weight:g}, chosen on held-out train text)")
    add_adapt_arg(parser)
    add_optimizer_arg(parser)
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--seed", type=SEED, default=0)
    add_engine_arg(parser)
    parser.add_argument("--repeats", type=COUNT, default=1,
                        help="run each cell N times with seeds seed..seed+N-1; the table shows medians and ranges")
    parser.add_argument("--all", action="store_true", help="show every current run of the folder, not only this grid's")


def register(subparsers) -> None:
    compare_parser = subparsers.add_parser("compare", help="tokenizer × model grid: energy to accuracy, resumable")
    compare_parser.add_argument("--tokenizers", nargs="+", required=True, metavar="FAMILY:VOCAB", type=tokenizer_spec,
                                help="e.g. bytebpe:4096 unigram:8192 wordpiece:8192 word:16384")
    compare_parser.add_argument("--models", nargs="+", required=True, choices=MODEL_CHOICES, metavar="MODEL",
                                help=f"zoo models: {', '.join(MODEL_CHOICES)}")
    compare_parser.add_argument("--out", required=True, help="output folder (results.jsonl, table.md, pareto.png)")
    compare_parser.add_argument("--backend", choices=("local", "modal"), default="local")
    compare_parser.add_argument("--dry-run", action="store_true",
                                help="with --backend modal: print the plan, run and write nothing")
    add_grid_args(compare_parser, budget=MAX_TRAIN_SECONDS, eval_chars=VAL_WINDOW_CHARS,
                  test_chars=VAL_WINDOW_CHARS)
    compare_parser.set_defaults(func=run_compare)

    quick = subparsers.add_parser("quickstart", help="the main job on a small grid that finishes in minutes on a CPU")
    quick.add_argument("--out", default="runs/quickstart", help="output folder (default runs/quickstart)")
    quick.add_argument("--json", help="also write the best run's record here")
    add_grid_args(quick, budget=60.0, eval_chars=VAL_WINDOW_CHARS, test_chars=0)
    quick.set_defaults(func=run_quickstart, tokenizers=QUICKSTART_TOKENIZERS, models=QUICKSTART_MODELS,
                       backend="local", dry_run=False)

    modal_parser = subparsers.add_parser("modal", help="re-run a compare folder's grid (or one run) on Modal's A100-80GB")
    modal_parser.add_argument("target", help="a compare folder (grid.json) or a run folder (cell.json)")
    modal_parser.add_argument("--out", help="output folder (default TARGET/modal); cells already there are skipped")
    modal_parser.add_argument("--gpu", help="Modal GPU type (default A100-80GB, the benchmark's)")
    modal_parser.add_argument("--allow-no-energy-counter", action="store_true",
                              help="train even where NVML has no energy counter (energy is then the 50 W floor)")
    modal_parser.add_argument("--dry-run", action="store_true", help="print the calls and the image spec, run nothing")
    modal_parser.set_defaults(func=run_modal)


def options_from(args: argparse.Namespace) -> CellOptions:
    from lab.cell import CellOptions  # deferred to the run, as below: `subchar --help` must not load torch

    return CellOptions(budget_s=args.budget, mode=args.mode, beam=args.beam, eval_chars=args.eval_chars,
                       test_chars=args.test_chars, train_chars=args.train_chars, char_order=args.char_order,
                       char_weight=args.char_weight, device=args.device, seed=args.seed, engine=args.engine,
                       prune=args.prune, adapt=args.adapt, optimizer=args.optimizer)


def check_modal_args(args: argparse.Namespace) -> None:
    """``--dry-run`` only plans Modal calls, and a Modal cell reads the real splits from its data Volume: a flag
    that would be ignored is refused instead."""
    remote = args.backend == "modal"
    if args.dry_run and not remote:
        raise UserError("--dry-run plans Modal calls: add --backend modal, or drop --dry-run to run the grid here")
    if remote and args.optimizer == "muon":
        raise UserError("--optimizer muon needs torch.optim.Muon (torch >= 2.9) and the Modal image has the "
                        "benchmark's torch 2.5.1: drop --optimizer muon, or run the grid here")
    given = [flag for flag, value in (("--data-dir", args.data_dir), ("--train-file", args.train_file)) if value]
    if remote and given:
        flags = " and ".join(given)
        raise UserError(f"{flags} {'apply' if len(given) > 1 else 'applies'} to local runs only (Modal cells read "
                        f"the real WikiText splits from the data Volume): drop {flags}, or drop --backend modal")


def pending_runs(cells: list[Cell], options: CellOptions, repeats: int, out: Path,
                 backend_name: str) -> list[tuple[CellOptions, list[Cell]]]:
    """Each repeat's options with the cells that have no reusable record of it in ``out`` (Modal cells)."""
    from lab.compare import pending_cells, repeat_runs

    return [(run, pending_cells(cells, run, out, REMOTE_TRAIN, backend_name)) for run in repeat_runs(options, repeats)]


def dry_run(backend: Backend, runs: list[tuple[CellOptions, list[Cell]]]) -> int:
    """Print what each repeat would run; nothing is written (no grid.json, results or reports)."""
    for run, cells in runs:
        list(backend(cells, run))
    return 0


def run_compare(args: argparse.Namespace) -> int:
    """Everything that can be refused is checked first, before the heavy imports (names by the parser, numbers,
    the output folder, flags the backend would ignore, the train text and its val-leak guard, the val split): a
    refused command fails in a second and leaves nothing behind."""
    out = check_results_folder(args.out)
    check_modal_args(args)
    remote = args.backend == "modal"
    train = None if remote else load_split("train", args.data_dir, args.train_file,
                                            progress=True).prefix(args.train_chars)  # read once, for every cell
    train_sha256 = REMOTE_TRAIN if remote else train.digest()
    if not remote:
        load_split("valid", args.data_dir)
    # deferred to the run: `subchar --help` must not load torch, matplotlib or modal
    from lab.compare import compare, grid, local_backend, save_grid
    from lab.identity import modal_backend_identity
    from lab.modal_backend import GPU, modal_backend

    cells = grid(args.tokenizers, args.models)
    options = options_from(args)
    backend_name = modal_backend_identity(GPU, allow_no_energy_counter=False) if remote else args.backend
    backend = modal_backend(out, dry_run=args.dry_run) if remote else announced(
        local_backend(out, args.data_dir, args.train_file, train), cells, args.repeats)
    if args.dry_run:
        return dry_run(backend, pending_runs(cells, options, args.repeats, out, backend_name))
    save_grid(out, cells, options, args.data_dir, args.train_file, args.repeats)
    ran: list[str] = []

    def finished(record: dict) -> None:
        ran.append(record["submission"])
        print(done_line(record), flush=True)

    records, table, plot = compare(cells, options, out, backend, args.data_dir, args.train_file, on_record=finished,
                                   repeats=args.repeats, train_sha256=train_sha256,
                                   backend_name=backend_name, show_all=args.all, train=train)
    if len(records) > len(ran):
        print(f"reused {len(records) - len(ran)} finished run(s) with these exact settings from {out / 'results.jsonl'}")
    print(Path(table).read_text(encoding="utf-8"))
    print(f"table: {table}\nplot:  {plot}")
    return 0


def announced(backend: Backend, cells: list[Cell], repeats: int) -> Backend:
    """``backend`` (the local one) run a cell at a time, each named before it starts (``cell 2/3:
    bytebpe2048-ngram``): a cell takes minutes of bars and lines, and the header says whose they are."""

    def run(todo: list[Cell], options: CellOptions) -> Iterator[dict]:
        for cell in todo:
            repeat = f" (repeat {options.repeat + 1}/{repeats})" if repeats > 1 else ""
            print(f"cell {cells.index(cell) + 1}/{len(cells)}: {cell.id}{repeat}", flush=True)
            yield from backend([cell], options)

    return run


def done_line(record: dict) -> str:
    """A finished cell in one line: val accuracy, bits/char and energy, and the reason when disqualified."""
    from lab.report import bits_cell  # deferred with the rest of the run's imports

    accuracy, energy = record.get("val_char_accuracy"), record.get("total_energy_J")
    parts = [f"val acc {accuracy:.4f}" if accuracy is not None else "no score", f"{bits_cell(record)} bits/char",
             f"{energy:,.0f} J" if energy is not None else "energy unmeasured"]
    if record.get("disqualified"):
        parts.append(f"DQ ({record.get('reason')})")
    return f"done: {record['submission']}: {', '.join(parts)}"


def quickstart_data(data_dir: str | None, train_file: str | None) -> str:
    """The data folder (``--data-dir``, ``$SUBCHAR_DATA`` or ``./data``) with the splits the quickstart needs,
    fetched from the Hub when missing; offline, one line on how to point it at local files instead."""
    root = resolve_data_dir(data_dir) or Path("data")
    needed = ("valid", "test") if resolve_train_file(train_file) else ("train", "valid", "test")
    missing = tuple(split for split in needed if not root.is_dir() or not has_split(root, split))
    if missing:
        print(f"fetching WikiText-103 ({', '.join(missing)}) into {root} …", flush=True)
        try:
            fetch(root, missing)
        except UserError:
            raise UserError(
                f"no WikiText {'/'.join(missing)} split in {root} and the Hugging Face Hub cannot be reached: pass "
                "--data-dir DIR holding wiki.valid.raw and wiki.test.raw, and --train-file PATH for a stand-in train "
                "text (its results are marked proxy)"
            ) from None
    return str(root)


def run_quickstart(args: argparse.Namespace) -> int:
    args.data_dir = quickstart_data(args.data_dir, args.train_file)
    code = run_compare(args)
    if args.json:
        from lab.compare import is_current, read_results  # deferred to the run: `subchar --help` must not load torch
        from lab.report import winner

        records = [r for r in read_results(Path(args.out) / "results.jsonl") if is_current(r)]
        best = winner(records) or max(records, key=lambda r: r.get("val_char_accuracy") or 0.0)
        write_json_atomic(args.json, best)
        print(f"record: {args.json}")
    return code


def saved_repeats(folder: Path) -> int:
    """The ``--repeats`` a compare folder's grid.json asked for (1 for a run folder, which is one run)."""
    from lab.compare import GRID

    path = folder / GRID
    if not path.is_file():
        return 1
    repeats = json.loads(path.read_text(encoding="utf-8")).get("repeats", 1)
    if not isinstance(repeats, int) or repeats < 1:
        raise UserError(f"{path} has repeats={repeats!r}; run `subchar compare` again to rewrite it")
    return repeats


def run_modal(args: argparse.Namespace) -> int:
    """The grid recorded in TARGET (each of its repeats), run again on Modal into its own folder (TARGET/modal
    unless --out)."""
    # deferred to the run: `subchar --help` must not load torch or modal
    from lab.compare import RESULTS, compare, load_grid, save_grid
    from lab.identity import modal_backend_identity
    from lab.modal_backend import GPU, modal_backend
    from lab.modal_container import outcome

    cells, options, folder = load_grid(args.target)
    repeats = saved_repeats(folder)
    out = Path(args.out) if args.out else folder / "modal"
    gpu = args.gpu or GPU
    backend_name = modal_backend_identity(gpu, args.allow_no_energy_counter)
    runs = pending_runs(cells, options, repeats, out, backend_name)
    todo, total = sum(len(pending) for _, pending in runs), len(cells) * repeats
    backend = modal_backend(out, gpu=gpu, dry_run=args.dry_run, allow_no_energy_counter=args.allow_no_energy_counter)
    if todo < total:
        print(f"{total - todo} of {total} run(s) already in {out / RESULTS} with these settings: skipped")
    if args.dry_run:
        return dry_run(backend, runs)
    save_grid(out, cells, options, None, None, repeats)
    finished = iter(range(1, todo + 1))
    records, table, plot = compare(cells, options, out, backend, on_record=lambda record: print(
        f"[{next(finished)}/{todo}] {record['submission']}: {outcome(record)}", flush=True),
                                   repeats=repeats, train_sha256=REMOTE_TRAIN, backend_name=backend_name)
    print(Path(table).read_text(encoding="utf-8"))
    print(f"table: {table}\nplot:  {plot}\nrun folders: {out / 'runs'}")
    return 0
