"""A grid of runs (tokenizer family × vocab size × model, plus the char-KN baseline), resumable, with reports.

Finished cells are appended to ``results.jsonl`` one record per line as they complete; a restarted comparison reads
that file first and skips them, so an interruption loses at most the cell in progress. Cells run on a backend: the
local one (sequential, this machine) or Modal (parallel functions, one A100 each, see :mod:`lab.modal_backend`).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from eval.errors import UserError
from lab.cell import CHAR_BASELINE, Cell, CellOptions, run_cell
from eval.records import write_json_atomic
from lab.report import write_reports

RESULTS = "results.jsonl"

CellRunner = Callable[[Cell, CellOptions], dict[str, Any]]


def grid(tokenizer_specs: Iterable[str], models: Iterable[str], baseline: bool = True) -> list[Cell]:
    """Every tokenizer × every model, the char baseline first (it needs no tokenizer)."""
    parsed = [Cell.parse_tokenizer(spec) for spec in tokenizer_specs]
    cells = [Cell(CHAR_BASELINE)] if baseline else []
    cells += [Cell(model, family, vocab) for family, vocab in parsed for model in models if model != CHAR_BASELINE]
    if not cells:
        raise UserError("the grid is empty: give --tokenizers and --models")
    return cells


def read_results(path: Path) -> list[dict[str, Any]]:
    """Records already finished; a torn last line (a crash mid-write) is ignored, and that cell runs again."""
    if not path.is_file():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def append_result(path: Path, record: dict[str, Any]) -> None:
    """One line per record, flushed and fsynced before the next cell starts."""
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(record, allow_nan=False) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def local_backend(out_dir: Path, data_dir: str | None, train_file: str | None) -> Callable[[list[Cell], CellOptions], Iterator[dict]]:
    """Run cells one after another on this machine."""

    def run(cells: list[Cell], options: CellOptions) -> Iterator[dict[str, Any]]:
        for cell in cells:
            yield run_cell(cell, options, out_dir / "runs" / cell.id, data_dir, train_file)

    return run


def compare(
    cells: list[Cell],
    options: CellOptions,
    out_dir: str | os.PathLike,
    backend: Callable[[list[Cell], CellOptions], Iterator[dict[str, Any]]] | None = None,
    data_dir: str | None = None,
    train_file: str | None = None,
    on_record: Callable[[dict[str, Any]], None] | None = None,
) -> tuple[list[dict[str, Any]], str, str]:
    """Run the cells not yet in ``out_dir/results.jsonl``; rewrite ``table.md`` and ``pareto.png`` after each.

    The reports cover every record of the folder, so grids run into one folder with different options (say, a
    neural cell scored on fewer characters) share one table; the records of ``cells`` are returned.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    results_path = out / RESULTS
    records = read_results(results_path)
    done = {record["submission"] for record in records}
    todo = [cell for cell in cells if cell.id not in done]
    backend = backend or local_backend(out, data_dir, train_file)
    for record in backend(todo, options):
        append_result(results_path, record)
        records.append(record)
        write_reports(records, out)
        if on_record:
            on_record(record)
    wanted = {cell.id for cell in cells}
    table, plot = write_reports(records, out)
    return [record for record in records if record["submission"] in wanted], table, plot


GRID = "grid.json"
CELL = "cell.json"


def save_grid(out_dir: str | os.PathLike, cells: list[Cell], options: CellOptions,
              data_dir: str | None, train_file: str | None) -> None:
    """Remember what a comparison asked for, so `subchar modal DIR` can run the same grid remotely."""
    write_json_atomic(Path(out_dir) / GRID, {
        "cells": [asdict(cell) for cell in cells],
        "options": options.to_dict(),
        "data_dir": data_dir,
        "train_file": train_file,
    })


def load_grid(target: str | os.PathLike) -> tuple[list[Cell], CellOptions, Path]:
    """Cells and options of a compare folder (grid.json) or of a single run folder (cell.json)."""
    folder = Path(target)
    for name, key in ((GRID, "cells"), (CELL, "cell")):
        path = folder / name
        if path.is_file():
            try:
                saved = json.loads(path.read_text(encoding="utf-8"))
                cells = [Cell(**c) for c in saved[key]] if key == "cells" else [Cell(**saved[key])]
                return cells, CellOptions(**saved["options"]), folder
            except (json.JSONDecodeError, KeyError, TypeError):
                raise UserError(f"{path} is corrupt; run `subchar compare` again to rewrite it") from None
    raise UserError(f"{folder} holds neither {GRID} (a compare folder) nor {CELL} (a run folder)")
