"""The README's CLI reference table is the one the parsers give (``python -m lab.cli_table``), so it cannot drift."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEADER = "| command | what it does |\n|---|---|\n"


def readme_table() -> str:
    """The README's table under "## CLI reference": its header and the table lines that follow it."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text[text.index("## CLI reference"):]
    lines = section[section.index(HEADER):].splitlines(keepends=True)
    return "".join(lines[:next(i for i, line in enumerate(lines) if not line.startswith("|"))])


def test_the_readme_table_is_the_parsers_table():
    from lab.cli_table import cli_table

    assert readme_table() == cli_table(), "the CLI changed: paste `python -m lab.cli_table` into README.md"


def test_the_readme_table_names_every_flag_of_every_command():
    """Among them the flags the hand-written table missed."""
    rows = {re.match(r"\| `(subchar(?: [a-z]+)*)", line).group(1): line for line in readme_table().splitlines()[2:]}
    assert {"subchar data fetch", "subchar data info", "subchar tokenizer train", "subchar tokenizer stats",
            "subchar train", "subchar eval", "subchar export", "subchar compare", "subchar quickstart",
            "subchar modal"} <= set(rows)
    for command, flags in (("subchar train", ("--train-chars", "--batch-size", "--lr", "--seed")),
                           ("subchar eval", ("--device",)),
                           ("subchar export", ("--batch-size", "--lr", "--author")),
                           ("subchar compare", ("--train-chars", "--char-order", "--device", "--seed"))):
        assert [flag for flag in flags if f"[{flag} " not in rows[command]] == [], command


def test_the_table_prints_for_pasting():
    from lab.cli_table import cli_table

    done = subprocess.run([sys.executable, "-m", "lab.cli_table"], capture_output=True, text=True, cwd=ROOT,
                          timeout=60)
    assert done.returncode == 0 and done.stdout == cli_table()
