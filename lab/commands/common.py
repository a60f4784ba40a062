"""Arguments several subcommands share: where the data is, and the adapter's beam width."""

from __future__ import annotations

import argparse

DEFAULT_BEAM = 8


def add_data_args(parser: argparse.ArgumentParser, *, train_file: bool = False) -> None:
    parser.add_argument("--data-dir", help="directory with wiki.<split>.raw or parquet shards (default: $SUBCHAR_DATA)")
    if train_file:
        parser.add_argument(
            "--train-file",
            help="proxy text standing in for the train split (default: $SUBCHAR_TRAIN_FILE); results are marked proxy",
        )


def beam_width(text: str) -> int | None:
    """``--beam K``: K coverings kept; 0 means none pruned (the exact sum, whose cost grows with the buffer)."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("the beam must be 0 (no pruning) or positive")
    return value or None
