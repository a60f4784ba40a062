"""``subchar export RUN --out DIR``: a single-file benchmark submission from a run (see :mod:`lab.export.build`).

Everything that can refuse an export is decided here from the run's JSON files and checksums, before
:mod:`lab.export` (torch, the tokenizer libraries) is imported: a refused export answers at once and writes nothing.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eval.errors import UserError
from lab.commands.common import COUNT, COUNT_OR_ZERO, MODEL_CHOICES, POSITIVE, SEED, add_adapt_arg, add_mode_arg
from lab.commands.folders import (
    ADAPTING_MODELS,
    RUN_FILE,
    SAVED_MANIFEST,
    check_output_folder,
    folder_kind,
    read_saved,
    verify_checkpoint,
)
from lab.modal_image import BENCHMARK_PINS
from lab.results import RECORD_FILE

# Spelled out because lab.export loads torch; tests/test_folders.py keeps them equal to lab.export's and zoo.train's.
EXPORTABLE_FAMILY = "bytebpe"  # the benchmark image has tiktoken, not tokenizers or sentencepiece
EXPORTABLE_MODELS = MODEL_CHOICES
DEFAULT_LR = 3e-3  # zoo.train.TrainSettings.lr, as `subchar train` used it when --lr was not given
NGRAM_MODEL = "ngram"


def register(subparsers) -> None:
    parser = subparsers.add_parser("export", help="write a single-file benchmark submission (submission.py) from a run")
    parser.add_argument("run", help="a run folder of `subchar compare` (runs/<cell>) or a `subchar train --out` folder")
    parser.add_argument("--out", required=True, help="folder to write submission.py into (missing, empty, or one "
                        "written by `subchar export`)")
    add_mode_arg(parser, default=None, default_text="the run's; exact")
    parser.add_argument("--beam", type=COUNT_OR_ZERO, help="adapter beam width, 0 for none (default: the run's; 8 for a `subchar train` run)")
    parser.add_argument("--seed", type=SEED, help="neural runs: the training seed used when the harness passes none "
                        "(its SEED variable, from `submit.py --seed`) (default: the run's; 0 as in `subchar train`)")
    parser.add_argument("--batch-size", type=COUNT, help="neural runs: sequences per step (default: the run's)")
    parser.add_argument("--lr", type=POSITIVE, help="neural runs: the --lr given to `subchar train` (default 3e-3)")
    add_adapt_arg(parser, default=None, default_text="the run's, off for a run from before the option; n-gram runs")
    parser.add_argument("--author", help='contributor shown on the leaderboard, e.g. "@you" (__author__)')
    parser.set_defaults(func=run_export, interrupted="nothing was written")


@dataclass(frozen=True)
class RunPlace:
    """A run as its files describe it: its name, its checkpoint folder and manifest, and (a compare run) the cell's
    options and record."""

    name: str
    checkpoint: Path
    manifest: dict[str, Any]
    options: dict[str, Any]
    record: dict[str, Any] | None


def find_run(run: str | Path) -> RunPlace:
    """A run folder of ``subchar compare`` or a ``subchar train --out`` checkpoint, refused when it cannot be
    exported, reading JSON files only (the checksums are the checkpoint loader's, or :func:`run_export`'s)."""
    folder = Path(run).expanduser()
    if not folder.is_dir():
        raise UserError(f"no run folder at {folder}; pass a run of `subchar compare` or a `subchar train --out` folder")
    options: dict[str, Any] = {}
    record = None
    if folder_kind(folder) == "run":
        cell_file = read_json(folder / RUN_FILE)
        try:
            cell, options = cell_file["cell"], cell_file["options"]
            family, model, vocab_size = cell["family"], cell["model"], cell["vocab_size"]
        except (KeyError, TypeError):
            raise UserError(f"{folder / RUN_FILE} lacks the cell or its options; run the cell again") from None
        if family is None:
            raise UserError(f"{folder} is the {model} baseline, which has no tokenizer; export a subword run")
        if (folder / RECORD_FILE).is_file():
            record = read_json(folder / RECORD_FILE)
        checkpoint = folder / "checkpoint"
        if not (checkpoint / SAVED_MANIFEST).is_file():
            reason = f" ({record['reason']})" if record and record.get("reason") else ""
            raise UserError(f"{folder} has no checkpoint: its training did not finish{reason}; run the cell again")
        name = f"{family}{vocab_size}-{model}"
    elif (folder / SAVED_MANIFEST).is_file():
        checkpoint, name = folder, folder.resolve().name
    else:
        raise UserError(f"{folder} is not a subchar run: it holds neither {RUN_FILE} (subchar compare) nor "
                        f"{SAVED_MANIFEST} (subchar train --out)")
    checkpoint, manifest = read_saved(checkpoint, "checkpoint")
    family = read_saved(checkpoint / "tokenizer", "tokenizer")[1].get("family")
    if family != EXPORTABLE_FAMILY:
        raise UserError(f"only {EXPORTABLE_FAMILY} runs can be exported (the benchmark image has tiktoken, not "
                        f"tokenizers or sentencepiece); this run's tokenizer is {family!r}")
    if manifest.get("model") not in EXPORTABLE_MODELS:
        raise UserError(f"cannot export model {manifest.get('model')!r}: choose a run of "
                        f"{', '.join(EXPORTABLE_MODELS)}")
    return RunPlace(name, checkpoint, manifest, options, record)


def read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise UserError(f"{path} is corrupt (not JSON); run the cell again") from None


def replay_settings(checkpoint: Path, manifest: dict[str, Any], config: dict[str, Any], batch_size: int | None,
                    lr: float | None) -> dict[str, Any]:
    """The TrainSettings that replay a neural run: its batch size (from tokens seen = steps x batch x block), no
    validation passes (they change no weight) and either its recorded learning rate of every step and its
    torch.compile choice, or, for a checkpoint from before those were recorded, its step count with a step-based
    schedule from ``lr`` (the same recipe, not the same weights when the run followed its clock)."""
    steps = int(manifest["steps"])
    if steps <= 0:
        raise UserError(f"{checkpoint} took no training step; train the run longer before exporting it")
    if batch_size is None:
        batch_size, rest = divmod(int(manifest["tokens_seen"]), steps * int(config["block_size"]))
        if rest or batch_size <= 0:
            raise UserError(f"cannot tell the batch size {checkpoint} was trained with; pass --batch-size")
    settings: dict[str, Any] = {"batch_size": batch_size, "evals": 0, "progress": False}
    schedule = manifest.get("lr_schedule")
    if schedule is None:
        return {**settings, "lr": DEFAULT_LR if lr is None else lr, "max_steps": steps}
    if lr is not None:
        raise UserError(f"{checkpoint} recorded the learning rate of each of its steps, which the export "
                        "replays; --lr applies only to checkpoints without one")
    compiled = manifest.get("compiled")
    if len(schedule) != steps or not all(isinstance(rate, float) for rate in schedule) \
            or not isinstance(compiled, bool):
        raise UserError(f"{checkpoint / SAVED_MANIFEST} has a damaged lr_schedule ({len(schedule)} rates for "
                        f"{steps} steps, compiled {compiled!r}); train the run again")
    optimizer = manifest.get("optimizer", "adamw")  # checkpoints from before the choice existed trained with AdamW
    if optimizer != "adamw":
        raise UserError(f"{checkpoint} trained with {optimizer}, which the benchmark image "
                        f"({BENCHMARK_PINS['torch']}) lacks (torch.optim.Muon came in torch 2.9): train it again "
                        "with --optimizer adamw to export it")
    return {**settings, "compile": compiled, "optimizer": optimizer}


def planned_prefix(place: RunPlace) -> int | None:
    """How many chars of its train text a compare run's plan encoded and counted (its record's
    ``data.encoded_chars``), when that was a prefix; None when it took all (a `subchar train` run always does).
    The export trains on the same prefix: the whole 540 MB train split could pass the time and memory the plan
    kept to."""
    if not place.options:  # a `subchar train --out` checkpoint: no plan
        return None
    extra = (place.record or {}).get("extra") or {}
    encoded, given = (extra.get("data") or {}).get("encoded_chars"), extra.get("train_chars")
    if not isinstance(encoded, int) or not isinstance(given, int):
        raise UserError(f"{place.checkpoint.parent} has no record of how much train text its plan counted; "
                        "run the cell again")
    return encoded if encoded < given else None


def unplanned_warning(place: RunPlace, counted: int | None) -> str | None:
    """A counted model trained on all of a proxy text exports a train() that counts all of the text it is given,
    and on the real split that was never planned for: the file can pass the 300 s cap and any memory (a bytebpe4096
    mixture exported so took 633 s and 17.6 GB on a 540 MB stand-in). The warning names the safe route."""
    if counted is not None or place.options.get("train_chars") or not place.manifest.get("proxy_train") \
            or place.manifest.get("model") not in ADAPTING_MODELS:
        return None
    return (f"warning: this run counted all {place.manifest.get('train_chars', 0):,} chars of its proxy train text, "
            "so the file's train() counts all of the text it is given, which on the real train split (540 MB) "
            "was never planned for time or memory; to submit, export a run planned on the real split "
            "(`subchar compare --backend modal`), or one whose plan cut a text of that size")


def run_export(args: argparse.Namespace) -> int:
    check_output_folder(args.out, "export")
    place = find_run(args.run)
    verify_checkpoint(place.checkpoint, place.manifest)
    warning = unplanned_warning(place, planned_prefix(place))  # refuses a compare run without its record
    if place.manifest.get("model") not in ADAPTING_MODELS:  # a neural run (the counted ones replay no steps)
        replay_settings(place.checkpoint, place.manifest, read_json(place.checkpoint / "config.json"),
                        args.batch_size, args.lr)
    from lab.export.build import export_run  # deferred to the run: `subchar --help` must not load torch

    target = export_run(args.run, args.out, mode=args.mode, beam=args.beam, seed=args.seed,
                        batch_size=args.batch_size, lr=args.lr, author=args.author, adapt=args.adapt)
    size_kb = target.stat().st_size / 1024
    print(f"wrote {target} ({size_kb:,.0f} KiB): one file whose train(train_text) returns the run's CharModel; "
          "put it at submissions/<name>/submission.py in the benchmark repository")
    if warning:
        print(warning, file=sys.stderr)
    return 0
