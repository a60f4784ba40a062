"""The ``subchar`` command: one entry point for every subcommand (``lab.commands``).

The command modules are light (parsers and argument checks); each imports the modules that do its work (torch,
the tokenizer libraries, matplotlib, modal) only when it runs, so ``subchar --help`` starts at once.
"""

from __future__ import annotations

import argparse
import sys

from eval.errors import UserError
from lab.commands import data, export, grid, tokenizer, train

# Each module's ``register(subparsers)`` adds its parsers with ``set_defaults(func=...)``, in help order.
COMMAND_MODULES = (data, grid, export, tokenizer, train)
# What Ctrl-C leaves, for a command that does not say (``set_defaults(interrupted=...)``): the grid's resume.
RESUMABLE = "finished work was kept; run the same command again to go on"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="subchar", description="Subword language models in the character-level WikiText benchmark."
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMAND_MODULES:
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # a raising progress bar closes its line first, so this starts on a line of its own
        print(f"interrupted: {getattr(args, 'interrupted', RESUMABLE)}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
