"""Reading a comparison's ``results.jsonl``: light (no torch), so ``subchar show`` reads it as ``compare`` does."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from eval.errors import UserError

CELL_FILE = "cell.json"  # a grid cell's run folder: the cell and its options, written before it runs (lab.cell)
RECORD_FILE = "record.json"  # and its run record, once it finished


def read_results(path: Path) -> list[dict[str, Any]]:
    """The finished records (none when the file is missing); a torn last line (a crash mid-write) is skipped, and
    a resumed grid runs that cell again."""
    if not path.is_file():
        return []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        raise UserError(f"cannot read {path}; move it away and run `subchar compare` again") from None
    records = []
    for line in lines:
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records
