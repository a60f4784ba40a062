"""Run records with the benchmark's field names, written atomically so a crash never leaves half a file."""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

from eval.energy import EnergyReport
from eval.errors import UserError


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write to a temporary file beside ``path``, fsync, then rename over it (atomic on POSIX)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fchmod(handle.fileno(), 0o666 & ~current_umask())  # mkstemp's 0600 would hide results from others
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def current_umask() -> int:
    """The process umask (reading it means setting it, so it is set straight back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
    """Strict JSON only (``allow_nan=False``): a NaN or infinity is an error here, never an unparsable file."""
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=False, allow_nan=False) + "\n")


def finite(value: Any) -> Any:
    """``value`` with every NaN or infinite float, at any depth, replaced by None (JSON's null)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(item) for item in value]
    return value


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def replace_directory(staging: Path, target: Path) -> None:
    """Rename a fully written ``staging`` folder onto ``target``; an old folder there is moved aside first and
    deleted only afterwards, so a crash leaves the old folder or the new one, never half of one. The folder gets
    the permissions the umask gives a new folder (mkdtemp makes staging folders private)."""
    staging.chmod(0o777 & ~current_umask())
    if not target.exists():
        staging.rename(target)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old.", dir=target.parent))
    old.rmdir()
    target.rename(old)
    staging.rename(target)
    shutil.rmtree(old, ignore_errors=True)


@contextmanager
def staged_folder(target: str | os.PathLike) -> Iterator[Path]:
    """A fresh folder beside ``target`` to fill; when the block ends it replaces ``target`` (:func:`replace_directory`),
    and when the block raises it is deleted, so a saved folder (tokenizer, checkpoint) is whole or absent."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        yield staging
        replace_directory(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def read_manifest(folder: Path, name: str, fmt: str, version: int, what: str, make: str) -> dict[str, Any]:
    """Load the manifest of a saved ``what`` (tokenizer, checkpoint) written by the command ``make``; every way it
    can be missing, corrupt or foreign is a one-line UserError naming the fix."""
    path = folder / name
    if not folder.is_dir():
        raise UserError(f"no {what} folder at {folder}; create it with `{make}`")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{folder} has no {name}: not a saved {what} (or an interrupted one); run `{make}` again") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise UserError(f"{path} is corrupt (not JSON); delete {folder} and run `{make}` again") from None
    if not isinstance(manifest, dict) or manifest.get("format") != fmt:
        raise UserError(f"{path} is not a subchar {what} manifest; point at a folder written by `{make}`")
    if manifest.get("format_version") != version:
        raise UserError(
            f"{path} has format version {manifest.get('format_version')!r}, this subchar reads {version}; "
            f"run `{make}` again"
        )
    return manifest


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
    eval_engine: str | None = None  # "batch" or "stream" (eval.evaluate): same scores, different speed
    tokenizer: dict[str, Any] | None = None
    model: dict[str, Any] | None = None
    proxy_train: bool = False
    energy_phases: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def after_training(cls, submission: str, report: EnergyReport, proxy_train: bool, **fields: Any) -> RunRecord:
        """The record as far as training knows it: energy and time from the meter's report, no scores yet."""
        return cls(
            submission=submission,
            training_energy_J=report.gpu_energy_J if report.gpu_available else None,
            training_duration_s=report.duration_s,
            cpu_energy_J=report.cpu_energy_J if report.cpu_available else None,
            total_energy_J=report.total_energy_J,
            val_char_accuracy=None,
            val_chars=0,
            gpu_name=report.gpu_name,
            proxy_train=proxy_train,
            energy_phases={name: phase.to_dict() for name, phase in report.phases.items()},
            **fields,
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain, strict-JSON data: an infinite bits/char (a true char at p=0) becomes None; the p=0 count and
        the bits/char over the other chars stand beside it in ``extra``."""
        return finite(asdict(self))

    def save(self, path: str | os.PathLike) -> None:
        write_json_atomic(path, self.to_dict())
