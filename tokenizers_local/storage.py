"""Loading a saved tokenizer folder (manifest.json + the library's own file), with every failure explained."""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path

from eval.errors import UserError
from eval.records import file_sha256
from tokenizers_local.base import (
    MANIFEST_FORMAT,
    MANIFEST_NAME,
    MANIFEST_VERSION,
    LocalTokenizer,
    TrainInfo,
)
from tokenizers_local.families import family_class


def read_manifest(directory: Path) -> dict:
    path = directory / MANIFEST_NAME
    if not directory.is_dir():
        raise UserError(f"no tokenizer folder at {directory}; create it with `subchar tokenizer train --out {directory}`")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{directory} has no {MANIFEST_NAME}; it is not a saved tokenizer, train one again") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise UserError(f"{path} is corrupt (not JSON); delete {directory} and train the tokenizer again") from None
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        raise UserError(f"{path} is not a subchar tokenizer manifest; delete {directory} and train again")
    if manifest.get("format_version") != MANIFEST_VERSION:
        raise UserError(
            f"{path} has format version {manifest.get('format_version')!r}, this subchar reads "
            f"{MANIFEST_VERSION}; train again"
        )
    return manifest


def load(directory: str | Path, family: str | None = None) -> LocalTokenizer:
    """Load a tokenizer saved by ``LocalTokenizer.save``; with ``family`` given, refuse any other family."""
    directory = Path(directory).expanduser()
    manifest = read_manifest(directory)
    saved_family = manifest.get("family")
    if family is not None and saved_family != family:
        raise UserError(
            f"{directory} holds a {saved_family!r} tokenizer, not {family!r}; pass the right folder or family"
        )
    cls = family_class(str(saved_family))
    backend_path = directory / str(manifest.get("backend_file"))
    if manifest.get("backend_file") != cls.backend_file or not backend_path.is_file():
        raise UserError(f"{directory} lacks its {cls.backend_file}; delete the folder and train again")
    if file_sha256(backend_path) != manifest.get("backend_sha256"):
        raise UserError(
            f"{backend_path} does not match its manifest checksum (corrupt); delete {directory} and train again"
        )
    try:
        info = TrainInfo(**{f.name: manifest[f.name] for f in fields(TrainInfo)})
        tokenizer = cls(cls.read_backend(backend_path), info)
    except Exception as err:  # missing manifest fields, or the library rejecting its own file
        reason = type(err).__name__
        raise UserError(f"cannot load the tokenizer in {directory} ({reason}); delete it and train again") from None
    if tokenizer.vocab_size != manifest.get("vocab_size"):
        raise UserError(
            f"{directory}: vocabulary has {tokenizer.vocab_size} ids, manifest says {manifest.get('vocab_size')}; "
            "train again"
        )
    return tokenizer
