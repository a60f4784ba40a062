"""Trained-model folders: everything needed to evaluate a run later, written atomically and checked on load.

Layout of a checkpoint folder::

    manifest.json   model name, vocab size, digests (tokenizer, train text, every file), proxy flag, seconds, tokens
    config.json     the model's Config (or the n-gram's order) as JSON
    weights.pt      torch state_dict (neural models)   | counts.npz  n-gram counts (KneserNeyLM.save)
    tokenizer/      a copy of the saved tokenizer folder, so the run stays usable when the original moves
    *.json          any records the caller adds (e.g. the training run record)

The folder is built beside the target and renamed onto it, so a crash leaves either the old folder or the new
one, never half of one. Loading verifies every file against the manifest's sha256, so a truncated or edited file
is reported as corrupt instead of surfacing later as a shape error or silent garbage.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

import tokenizers_local
from eval.data import SplitText
from eval.errors import UserError
from eval.records import file_sha256, staged_folder, utc_now, write_json_atomic
from eval.records import read_manifest as read_json_manifest
from zoo.ngram import KneserNeyLM
from zoo.kinds import kind_of
from zoo.registry import lookup
from zoo.streaming import TorchTokenLM

if TYPE_CHECKING:  # zoo.train imports torch._dynamo (seconds), which loading and scoring a checkpoint never need
    from zoo.train import TrainResult

FORMAT = "subchar-checkpoint"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
CONFIG = "config.json"
TORCH_WEIGHTS = "weights.pt"
NGRAM_WEIGHTS = "counts.npz"
TOKENIZER_DIR = "tokenizer"


@dataclass
class Checkpoint:
    """A loaded run: the model (eval mode, on the requested device, or a KneserNeyLM) and its tokenizer."""

    path: Path
    manifest: dict[str, Any]
    config: dict[str, Any]
    model: Any
    tokenizer: Any

    @property
    def model_name(self) -> str:
        return self.manifest["model"]

    def token_lm(self, device: str | torch.device = "cpu"):
        """The model as a subchar TokenLM (the n-gram already is one)."""
        if kind_of(self.model_name).counted:
            return self.model
        return TorchTokenLM(self.model, device)


def folder_digest(folder: Path) -> str:
    """sha256 over (relative path, file sha256) of every file below ``folder``: the identity of a tokenizer."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(f"{path.relative_to(folder).as_posix()}\0{file_sha256(path)}\n".encode())
    return digest.hexdigest()


def load_tokenizer(folder: Path) -> tokenizers_local.LocalTokenizer:
    return tokenizers_local.load(folder)


def check_vocab(tokenizer, vocab_size: int, where: Path) -> None:
    if tokenizer.vocab_size != vocab_size:
        raise UserError(
            f"tokenizer {where} has {tokenizer.vocab_size} ids but the model has {vocab_size}; "
            "use the tokenizer the model was trained with"
        )


def save_checkpoint(
    out: str | Path,
    result: TrainResult,
    tokenizer_dir: str | Path,
    train_text: SplitText,
    records: dict[str, dict[str, Any]] | None = None,
) -> Path:
    """Write ``result``'s model, config and a copy of the tokenizer to ``out`` (replacing a checkpoint there)."""
    target = Path(out).expanduser()
    tokenizer_dir = Path(tokenizer_dir).expanduser()
    if target.exists() and not (target.is_dir() and (not any(target.iterdir()) or (target / MANIFEST).is_file())):
        raise UserError(f"{target} exists and is not a checkpoint folder; choose another --out path")
    vocab_size = int(result.config["vocab_size"])
    check_vocab(load_tokenizer(tokenizer_dir), vocab_size, tokenizer_dir)
    with staged_folder(target) as staging:
        write_json_atomic(staging / CONFIG, result.config)
        neural = kind_of(result.model_name).neural
        if neural:
            weights = TORCH_WEIGHTS
            torch.save({k: v.detach().cpu() for k, v in result.model.state_dict().items()}, staging / weights)
        else:
            weights = NGRAM_WEIGHTS
            result.model.save(staging / weights)
        shutil.copytree(tokenizer_dir, staging / TOKENIZER_DIR)
        for name, record in (records or {}).items():
            write_json_atomic(staging / name, record)
        manifest = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "model": result.model_name,
            "vocab_size": vocab_size,
            "weights": weights,
            "tokenizer_sha256": folder_digest(staging / TOKENIZER_DIR),
            "tokenizer_source": str(tokenizer_dir.resolve()),
            "train_text_sha256": train_text.digest(),
            "train_source": train_text.source,
            "train_chars": len(train_text.text),
            "proxy_train": train_text.proxy,
            "data_dir": train_text.data_dir,  # where `subchar eval` finds the val split when not told
            "train_seconds": result.seconds,
            "tokens_seen": result.tokens_seen,
            "steps": result.steps,
            "stop_reason": result.stop_reason,
            "device": result.device,
            # what replaying the training takes beyond config and seed (lab.export): each step's learning rate
            **({"lr_schedule": result.lrs, "compiled": result.compiled} if neural else {}),
            "created_utc": utc_now(),
            "files": {name: file_sha256(staging / name) for name in (CONFIG, weights)},
        }
        write_json_atomic(staging / MANIFEST, manifest)
    return target


def read_manifest(folder: Path) -> dict[str, Any]:
    return read_json_manifest(folder, MANIFEST, FORMAT, FORMAT_VERSION, "checkpoint", f"subchar train --out {folder}")


def verify_files(folder: Path, manifest: dict[str, Any]) -> None:
    for name, expected in manifest.get("files", {}).items():
        path = folder / name
        if not path.is_file():
            raise UserError(f"{folder} lacks {name}; the checkpoint is incomplete, train again")
        if file_sha256(path) != expected:
            raise UserError(f"{path} does not match its checksum in {MANIFEST} (corrupt); delete {folder} and train again")


def load_checkpoint(
    folder: str | Path, device: str | torch.device = "cpu", tokenizer_dir: str | Path | None = None
) -> Checkpoint:
    """Load and verify a checkpoint; ``tokenizer_dir`` replaces the bundled tokenizer (it must be the same one)."""
    folder = Path(folder).expanduser()
    manifest = read_manifest(folder)
    verify_files(folder, manifest)
    try:
        config = json.loads((folder / CONFIG).read_text(encoding="utf-8"))
        vocab_size = int(manifest["vocab_size"])
        name = str(manifest["model"])
    except (KeyError, TypeError, ValueError) as err:
        raise UserError(f"{folder / MANIFEST} lacks a valid {err}; train again") from None
    tokenizer_path = Path(tokenizer_dir).expanduser() if tokenizer_dir is not None else folder / TOKENIZER_DIR
    tokenizer = load_tokenizer(tokenizer_path)
    check_vocab(tokenizer, vocab_size, tokenizer_path)
    if folder_digest(tokenizer_path) != manifest.get("tokenizer_sha256"):
        which = "the bundled tokenizer is corrupt" if tokenizer_dir is None else f"{tokenizer_path} is another tokenizer"
        raise UserError(f"{which}: its files differ from the one {folder} was trained with; use that tokenizer")
    model = build_saved_model(folder, name, config, vocab_size, device)
    return Checkpoint(folder, manifest, config, model, tokenizer)


def build_saved_model(folder: Path, name: str, config: dict[str, Any], vocab_size: int, device):
    if config.get("vocab_size") != vocab_size:
        raise UserError(f"{folder / CONFIG} says vocab_size {config.get('vocab_size')}, the manifest {vocab_size}; train again")
    if kind_of(name).token_ngram:
        try:
            return KneserNeyLM.load(folder / NGRAM_WEIGHTS)
        except Exception as err:  # numpy raises many types for a damaged npz
            raise UserError(f"{folder / NGRAM_WEIGHTS} is unreadable ({type(err).__name__}); train again") from None
    config_cls, model_cls = lookup(name)
    try:
        model = model_cls(config_cls(**config))
        state = torch.load(folder / TORCH_WEIGHTS, map_location="cpu", weights_only=True)
        model.load_state_dict(state)
    except (TypeError, RuntimeError, OSError, EOFError, ValueError) as err:
        raise UserError(f"cannot rebuild {name} from {folder} ({type(err).__name__}: {str(err).splitlines()[0]}); train again") from None
    return model.to(device).eval()
