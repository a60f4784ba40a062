"""The ``subchar`` command: one entry point; each subcommand lives beside the code it drives."""

from __future__ import annotations

import argparse
import importlib
import sys

from eval.errors import UserError

# Each module exposes ``register(subparsers)``, adding its parser with ``set_defaults(func=...)``.
COMMAND_MODULES = (
    "eval.cli",
    "eval.export",
    "tokenizers_local.cli",
    "zoo.cli",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="subchar", description="Subword language models in the character-level WikiText benchmark."
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: finished work was kept; run the same command again to go on", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
