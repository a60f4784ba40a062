"""What makes two runs of a cell the same run: everything that can change its result.

A comparison folder resumes by reusing a finished record only when its identity matches the one asked for now:
the tokenizer spec and model, that model's overrides, every cell option that reaches the result (budget, mode,
beam, engine, eval/test chars, seed, device, …), the digest of the train text, the subchar version and the
backend. ``progress`` only changes what is printed, so it is left out.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from importlib import metadata
from typing import Any

from lab.cell import Cell, CellOptions

NOT_IDENTITY = ("progress",)


def subchar_version() -> str:
    try:
        return metadata.version("subchar")
    except metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


def cell_identity(cell: Cell, options: CellOptions, train_sha256: str, backend: str = "local") -> dict[str, Any]:
    """The JSON-ready identity of ``cell`` run with ``options`` on the train text with digest ``train_sha256``."""
    chosen = {key: value for key, value in options.to_dict().items() if key not in NOT_IDENTITY}
    chosen["overrides"] = options.overrides.get(cell.model, {})  # another model's settings do not touch this cell
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
