"""Real-scale data paths on small synthetic corpora: the generator, and the cached memory-mapped id file."""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

import numpy as np
import pytest

from conftest import synthetic_source
from eval.data import SplitText
from eval.errors import UserError
from lab.synthetic_corpus import SourceModel, generate, growth_curve, line_pieces
from tokenizers_local import train_tokenizer
from tokenizers_local import encode_ids
from tokenizers_local.encode_ids import encode_to_file, id_dtype, text_sha256, tokenizer_sha256

ROOT = Path(__file__).resolve().parents[1]


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def corpus(seed: int, size: int, workers: int = 1) -> str:
    return b"".join(generate(synthetic_source(), seed, size, workers=workers)).decode("utf-8")


def test_generator_is_deterministic_in_parallel_and_keeps_wikitext_shape():
    text = corpus(0, 200_000)
    assert text == corpus(0, 200_000, workers=2)
    assert text != corpus(1, 200_000)
    assert 190_000 < len(text.encode()) <= 200_000 and text.endswith("\n")
    lines = text.split("\n")[:-1]
    assert all(line.startswith(" ") for line in lines)
    assert " " in lines and " = The Lantern Keepers = " in lines and " = = Decline = = " in lines
    assert " @-@ " in text and " @,@ " in text
    assert lines[0] == " "
    headings = [i for i, line in enumerate(lines) if line.startswith(" = ") and i < len(lines) - 1]
    assert headings and all(lines[i - 1] == lines[i + 1] == " " for i in headings)


def test_vocabulary_keeps_growing_where_repetition_stays_flat():
    text = corpus(0, 1_600_000)
    grown = growth_curve(line_pieces(text, 20_000), [0.2, 0.4, 0.8, 1.5])
    repeated = growth_curve(line_pieces(synthetic_source() * 2000, 20_000), [0.2, 1.5])
    assert repeated[0].distinct_words == repeated[1].distinct_words
    distinct = [p.distinct_words for p in grown]
    grams = [p.distinct_word_4grams for p in grown]
    assert all(b > 1.2 * a for a, b in zip(distinct, distinct[1:]))
    assert all(b > 1.3 * a for a, b in zip(grams, grams[1:]))
    assert grown[-1].words_count3 > 1.5 * grown[0].words_count3


def test_source_must_be_raw_wikitext():
    with pytest.raises(ValueError, match="WikiText raw"):
        SourceModel("no leading space\n")


def test_make_corpus_caches_and_refuses_the_validation_split(tmp_path):
    script = load_script("make_corpus")
    source = tmp_path / "wiki.test.raw"
    source.write_text(synthetic_source(), encoding="utf-8")
    out = tmp_path / "synth.raw"
    assert script.make_corpus(source, 0.05, 3, out, workers=1, progress=False)
    first = out.read_bytes()
    assert not script.make_corpus(source, 0.05, 3, out, workers=1, progress=False)
    assert out.read_bytes() == first == corpus(3, 50_000).encode()
    assert script.make_corpus(source, 0.05, 4, out, workers=1, progress=False)
    valid = tmp_path / "wiki.valid.raw"
    valid.write_text(synthetic_source(), encoding="utf-8")
    with pytest.raises(UserError, match="validation"):
        script.make_corpus(valid, 0.05, 3, tmp_path / "x.raw", progress=False)


@pytest.fixture(scope="module")
def train_split(synthetic_train_text) -> SplitText:
    return SplitText(synthetic_train_text[:300_000], "train", "synthetic", proxy=True)


@pytest.mark.parametrize("family, encoder", [("bytebpe", "tiktoken"), ("bpe", "hf-encode-batch"), ("word", "encode")])
def test_memmapped_ids_equal_encode_and_are_cached(family, encoder, train_split, tmp_path, monkeypatch):
    monkeypatch.setattr(encode_ids, "GROUP_CHARS", 50_000)  # several groups, each cut into several pieces
    monkeypatch.setattr(encode_ids, "PIECE_CHARS", 7_000)
    tokenizer = train_tokenizer(train_split.prefix(60_000), family, 400)
    text = train_split.text
    id_file, hit = encode_to_file(tokenizer, text, tmp_path, threads=2)
    assert not hit and id_file.encoder == encoder and id_file.dtype == "uint16"
    ids = id_file.ids()
    assert isinstance(ids, np.memmap)
    assert ids.tolist() == tokenizer.encode(text)
    assert id_file.path.stat().st_size == 2 * len(ids)
    again, hit = encode_to_file(tokenizer, text, tmp_path)
    assert hit and again == id_file
    other, hit = encode_to_file(tokenizer, text[:1000], tmp_path)
    assert not hit and other.path != id_file.path and other.ids().tolist() == tokenizer.encode(text[:1000])
    assert not list(tmp_path.glob("*.partial"))


def test_interrupted_encode_leaves_no_cache_entry(train_split, tmp_path, monkeypatch):
    tokenizer = train_tokenizer(train_split.prefix(60_000), "bytebpe", 300)

    def interrupted(*args):
        yield np.zeros(3, dtype="uint16")
        raise KeyboardInterrupt

    monkeypatch.setattr(encode_ids, "encode_groups", interrupted)
    with pytest.raises(KeyboardInterrupt):
        encode_to_file(tokenizer, train_split.text, tmp_path)
    assert list(tmp_path.iterdir()) == []
    monkeypatch.undo()
    _, hit = encode_to_file(tokenizer, train_split.text, tmp_path)
    assert not hit


class WideTokenizer:
    """A stand-in vocabulary above 65,536: each character's id is 65,536 + its code point, so every id needs
    more than 16 bits (what a large word-level vocabulary gives)."""

    family = "wide"
    vocab_size = (1 << 16) + 0x110000
    backend_file = "wide.json"

    def write_backend(self, path: Path) -> None:
        path.write_text("wide", encoding="utf-8")

    def encode(self, text: str) -> list[int]:
        return [(1 << 16) + ord(char) for char in text]


def test_ids_above_65536_go_through_the_file_and_back(tmp_path, monkeypatch):
    monkeypatch.setattr(encode_ids, "GROUP_CHARS", 40)
    tokenizer, text = WideTokenizer(), " cat sat\n mat € 日本\n" * 9
    id_file, _ = encode_to_file(tokenizer, text, tmp_path)
    assert id_file.dtype == "uint32" and id_file.path.stat().st_size == 4 * len(text)
    assert id_file.ids().tolist() == tokenizer.encode(text)
    again, hit = encode_to_file(tokenizer, text, tmp_path)
    assert hit and again.ids().tolist() == tokenizer.encode(text)


def test_digests(train_split):
    assert text_sha256(train_split.text) == hashlib.sha256(train_split.text.encode("utf-8")).hexdigest()
    small = train_tokenizer(train_split.prefix(60_000), "bytebpe", 300)
    assert tokenizer_sha256(small) == tokenizer_sha256(small)
    assert tokenizer_sha256(small) != tokenizer_sha256(train_tokenizer(train_split.prefix(60_000), "bytebpe", 320))
    assert id_dtype(65_536) == "uint16" and id_dtype(65_537) == "uint32"
