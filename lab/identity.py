"""What makes two runs of a cell the same run: everything that can change its result.

A comparison folder resumes by reusing a finished record only when its identity matches the one asked for now:
the tokenizer spec and model, that model's overrides, every cell option that reaches the result (budget, mode,
beam, engine, eval/test chars, seed, device, whether a counted model adapts, the char weight of a mixture, a neural model's optimizer, …), the
digest of the train text, the subchar version and the backend, which for Modal names the GPU (the energy is the
card's) and whether a cell may run without the energy counter (then it is scored on the 50 W floor instead of
refused). A record marked unfinished (``extra.unfinished``: Modal lost the call, or the cell was refused for want
of an energy counter) is kept but never reused, so a rerun runs its cell again.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from importlib import metadata
from typing import Any

from lab.cell import Cell, CellOptions, adapts
from zoo.kinds import kind_of
from zoo.optimizers import default_optimizer

# The options that cannot change a result, so they stay out of the identity:
NOT_IDENTITY = (
    "progress",  # only what is printed
    "ids_cache",  # where encoded ids are cached: the ids are the same wherever they are kept
)
UNFINISHED = "unfinished"  # a record's extra key: why it is kept but not reused


def subchar_version() -> str:
    try:
        return metadata.version("subchar")
    except metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


def modal_backend_identity(gpu: str, allow_no_energy_counter: bool) -> str:
    """The ``backend`` of a Modal cell's identity: the card, and whether the energy counter was required."""
    return f"modal {gpu} energy counter {'optional' if allow_no_energy_counter else 'required'}"


def cell_identity(cell: Cell, options: CellOptions, train_sha256: str, backend: str = "local") -> dict[str, Any]:
    """The JSON-ready identity of ``cell`` run with ``options`` on the train text with digest ``train_sha256``."""
    chosen = {key: value for key, value in options.to_dict().items() if key not in NOT_IDENTITY}
    chosen["overrides"] = options.overrides.get(cell.model, {})  # another model's settings do not touch this cell
    # adapt names a run only where it is on: a neural model ignores it, and a record from before the option (which
    # never adapted) holds no such key, so it stays the same run as one asked for with --no-adapt
    del chosen["adapt"]
    if adapts(cell, options):
        chosen["adapt"] = True
    # the char weight reaches only a mixture's result; left out of every other cell's identity, so their records
    # (from before the option, or of another weight) stay the same runs
    del chosen["char_weight"]
    if kind_of(cell.model).mixture:
        chosen["char_weight"] = options.char_weight
    # the optimizer reaches only a neural model's result, and names a run only where it is not the model's default:
    # records from before the option (trained with the default) stay the same runs, asked for with or without it
    del chosen["optimizer"]
    if kind_of(cell.model).neural and (options.optimizer or default_optimizer(cell.model)) != \
            default_optimizer(cell.model):
        chosen["optimizer"] = options.optimizer
    return {
        "cell": asdict(cell),
        "options": chosen,
        "train_sha256": train_sha256,
        "subchar": subchar_version(),
        "backend": backend,
    }


def identity_key(identity: dict[str, Any]) -> str:
    """A short stable digest of an identity, stored in each record as ``extra.cell_key``."""
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode("utf-8")).hexdigest()[:16]


def reusable(record: dict[str, Any]) -> bool:
    """Whether a later run may take ``record`` as its cell's result (an unfinished one it must run again)."""
    return not (record.get("extra") or {}).get(UNFINISHED)
