"""Trained-model folders: everything needed to evaluate a run later, written atomically and checked on load.

Layout of a checkpoint folder::

    manifest.json   model name, vocab size, digests (tokenizer, train text, every file), proxy flag, seconds, tokens
    config.json     the model's Config (or the n-gram's order) as JSON
    weights.pt      torch state_dict (neural models)   | counts.npz  n-gram counts (KneserNeyLM.save)
    char_counts.npz, chars.json   the mixture ngram+char-kn only: its char model's counts and characters
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
from zoo.char_baseline import CharKneserNey
from zoo.ngram import KneserNeyLM
from zoo.online_ngram import OnlineKneserNey
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
CHAR_WEIGHTS = "char_counts.npz"  # a mixture's char model: its counts (KneserNeyLM.save) ...
CHARS = "chars.json"  # ... and the characters with an id of their own, {"chars": "..."} (CharVocabulary.chars)
TOKENIZER_DIR = "tokenizer"


@dataclass
class Checkpoint:
    """A loaded run: the model (eval mode, on the requested device, or a KneserNeyLM) and its tokenizer."""

    path: Path
    manifest: dict[str, Any]
    config: dict[str, Any]
    model: Any
    tokenizer: Any
    char_counts: KneserNeyLM | None = None  # the mixture's char model (CHAR_WEIGHTS); None for any other model
    chars: str = ""

    @property
    def model_name(self) -> str:
        return self.manifest["model"]

    def char_model(self, adapt: bool = False) -> CharKneserNey:
        """A mixture's char model, fresh per call (``adapt``: it also learns the characters it observes)."""
        if self.char_counts is None:
            raise UserError(f"{self.path} is a {self.model_name} checkpoint; only ngram+char-kn holds a char model")
        return CharKneserNey(self.char_counts, self.chars, adapt)

    def token_lm(self, device: str | torch.device = "cpu", adapt: bool = False):
        """The model as a subchar TokenLM (the n-gram already is one). ``adapt``: an n-gram that also learns the
        text committed while it is scored (``zoo.online_ngram``, a fresh one per call); a neural model ignores it."""
        if kind_of(self.model_name).counted:
            return OnlineKneserNey(self.model) if adapt else self.model
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
    char_model: CharKneserNey | None = None,
) -> Path:
    """Write ``result``'s model, config and a copy of the tokenizer to ``out`` (replacing a checkpoint there); a
    mixture (``ngram+char-kn``) also writes its ``char_model``'s counts and characters."""
    target = Path(out).expanduser()
    tokenizer_dir = Path(tokenizer_dir).expanduser()
    if target.exists() and not (target.is_dir() and (not any(target.iterdir()) or (target / MANIFEST).is_file())):
        raise UserError(f"{target} exists and is not a checkpoint folder; choose another --out path")
    vocab_size = int(result.config["vocab_size"])
    check_vocab(load_tokenizer(tokenizer_dir), vocab_size, tokenizer_dir)
    if kind_of(result.model_name).mixture != (char_model is not None):
        raise ValueError(f"a {result.model_name} checkpoint is saved {'with' if char_model is None else 'without'} "
                         "a char model")
    with staged_folder(target) as staging:
        write_json_atomic(staging / CONFIG, result.config)
        neural = kind_of(result.model_name).neural
        if neural:
            weights = TORCH_WEIGHTS
            torch.save({k: v.detach().cpu() for k, v in result.model.state_dict().items()}, staging / weights)
        else:
            weights = NGRAM_WEIGHTS
            result.model.save(staging / weights)
        char_files = ()
        if char_model is not None:
            char_model.counts.save(staging / CHAR_WEIGHTS)
            write_json_atomic(staging / CHARS, {"chars": char_model.chars})
            char_files = (CHAR_WEIGHTS, CHARS)
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
            **({"lr_schedule": result.lrs, "compiled": result.compiled,
                "optimizer": (result.optimizer or {}).get("name", "adamw")} if neural else {}),
            "created_utc": utc_now(),
            "files": {name: file_sha256(staging / name) for name in (CONFIG, weights, *char_files)},
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
    char_counts, chars = load_char_model(folder, manifest, config) if kind_of(name).mixture else (None, "")
    return Checkpoint(folder, manifest, config, model, tokenizer, char_counts, chars)


def load_char_model(folder: Path, manifest: dict[str, Any], config: dict[str, Any]) -> tuple[KneserNeyLM, str]:
    """A mixture's char model: its counts and characters, each checksummed in the manifest (``verify_files``), and
    its weight and order in the config."""
    fix = "train it again (a grid cell: run `subchar compare` again)"
    weight, order = config.get("char_weight"), config.get("char_order")
    if not (isinstance(weight, (int, float)) and 0 <= weight <= 1 and type(order) is int and order >= 1):
        raise UserError(f"{folder / CONFIG} has char_weight {weight!r} and char_order {order!r}, not a weight in "
                        f"[0, 1] and an order >= 1; {fix}")
    listed = manifest.get("files") or {}
    for name in (CHAR_WEIGHTS, CHARS):
        if name not in listed:
            raise UserError(f"{folder / MANIFEST} lists no {name}, which an ngram+char-kn checkpoint holds; {fix}")
    try:
        chars = json.loads((folder / CHARS).read_text(encoding="utf-8"))["chars"]
        counts = KneserNeyLM.load(folder / CHAR_WEIGHTS)
    except Exception as err:  # numpy raises many types for a damaged npz
        raise UserError(f"the char model in {folder} is unreadable ({type(err).__name__}); {fix}") from None
    if not isinstance(chars, str) or counts.vocab_size != len(chars) + 1:
        raise UserError(f"{folder / CHARS} does not fit {folder / CHAR_WEIGHTS} (its {counts.vocab_size} ids are "
                        f"not one per character plus one); {fix}")
    return counts, chars


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
