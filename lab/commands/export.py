"""``subchar export RUN --out DIR``: a single-file benchmark submission from a run (see :mod:`lab.export.build`)."""

from __future__ import annotations

import argparse

from lab.commands.common import add_mode_arg


def register(subparsers) -> None:
    parser = subparsers.add_parser("export", help="write a single-file benchmark submission (submission.py) from a run")
    parser.add_argument("run", help="a run folder of `subchar compare` (runs/<cell>) or a `subchar train --out` folder")
    parser.add_argument("--out", required=True, help="folder to write submission.py into")
    add_mode_arg(parser, default=None, default_text="the run's; exact")
    parser.add_argument("--beam", type=int, help="adapter beam width, 0 for none (default: the run's; 8 for a `subchar train` run)")
    parser.add_argument("--seed", type=int, help="neural runs: the training seed used when the harness passes none "
                        "(its SEED variable, from `submit.py --seed`) (default: the run's; 0 as in `subchar train`)")
    parser.add_argument("--batch-size", type=int, help="neural runs: sequences per step (default: the run's)")
    parser.add_argument("--lr", type=float, help="neural runs: the --lr given to `subchar train` (default 3e-3)")
    parser.add_argument("--author", help='contributor shown on the leaderboard, e.g. "@you" (__author__)')
    parser.set_defaults(func=run_export, interrupted="nothing was written")


def run_export(args: argparse.Namespace) -> int:
    from lab.export.build import export_run  # deferred to the run: `subchar --help` must not load torch

    target = export_run(args.run, args.out, mode=args.mode, beam=args.beam, seed=args.seed,
                        batch_size=args.batch_size, lr=args.lr, author=args.author)
    size_kb = target.stat().st_size / 1024
    print(f"wrote {target} ({size_kb:,.0f} KiB): one file whose train(train_text) returns the run's CharModel; "
          "put it at submissions/<name>/submission.py in the benchmark repository")
    return 0
