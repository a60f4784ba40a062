"""Speed of an exported ``submission.py`` in the benchmark harness's own loop: loaded with
``spec_from_file_location("user_submission", ...)`` as ``run_eval.py`` loads it, ``train(train_text)``, then
``reset()`` and predict-before-observe over the first ``--chars`` validation characters. One table row per
submission: training seconds, loop chars/s, accuracy, and the loop's extrapolation to the 60k window.

    subchar export RUN --out DIR
    .venv/bin/python scripts/bench_export.py DIR/submission.py [...] --train-file TRAIN.raw [--chars 5000]
        [--data-dir D]

Torch threads are left as the harness leaves them (torch's default) unless ``--threads`` is given.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from pathlib import Path

import torch

from eval.data import VAL_WINDOW_CHARS, val_window


def load_submission(path: Path):
    spec = importlib.util.spec_from_file_location("user_submission", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("submissions", nargs="+", type=Path)
    parser.add_argument("--train-file", type=Path, required=True)
    parser.add_argument("--chars", type=int, default=5000)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--data-dir", default=str(Path(__file__).resolve().parents[1].parent / "shared" / "wikitext"))
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    train_text = args.train_file.read_text(encoding="utf-8")
    text = val_window(args.data_dir, chars=args.chars).text
    print(f"harness loop over the first {len(text):,} val chars; torch threads {torch.get_num_threads()}")
    print("| submission | train s | loop chars/s | 60k window s | accuracy |")
    print("|---|---|---|---|---|")
    for path in args.submissions:
        module = load_submission(path)
        started = time.perf_counter()
        model = module.train(train_text)
        trained = time.perf_counter() - started
        model.reset()
        correct, started = 0, time.perf_counter()
        for char in text:
            correct += model.predict() == char
            model.observe(char)
        loop = time.perf_counter() - started
        speed = len(text) / loop
        print(f"| {path} | {trained:.1f} | {speed:,.0f} | {VAL_WINDOW_CHARS / speed:,.0f} | {correct / len(text):.4f} |",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
