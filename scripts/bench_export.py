"""Speed of an exported ``submission.py`` in the benchmark harness's own sequence (``lab.harness``, what
``subchar harness`` runs): loaded as ``run_eval.py`` loads it, ``train()`` metered under the 300 s cap, then
``reset()`` and predict-before-observe over the first ``--chars`` validation characters. One table row per
submission: training seconds, loop chars/s, accuracy, and the loop's extrapolation to the 60k window.

    subchar export RUN --out DIR
    .venv/bin/python scripts/bench_export.py DIR/submission.py [...] --train-file TRAIN.raw [--chars 5000]
        [--data-dir D]

Torch threads are left as the harness leaves them (torch's default) unless ``--threads`` is given.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from eval.data import VAL_WINDOW_CHARS, load_split
from lab.harness import run_submission


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("submissions", nargs="+", type=Path)
    parser.add_argument("--train-file", type=Path, required=True)
    parser.add_argument("--chars", type=int, default=5000)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--data-dir", default=str(Path(__file__).resolve().parents[1].parent / "shared" / "wikitext"))
    args = parser.parse_args()
    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)
    train = load_split("train", args.data_dir, args.train_file)  # the benchmark's stream, val text refused
    valid = load_split("valid", args.data_dir)
    print(f"harness loop over the first {min(args.chars, len(valid.text)):,} val chars; torch threads "
          f"{args.threads or 'default'}")
    print("| submission | train s | loop chars/s | 60k window s | accuracy |")
    print("|---|---|---|---|---|")
    for path in args.submissions:
        record = run_submission(path, train, valid, args.chars, acc_min=None)
        if record.disqualified:  # past the 300 s cap: nothing was scored
            print(f"| {path} | {record.training_duration_s:.1f} ({record.reason}) | — | — | — |", flush=True)
            continue
        speed = record.eval_chars_per_s
        print(f"| {path} | {record.training_duration_s:.1f} | {speed:,.0f} | {VAL_WINDOW_CHARS / speed:,.0f} | "
              f"{record.val_char_accuracy:.4f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
