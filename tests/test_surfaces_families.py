"""surfaces_of / view_of for every supported tokenizer family, and the adapter driven through each one."""

from __future__ import annotations

import math

import pytest
import sentencepiece as spm
import tiktoken
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from eval.errors import UserError
from subchar import CharAdapter, surfaces_of, view_of
from test_adapter_reference import RandomTrigramLM, assert_close, brute_exact, brute_spec, tie_rule_argmax

FIXTURE = (
    "the cat sat on the mat . the dog ate the hat , then the cat ran home !\n"
    "a café in the old town sold naïve art for 12 € and 345 € ; the owner said it 's fine .\n"
    "numbers like 1999 and 2024 appear , and so do words like the , then , there and these .\n"
) * 8
SAMPLES = ["the cat ran to the café", "then 12 € for 1999 hats", "the owner 's dog"]
STREAM = "the cat ate the naïve dog 's hat , then 12 € ."


def train_hf(kind: str) -> Tokenizer:
    if kind == "bpe-bytelevel":
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=180, special_tokens=["<eos>"], show_progress=False)
    elif kind == "bpe-metaspace":
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.Metaspace(prepend_scheme="never")
        tok.decoder = decoders.Metaspace(prepend_scheme="never")
        trainer = trainers.BpeTrainer(vocab_size=160, special_tokens=["<eos>"], show_progress=False)
    elif kind == "unigram":
        tok = Tokenizer(models.Unigram())
        tok.pre_tokenizer = pre_tokenizers.Metaspace(prepend_scheme="never")
        tok.decoder = decoders.Metaspace(prepend_scheme="never")
        trainer = trainers.UnigramTrainer(
            vocab_size=120, special_tokens=["<unk>"], unk_token="<unk>", show_progress=False
        )
    elif kind == "wordpiece":
        tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
        tok.pre_tokenizer = pre_tokenizers.Whitespace()
        tok.decoder = decoders.WordPiece()
        trainer = trainers.WordPieceTrainer(vocab_size=150, special_tokens=["[UNK]"], show_progress=False)
    else:
        tok = Tokenizer(models.WordLevel(unk_token="[UNK]"))
        tok.pre_tokenizer = pre_tokenizers.Whitespace()
        trainer = trainers.WordLevelTrainer(special_tokens=["[UNK]"], show_progress=False)
    tok.train_from_iterator([FIXTURE], trainer)
    return tok


@pytest.fixture(scope="module")
def spm_model(tmp_path_factory: pytest.TempPathFactory) -> spm.SentencePieceProcessor:
    folder = tmp_path_factory.mktemp("spm")
    (folder / "fixture.txt").write_text(FIXTURE, encoding="utf-8")
    spm.SentencePieceTrainer.train(
        input=str(folder / "fixture.txt"), model_prefix=str(folder / "m"), vocab_size=300, model_type="unigram",
        byte_fallback=True, normalization_rule_name="identity", add_dummy_prefix=False,
        remove_extra_whitespaces=False, character_coverage=1.0, minloglevel=2,
    )
    return spm.SentencePieceProcessor(model_file=str(folder / "m.model"))


def tiny_tiktoken() -> tiktoken.Encoding:
    ranks = {bytes([b]): b for b in range(256)}
    for piece in [b"th", b"he", b"the", b" the", b"at", b" c", b" cat", b"en", b" then", b"\xe2\x82", b"\xe2\x82\xac"]:
        ranks[piece] = len(ranks)
    pattern = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
    return tiktoken.Encoding("subchar-test", pat_str=pattern, mergeable_ranks=ranks,
                             special_tokens={"<|endoftext|>": len(ranks)})


LOSSLESS_HF = ["bpe-bytelevel", "bpe-metaspace", "unigram"]


@pytest.mark.parametrize("kind", LOSSLESS_HF)
def test_lossless_hf_surfaces_spell_the_encoding(kind: str) -> None:
    tok = train_hf(kind)
    view = view_of(tok)
    assert len(view.surfaces) == tok.get_vocab_size() and surfaces_of(tok) == view.surfaces
    assert view.special_ids and all(view.surfaces[i] == b"" for i in view.special_ids)
    for text in SAMPLES:
        assert view.spelled(tok.encode(text, add_special_tokens=False).ids) == text.encode("utf-8")


def test_byte_level_surfaces_are_raw_bytes() -> None:
    surfaces = surfaces_of(train_hf("bpe-bytelevel"))
    assert b"\xe2" in surfaces and b" the" in surfaces  # a lone lead byte of €, and Ġthe -> " the"


@pytest.mark.parametrize("kind", ["wordpiece", "wordlevel"])
def test_word_vocabularies_put_a_space_before_words(kind: str) -> None:
    tok = train_hf(kind)
    surfaces = surfaces_of(tok)
    ids = tok.encode(" the cat sat", add_special_tokens=False).ids
    assert b"".join(surfaces[i] for i in ids) == b" the cat sat"
    if kind == "wordpiece":
        assert any(s and not s.startswith(b" ") for s in surfaces)  # ##continuations carry no space


def test_sentencepiece_byte_fallback_and_spaces(spm_model: spm.SentencePieceProcessor) -> None:
    view = view_of(spm_model)
    assert view.surfaces[spm_model.piece_to_id("<0xE2>")] == b"\xe2"
    for text in [*SAMPLES, "unseen ü and 中"]:
        assert view.spelled(spm_model.encode(text)) == text.encode("utf-8")
    assert view.span_starts("ab cd  e") == [2, 5, 6]


def test_tiktoken_surfaces_and_pretokens() -> None:
    enc = tiny_tiktoken()
    view = view_of(enc)
    assert view.surfaces[enc.encode_single_token("<|endoftext|>")] == b""
    for text in SAMPLES:
        assert view.spelled(enc.encode_ordinary(text)) == text.encode("utf-8")
    assert view.span_starts("the cat's 12") == [3, 7, 9]


def test_unsupported_tokenizer_is_a_user_error() -> None:
    with pytest.raises(UserError):
        view_of(object())


def all_families(spm_model: spm.SentencePieceProcessor) -> list[tuple[str, object]]:
    return [(kind, train_hf(kind)) for kind in [*LOSSLESS_HF, "wordpiece", "wordlevel"]] + [
        ("sentencepiece", spm_model), ("tiktoken", tiny_tiktoken())
    ]


@pytest.mark.parametrize("mode", ["spec", "exact"])
def test_adapter_through_every_family(mode: str, spm_model: spm.SentencePieceProcessor) -> None:
    """Invariants on a stream in each family; distributions equal brute force where enumeration is cheap
    (a few positions; byte-fallback vocabularies spell every code point, so exact enumeration is skipped)."""
    for kind, tok in all_families(spm_model):
        view = view_of(tok)
        lm = RandomTrigramLM(len(view.surfaces), seed=5, scale=1.0)
        adapter = CharAdapter(lm, tok, mode=mode, beam=None if mode == "spec" else 64)
        lossless = kind not in ("wordpiece", "wordlevel")
        seen = ""
        for position, char in enumerate(STREAM):
            dist = adapter.distribution()
            assert dist and abs(math.fsum(dist.values()) - 1) < 1e-12 and min(dist.values()) > 0
            assert adapter.predict() == tie_rule_argmax(dist)
            if mode == "spec" and position % 5 == 0:
                assert_close(dist, brute_spec(view.surfaces, lm, adapter.committed, adapter.buffer))
            if lossless and mode == "exact":  # spec gives 0 to a char after a whole token ("the" + " ")
                assert dist.get(char, 0) > 0, (kind, position, char)
            adapter.observe(char)
            seen += char
            assert adapter.committed_text + adapter.buffer == seen, kind
        if lossless:
            assert view.spelled(list(adapter.committed)) == adapter.committed_text.encode("utf-8"), kind
            assert adapter.diagnostics.lossy_commits == 0, kind
            assert mode == "spec" or adapter.diagnostics.zero_mass_chars == 0, kind
        if mode == "exact" and lossless:  # commits at finished boundaries: a prefix of the canonical encoding
            assert list(adapter.committed) == list(view.encode(seen))[: len(adapter.committed)], kind
            assert adapter.diagnostics.commits > 0, kind


@pytest.mark.parametrize("kind", ["bpe-bytelevel", "bpe-metaspace", "unigram", "wordpiece", "wordlevel"])
def test_exact_equals_brute_force_on_real_vocabularies(kind: str) -> None:
    tok = train_hf(kind)
    view = view_of(tok)
    lm = RandomTrigramLM(len(view.surfaces), seed=9, scale=1.0)
    adapter = CharAdapter(lm, tok, mode="exact")
    for position, char in enumerate(" the cat sat on the mat"):
        dist = adapter.distribution()
        if position % 4 == 1:
            assert_close(dist, brute_exact(view.surfaces, lm, adapter.committed, adapter.buffer))
        adapter.observe(char)


@pytest.mark.parametrize("kind", ["bpe-bytelevel", "unigram"])
def test_exact_bits_never_exceed_canonical_path_on_real_vocabularies(kind: str) -> None:
    tok = train_hf(kind)
    view = view_of(tok)
    lm = RandomTrigramLM(len(view.surfaces), seed=2, scale=1.0)
    adapter = CharAdapter(lm, tok, mode="exact")
    text = " the cat ran home , then the dog sat"
    bits = 0.0
    for char in text:
        bits -= math.log2(adapter.distribution()[char])
        adapter.observe(char)
    state, canonical = lm.start(), 0.0
    for token in view.encode(text):
        canonical -= lm.logprobs(state)[token] / math.log(2)
        state = lm.step(state, token)
    assert adapter.diagnostics.commits > 0
    assert bits <= canonical + 1e-9
