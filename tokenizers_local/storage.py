"""Loading a saved tokenizer folder (manifest.json + the library's own file), with every failure explained."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

from eval.errors import UserError
from eval.records import file_sha256, read_manifest as read_json_manifest
from tokenizers_local.base import (
    MANIFEST_FORMAT,
    MANIFEST_NAME,
    MANIFEST_VERSION,
    LocalTokenizer,
    TrainInfo,
)
from tokenizers_local.families import family_class


def read_manifest(directory: Path) -> dict:
    return read_json_manifest(directory, MANIFEST_NAME, MANIFEST_FORMAT, MANIFEST_VERSION, "tokenizer",
                              f"subchar tokenizer train --out {directory}")


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
