"""Reading a run for export: a folder of ``subchar compare`` (``runs/<cell>``) or of ``subchar train --out``."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eval.errors import UserError
from lab.cell import CellOptions
from lab.commands.common import DEFAULT_BEAM
from lab.export.parts import EXPORTABLE_MODELS
from zoo.checkpoint import MANIFEST, Checkpoint, load_checkpoint
from zoo.train import TrainSettings

EXPORTABLE_FAMILY = "bytebpe"


@dataclass(frozen=True)
class RunFacts:
    """What the export needs from a run folder (``subchar compare``) or a checkpoint (``subchar train --out``)."""

    name: str
    checkpoint: Checkpoint
    mode: str
    beam: int | None
    seed: int
    record: dict[str, Any] | None  # the run's record.json (scores), when the folder has one


def read_run(
    run: str | Path, mode: str | None = None, beam: int | None = None, seed: int | None = None
) -> RunFacts:
    """Load and verify the run; ``mode``/``beam``/``seed`` override what it recorded (``beam=0``: no beam)."""
    folder = Path(run).expanduser()
    if not folder.is_dir():
        raise UserError(f"no run folder at {folder}; pass a run of `subchar compare` or a `subchar train --out` folder")
    options: dict[str, Any] = {}
    record = None
    if (folder / "cell.json").is_file():
        cell_file = read_json(folder / "cell.json")
        cell, options = cell_file["cell"], cell_file["options"]
        if cell["family"] is None:
            raise UserError(f"{folder} is the {cell['model']} baseline, which has no tokenizer; export a subword run")
        if (folder / "record.json").is_file():
            record = read_json(folder / "record.json")
        checkpoint_dir = folder / "checkpoint"
        if not (checkpoint_dir / MANIFEST).is_file():
            reason = f" ({record['reason']})" if record and record.get("reason") else ""
            raise UserError(f"{folder} has no checkpoint: its training did not finish{reason}; run the cell again")
        name = f"{cell['family']}{cell['vocab_size']}-{cell['model']}"
    elif (folder / MANIFEST).is_file():
        checkpoint_dir, name = folder, folder.resolve().name
    else:
        raise UserError(f"{folder} is not a subchar run: it holds neither cell.json (subchar compare) nor "
                        f"{MANIFEST} (subchar train --out)")
    checkpoint = load_checkpoint(checkpoint_dir)
    family = checkpoint.tokenizer.family
    if family != EXPORTABLE_FAMILY:
        raise UserError(f"only {EXPORTABLE_FAMILY} runs can be exported (the benchmark image has tiktoken, not "
                        f"tokenizers or sentencepiece); this run's tokenizer is {family!r}")
    if checkpoint.model_name not in EXPORTABLE_MODELS:
        raise UserError(f"cannot export model {checkpoint.model_name!r}: choose a run of {', '.join(EXPORTABLE_MODELS)}")
    defaults = CellOptions()
    # a `subchar train --out` run records no beam: it gets `subchar eval`'s (an unbeamed neural adapter would not
    # finish the window inside the benchmark's time limit)
    chosen_beam = options.get("beam", DEFAULT_BEAM) if beam is None else (beam or None)
    return RunFacts(
        name=name,
        checkpoint=checkpoint,
        mode=mode or options.get("mode", defaults.mode),
        beam=chosen_beam,
        seed=options.get("seed", defaults.seed) if seed is None else seed,
        record=record,
    )


def read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise UserError(f"{path} is corrupt (not JSON); run the cell again") from None


def train_settings(facts: RunFacts, batch_size: int | None, lr: float | None) -> dict[str, Any]:
    """The TrainSettings that replay the run: its batch size (from tokens seen = steps x batch x block), no
    validation passes (they change no weight) and either its recorded learning rate of every step and its
    torch.compile choice, or, for a checkpoint from before those were recorded, its step count with a step-based
    schedule from ``lr`` (the same recipe, not the same weights when the run followed its clock)."""
    manifest, config = facts.checkpoint.manifest, facts.checkpoint.config
    steps = int(manifest["steps"])
    if steps <= 0:
        raise UserError(f"{facts.checkpoint.path} took no training step; train the run longer before exporting it")
    if batch_size is None:
        batch_size, rest = divmod(int(manifest["tokens_seen"]), steps * int(config["block_size"]))
        if rest or batch_size <= 0:
            raise UserError(f"cannot tell the batch size {facts.checkpoint.path} was trained with; pass --batch-size")
    settings: dict[str, Any] = {"batch_size": batch_size, "evals": 0, "progress": False}
    schedule = manifest.get("lr_schedule")
    if schedule is None:
        return {**settings, "lr": TrainSettings.lr if lr is None else lr, "max_steps": steps}
    if lr is not None:
        raise UserError(f"{facts.checkpoint.path} recorded the learning rate of each of its steps, which the export "
                        "replays; --lr applies only to checkpoints without one")
    compiled = manifest.get("compiled")
    if len(schedule) != steps or not all(isinstance(rate, float) for rate in schedule) \
            or not isinstance(compiled, bool):
        raise UserError(f"{facts.checkpoint.path / MANIFEST} has a damaged lr_schedule ({len(schedule)} rates for "
                        f"{steps} steps, compiled {compiled!r}); train the run again")
    return {**settings, "compile": compiled}
