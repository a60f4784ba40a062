"""tokenizers_local on a small invented fixture: exact round trips, surfaces, spans, saving, refusals, tiktoken."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eval.data import SplitText
from eval.errors import UserError
from lab.cli import main as subchar_main
from tokenizers_local import END_OF_TEXT, FAMILIES, LocalTokenizer, load, to_tiktoken, train_tokenizer
from tokenizers_local.hf_common import ENCODE_CHUNK_CHARS
from tokenizers_local.text_stream import chunks

# Invented text in WikiText's shape: spaced punctuation, " @-@ ", headings, blank rows, some non-ASCII.
FIXTURE_ROWS = [
    " = The Lantern Keepers = ",
    "",
    " The lantern keepers of Varnholt were a guild of lamp @-@ lighters , founded in 1843 by Éloise Marchand . ",
    " Their hall stood beside the canal , and the river – slow and brown – carried their boats to the sea . ",
    "",
    " = = Early history = = ",
    "",
    " In 1851 the guild had 240 members ; by 1870 it had 1 @,@ 200 . The café on the square served them . ",
    " A visitor from Tokyo ( 東京 ) wrote that the lights were \" like stars on water \" . ",
    " The keepers walked the streets at dusk , lighting each lamp in turn , and again at dawn to put them out . ",
    "",
    " = = Decline = = ",
    "",
    " Electric light reached Varnholt in 1903 . Within ten years the guild had fewer than 30 members , and the hall ",
    " was sold to the city . The last keeper , Jonas Weller , died in 1931 at the age of 88 . ",
]
FIXTURE = "\n".join(FIXTURE_ROWS * 6)
TRAIN = SplitText(FIXTURE, "train", "fixture", proxy=True)
VOCAB = 400
TRICKY = [
    "",
    "a",
    "   ",
    "a  b   c    d",
    "\n",
    "\n\n\n",
    " \n\n X",
    "line one \n\n line two\n",
    " lamp @-@ lighters @,@ 1 @.@ 5 ",
    "Éloise café é – — 日本 東京 😀 👩‍👩‍👧",
    "tab\there\r\nand\x00nul",
    "## #x ### a##b",
    "<|endoftext|> <0x41> [UNK] <unk>",
    "\u2581 \u2581\u2581x",
    "Ωmega never seen: ß ø ñ",
    "x" * 300,
]

TRAINED = {family: train_tokenizer(TRAIN, family, VOCAB) for family in sorted(FAMILIES)}


@pytest.fixture(params=sorted(FAMILIES))
def tokenizer(request) -> LocalTokenizer:
    return TRAINED[request.param]


def assert_exact(tok: LocalTokenizer, text: str) -> None:
    ids = tok.encode(text)
    surfaces = tok.surfaces()
    assert tok.decode(ids) == text
    assert b"".join(surfaces[i] for i in ids) == text.encode("utf-8")
    assert not set(ids) & tok.special_ids()


def assert_spans(tok: LocalTokenizer, text: str) -> None:
    spans = tok.pretokenize(text)
    ends = [0] + [end for _, end in spans]
    assert [start for start, _ in spans] == ends[:-1] and ends[-1] == len(text)
    assert all(start < end for start, end in spans)
    assert [i for start, end in spans for i in tok.encode(text[start:end])] == tok.encode(text)


@pytest.mark.parametrize("text", TRICKY + [FIXTURE])
def test_round_trip_surfaces_and_spans(tokenizer: LocalTokenizer, text: str) -> None:
    assert_exact(tokenizer, text)
    assert_spans(tokenizer, text)


@settings(max_examples=40, deadline=None)
@given(text=st.text(alphabet=st.sampled_from(list("ab é–日😀#\u2581\n\t@-,.0")) | st.characters(exclude_categories=("Cs",)), max_size=40))
def test_any_string_round_trips(text: str) -> None:
    for tok in TRAINED.values():
        assert_exact(tok, text)
        assert_spans(tok, text)


def test_long_text_is_encoded_in_chunks_with_the_same_ids(tokenizer: LocalTokenizer) -> None:
    long_text = FIXTURE * 3
    assert len(long_text) > ENCODE_CHUNK_CHARS
    assert len(list(chunks(long_text, ENCODE_CHUNK_CHARS))) > 1
    spans = tokenizer.pretokenize(long_text)
    assert tokenizer.encode(long_text) == [i for a, b in spans for i in tokenizer.encode(long_text[a:b])]
    assert_exact(tokenizer, long_text)


def test_chunks_cut_only_before_a_spaced_row() -> None:
    text = "ab \n\nX\n Y z\n\n\n W\n"
    pieces = list(chunks(text, 1))
    assert "".join(pieces) == text
    assert pieces == ["ab \n\nX\n", " Y z\n\n\n", " W\n"]


def test_contract_basics(tokenizer: LocalTokenizer) -> None:
    surfaces = tokenizer.surfaces()
    assert tokenizer.vocab_size == len(surfaces) <= VOCAB
    assert tokenizer.family in FAMILIES
    specials = tokenizer.special_ids()
    assert specials and all(surfaces[i] == b"" for i in specials)
    assert all(surfaces[i] for i in range(len(surfaces)) if i not in specials)
    assert tokenizer.backend is not None
    assert tokenizer.info.train_proxy is True and tokenizer.info.train_split == "train"
    assert tokenizer.info.train_sha256 == TRAIN.digest() and tokenizer.info.train_chars == len(FIXTURE)


def test_special_text_in_input_is_ordinary_text(tokenizer: LocalTokenizer) -> None:
    ids = tokenizer.encode(END_OF_TEXT)
    assert len(ids) > 1 and tokenizer.decode(ids) == END_OF_TEXT


def test_unseen_characters_use_fallback(tokenizer: LocalTokenizer) -> None:
    expected = 0 if tokenizer.family == "bytebpe" else 1
    assert tokenizer.fallback_chars("Ω") == expected
    assert tokenizer.fallback_chars(" The keepers") == 0


def test_save_and_load_keep_everything(tokenizer: LocalTokenizer, tmp_path: Path) -> None:
    folder = tokenizer.save(tmp_path / "tok")
    loaded = load(folder, family=tokenizer.family)
    assert type(loaded) is type(tokenizer)
    assert loaded.surfaces() == tokenizer.surfaces() and loaded.special_ids() == tokenizer.special_ids()
    for text in TRICKY + [FIXTURE]:
        assert loaded.encode(text) == tokenizer.encode(text)
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["family"] == tokenizer.family and manifest["vocab_size"] == tokenizer.vocab_size
    assert manifest["train_proxy"] is True and manifest["train_sha256"] == TRAIN.digest()
    assert set(manifest["libraries"]) == {"tokenizers", "sentencepiece", "tiktoken"}
    assert manifest["training_seconds"] >= 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tok"]  # no staging folder left behind
    tokenizer.save(folder)  # a saved tokenizer may be replaced
    assert load(folder).encode(FIXTURE) == tokenizer.encode(FIXTURE)


def test_refuses_text_that_is_not_the_train_split() -> None:
    with pytest.raises(UserError, match="train split"):
        train_tokenizer(SplitText(FIXTURE, "valid", "fixture"), "bpe", VOCAB)
    with pytest.raises(UserError, match="load_split"):
        train_tokenizer(FIXTURE, "bpe", VOCAB)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("family", "vocab", "options", "message"),
    [
        ("bpe4", VOCAB, {}, "unknown tokenizer family"),
        ("bpe", 10, {}, "at least"),
        ("unigram", VOCAB, {"alphabet_size": 3}, "no option 'alphabet_size'"),
        ("unigram", VOCAB, {"character_coverage": 2.0}, "character_coverage"),
        ("word", VOCAB, {"alphabet_size": 0}, "alphabet_size"),
    ],
)
def test_bad_requests_are_user_errors(family: str, vocab: int, options: dict, message: str) -> None:
    with pytest.raises(UserError, match=message):
        train_tokenizer(TRAIN, family, vocab, **options)


def test_decode_rejects_ids_outside_the_vocabulary() -> None:
    tok = TRAINED["bpe"]
    for bad in (-1, tok.vocab_size):
        with pytest.raises(UserError, match="outside"):
            tok.decode([0, bad])


def test_tiktoken_bridge_gives_the_same_ids() -> None:
    tok = TRAINED["bytebpe"]
    encoding = to_tiktoken(tok)
    assert encoding.n_vocab == tok.vocab_size
    for text in TRICKY + [FIXTURE]:
        assert encoding.encode_ordinary(text) == tok.encode(text)
        assert encoding.decode_bytes(encoding.encode_ordinary(text)) == text.encode("utf-8")
    with pytest.raises(UserError, match="only a bytebpe"):
        to_tiktoken(TRAINED["bpe"])


def test_broken_or_wrong_folders_are_user_errors(tmp_path: Path) -> None:
    folder = TRAINED["unigram"].save(tmp_path / "uni")
    with pytest.raises(UserError, match="not 'bpe'"):
        load(folder, family="bpe")
    with pytest.raises(UserError, match="no tokenizer folder"):
        load(tmp_path / "missing")
    model = folder / "unigram.model"
    model.write_bytes(model.read_bytes()[:-7])
    with pytest.raises(UserError, match="checksum"):
        load(folder)
    model.unlink()
    with pytest.raises(UserError, match="lacks its unigram.model"):
        load(folder)
    (folder / "manifest.json").write_text("{not json")
    with pytest.raises(UserError, match="corrupt"):
        load(folder)
    (folder / "manifest.json").unlink()
    with pytest.raises(UserError, match="no manifest.json"):
        load(folder)
    other = tmp_path / "notes"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    with pytest.raises(UserError, match="not a saved tokenizer"):
        TRAINED["bpe"].save(other)
    assert (other / "keep.txt").read_text() == "mine"


def test_cli_train_then_stats(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    train_file = tmp_path / "train.txt"
    train_file.write_text(FIXTURE, encoding="utf-8")
    data = tmp_path / "data"
    data.mkdir()
    (data / "wiki.valid.raw").write_text("".join(row + "\n" if row else " \n" for row in FIXTURE_ROWS), encoding="utf-8")
    out = tmp_path / "tok"
    argv = ["tokenizer", "train", "--family", "word", "--vocab-size", "350", "--train-file", str(train_file)]
    assert subchar_main([*argv, "--train-chars", "2000", "--out", str(out)]) == 0
    assert load(out).info.train_chars == 2000
    assert subchar_main(["tokenizer", "stats", str(out), "--data-dir", str(data)]) == 0
    printed = capsys.readouterr().out
    assert "round trip (whole val split)       OK" in printed and "PROXY" in printed
    with pytest.raises(SystemExit) as refused:  # by the parser: --train-chars takes a whole number >= 1
        subchar_main([*argv, "--train-chars", "0", "--out", str(out)])
    assert refused.value.code == 2


@pytest.mark.parametrize("family", ["bpe", "wordpiece"])
def test_training_with_progress_prints_no_blank_lines_into_logs(family, capfd):
    train_tokenizer(TRAIN, family, VOCAB, progress=True)
    out, _ = capfd.readouterr()
    assert out == ""


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_learning_reports_one_line_in_a_log_with_progress_and_nothing_without(family, capfd, monkeypatch):
    """In a log (neither stream a terminal) every family says what it learned and how long it took, the way the
    other long phases do (eval.progress); ``progress=False`` prints nothing at all."""
    monkeypatch.setattr("eval.progress.LOG_AFTER_S", 0.0)  # the fixture learns in well under the 1 s threshold
    train_tokenizer(TRAIN, family, VOCAB, progress=False)
    assert capfd.readouterr() == ("", "")
    train_tokenizer(TRAIN, family, VOCAB, progress=True)
    out, err = capfd.readouterr()
    assert out == "" and err.startswith(f"learn {family} tokenizer (400 ids): {len(FIXTURE):,} chars in ")
    assert err.count("\n") == 1
