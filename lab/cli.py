"""The ``subchar`` command: one entry point for every subcommand (``lab.commands``).

The command modules are light (parsers and argument checks); each imports the modules that do its work (torch,
the tokenizer libraries, matplotlib, modal) only when it runs, so ``subchar --help`` starts at once.
"""

from __future__ import annotations

import argparse
import difflib
import os
import sys
from typing import NoReturn

from eval.errors import UserError
from lab.commands import data, export, grid, harness, show, tokenizer, train

# Each module's ``register(subparsers)`` adds its parsers with ``set_defaults(func=...)``, in help order.
COMMAND_MODULES = (data, grid, export, harness, tokenizer, train, show)
# What Ctrl-C leaves, for a command that does not say (``set_defaults(interrupted=...)``): the grid's resume.
RESUMABLE = "finished work was kept; run the same command again to go on"


class Parser(argparse.ArgumentParser):
    """The ``subchar`` parser: an error is one line, ``subchar <command>: error: ...`` and where to read the usage,
    instead of argparse's usage block (a misspelled option printed four lines before the one that mattered)."""

    def error(self, message: str) -> NoReturn:
        message = message.removeprefix("argument ")  # "argument --budget: expected ..." names the flag itself
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class CommandParser(Parser):
    """A subcommand's parser: it refuses what it does not know itself (so the error names the subcommand and the
    option it has that was meant), and runs the checks that need the whole command line (``check_parsed`` of an
    action, e.g. ``--set`` against ``--model``) before the command starts."""

    def parse_known_args(self, args: list[str] | None = None,
                         namespace: argparse.Namespace | None = None) -> tuple[argparse.Namespace, list[str]]:
        namespace, extras = super().parse_known_args(args, namespace)
        if extras:
            options = [option for action in self._actions for option in action.option_strings]
            close = difflib.get_close_matches(extras[0].partition("=")[0], options, n=1)
            hint = f"; did you mean {close[0]}?" if close else ""
            self.error(f"unrecognized arguments: {' '.join(extras)}{hint}")
        for action in self._actions:
            check = getattr(action, "check_parsed", None)
            if check is not None:
                try:
                    check(namespace)
                except UserError as err:
                    self.error(str(err))
        return namespace, extras


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="subchar", description="Subword language models in the character-level WikiText benchmark.")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=CommandParser)
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
    except BrokenPipeError:  # the reader went away (`subchar show X | head`): the rest of the output is not wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so the interpreter's final flush is quiet
        return 0


if __name__ == "__main__":
    sys.exit(main())
