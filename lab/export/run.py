"""Reading a run for export: a folder of ``subchar compare`` (``runs/<cell>``) or of ``subchar train --out``.

What can refuse a run is decided from its files alone by :mod:`lab.commands.export` (which ``subchar export`` runs
before loading torch); this module loads the verified checkpoint and fills in the run's settings.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lab.cell import CellOptions
from lab.commands.common import DEFAULT_BEAM
from lab.commands.export import find_run, planned_prefix, replay_settings
from lab.commands.folders import ADAPTING_MODELS, saved_adapt
from zoo.checkpoint import Checkpoint, load_checkpoint


@dataclass(frozen=True)
class RunFacts:
    """What the export needs from a run folder (``subchar compare``) or a checkpoint (``subchar train --out``)."""

    name: str
    checkpoint: Checkpoint
    mode: str
    beam: int | None
    seed: int
    record: dict[str, Any] | None  # the run's record.json (scores), when the folder has one
    adapt: bool = False  # the n-gram also learns from the text it is scored on (zoo.online_ngram), as the run did
    train_chars: int | None = None  # the run's --train-chars: it saw only the first this many chars (None: all)
    counted_chars: int | None = None  # of those, the prefix its plan encoded and counted (None: all of them)


def read_run(
    run: str | Path, mode: str | None = None, beam: int | None = None, seed: int | None = None,
    adapt: bool | None = None,
) -> RunFacts:
    """Load and verify the run; ``mode``/``beam``/``seed``/``adapt`` override what it recorded (``beam=0``: no
    beam; ``adapt`` applies to an n-gram run only)."""
    place = find_run(run)
    counted_chars = planned_prefix(place)
    adapts = saved_adapt(place.checkpoint, place.manifest) if adapt is None else adapt
    defaults = CellOptions()
    # a `subchar train --out` run records no beam: it gets `subchar eval`'s (an unbeamed neural adapter would not
    # finish the window inside the benchmark's time limit)
    chosen_beam = place.options.get("beam", DEFAULT_BEAM) if beam is None else (beam or None)
    return RunFacts(
        name=place.name,
        checkpoint=load_checkpoint(place.checkpoint),
        mode=mode or place.options.get("mode", defaults.mode),
        beam=chosen_beam,
        seed=place.options.get("seed", defaults.seed) if seed is None else seed,
        record=place.record,
        adapt=adapts and place.manifest.get("model") in ADAPTING_MODELS,
        train_chars=place.options.get("train_chars"),
        counted_chars=counted_chars,
    )


def train_settings(facts: RunFacts, batch_size: int | None, lr: float | None) -> dict[str, Any]:
    """The TrainSettings that replay the run (:func:`lab.commands.export.replay_settings`)."""
    checkpoint = facts.checkpoint
    return replay_settings(checkpoint.path, checkpoint.manifest, checkpoint.config, batch_size, lr)
