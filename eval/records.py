"""Run records with the benchmark's field names, written atomically so a crash never leaves half a file."""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write to a temporary file beside ``path``, fsync, then rename over it (atomic on POSIX)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def utc_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class RunRecord:
    """One run: the benchmark's result fields first (same names, same meaning), then subchar's own.

    As in the benchmark's ``run_eval.py``, ``training_energy_J`` is the GPU part (NVML net of idle) and
    ``total_energy_J`` the ranked number. ``proxy_train`` is True when a stand-in text played the train split:
    such a record is a development figure, never a benchmark result.
    """

    submission: str
    training_energy_J: float | None
    training_duration_s: float
    cpu_energy_J: float | None
    total_energy_J: float | None
    val_char_accuracy: float | None
    val_chars: int
    gpu_name: str | None
    date_utc: str = field(default_factory=utc_now)
    disqualified: bool = False
    reason: str | None = None
    bits_per_char: float | None = None
    eval_chars_per_s: float | None = None
    tokenizer: dict[str, Any] | None = None
    model: dict[str, Any] | None = None
    proxy_train: bool = False
    energy_phases: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def save(self, path: str | os.PathLike) -> None:
        write_json_atomic(path, self.to_dict())
