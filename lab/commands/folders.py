"""What a folder on disk is, told by the file only its maker writes: a saved tokenizer or a checkpoint (the
``format`` of its manifest.json), a ``subchar compare`` run (cell.json) or results folder (grid.json,
results.jsonl), or an export (a submission.py that ``subchar export`` generated).

Commands read it before any work, so that an output replaces only a folder of its own kind (never a tokenizer with
a checkpoint, or the reverse) and an input of the wrong kind is refused with the folder to pass instead. The checks
that need no tokenizer library or torch (manifest, checksums) run here too, so such a refusal comes at once.

Light, like :mod:`lab.commands.common`: names and formats are spelled out, and tests/test_folders.py keeps them
equal to the libraries' own.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from eval.errors import UserError
from eval.records import file_sha256, read_manifest
from lab.commands.common import check_writable_place
from lab.results import CELL_FILE

SAVED_MANIFEST = "manifest.json"  # a saved tokenizer's or checkpoint's; its "format" says which
# the kinds read through their manifest: (format, format version, the command that writes one)
SAVED = {"tokenizer": ("subchar-tokenizer", 1, "subchar tokenizer train"),
         "checkpoint": ("subchar-checkpoint", 1, "subchar train")}
RUN_FILE = CELL_FILE
COMPARE_FILES = ("grid.json", "results.jsonl")
COMPARE_RUNS = "runs"
SUBMISSION_FILE = "submission.py"
TRAIN_RECORD = "train_record.json"  # `subchar train`'s record beside its checkpoint (lab.checkpoint_runs)
# the checkpointed models that are counted, so can learn while scored (zoo.kinds: counted, tokenized)
ADAPTING_MODELS = ("ngram", "ngram+char-kn")
SUBMISSION_HEAD = b'"""subchar submission '  # how every generated submission.py starts

NOUNS = {"tokenizer": "saved tokenizer", "checkpoint": "checkpoint", "run": "`subchar compare` run folder",
         "compare": "`subchar compare` results folder", "export": "`subchar export` folder"}


def folder_kind(folder: Path) -> str | None:
    """``tokenizer``, ``checkpoint``, ``run``, ``compare`` or ``export``; None for a missing or unreadable folder or
    anything else (a manifest.json that is not JSON or has another format included)."""
    try:
        if not folder.is_dir():
            return None
        if (folder / SAVED_MANIFEST).is_file():
            saved = json.loads((folder / SAVED_MANIFEST).read_text(encoding="utf-8"))
            fmt = saved.get("format") if isinstance(saved, dict) else None
            return next((kind for kind, (known, *_) in SAVED.items() if fmt == known), None)
        if (folder / RUN_FILE).is_file():
            return "run"
        if any((folder / name).is_file() for name in COMPARE_FILES):
            return "compare"
        with open(folder / SUBMISSION_FILE, "rb") as handle:
            return "export" if handle.read(len(SUBMISSION_HEAD)) == SUBMISSION_HEAD else None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):  # no submission.py, no permission, not JSON
        return None


def check_output_folder(path: str, kind: str, flag: str = "--out") -> Path:
    """Refuse an output folder that the ``kind`` about to be written must not replace: a file, a folder of another
    kind or of other files (only a missing or empty folder or one of ``kind`` is taken), or a folder inside a saved
    tokenizer, checkpoint, run or export (it would change what that one holds). Creates nothing."""
    target = Path(path).expanduser()
    if target.exists():
        if not target.is_dir():
            raise UserError(f"{flag} {target} is a file; give a folder path")
        found = folder_kind(target)
        if found is None and any(target.iterdir()):
            raise UserError(f"{flag} {target} exists and is not a {NOUNS[kind]}; choose another path")
        if found not in (None, kind):
            raise UserError(f"{flag} {target} is a {NOUNS[found]}, not a {NOUNS[kind]}; choose another path "
                            "(writing there would spoil it)")
    for folder in target.resolve().parents:
        found = folder_kind(folder)
        if found not in (None, "compare"):  # beside a compare folder's runs/ is fine; inside a run is not
            raise UserError(f"{flag} {target} is inside the {NOUNS[found]} {folder}; choose a path outside it")
    check_writable_place(target, flag)
    return target


def read_saved(path: str | Path, kind: str, flag: str | None = None) -> tuple[Path, dict[str, Any]]:
    """The folder and manifest of a saved ``kind`` (tokenizer or checkpoint) given on the command line; a run or
    checkpoint given in its place is refused with the path of the one it holds, any other failure explained."""
    fmt, version, maker = SAVED[kind]
    folder = Path(path).expanduser()
    where = f"{flag} {folder}" if flag else str(folder)
    found = folder_kind(folder)
    if found not in (None, kind):
        if found == "compare":
            hint = f"pass one of its runs' {kind}s: {folder / COMPARE_RUNS / '<cell>' / kind}"
        elif found in ("run", "checkpoint") and folder_kind(folder / kind) == kind:
            hint = f"pass its {kind}: {folder / kind}"
        elif found == "run":
            hint = f"it holds no {kind} (a char baseline, or a cell whose training did not finish)"
        else:
            hint = f"pass a folder written by `{maker}`"
        raise UserError(f"{where} is a {NOUNS[found]}, not a {NOUNS[kind]}; {hint}")
    return folder, read_manifest(folder, SAVED_MANIFEST, fmt, version, kind, f"{maker} --out {folder}")


def verify_tokenizer(folder: Path, manifest: dict[str, Any]) -> None:
    """The library file of a saved tokenizer is there and matches its checksum (as ``tokenizers_local.load``
    checks it, without importing the tokenizer libraries)."""
    backend = manifest.get("backend_file")
    if not isinstance(backend, str) or not (folder / backend).is_file():
        raise UserError(f"{folder} lacks its tokenizer file {backend!r}; delete the folder and train again")
    if file_sha256(folder / backend) != manifest.get("backend_sha256"):
        raise UserError(f"{folder / backend} does not match its manifest checksum (corrupt); delete {folder} and "
                        "train again")


def verify_checkpoint(folder: Path, manifest: dict[str, Any]) -> None:
    """Every file the checkpoint's manifest lists is there and matches its checksum, and so is its tokenizer
    (as ``zoo.checkpoint.load_checkpoint`` checks them, without importing torch)."""
    files = manifest.get("files")
    for name, expected in (files.items() if isinstance(files, dict) else ()):
        if not (folder / name).is_file():
            raise UserError(f"{folder} lacks {name}; the checkpoint is incomplete, train again")
        if file_sha256(folder / name) != expected:
            raise UserError(f"{folder / name} does not match its checksum in {SAVED_MANIFEST} (corrupt); "
                            f"delete {folder} and train again")
    verify_tokenizer(*read_saved(folder / "tokenizer", "tokenizer"))


def check_results_folder(path: str, flag: str = "--out") -> Path:
    """Refuse a results folder (one that comparisons add to) that is a file, lies below one, cannot be written or
    is a saved tokenizer, checkpoint, run or export (its results.jsonl and runs/ would spoil it). Creates nothing."""
    target = Path(path).expanduser()
    if target.exists() and not target.is_dir():
        raise UserError(f"{flag} {target} is a file; give a folder path")
    found = folder_kind(target)
    if found not in (None, "compare"):
        raise UserError(f"{flag} {target} is a {NOUNS[found]}, not a {NOUNS['compare']}; choose another path")
    check_writable_place(target / COMPARE_FILES[1], flag)
    return target


def saved_adapt(checkpoint: Path, manifest: dict[str, Any]) -> bool:
    """Whether the run that saved ``checkpoint`` scored its model while it learned (``--adapt``): a grid cell's
    options in its run folder's cell.json, else the ``extra.adapt`` of `subchar train`'s record beside it. A file
    from before the option, which never adapted, says no; so does a model that cannot adapt (a neural one)."""
    if manifest.get("model") not in ADAPTING_MODELS:
        return False
    fix = "run it again (or pass --adapt / --no-adapt)"
    if folder_kind(checkpoint.parent) == "run":
        source, key = checkpoint.parent / RUN_FILE, "options"
    elif (checkpoint / TRAIN_RECORD).is_file():
        source, key = checkpoint / TRAIN_RECORD, "extra"
    else:
        return False
    saved = read_json_file(source, fix).get(key)
    adapt = (saved if isinstance(saved, dict) else {}).get("adapt", False)
    if not isinstance(adapt, bool):
        raise UserError(f"{source} has adapt={adapt!r}, not true or false; {fix}")
    return adapt


def read_json_file(path: Path, fix: str) -> dict[str, Any]:
    """A JSON object from ``path``; anything else is a one-line error that ends with ``fix``."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        raise UserError(f"cannot read {path} as JSON; {fix}") from None
    if not isinstance(value, dict):
        raise UserError(f"{path} is not a JSON object; {fix}")
    return value
