"""``subchar show PATH``: what a tokenizer, checkpoint, run or compare folder holds (:mod:`lab.show`).

Why: the folders the other commands write are JSON a newcomer would otherwise read by hand; this prints their kind,
settings, scores, energy and provenance at once, without loading torch or any model.
"""

from __future__ import annotations

import argparse
import json

from eval.records import finite
from lab.show import WHAT, render, show


def register(subparsers) -> None:
    parser = subparsers.add_parser("show", help="what a tokenizer, checkpoint, run or compare folder holds: kind, "
                                   "settings, scores, energy, provenance")
    parser.add_argument("path", help=f"{WHAT}, e.g. runs/quickstart or runs/quickstart/runs/char-kn")
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout instead of text")
    parser.set_defaults(func=run_show, interrupted="nothing was written")


def run_show(args: argparse.Namespace) -> int:
    view = show(args.path)
    print(json.dumps(finite(view), allow_nan=False) if args.json else render(view))
    return 0
