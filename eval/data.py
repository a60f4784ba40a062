"""WikiText-103-raw-v1 exactly as the benchmark scores it, tagged with its split.

The benchmark bakes each split from the Hugging Face parquet export, whose ``text`` column holds one row per
raw line (a non-blank line keeps its trailing ``\\n``; a blank line ``" \\n"`` becomes ``""``), and scores
``"\\n".join(rows)``. The same stream is rebuilt from a ``wiki.<split>.raw`` file by
:func:`stream_from_raw`. Sources, in order: ``wiki.<split>.raw`` in the data directory, parquet shards in it
(``<split>-*.parquet`` as Hugging Face names them, anywhere below), or :func:`fetch` from the Hub.

Text comes back as :class:`SplitText` so code that must only ever see the train split (tokenizer and model
training) can refuse anything else. A *proxy* train file (``--train-file`` / ``SUBCHAR_TRAIN_FILE``) may stand in
for the 540 MB train split during development; it is tagged ``proxy=True`` and results built on it say so.
"""

from __future__ import annotations

import codecs
import hashlib
import os
import shutil
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import Literal, get_args

from eval.errors import UserError
from eval.leak import LeakFinding, ValFingerprint, refuse_val_file_name
from eval.progress import phase
from eval.records import write_text_atomic

Split = Literal["train", "valid", "test"]
SPLITS: tuple[str, ...] = get_args(Split)
VAL_WINDOW_CHARS = 60_000
HF_DATASET = ("Salesforce/wikitext", "wikitext-103-raw-v1")
HF_SPLIT_NAMES = {"train": "train", "valid": "validation", "test": "test"}
FETCH_HINT = "run `subchar data fetch --data-dir DIR` or pass --data-dir / set SUBCHAR_DATA"
READ_BYTES = 1 << 26  # a file is read, decoded and baked this many bytes at a time
DIGEST_CHARS = 1 << 24  # text hashed per UTF-8 encode
PARQUET_BATCH_ROWS = 1 << 16


@dataclass(frozen=True)
class SplitText:
    """Text of one split, with where it came from; ``proxy`` marks a stand-in for the train split."""

    text: str
    split: Split
    source: str
    proxy: bool = False
    data_dir: str | None = None  # the data directory it was loaded with (a proxy's: its own folder, if none given)

    def prefix(self, chars: int | None) -> SplitText:
        """The first ``chars`` characters (all when None), still tagged with the same split."""
        return self if chars is None else replace(self, text=self.text[:chars])

    def digest(self) -> str:
        """sha256 of the UTF-8 text, to tie tokenizers and models to the exact text they saw (computed once)."""
        return self._sha256

    @cached_property
    def _sha256(self) -> str:
        return text_sha256(self.text)


def text_sha256(text: str) -> str:
    """sha256 of the UTF-8 text, hashed in slices so no UTF-8 copy of a 540 MB text is made."""
    digest = hashlib.sha256()
    for start in range(0, len(text), DIGEST_CHARS):
        digest.update(text[start : start + DIGEST_CHARS].encode("utf-8"))
    return digest.hexdigest()


def require_train(text: SplitText | str, purpose: str) -> SplitText:
    """Return ``text`` if it is the train split (or a flagged proxy for it), else raise a clear error."""
    if not isinstance(text, SplitText):
        raise UserError(
            f"{purpose} needs text from the data loader (eval.data.load_split('train')), not a bare string"
        )
    if text.split != "train":
        raise UserError(
            f"{purpose} may only use the train split, got the {text.split!r} split; load 'train' or pass --train-file"
        )
    return text


def check_split(split: str) -> Split:
    if split not in SPLITS:
        raise UserError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")
    return split  # type: ignore[return-value]


def stream_from_raw(raw: str) -> str:
    """The benchmark's stream for a raw file: blank lines become empty rows, rows are joined by ``\\n``."""
    return "\n".join(line if line.strip() else "" for line in raw.splitlines(keepends=True))


def raw_from_rows(rows: list[str]) -> str:
    """Inverse of the bake rule: the ``.raw`` file whose stream is ``"\\n".join(rows)``."""
    return "".join(row if row else " \n" for row in rows)


def resolve_data_dir(data_dir: str | os.PathLike | None) -> Path | None:
    chosen = data_dir if data_dir is not None else os.environ.get("SUBCHAR_DATA")
    return Path(chosen).expanduser() if chosen else None


def resolve_train_file(train_file: str | os.PathLike | None) -> Path | None:
    chosen = train_file if train_file is not None else os.environ.get("SUBCHAR_TRAIN_FILE")
    return Path(chosen).expanduser() if chosen else None


def read_utf8(path: Path, hint: str = FETCH_HINT, bake: bool = False, progress: bool = False) -> str:
    """The UTF-8 text of ``path`` (``bake``: turned into the benchmark's stream, :func:`stream_from_raw`).

    Read, decoded and baked block by block, cut after a line end (so the bake of the pieces, joined by ``\\n``,
    is the bake of the whole): the peak is about twice the text, its pieces and the joined string, where
    decoding and splitting a 540 MB file whole held four or five copies.
    """
    try:
        handle = open(path, "rb")
    except FileNotFoundError:
        raise UserError(f"file not found: {path}; {hint}") from None
    except IsADirectoryError:
        raise UserError(f"{path} is a directory, expected a text file") from None
    decoder = codecs.getincrementaldecoder("utf-8")()
    pieces: list[str] = []
    carry, read = "", 0
    with handle, phase(f"read {path.name}", path.stat().st_size, "byte", progress) as shown:
        while True:
            block = handle.read(READ_BYTES)
            pending = len(decoder.getstate()[0])  # bytes of a character the last block cut in two
            try:
                text = carry + decoder.decode(block, final=not block)
            except UnicodeDecodeError as err:
                offset = read - pending + err.start
                raise UserError(f"{path} is not UTF-8 (byte {offset}); re-save it as UTF-8") from None
            read += len(block)
            shown.update(len(block))
            cut = text.rfind("\n") + 1 if bake and block else len(text)
            if cut:
                pieces.append(stream_from_raw(text[:cut]) if bake else text[:cut])
            carry = text[cut:]
            if not block:
                break
    if not pieces:
        raise UserError(f"{path} is empty; point at a non-empty text file")
    return ("\n" if bake else "").join(pieces)


def load_split(
    split: str,
    data_dir: str | os.PathLike | None = None,
    train_file: str | os.PathLike | None = None,
    *,
    progress: bool = False,
) -> SplitText:
    """Load one split as the benchmark's stream; ``train_file`` (or SUBCHAR_TRAIN_FILE) is a proxy train text.

    A ``.raw`` proxy file goes through the same bake rule as the real splits; any other file is used as is.
    Train text is refused when it holds validation text (``eval.leak``), checked against the valid split of the
    data directory and of the proxy file's own folder, whichever are there. Every source is read in blocks
    (``progress``: with a bar or a log line per phase), so the 540 MB split costs about twice its size at peak.
    """
    split = check_split(split)
    root = resolve_data_dir(data_dir)
    if split == "train":
        proxy_path = resolve_train_file(train_file)
        if proxy_path is not None:
            refuse_val_file_name(proxy_path)
            text = read_utf8(proxy_path, "check the --train-file path (or SUBCHAR_TRAIN_FILE)",
                             bake=proxy_path.suffix == ".raw", progress=progress)
            home = root if root is not None else proxy_path.parent  # where its val split is looked for (leak, eval)
            train = SplitText(text, "train", str(proxy_path), proxy=True, data_dir=str(home.resolve()))
            refuse_val_leak(train, [root, proxy_path.parent], progress)
            return train
    if root is None:
        raise UserError(f"no data directory given for the {split} split; {FETCH_HINT}")
    if not root.is_dir():
        raise UserError(f"data directory {root} does not exist; {FETCH_HINT}")
    loaded = split_in_folder(root, split, progress)
    if loaded is None:
        hint = " (or pass --train-file PATH for a proxy train text)" if split == "train" else ""
        raise UserError(f"no wiki.{split}.raw or {split} parquet shards in {root}; {FETCH_HINT}{hint}")
    if split == "train":
        refuse_val_leak(loaded, [root], progress)
    return loaded


def split_in_folder(root: Path, split: Split, progress: bool = False) -> SplitText | None:
    """``wiki.<split>.raw`` or the split's parquet shards in ``root``, baked into the stream; None if absent."""
    raw_path = root / f"wiki.{split}.raw"
    if raw_path.is_file():
        return SplitText(read_utf8(raw_path, bake=True, progress=progress), split, str(raw_path),
                         data_dir=str(root.resolve()))
    shards = parquet_shards(root, split)
    if shards:
        return SplitText(stream_from_parquet(shards, progress), split, f"{root} ({len(shards)} parquet shards)",
                         data_dir=str(root))
    return None


def has_split(root: Path, split: Split) -> bool:
    """Whether ``root`` holds the split, without reading it."""
    return (root / f"wiki.{split}.raw").is_file() or bool(parquet_shards(root, split))


LEAK_FINDINGS: dict[tuple[str, str], LeakFinding] = {}  # (train digest, valid digest) -> what the check found


def refuse_val_leak(train: SplitText, folders: list[Path | None], progress: bool = False) -> None:
    """Check ``train`` against the valid split of each of ``folders`` that has one (none: nothing to leak).

    The finding is remembered by the two texts' digests, so a command that loads the same text again (or a
    process running several cells) checks it once.
    """
    for folder in {folder.resolve() for folder in folders if folder is not None and folder.is_dir()}:
        val = split_in_folder(folder, "valid")
        if val is None:
            continue
        key = (train.digest(), val.digest())
        if key not in LEAK_FINDINGS:
            with phase("leak check", len(train.text), enabled=progress) as shown:
                LEAK_FINDINGS[key] = ValFingerprint.of(val.text, VAL_WINDOW_CHARS).find(train.text, shown.update)
        LEAK_FINDINGS[key].refuse(train.source)


def val_window(data_dir: str | os.PathLike | None = None, chars: int = VAL_WINDOW_CHARS) -> SplitText:
    """The scored window: the first ``chars`` characters of the validation stream."""
    return load_split("valid", data_dir).prefix(chars)


def parquet_shards(root: Path, split: Split) -> list[Path]:
    name = HF_SPLIT_NAMES[split]
    return sorted(p for p in root.rglob(f"{name}-*.parquet") if p.is_file())


def parquet_batches(shards: list[Path]) -> Iterator[list[str]]:
    """The ``text`` rows of the shards, a batch at a time (a whole table of the train split is ~1 GB in Arrow)."""
    import pyarrow.parquet as pq  # heavy, and needed only when the data folder holds parquet shards

    for shard in shards:
        try:
            for batch in pq.ParquetFile(shard).iter_batches(batch_size=PARQUET_BATCH_ROWS, columns=["text"]):
                yield batch.column("text").to_pylist()
        except Exception as err:  # pyarrow raises several types for unreadable files
            raise UserError(
                f"cannot read parquet shard {shard} ({type(err).__name__}); delete it and fetch again") from None


def rows_from_parquet(shards: list[Path]) -> list[str]:
    return [row for batch in parquet_batches(shards) for row in batch]


def stream_from_parquet(shards: list[Path], progress: bool = False) -> str:
    """``"\\n".join(rows)`` of the shards, joined per batch first (so the rows are never all held as objects)."""
    pieces = []
    with phase(f"read {len(shards)} parquet shards", sum(p.stat().st_size for p in shards), "byte", progress) as shown:
        for shard in shards:
            pieces.extend("\n".join(batch) for batch in parquet_batches([shard]) if batch)
            shown.update(shard.stat().st_size)
    return "\n".join(pieces)


def hub_reachable(timeout_s: float = 3.0) -> bool:
    """Whether the Hugging Face Hub answers at all: ``datasets`` itself retries for half a minute when offline."""
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    try:
        urllib.request.urlopen(urllib.request.Request(endpoint, method="HEAD"), timeout=timeout_s).close()
    except urllib.error.HTTPError:
        return True  # it answered, if only with an error status
    except (OSError, ValueError):  # URLError, refused, timed out, unresolvable; ValueError: a malformed endpoint
        return False
    return True


def rows_from_hub(split: Split) -> list[str]:
    """Rows of one split from the Hugging Face Hub (needs the network)."""
    if not hub_reachable():
        raise UserError(
            f"cannot reach the Hugging Face Hub to download {HF_DATASET[0]}/{HF_DATASET[1]}: no network? copy "
            "wiki.<split>.raw files or parquet shards into the data directory, or pass --data-dir / --train-file"
        )
    try:  # heavy, and needed only to download the splits
        import datasets
    except ImportError:
        raise UserError("the `datasets` package is missing; pip install datasets") from None
    try:
        table = datasets.load_dataset(*HF_DATASET, split=HF_SPLIT_NAMES[split])
    except (ConnectionError, OSError) as err:
        raise UserError(
            f"cannot download {HF_DATASET[0]}/{HF_DATASET[1]} ({type(err).__name__}): no network? "
            "copy wiki.<split>.raw files or parquet shards into the data directory instead"
        ) from None
    return list(table["text"])


def fetch(data_dir: str | os.PathLike, splits: tuple[str, ...] = SPLITS, rows_source=rows_from_hub) -> list[Path]:
    """Write ``wiki.<split>.raw`` for each split (from the Hub, or from local parquet shards) atomically.

    Every file is checked to bake back into exactly ``"\\n".join(rows)`` before it is kept.
    """
    root = Path(data_dir).expanduser().absolute()
    made = next((folder for folder in [*reversed(root.parents), root] if not folder.exists()), None)
    root.mkdir(parents=True, exist_ok=True)
    try:
        return fetch_into(root, splits, rows_source)
    except BaseException:
        if made is not None:  # a refused or interrupted fetch leaves no folder of its own behind
            shutil.rmtree(made, ignore_errors=True)
        raise


def fetch_into(root: Path, splits: tuple[str, ...], rows_source) -> list[Path]:
    written = []
    for split in map(check_split, splits):
        target = root / f"wiki.{split}.raw"
        if target.is_file():
            written.append(target)
            continue
        shards = parquet_shards(root, split)
        rows = rows_from_parquet(shards) if shards else rows_source(split)
        raw = raw_from_rows(rows)
        if stream_from_raw(raw) != "\n".join(rows):
            raise UserError(f"the {split} rows do not round-trip through the raw format; keep the parquet shards instead")
        write_text_atomic(target, raw)
        written.append(target)
    return written
