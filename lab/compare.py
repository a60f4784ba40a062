"""A grid of runs (tokenizer family × vocab size × model, plus the char-KN baseline), resumable, with reports.

Finished cells are appended to ``results.jsonl`` one record per line as they complete; a restarted comparison reads
that file first and reuses a record only when its identity (:mod:`lab.identity`: everything that changes the
result) is the one asked for now, so an interruption loses at most the cell in progress and a changed setting never
reuses a stale result. A rerun with other settings keeps the old record, marked ``superseded``. ``--repeats N``
runs each cell N times with seeds ``seed, seed + 1, …`` and the reports show medians and ranges. Cells run on a
backend: the local one (sequential, this machine) or Modal (parallel functions, see :mod:`lab.modal_backend`).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from eval.data import SplitText, load_split
from eval.errors import UserError
from eval.records import utc_now, write_json_atomic, write_text_atomic
from lab.cell import CHAR_BASELINE, Cell, CellOptions, run_cell
from lab.identity import cell_identity, identity_key, reusable
from lab.report import write_reports
from lab.results import CELL_FILE, read_results
from tokenizers_local.families import family_class
from zoo.kinds import grid_names

RESULTS = "results.jsonl"

Backend = Callable[[list[Cell], CellOptions], Iterator[dict[str, Any]]]


def grid(tokenizer_specs: Iterable[str], models: Iterable[str], baseline: bool = True) -> list[Cell]:
    """Every tokenizer × every model, the char baseline first (it needs no tokenizer); unknown names are refused
    here, before any cell runs."""
    parsed = [Cell.parse_tokenizer(spec) for spec in tokenizer_specs]
    models = list(models)
    for family, _ in parsed:
        family_class(family)
    choices = [CHAR_BASELINE, *grid_names()]
    for model in models:
        if model not in choices:
            raise UserError(f"unknown model {model!r}; choose from {', '.join(choices)}")
    cells = [Cell(CHAR_BASELINE)] if baseline else []
    cells += [Cell(model, family, vocab) for family, vocab in parsed for model in models if model != CHAR_BASELINE]
    if not cells:
        raise UserError("the grid is empty: give --tokenizers and --models")
    return cells


def append_result(path: Path, record: dict[str, Any]) -> None:
    """One line per record, flushed and fsynced before the next cell starts."""
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(record, allow_nan=False) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def rewrite_results(path: Path, records: list[dict[str, Any]]) -> None:
    write_text_atomic(path, "".join(json.dumps(record, allow_nan=False) + "\n" for record in records))


def run_dir_name(cell: Cell, options: CellOptions) -> str:
    return cell.id if options.repeat == 0 else f"{cell.id}-r{options.repeat}"


def local_backend(out_dir: Path, data_dir: str | None, train_file: str | None,
                  train: SplitText | None = None) -> Backend:
    """Run cells one after another on this machine (on ``train``, when the caller has read it already)."""

    def run(cells: list[Cell], options: CellOptions) -> Iterator[dict[str, Any]]:
        for cell in cells:
            yield run_cell(cell, options, out_dir / "runs" / run_dir_name(cell, options), data_dir, train_file, train)

    return run


def is_current(record: dict[str, Any]) -> bool:
    return not (record.get("extra") or {}).get("superseded")


def finished_keys(records: list[dict[str, Any]]) -> set[str]:
    """Identity keys of the current records: the runs a comparison may reuse."""
    return {(record.get("extra") or {}).get("cell_key") for record in records
            if is_current(record) and reusable(record)}


def repeat_runs(options: CellOptions, repeats: int) -> list[CellOptions]:
    """The options of each run of ``--repeats N``: run k has seed ``seed + k``."""
    return [replace(options, seed=options.seed + k, repeat=k) for k in range(repeats)]


def pending_cells(cells: list[Cell], options: CellOptions, out_dir: str | os.PathLike, train_sha256: str,
                  backend_name: str) -> list[Cell]:
    """The cells whose run with ``options`` has no current record of the same identity in ``out_dir``."""
    finished = finished_keys(read_results(Path(out_dir) / RESULTS))
    return [cell for cell in cells
            if identity_key(cell_identity(cell, options, train_sha256, backend_name)) not in finished]


def compare(
    cells: list[Cell],
    options: CellOptions,
    out_dir: str | os.PathLike,
    backend: Backend | None = None,
    data_dir: str | None = None,
    train_file: str | None = None,
    on_record: Callable[[dict[str, Any]], None] | None = None,
    *,
    repeats: int = 1,
    train_sha256: str | None = None,
    backend_name: str = "local",
    show_all: bool = False,
    train: SplitText | None = None,
) -> tuple[list[dict[str, Any]], str, str]:
    """Run the (cell, repeat) pairs whose identity has no finished record in ``out_dir/results.jsonl``; rewrite
    ``table.md`` and ``pareto.png`` after each. The reports show the runs asked for (``show_all``: every current
    record of the folder); those runs' records are returned, in grid order.

    ``train_sha256`` is the digest of the train text the cells see (computed from ``data_dir``/``train_file`` when
    not given: a remote backend passes the digest of the text it will use). ``train``, the train text already
    read (``train_chars`` applied), spares each local cell reading the 540 MB split again.
    """
    if repeats < 1:
        raise UserError(f"--repeats must be at least 1, got {repeats}")
    if train_sha256 is None:
        train = train or load_split("train", data_dir, train_file).prefix(options.train_chars)
        train_sha256 = train.digest()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    results_path = out / RESULTS
    records = read_results(results_path)
    runs = repeat_runs(options, repeats)
    wanted = {(cell.id, run.repeat): cell_identity(cell, run, train_sha256, backend_name) for run in runs for cell in cells}
    keys = {pair: identity_key(identity) for pair, identity in wanted.items()}
    finished = finished_keys(records)
    backend = backend or local_backend(out, data_dir, train_file, train)
    for run in runs:
        todo = [cell for cell in cells if keys[cell.id, run.repeat] not in finished]
        for record in backend(todo, run):
            pair = (record["submission"], run.repeat)
            record.setdefault("extra", {}).update(cell_key=keys[pair], cell_identity=wanted[pair], repeat=run.repeat)
            stale = [old for old in records if is_current(old) and old["submission"] == pair[0]
                     and (old.get("extra") or {}).get("repeat", 0) == run.repeat]
            for old in stale:  # kept for the record, never shown or reused again
                old.setdefault("extra", {})["superseded"] = keys[pair]
            records.append(record)
            if stale:
                rewrite_results(results_path, records)
            else:
                append_result(results_path, record)
            write_reports(shown(records, keys, show_all), out)
            if on_record:
                on_record(record)
    table, plot = write_reports(shown(records, keys, show_all), out)
    return shown(records, keys, False), table, plot


def shown(records: list[dict[str, Any]], keys: dict[tuple[str, int], str], show_all: bool) -> list[dict[str, Any]]:
    """The current records of the runs asked for, in grid order (``show_all``: every current record)."""
    current = [record for record in records if is_current(record)]
    if show_all:
        return current
    by_key = {(record.get("extra") or {}).get("cell_key"): record for record in current}
    return [by_key[key] for key in keys.values() if key in by_key]


GRID = "grid.json"
CELL = CELL_FILE


def save_grid(out_dir: str | os.PathLike, cells: list[Cell], options: CellOptions,
              data_dir: str | None, train_file: str | None, repeats: int = 1) -> None:
    """Remember what a comparison asked for, so `subchar modal DIR` can run the same grid remotely; every
    invocation is kept in ``history``, the latest also at the top level."""
    path = Path(out_dir) / GRID
    latest = {
        "cells": [asdict(cell) for cell in cells],
        "options": options.to_dict(),
        "data_dir": data_dir,
        "train_file": train_file,
        "repeats": repeats,
    }
    history = []
    if path.is_file():
        try:
            history = list(json.loads(path.read_text(encoding="utf-8")).get("history", []))
        except (json.JSONDecodeError, AttributeError):
            raise UserError(f"{path} is corrupt; move it away and run `subchar compare` again") from None
    history.append({"date_utc": utc_now(), **latest})
    write_json_atomic(path, {**latest, "history": history})


def load_grid(target: str | os.PathLike) -> tuple[list[Cell], CellOptions, Path]:
    """Cells and options of a compare folder (grid.json) or of a single run folder (cell.json)."""
    folder = Path(target)
    for name, key in ((GRID, "cells"), (CELL, "cell")):
        path = folder / name
        if path.is_file():
            try:
                saved = json.loads(path.read_text(encoding="utf-8"))
                cells = [Cell(**c) for c in saved[key]] if key == "cells" else [Cell(**saved[key])]
                return cells, CellOptions.from_saved(saved["options"]), folder
            except (json.JSONDecodeError, KeyError, TypeError):
                raise UserError(f"{path} is corrupt; run `subchar compare` again to rewrite it") from None
    raise UserError(f"{folder} holds neither {GRID} (a compare folder) nor {CELL} (a run folder)")
