"""A cell's run folder (cell.json, tokenizer/, checkpoint/, record.json) brought back from the results Volume.

Each Modal cell writes its run folder under ``<run key>/runs/<run folder>/`` on the results Volume and commits it
(the run folder is named as a local grid names it: the cell id, ``-r<k>`` for repeat k); the client copies that
folder into ``DIR/runs/<run folder>``, whole or not at all, so ``subchar export`` and ``subchar eval`` treat a
Modal cell exactly like a local one. :func:`has_file` tells whether a cell's start marker is on the Volume.
:class:`LocalVolume` is a local directory with the two Volume methods used here: the local executor writes into
one, and the tests stand it in for the real Volume.
"""

from __future__ import annotations

import enum
import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Iterator, Protocol

from eval.errors import UserError
from eval.records import staged_folder


class VolumeFiles(Protocol):
    """What pulling needs of ``modal.Volume`` (its ``listdir`` and ``read_file``)."""

    def listdir(self, path: str, *, recursive: bool = False) -> list[Any]: ...

    def read_file(self, path: str) -> Iterator[bytes]: ...


class EntryType(enum.IntEnum):
    """The names of ``modal.volume.FileEntryType`` that matter here."""

    FILE = 1
    DIRECTORY = 2


@dataclass(frozen=True)
class Entry:
    path: str  # relative to the volume's root, "/"-separated, as modal's FileEntry.path
    type: EntryType


class LocalVolume:
    """A local directory that answers like a Modal Volume."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)

    def listdir(self, path: str, *, recursive: bool = False) -> list[Entry]:
        folder = self.root / path.strip("/")
        if not folder.is_dir():
            raise FileNotFoundError(f"no such directory on the volume: {path}")
        found = folder.rglob("*") if recursive else folder.iterdir()
        return [Entry(p.relative_to(self.root).as_posix(), EntryType.FILE if p.is_file() else EntryType.DIRECTORY)
                for p in sorted(found)]

    def read_file(self, path: str) -> Iterator[bytes]:
        yield (self.root / path.strip("/")).read_bytes()


def is_file(entry: Any) -> bool:
    kind = entry.type
    return getattr(kind, "name", None) == "FILE" or kind == EntryType.FILE


def has_file(volume: VolumeFiles, path: str) -> bool:
    """Whether ``path`` is a file on ``volume``. A read that fails for another reason counts as present: the
    answer decides whether a cell runs again, and running one twice costs more than a rerun later."""
    try:
        next(iter(volume.read_file(path)), None)
    except FileNotFoundError:
        return False
    except Exception:  # network and service errors: not known to be absent
        return True
    return True


def pull_folder(volume: VolumeFiles, remote: str, local: str | os.PathLike) -> list[Path]:
    """Copy every file below ``remote`` on ``volume`` into ``local`` (replacing it as a whole); returns the files."""
    remote_root = PurePosixPath(remote.strip("/"))
    try:
        entries = [entry for entry in volume.listdir(str(remote_root), recursive=True) if is_file(entry)]
    except FileNotFoundError:
        raise UserError(f"the results volume has no {remote_root}; the cell wrote nothing there") from None
    local = Path(local)
    written = []
    with staged_folder(local) as staging:
        for entry in entries:
            relative = PurePosixPath(entry.path.lstrip("/")).relative_to(remote_root)
            if ".." in relative.parts:
                raise UserError(f"refusing to write {entry.path} outside {local}")
            target = staging / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            with open(target, "wb") as handle:
                for chunk in volume.read_file(entry.path):
                    handle.write(chunk)
            written.append(local / relative)
    return written
