"""The contract every learned tokenizer keeps, and what is common to all of them: decoding, saving, metadata.

Decoding goes through ``surfaces()`` (the exact UTF-8 bytes each id adds to the stream), so decode, the
character adapter and the round-trip checks all rest on one table.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from eval.errors import UserError
from eval.records import file_sha256, staged_folder, utc_now, write_json_atomic

MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = "subchar-tokenizer"
MANIFEST_VERSION = 1
END_OF_TEXT = "<|endoftext|>"  # the one special token of every family: stream boundary / start symbol for LMs
BYTE_TOKENS = tuple(f"<0x{byte:02X}>" for byte in range(256))  # byte fallback pieces, SentencePiece's spelling


@dataclass(frozen=True)
class TrainInfo:
    """Where a tokenizer came from: the text it saw, the options, and the cost of learning it."""

    requested_vocab_size: int
    options: dict[str, Any]
    train_split: str
    train_source: str
    train_proxy: bool
    train_sha256: str
    train_chars: int
    training_seconds: float
    libraries: dict[str, str]
    created_utc: str = field(default_factory=utc_now)


class LocalTokenizer(ABC):
    """A tokenizer learned on the train split that loses nothing: decode(encode(x)) == x for every string.

    Subclasses wrap one library object (``backend``) and say how each id maps to bytes; this class turns that
    table into decode, vocabulary size and the saved form.
    """

    family: ClassVar[str]
    backend_file: ClassVar[str]
    option_defaults: ClassVar[dict[str, Any]] = {}
    # whether ``train_backend(progress=True)`` draws the library's own live bars (on a terminal's stdout); the
    # phase bar of ``train_tokenizer`` then stays off, so one display, not two, reports the learning
    library_bars: ClassVar[bool] = False

    def __init__(self, backend: Any, info: TrainInfo) -> None:
        self.backend = backend
        self.info = info
        self._surfaces = self._build_surfaces()
        self._special_ids = frozenset(self._build_special_ids())
        self._byte_fallback_ids = frozenset(self._build_byte_fallback_ids())

    # --- what each family provides -------------------------------------------------------------------------
    @classmethod
    @abstractmethod
    def train_backend(cls, text: str, vocab_size: int, progress: bool, **options: Any) -> Any:
        """Learn the library object from ``text`` (the train split)."""

    @classmethod
    @abstractmethod
    def read_backend(cls, path: Path) -> Any:
        """Load the library object written by ``write_backend``."""

    @abstractmethod
    def write_backend(self, path: Path) -> None:
        """Write the library object in the library's own format."""

    @abstractmethod
    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``, no special tokens added."""

    @abstractmethod
    def pretokenize(self, text: str) -> list[tuple[int, int]]:
        """Character spans covering ``text`` that no token crosses (encoding spans one by one gives encode(text))."""

    @abstractmethod
    def _build_surfaces(self) -> list[bytes]:
        """The bytes each id adds to the stream (b"" for special tokens)."""

    @abstractmethod
    def _build_special_ids(self) -> set[int]:
        """Ids that stand for no text."""

    @abstractmethod
    def _build_byte_fallback_ids(self) -> set[int]:
        """The ``<0xNN>`` ids that spell characters the learned vocabulary lacks (none for byte-level BPE)."""

    # --- shared behaviour ------------------------------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        return len(self._surfaces)

    def surfaces(self) -> list[bytes]:
        return list(self._surfaces)

    def special_ids(self) -> set[int]:
        return set(self._special_ids)

    def fallback_chars(self, text: str) -> int:
        """How many characters of ``text`` the learned vocabulary cannot cover and fallback tokens spell.

        A character spelled in bytes contributes exactly one UTF-8 lead byte (one not of the form 0b10xxxxxx).
        """
        fallback, surfaces = self._byte_fallback_ids, self._surfaces
        return sum(1 for i in self.encode(text) if i in fallback and surfaces[i][0] & 0xC0 != 0x80)

    def decode(self, ids: list[int]) -> str:
        """The text of ``ids``; a sequence cut inside a multi-byte character decodes that character as U+FFFD."""
        surfaces = self._surfaces
        try:
            parts = [surfaces[i] for i in ids]
        except (IndexError, TypeError):
            parts = None
        if parts is None or (parts and min(ids) < 0):  # negative ids would index from the end of the table
            bad = next(i for i in ids if not isinstance(i, int) or not 0 <= i < len(surfaces))
            raise UserError(f"token id {bad!r} is outside this {self.family} vocabulary (0..{len(surfaces) - 1})")
        data = b"".join(parts)
        return data.decode("utf-8", errors="replace")

    def manifest(self, backend_sha256: str) -> dict[str, Any]:
        return {
            "format": MANIFEST_FORMAT,
            "format_version": MANIFEST_VERSION,
            "family": self.family,
            "vocab_size": self.vocab_size,
            "backend_file": self.backend_file,
            "backend_sha256": backend_sha256,
            **asdict(self.info),
        }

    def save(self, directory: str | Path) -> Path:
        """Write ``manifest.json`` and the backend file into a fresh folder, then rename it onto ``directory``."""
        target = Path(directory).expanduser()
        if target.exists() and not is_replaceable(target):
            raise UserError(f"{target} exists and is not a saved tokenizer; choose another --out path")
        with staged_folder(target) as staging:
            self.write_backend(staging / self.backend_file)
            write_json_atomic(staging / MANIFEST_NAME, self.manifest(file_sha256(staging / self.backend_file)))
        return target

    def __repr__(self) -> str:
        proxy = ", proxy train text" if self.info.train_proxy else ""
        return f"<{type(self).__name__} family={self.family} vocab_size={self.vocab_size}{proxy}>"


def is_replaceable(path: Path) -> bool:
    """Only an empty folder or a folder holding a saved tokenizer may be overwritten."""
    return path.is_dir() and (not any(path.iterdir()) or (path / MANIFEST_NAME).is_file())
