import hashlib
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from eval import data, progress
from eval.data import (
    SplitText,
    fetch,
    load_split,
    raw_from_rows,
    require_train,
    stream_from_raw,
    val_window,
)
from eval.errors import UserError

# Rows as the Hugging Face export holds them: non-blank lines keep their "\n", blank lines are "".
ROWS = ["", " = Fixture heading = \n", "", " Café costs 3 @-@ 4 € ; 日本 .  \n", ""]
STREAM = "\n".join(ROWS)


def write_raw_dir(tmp_path, splits=("train", "valid", "test")):
    for split in splits:
        (tmp_path / f"wiki.{split}.raw").write_text(raw_from_rows(ROWS), encoding="utf-8")
    return tmp_path


def test_bake_rule_rebuilds_the_joined_rows():
    raw = raw_from_rows(ROWS)
    assert raw.startswith(" \n = Fixture heading = \n \n")
    assert stream_from_raw(raw) == STREAM
    assert STREAM.startswith("\n = Fixture heading = \n\n\n Café")


def test_loads_raw_dir_tagged_with_split(tmp_path):
    root = write_raw_dir(tmp_path)
    for split in ("train", "valid", "test"):
        text = load_split(split, root)
        assert text == SplitText(STREAM, split, str(root / f"wiki.{split}.raw"), proxy=False,
                                 data_dir=str(root.resolve()))


def test_loads_parquet_shards_written_here(tmp_path):
    shard_dir = tmp_path / "wikitext-103-raw-v1"
    shard_dir.mkdir()
    pq.write_table(pa.table({"text": ROWS[:2]}), shard_dir / "validation-00000-of-00002.parquet")
    pq.write_table(pa.table({"text": ROWS[2:]}), shard_dir / "validation-00001-of-00002.parquet")
    text = load_split("valid", tmp_path)
    assert text.text == STREAM and text.split == "valid"
    with pytest.raises(UserError, match="subchar data fetch"):
        load_split("test", tmp_path)


def test_fetch_materialises_raw_files_from_parquet(tmp_path):
    pq.write_table(pa.table({"text": ROWS}), tmp_path / "test-00000-of-00001.parquet")
    (path,) = fetch(tmp_path, ("test",))
    assert path.name == "wiki.test.raw"
    assert load_split("test", tmp_path).text == STREAM


def test_fetch_without_network_is_a_clear_error(tmp_path):
    def offline(split):
        raise UserError("cannot download Salesforce/wikitext (ConnectionError): no network?")

    with pytest.raises(UserError, match="no network"):
        fetch(tmp_path, ("valid",), rows_source=offline)
    assert not (tmp_path / "wiki.valid.raw").exists()


def test_offline_hub_fetch_fails_fast_and_removes_the_folder_it_made(tmp_path, monkeypatch):
    """A Hub that cannot be reached (here a closed local port) is one line within seconds, not datasets' retries."""
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    target = tmp_path / "new" / "data"
    started = time.monotonic()
    with pytest.raises(UserError, match="cannot reach the Hugging Face Hub .* --data-dir / --train-file"):
        fetch(target, ("valid",))
    assert time.monotonic() - started < 5
    assert not (tmp_path / "new").exists()  # the folders fetch made are removed
    existing = tmp_path / "mine"
    existing.mkdir()
    with pytest.raises(UserError):
        fetch(existing, ("valid",))
    assert existing.is_dir()


def test_missing_data_names_the_fix(tmp_path, monkeypatch):
    monkeypatch.delenv("SUBCHAR_DATA", raising=False)
    with pytest.raises(UserError, match="subchar data fetch"):
        load_split("valid", tmp_path / "nowhere")
    with pytest.raises(UserError, match="subchar data fetch"):
        load_split("valid", tmp_path)
    with pytest.raises(UserError, match="subchar data fetch"):
        load_split("valid")


def test_unknown_split_empty_and_non_utf8_files(tmp_path):
    with pytest.raises(UserError, match="unknown split 'validation'"):
        load_split("validation", tmp_path)
    (tmp_path / "wiki.valid.raw").write_bytes(b"")
    with pytest.raises(UserError, match="empty"):
        load_split("valid", tmp_path)
    (tmp_path / "wiki.valid.raw").write_bytes(b"caf\xe9\n")
    with pytest.raises(UserError, match="not UTF-8"):
        load_split("valid", tmp_path)


def test_proxy_train_file_is_flagged(tmp_path, monkeypatch):
    proxy = tmp_path / "stand_in.raw"
    proxy.write_text(raw_from_rows(ROWS), encoding="utf-8")
    text = load_split("train", tmp_path, train_file=proxy)
    assert text.proxy and text.split == "train" and text.text == STREAM
    monkeypatch.setenv("SUBCHAR_TRAIN_FILE", str(proxy))
    assert load_split("train", tmp_path).proxy
    monkeypatch.setenv("SUBCHAR_DATA", str(write_raw_dir(tmp_path, ("valid",))))
    assert not load_split("valid").proxy


def test_only_train_split_passes_require_train(tmp_path):
    root = write_raw_dir(tmp_path)
    assert require_train(load_split("train", root), "tokenizer training").split == "train"
    with pytest.raises(UserError, match="only use the train split, got the 'valid'"):
        require_train(load_split("valid", root), "tokenizer training")
    with pytest.raises(UserError, match="not a bare string"):
        require_train("some text", "tokenizer training")


def test_real_val_window(wikitext_dir):
    window = val_window(wikitext_dir)
    assert len(window.text) == 60_000 and window.split == "valid"
    blank, first_line = window.text.split("\n")[:2]  # the stream opens with an empty row, then the title line
    assert blank == "" and len(first_line) == 22
    assert hashlib.sha256(first_line.encode()).hexdigest()[:16] == "3fd675d574d1306c"
    assert hashlib.sha256(window.text.encode()).hexdigest()[:16] == "39acbda1055d67c0"
    full = load_split("valid", wikitext_dir).text
    assert len(full) == 1_145_909
    assert hashlib.sha256(full.encode()).hexdigest()[:16] == "714a24a5de745987"


BLOCK_TEXTS = [
    raw_from_rows(ROWS) * 3,
    " a\r\n \r\n b\rc\n\n \n€ 日本\n",  # \r\n and a lone \r are line ends to the bake rule too
    " no trailing newline\n \n last",
    "\n\n\n",
]


@pytest.mark.parametrize("text", BLOCK_TEXTS)
@pytest.mark.parametrize("block", [1, 2, 3, 5, 8, 64])
def test_block_reads_equal_whole_reads(tmp_path, monkeypatch, text, block):
    """Read a few bytes at a time (multi-byte characters and \\r\\n cut between blocks), a file bakes and decodes
    into exactly what the whole file does."""
    monkeypatch.setattr(data, "READ_BYTES", block)
    (tmp_path / "wiki.valid.raw").write_text(text, encoding="utf-8", newline="")
    (tmp_path / "plain.txt").write_text(text, encoding="utf-8", newline="")
    assert load_split("valid", tmp_path).text == stream_from_raw(text)
    assert data.read_utf8(tmp_path / "plain.txt") == text


@pytest.mark.parametrize("block", [1, 3, 4, 1 << 20])
def test_non_utf8_names_the_byte_whatever_the_block(tmp_path, monkeypatch, block):
    monkeypatch.setattr(data, "READ_BYTES", block)
    (tmp_path / "wiki.valid.raw").write_bytes("日本 a\n".encode() + b"b\xe9\n")
    with pytest.raises(UserError, match=r"not UTF-8 \(byte 10\)"):
        load_split("valid", tmp_path)
    (tmp_path / "wiki.valid.raw").write_bytes("a 日本".encode()[:-1])  # cut inside the last character
    with pytest.raises(UserError, match=r"not UTF-8 \(byte 5\)"):
        load_split("valid", tmp_path)


def test_parquet_batches_join_like_the_rows(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "PARQUET_BATCH_ROWS", 2)
    rows = ROWS * 3 + [""]
    pq.write_table(pa.table({"text": rows[:7]}), tmp_path / "train-00000-of-00002.parquet")
    pq.write_table(pa.table({"text": rows[7:]}), tmp_path / "train-00001-of-00002.parquet")
    assert load_split("train", tmp_path).text == "\n".join(rows)


def test_digest_is_the_utf8_sha256_hashed_in_slices(monkeypatch):
    monkeypatch.setattr(data, "DIGEST_CHARS", 3)
    assert SplitText(STREAM, "train", "x").digest() == hashlib.sha256(STREAM.encode("utf-8")).hexdigest()


def test_load_split_reports_each_phase_in_a_log(tmp_path, capsys, monkeypatch):
    """Not on a terminal, a long phase is one line on stderr, not a redrawn bar."""
    monkeypatch.setattr(progress, "LOG_AFTER_S", 0.0)  # every phase counts as long
    root = write_raw_dir(tmp_path)
    (root / "wiki.train.raw").write_text(raw_from_rows(ROWS * 2), encoding="utf-8")
    load_split("train", root, progress=True)
    lines = capsys.readouterr().err.splitlines()
    assert [line.split(":")[0] for line in lines] == ["read wiki.train.raw", "leak check"]
    assert lines[0].startswith(f"read wiki.train.raw: {len(raw_from_rows(ROWS * 2).encode()):,} bytes in ")
