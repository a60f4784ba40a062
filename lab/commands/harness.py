"""``subchar harness FILE``: run a ``submission.py`` as the benchmark's ``run_eval.py`` runs it (:mod:`lab.harness`).

Why: an exported (or hand-written) file is only worth sending when the benchmark's own sequence (load, metered
``train()`` under the 300 s cap, predict-before-observe over the 60,000-char window) gives the score its run gave.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys

from eval.data import VAL_WINDOW_CHARS, load_split, resolve_data_dir
from eval.guard import MAX_TRAIN_SECONDS
from lab.commands.common import COUNT_OR_ZERO, PROPORTION
from lab.harness import ACC_MIN, run_submission, submission_file, summary_lines

DISQUALIFIED_EXIT = 2  # run_eval.py exits 2 on either disqualification (past the cap, under the floor)


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "harness", help="run a submission.py exactly as the benchmark's run_eval.py does (train, then score the "
                        "window)")
    parser.add_argument("file", help="the submission file, e.g. the submission.py written by `subchar export`")
    parser.add_argument("--data-dir", help="directory with wiki.valid.raw, and wiki.train.raw unless --train-file is "
                        "given (default: $SUBCHAR_DATA, else the --train-file's own folder)")
    parser.add_argument("--train-file", help="proxy text standing in for the train split (default: "
                        "$SUBCHAR_TRAIN_FILE); the result is marked proxy")
    parser.add_argument("--chars", type=COUNT_OR_ZERO, default=VAL_WINDOW_CHARS,
                        help=f"score the first N characters of the valid stream (default {VAL_WINDOW_CHARS:,}, the "
                             "benchmark's window; 0 = the whole split, as run_eval.py's --max-test-chars 0)")
    parser.add_argument("--acc-min", type=PROPORTION, default=ACC_MIN,
                        help=f"val accuracy floor below which the run is disqualified and the command exits 2 "
                             f"(default {ACC_MIN}, what the benchmark's runner passes; 0 turns the gate off)")
    parser.add_argument("--json", action="store_true",
                        help="print the run record as one JSON object on stdout; every other line (the "
                             "submission's own output included) goes to stderr")
    parser.set_defaults(func=run_harness, interrupted="nothing was written")


def run_harness(args: argparse.Namespace) -> int:
    submission_file(args.file)
    stdout = sys.stdout
    with contextlib.redirect_stdout(sys.stderr) if args.json else contextlib.nullcontext():
        train = load_split("train", args.data_dir, args.train_file, progress=True)  # refuses val text
        # the valid split of --data-dir (or $SUBCHAR_DATA), else of the proxy train file's own folder
        valid_dir = args.data_dir if resolve_data_dir(args.data_dir) is not None else train.data_dir
        valid = load_split("valid", valid_dir)
        window = min(args.chars or len(valid.text), len(valid.text))
        print(f"loading WikiText-103 from {valid.data_dir} ...")
        proxy = f"  (proxy train text: {train.source})" if train.proxy else ""
        print(f"  train chars: {len(train.text):,}{proxy}")
        print(f"  val   chars: {window:,}  (scored, gated by --acc-min)")
        print(f"train wall-clock cap: {MAX_TRAIN_SECONDS:.0f} s")
        print(f"val accuracy floor : {args.acc_min:.4f}")
        record = run_submission(args.file, train, valid, args.chars or None, args.acc_min, progress=True, say=print)
        for line in summary_lines(record):
            print(line)
    if args.json:
        print(json.dumps(record.to_dict(), allow_nan=False), file=stdout)
    return DISQUALIFIED_EXIT if record.disqualified else 0
