"""The README's CLI reference table, generated from the parsers ``lab.cli`` builds, so that it names every flag of
every command: ``python -m lab.cli_table`` prints it to paste, and ``tests/test_cli_table.py`` fails when the README's
copy differs (regenerate it after any parser change)."""

from __future__ import annotations

import argparse
from collections.abc import Iterator

from lab.cli import build_parser

HEADER = "| command | what it does |\n|---|---|\n"


def synopsis(parser: argparse.ArgumentParser) -> str:
    """The parser's usage line as ``--help`` prints it, on one line and without ``[-h]``."""
    formatter = argparse.HelpFormatter(parser.prog, width=10_000)
    formatter.add_usage(parser.usage, parser._actions, parser._mutually_exclusive_groups, prefix="")
    return formatter.format_help().strip().replace(" [-h]", "")


def commands(parser: argparse.ArgumentParser, summary: str = "") -> Iterator[tuple[str, str]]:
    """(synopsis, help) of every command that runs, sub-subcommands (``data fetch``) included, in help order."""
    groups = [action for action in parser._actions if isinstance(action, argparse._SubParsersAction)]
    if not groups:
        yield synopsis(parser), summary
    for group in groups:
        for choice in group._choices_actions:
            yield from commands(group.choices[choice.dest], choice.help or "")


def cli_table() -> str:
    """The markdown table: one row per command, its synopsis in code (``|`` escaped for the table) and its help."""
    rows = []
    for usage, summary in commands(build_parser()):
        code = usage.replace("|", "\\|")
        rows.append(f"| `{code}` | {summary} |\n")
    return HEADER + "".join(rows)


if __name__ == "__main__":
    print(cli_table(), end="")
