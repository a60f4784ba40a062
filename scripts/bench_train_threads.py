"""CPU training with torch's default of all threads against zoo.train.ThreadChoice, beside busy processes.

Why: on a shared 2-core machine all-thread training collapsed (8 steps in 5-12 s against 1.2 s on one thread), and
the trainer now picks its thread count by timing its first steps. This script measures, with ``--busy N`` other
processes spinning a core each (killed at the end), three things, each in a fresh interpreter, alternating the two
settings run by run:

    a. 8 training steps of the default transformer (seconds);
    b. ``subchar train --model transformer --budget 20`` (steps reached, the thread count it ended on);
    c. an exported neural submission's ``train()`` replaying a 42-step run (seconds, the encode and the adapter
       included).

"all" forces torch's own count for every step (what the trainer did before ThreadChoice); "probe" is the default.
It prints a table of ranges over ``--runs`` and each run's row with the 1-minute load average at its start.

    .venv/bin/python scripts/bench_train_threads.py --train-file ../shared/wikitext/wiki.test.raw --runs 3 --busy 1
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REPLAY_STEPS = 42
TASKS = ("a", "b", "c")
MODES = ("all", "probe")


def forced(module) -> list:
    """Make ``module.ThreadChoice`` (zoo.train, or a submission's inlined copy) record its instances, and in mode
    "all" fix each to torch's own count; returns the list the instances go into."""
    made: list = []
    base = module.ThreadChoice
    fix_all = os.environ["BENCH_MODE"] == "all"

    class Recorded(base):
        def __init__(self, available, fixed=None):
            super().__init__(available, available if fix_all and available is not None else fixed)
            made.append(self)

    module.ThreadChoice = Recorded
    return made


def child(task: str, work: Path, train_file: str) -> dict:
    """One measurement in this fresh interpreter; returns its figures."""
    if task == "a":
        import numpy as np

        import zoo.train as trainer
        from eval.energy import EnergyMeter

        made = forced(trainer)
        ids = np.random.default_rng(0).integers(0, 2048, 200_000)
        started = time.monotonic()
        result = trainer.train("transformer", ids, 2048, budget_s=280, device="cpu",
                               settings=trainer.TrainSettings(max_steps=8, progress=False, evals=1),
                               meter=EnergyMeter(gpu=None, cpu=None))
        return {"seconds": time.monotonic() - started, "steps": result.steps, "threads": made[0].threads}
    if task == "b":
        import zoo.train as trainer
        from lab.cli import main

        made = forced(trainer)
        out = work / f"train-{os.getpid()}"
        code = main(["train", "--model", "transformer", "--tokenizer", str(work / "tokenizer"), "--budget", "20",
                     "--train-file", train_file, "--device", "cpu", "--out", str(out)])
        steps = json.loads((out / "manifest.json").read_text())["steps"] if code == 0 else None
        return {"code": code, "steps": steps, "threads": made[0].threads if made else None}
    spec = importlib.util.spec_from_file_location("user_submission", work / "export" / "submission.py")
    submission = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(submission)
    made = forced(submission)
    text = Path(train_file).read_text(encoding="utf-8")
    started = time.monotonic()
    submission.train(text)
    return {"seconds": time.monotonic() - started, "threads": made[0].threads}


def prepare(work: Path, train_file: str) -> None:
    """The tokenizer for (b) and the 42-step exported run for (c), made once before any busy process starts."""
    if (work / "export" / "submission.py").is_file():
        return
    import numpy as np

    from eval.data import load_split
    from eval.energy import EnergyMeter
    from lab.export import export_run
    from tokenizers_local import train_tokenizer
    from zoo.checkpoint import save_checkpoint
    from zoo.train import TrainSettings, train

    text = load_split("train", train_file=train_file)
    tokenizer = train_tokenizer(text, "bytebpe", 2048)
    tokenizer_dir = tokenizer.save(work / "tokenizer")
    ids = np.asarray(tokenizer.encode(text.text), dtype=np.int64)
    result = train("transformer", ids, tokenizer.vocab_size, device="cpu", meter=EnergyMeter(gpu=None, cpu=None),
                   settings=TrainSettings(max_steps=REPLAY_STEPS, progress=False))
    save_checkpoint(work / "checkpoint", result, tokenizer_dir, text)
    export_run(work / "checkpoint", work / "export", mode="exact", beam=8)


def measure(task: str, mode: str, work: Path, train_file: str) -> dict:
    load = os.getloadavg()[0]
    done = subprocess.run([sys.executable, __file__, "--child", task, "--work", str(work), "--train-file", train_file],
                          capture_output=True, text=True, cwd=ROOT, env={**os.environ, "BENCH_MODE": mode})
    if done.returncode != 0:
        raise SystemExit(f"task {task} ({mode}) failed:\n{done.stderr[-2000:]}")
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    if figures.get("code"):  # `subchar train` refused or stopped: its one-line error says why
        figures["error"] = done.stderr.replace("\r", "\n").strip().splitlines()[-1]
    return {"task": task, "mode": mode, "load": load, **figures}


def span(values: list[float], spec: str) -> str:
    low, high = f"{min(values):{spec}}", f"{max(values):{spec}}"
    return low if low == high else f"{low}–{high}"


def report(rows: list[dict]) -> str:
    lines = ["| measurement | all threads (before) | ThreadChoice (after) |", "|---|---|---|"]
    figures = {"a": ("8 steps, default transformer (s)", "seconds", ".2f"),
               "b": ("`subchar train --budget 20`: steps reached", "steps", "d"),
               "c": (f"exported train() replaying {REPLAY_STEPS} steps (s)", "seconds", ".1f")}
    for task, (name, key, spec) in figures.items():
        if not any(row["task"] == task for row in rows):
            continue
        cells = []
        for mode in MODES:
            picked = [row for row in rows if row["task"] == task and row["mode"] == mode]
            values = [row[key] for row in picked if row.get(key) is not None]
            threads = "/".join(str(t) for t in sorted({row["threads"] for row in picked if row["threads"]}))
            failed = f", {len(picked) - len(values)} failed" if len(values) < len(picked) else ""
            cells.append(f"{span(values, spec) if values else '—'} (threads {threads or '—'}{failed})")
        lines.append(f"| {name} | {cells[0]} | {cells[1]} |")
    lines += ["", "| run | task | mode | load (1 min) | result | threads |", "|---|---|---|---|---|---|"]
    for row in rows:
        result = f"{row['seconds']:.2f} s" if row["task"] != "b" else row.get("error") or f"{row['steps']} steps"
        lines.append(f"| {row['run']} | {row['task']} | {row['mode']} | {row['load']:.2f} | {result} "
                     f"| {row['threads']} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-file", required=True, help="proxy train text (its tokenizer is learned once)")
    parser.add_argument("--work", default="/tmp/subchar-threads", help="folder for the tokenizer, run and export")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--busy", type=int, default=1, help="processes spinning a core each during the runs")
    parser.add_argument("--tasks", nargs="+", choices=TASKS, default=list(TASKS))
    parser.add_argument("--child", choices=TASKS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    work = Path(args.work)
    if args.child:
        print(json.dumps(child(args.child, work, args.train_file)))
        return
    work.mkdir(parents=True, exist_ok=True)
    prepare(work, args.train_file)
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.busy)]
    rows = []
    try:
        time.sleep(2.0)
        for run in range(1, args.runs + 1):
            for task in args.tasks:
                for mode in MODES if run % 2 else MODES[::-1]:
                    rows.append({"run": run, **measure(task, mode, work, args.train_file)})
                    print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    finally:
        for process in busy:
            process.kill()
            process.wait()
    print(f"{args.busy} busy process(es), {os.cpu_count()} CPUs, load (1 min) {os.getloadavg()[0]:.2f} at the end")
    print(report(rows))


if __name__ == "__main__":
    main()
