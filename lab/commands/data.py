"""``subchar data fetch|info``: materialise WikiText-103-raw-v1 and inspect the scored streams."""

from __future__ import annotations

import argparse

from eval.data import SPLITS, VAL_WINDOW_CHARS, fetch, load_split
from lab.commands.common import add_data_args


def register(subparsers) -> None:
    data = subparsers.add_parser("data", help="fetch or inspect WikiText-103-raw-v1")
    data_commands = data.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    fetch_parser = data_commands.add_parser("fetch", help="write wiki.<split>.raw from local parquet shards or the Hub")
    fetch_parser.add_argument("--data-dir", required=True)
    fetch_parser.add_argument("--splits", nargs="+", choices=SPLITS, default=list(SPLITS))
    fetch_parser.set_defaults(func=run_fetch, interrupted="fetch stopped: the splits it finished stay, unless it made "
                              "the folder (then the folder is removed); run the same command again")
    info_parser = data_commands.add_parser("info", help="length and checksum of each split's scored stream")
    add_data_args(info_parser, train_file=True)
    info_parser.add_argument("--splits", nargs="+", choices=SPLITS, default=["valid", "test"])
    info_parser.set_defaults(func=run_info, interrupted="nothing was written")


def run_fetch(args: argparse.Namespace) -> int:
    for path in fetch(args.data_dir, tuple(args.splits)):
        print(f"ready: {path}")
    return 0


def run_info(args: argparse.Namespace) -> int:
    for split in args.splits:
        text = load_split(split, args.data_dir, getattr(args, "train_file", None), progress=True)
        stream_sha = text.digest()[:16]
        window_sha = text.prefix(VAL_WINDOW_CHARS).digest()[:16]
        proxy = " (proxy train)" if text.proxy else ""
        print(f"{split}{proxy}: {len(text.text):,} chars, sha256 {stream_sha}, window sha256 {window_sha}  <- {text.source}")
    return 0
