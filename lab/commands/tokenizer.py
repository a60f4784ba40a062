"""``subchar tokenizer train|stats``: learn a tokenizer on the train split, then see how it fits the val window."""

from __future__ import annotations

import argparse

from eval.data import load_split, val_window
from lab.commands.common import COUNT, FAMILY_CHOICES
from lab.commands.folders import check_output_folder, read_saved, verify_tokenizer

NOTHING_SAVED = "learning stopped and nothing was saved; run the command again to start over"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("tokenizer", help="learn (train split only) and inspect lossless tokenizers")
    actions = parser.add_subparsers(dest="tokenizer_action", required=True, metavar="ACTION")

    train = actions.add_parser("train", help="learn a tokenizer on the train split and save it to a folder")
    train.add_argument("--family", required=True, choices=FAMILY_CHOICES)
    train.add_argument("--vocab-size", type=COUNT, required=True, help="ids in all, bytes and specials included")
    train.add_argument("--data-dir", help="folder with wiki.train.raw or train parquet shards (or SUBCHAR_DATA)")
    train.add_argument("--train-file", help="proxy train text (recorded as a proxy), e.g. wiki.test.raw")
    train.add_argument("--train-chars", type=COUNT, help="learn from this many leading characters only (quick runs)")
    train.add_argument("--out", required=True, help="folder to write (replaced only if it holds a saved tokenizer)")
    train.set_defaults(func=run_train, interrupted=NOTHING_SAVED)

    stats = actions.add_parser("stats", help="chars/token, fallback, round trip and speed on the val split")
    stats.add_argument("path", help="folder written by `subchar tokenizer train`")
    stats.add_argument("--data-dir", help="folder with wiki.valid.raw or valid parquet shards (or SUBCHAR_DATA)")
    stats.set_defaults(func=run_stats, interrupted="nothing was written")


def run_train(args: argparse.Namespace) -> int:
    check_output_folder(args.out, "tokenizer")
    text = load_split("train", args.data_dir, args.train_file, progress=True)  # refuses val text
    text = text.prefix(args.train_chars)
    # deferred to the run: `subchar --help` must not load the tokenizer libraries
    from tokenizers_local.training import train_tokenizer

    proxy = " (PROXY train text)" if text.proxy else ""
    print(f"training {args.family} ({args.vocab_size} ids) on {len(text.text):,} chars of {text.source}{proxy}")
    tokenizer = train_tokenizer(text, args.family, args.vocab_size, progress=True)
    folder = tokenizer.save(args.out)
    print(f"saved {tokenizer.vocab_size} ids to {folder} in {tokenizer.info.training_seconds:.1f} s of training")
    return 0


def run_stats(args: argparse.Namespace) -> int:
    verify_tokenizer(*read_saved(args.path, "tokenizer"))  # a wrong or damaged folder: refused before the libraries
    # deferred to the run: `subchar --help` must not load the tokenizer libraries
    from tokenizers_local.stats import encode_throughput, measure
    from tokenizers_local.storage import load
    from tokenizers_local.tiktoken_bridge import to_tiktoken

    tokenizer = load(args.path)
    window = val_window(args.data_dir).text
    valid = load_split("valid", args.data_dir).text
    stats = measure(tokenizer, window, valid)
    rows = [
        ("family", stats.family),
        ("vocab size", stats.vocab_size),
        ("train text", f"{tokenizer.info.train_source}{' (PROXY)' if stats.proxy_train else ''}"),
        ("training seconds", f"{stats.training_seconds:.2f}"),
        ("chars per token (val window)", f"{stats.chars_per_token:.4f}"),
        ("fallback share (val window chars)", f"{stats.fallback_share:.5f}"),
        ("round trip (whole val split)", "OK" if stats.round_trip_ok else "FAILED"),
        ("encode MB/s (whole val split)", f"{stats.encode_mb_per_s:.2f}"),
    ]
    if tokenizer.family == "bytebpe":
        encoding = to_tiktoken(tokenizer)
        ids, speed = encode_throughput(encoding.encode_ordinary, valid)
        rows.append(("tiktoken encode MB/s", f"{speed:.2f}"))
        rows.append(("tiktoken ids == HF ids (val)", "yes" if ids == tokenizer.encode(valid) else "NO"))
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    return 0 if stats.round_trip_ok else 1
