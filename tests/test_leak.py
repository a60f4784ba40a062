"""Training text that holds validation text is refused by the train loader, before anything trains on it."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from eval.data import load_split, raw_from_rows
from eval.errors import UserError
from eval import data, leak
from eval.leak import MIN_PASSAGE_CHARS, SPLIT_CHARS, WINDOW_PASSAGES, LeakFinding, ValFingerprint, passages

ROOT = Path(__file__).resolve().parents[1]
# Invented articles in WikiText's shape: one paragraph per row, sentences separated by " . ".
VAL_ROWS = [
    "",
    " = Mirrow Abbey = \n",
    "",
    " Mirrow Abbey was a Benedictine house on the northern bank of the river Tarle , founded around 1120 by monks "
    "from the older priory at Castleford . The abbey grew rich on wool and on the tolls of a bridge that its lay "
    "brothers built and kept in repair for almost three centuries . Its church , begun in 1134 , was consecrated by "
    "the bishop of Lyndham in the spring of 1161 after a long quarrel about the rights of the parish . \n",
    "",
    " = = Dissolution = = \n",
    "",
    " The abbey was surrendered to the crown in 1539 , and most of its buildings were taken down for stone within "
    "a generation of the surrender . Only the gatehouse and a fragment of the west range still stand today , kept "
    "as a scheduled monument by the county council and opened to visitors every summer . \n",
]
TRAIN_ROWS = [
    "",
    " = Harlow Mill = \n",
    "",
    " Harlow Mill is a former watermill on the river Ende , first recorded in a survey of 1086 and rebuilt several "
    "times before it stopped grinding corn in the years after the First World War . \n",
]


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    (tmp_path / "wiki.valid.raw").write_text(raw_from_rows(VAL_ROWS), encoding="utf-8")
    (tmp_path / "wiki.test.raw").write_text(raw_from_rows(TRAIN_ROWS), encoding="utf-8")
    return tmp_path


def write(path: Path, rows: list[str]) -> Path:
    path.write_text(raw_from_rows(rows), encoding="utf-8")
    return path


def test_passages_are_long_pieces_between_lines_and_sentences():
    found = passages("".join(VAL_ROWS))
    assert all(len(p) >= MIN_PASSAGE_CHARS and " . " not in p and "\n" not in p for p in found)
    assert len(found) == 5  # the five sentences; the headings are too short to count


def test_clean_proxy_passes(data_dir: Path, tmp_path: Path):
    train = load_split("train", data_dir, write(tmp_path / "clean.raw", TRAIN_ROWS * 3))
    assert train.proxy and train.split == "train"


@pytest.mark.parametrize(
    "how",
    [
        "renamed copy of the val split",
        "one val paragraph pasted as a line",
        "one val paragraph pasted mid-line",
    ],
)
def test_val_text_in_a_proxy_is_refused(data_dir: Path, tmp_path: Path, how: str):
    paragraph = VAL_ROWS[3]
    if how.startswith("renamed"):
        rows = VAL_ROWS
    elif how.endswith("as a line"):
        rows = TRAIN_ROWS + [paragraph] + TRAIN_ROWS
    else:
        rows = [TRAIN_ROWS[3].rstrip("\n") + paragraph] + TRAIN_ROWS
    path = write(tmp_path / "proxy.raw", rows)
    with pytest.raises(UserError, match=r"proxy.raw contains validation text .* pass a train-split file"):
        load_split("train", data_dir, path)


def test_val_beside_the_proxy_is_checked_without_a_data_dir(data_dir: Path):
    copy = write(data_dir / "mine.raw", VAL_ROWS)
    with pytest.raises(UserError, match="contains validation text"):
        load_split("train", None, copy)


def test_the_val_file_itself_is_refused_by_name(data_dir: Path):
    with pytest.raises(UserError, match="is the validation split"):
        load_split("train", None, data_dir / "wiki.valid.raw")


def test_a_real_train_split_in_the_data_dir_is_checked_too(data_dir: Path):
    write(data_dir / "wiki.train.raw", TRAIN_ROWS + VAL_ROWS)
    with pytest.raises(UserError, match="wiki.train.raw contains validation text"):
        load_split("train", data_dir)
    write(data_dir / "wiki.train.raw", TRAIN_ROWS)
    assert load_split("train", data_dir).split == "train"


def test_tokenizer_train_on_val_is_one_line_before_any_work(data_dir: Path, tmp_path: Path):
    out = tmp_path / "tok"
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "lab.cli", "tokenizer", "train", "--family", "bpe", "--vocab-size", "512",
         "--data-dir", str(data_dir), "--train-file", str(data_dir / "wiki.valid.raw"), "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 2 and time.monotonic() - started < 30
    assert done.stderr.count("\n") == 1 and "is the validation split" in done.stderr and "Traceback" not in done.stderr
    assert not out.exists()


def test_real_splits(wikitext_dir: Path, tmp_path: Path):
    """The test split (our proxy) passes; the val split, and a text with one window paragraph spliced in, do not."""
    assert load_split("train", wikitext_dir, wikitext_dir / "wiki.test.raw").proxy
    val = load_split("valid", wikitext_dir).text
    paragraph = max(val[:60_000].split("\n"), key=len)
    test_text = (wikitext_dir / "wiki.test.raw").read_text(encoding="utf-8")
    spliced = tmp_path / "spliced.txt"
    spliced.write_text(test_text[:500_000] + paragraph + test_text[500_000:], encoding="utf-8")
    with pytest.raises(UserError, match="contains validation text"):
        load_split("train", wikitext_dir, spliced)
    renamed = tmp_path / "renamed.txt"
    renamed.write_text(val, encoding="utf-8")
    with pytest.raises(UserError, match="contains validation text"):
        load_split("train", wikitext_dir, renamed)
    fingerprint = ValFingerprint.of(val, 60_000)
    assert len(fingerprint.window) > 100 and len(fingerprint.split) > 1_000


def sentence(tag: str, chars: int) -> str:
    """A passage of exactly ``chars`` characters (no line end, no " . ")."""
    return (f" {tag} " + "w" * chars)[:chars]


def fingerprint_of(window: list[str], rest: list[str]) -> ValFingerprint:
    """A val split whose scored window holds the passages ``window`` and whose remainder holds ``rest``."""
    window_text = "\n".join(window) + "\n"
    return ValFingerprint.of(window_text + "\n".join(rest) + "\n", len(window_text))


def test_passages_start_at_the_minimum_length():
    assert passages(sentence("a", MIN_PASSAGE_CHARS)) == {sentence("a", MIN_PASSAGE_CHARS)}
    assert passages(sentence("a", MIN_PASSAGE_CHARS - 1)) == set()


def test_window_passages_refuse_at_exactly_the_threshold():
    window = [sentence(f"win{i}", MIN_PASSAGE_CHARS) for i in range(WINDOW_PASSAGES)]
    fingerprint = fingerprint_of(window, [])
    one_short = fingerprint.find("\n".join(window[:-1]))
    assert one_short == LeakFinding(WINDOW_PASSAGES - 1, (WINDOW_PASSAGES - 1) * MIN_PASSAGE_CHARS)
    assert not one_short.leaks
    assert fingerprint.find(" . ".join(window)).leaks  # joined mid-line by the sentence separator


def test_split_passages_outside_the_window_count_as_split_chars_only():
    """Passages of the split past the window are not window passages, however many: below SPLIT_CHARS they pass."""
    rest = [sentence(f"rest{i}", MIN_PASSAGE_CHARS) for i in range(WINDOW_PASSAGES + 3)]
    window = [sentence(f"win{i}", MIN_PASSAGE_CHARS) for i in range(WINDOW_PASSAGES)]
    finding = fingerprint_of(window, rest).find("\n".join(rest))
    assert finding == LeakFinding(0, len(rest) * MIN_PASSAGE_CHARS) and not finding.leaks


def test_split_chars_refuse_at_exactly_the_threshold():
    pieces = [sentence(f"rest{i}", 100) for i in range(SPLIT_CHARS // 100 - 1)]
    fingerprint = fingerprint_of([sentence("win", 90)], [*pieces, sentence("last", 99), sentence("full", 100)])
    below = "\n".join([*pieces, sentence("last", 99)])
    assert fingerprint.find(below) == LeakFinding(0, SPLIT_CHARS - 1) and not fingerprint.find(below).leaks
    assert fingerprint.find("\n".join([*pieces, sentence("full", 100)])) == LeakFinding(0, SPLIT_CHARS)
    assert fingerprint.find("\n".join([*pieces, sentence("full", 100)])).leaks


@pytest.mark.parametrize("chunk", [1, 7, 100, 1 << 22])
def test_the_check_in_chunks_finds_what_the_whole_text_holds(monkeypatch, chunk):
    """Chunks end after a line end, so no passage or " . " is cut: any chunk size finds the same passages."""
    monkeypatch.setattr(leak, "CHUNK_CHARS", chunk)
    window = [sentence(f"win{i}", 85 + i) for i in range(3)]
    text = "x . " + window[0] + " . y\n" + "\n".join(TRAIN_ROWS) + window[1] + " . " + window[2]
    assert list(leak.line_chunks(text, chunk)) and "".join(leak.line_chunks(text, chunk)) == text
    assert fingerprint_of(window, []).find(text) == LeakFinding(3, 85 + 86 + 87)


def test_a_command_checks_a_text_once(data_dir: Path, tmp_path: Path, monkeypatch):
    path = write(tmp_path / "once.raw", TRAIN_ROWS * 5)
    checked = []
    monkeypatch.setattr(data, "LEAK_FINDINGS", {})
    monkeypatch.setattr(ValFingerprint, "find", lambda self, text, advanced: checked.append(text) or LeakFinding(0, 0))
    load_split("train", data_dir, path)
    load_split("train", data_dir, path)
    assert len(checked) == 1
