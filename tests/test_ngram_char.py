"""zoo.char_baseline: char Kneser-Ney as a CharModel: better than trivial, deterministic, train-split only."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest

from eval.contract import CharModel
from eval.data import SplitText, load_split, val_window
from eval.errors import UserError
from eval.evaluate import evaluate
from eval.energy import EnergyMeter
from lab.cell import CHAR_BASELINE, Cell, CellOptions, train_cell
from zoo import char_baseline
from zoo.char_baseline import CharKneserNey, CharVocabulary
from zoo.ngram import KneserNeyLM

TRAIN = SplitText("the cat sat on the mat.\nthe dog sat on the log.\n" * 30 + "a fat cat ran.\n" * 10, "train", "fixture")
HELD_OUT = "the dog sat on the mat.\na fat cat sat on the log.\n"


class MostFrequentChar(CharModel):
    def __init__(self, char: str):
        self.char = char

    def reset(self):
        pass

    def predict(self):
        return self.char

    def observe(self, char):
        pass


def test_beats_the_most_frequent_char_and_gives_finite_bits():
    model = CharKneserNey.fit(TRAIN, order=4)
    result = evaluate(model, HELD_OUT, progress=False)
    trivial = evaluate(MostFrequentChar(Counter(TRAIN.text).most_common(1)[0][0]), HELD_OUT, progress=False)
    assert result.accuracy > trivial.accuracy + 0.4
    assert result.zero_prob_chars == 0 and math.isfinite(result.bits_per_char)


def test_distribution_is_the_train_alphabet_and_predict_is_its_argmax():
    model = CharKneserNey.fit(TRAIN, order=3)
    model.reset()
    for char in "the c":
        model.observe(char)
    dist = model.distribution()
    assert set(dist) == set(TRAIN.text)
    assert sum(dist.values()) < 1.0  # the unknown slot keeps a little mass
    assert model.predict() == "a" == max(dist, key=dist.get)


def test_unseen_characters_still_advance_the_context():
    model = CharKneserNey.fit(TRAIN, order=3)
    model.reset()
    for char in "the €":
        model.observe(char)
    assert model.state == (model.unknown_id,)  # " €" was never seen, so only the unknown slot stays in context
    assert len(model.predict()) == 1


def test_ties_go_to_the_lowest_code_point():
    model = CharKneserNey.fit(SplitText("ba", "train", "fixture"), order=1)
    model.reset()
    assert model.predict() == "a"


def test_refuses_validation_text():
    with pytest.raises(UserError, match="may only use the train split"):
        CharKneserNey.fit(SplitText("abc", "valid", "fixture"))


@pytest.mark.slow
def test_real_wikitext_order_5(wikitext_dir):
    train = load_split("train", train_file=wikitext_dir / "wiki.test.raw")
    result = evaluate(CharKneserNey.fit(train, order=5), val_window(wikitext_dir).text, progress=False)
    assert result.chars == 60_000 and result.correct == 33_002  # accuracy 0.5500; orders 3..8 are in the helper report


def reference_model(text: str, order: int) -> KneserNeyLM:
    """The one-shot count over code-point-sorted ids, as the baseline was built before the chunked counter."""
    chars = sorted(set(text))
    return KneserNeyLM.fit(np.array([chars.index(c) for c in text]), vocab_size=len(chars) + 1, order=order)


RARE = "".join(map(chr, range(0x100, 0x100 + 300)))  # an alphabet of 300 more characters


@pytest.mark.parametrize("order, alphabet", [(1, ""), (3, ""), (6, ""), (13, ""), (11, RARE)])
def test_chunked_counts_give_the_one_shot_model(order, alphabet, monkeypatch):
    """Orders 13 (with ~30 characters) and 11 (with ~330) do not pack into one int64: built order by order."""
    monkeypatch.setattr(char_baseline, "CHUNK_CHARS", 97)  # several code point chunks
    text = TRAIN.text + "Ünïcode 日本 €\n" + alphabet + TRAIN.text[:200] + alphabet[::-1]
    model, reference = CharKneserNey.fit(SplitText(text, "train", "fixture"), order=order), reference_model(text, order)
    assert model.chars == "".join(sorted(set(text)))
    for context in ["", "the c", "日本 ", "zzz€", "a fat cat ran.\nthe", alphabet[:12], alphabet[::-1][:12]]:
        model.reset()
        state = reference.start()
        for char in context:
            model.observe(char)
            state = reference.step(state, model.char_ids.get(char, model.unknown_id))
        assert model.state == state
        assert np.array_equal(model.lm.probs(model.state), reference.probs(state))


def test_the_vocabulary_is_every_character_by_code_point():
    text = "aaaa" + "bbb" + "dd" + "cc" + "e" + "€"
    vocabulary = CharVocabulary.learn(text)
    assert vocabulary.chars == "abcde€" and vocabulary.facts() == {"chars": 6}
    assert vocabulary.encode("abcde€x").tolist() == [0, 1, 2, 3, 4, 5, 6]
    assert CharVocabulary.learn("ab").dtype == np.uint8
    assert CharVocabulary.learn("".join(map(chr, range(32, 32 + 300)))).dtype == np.uint16
    with pytest.raises(UserError, match="empty"):
        CharVocabulary.learn("")


def test_the_cell_counts_the_model_that_fit_does(tmp_path):
    """Through the planned phases and the id file (a memory map), the cell's baseline is fit()'s model, and its
    record carries the phases and the alphabet."""
    train = SplitText(TRAIN.text * 3, "train", "fixture", proxy=True)
    options = CellOptions(budget_s=60.0, char_order=4, progress=False, device="cpu")
    meter = EnergyMeter(gpu=False, cpu=False)
    model, facts = train_cell(Cell(CHAR_BASELINE), options, train, tmp_path / "run", meter)
    reference = CharKneserNey.fit(train, order=4)
    assert model.chars == reference.chars and facts["model"]["vocabulary"] == {"chars": len(reference.chars)}
    assert facts["data"]["ids_tokens"] == len(train.text) and facts["data"]["encoder"] == "char"
    assert set(meter.report.phases) == {"probe", "tokenizer", "tokenize", "train"}
    for context in ["", "the d", "a fat"]:
        for char_model in (model, reference):
            char_model.reset()
            for char in context:
                char_model.observe(char)
        assert np.array_equal(model.lm.probs(model.state), reference.lm.probs(reference.state))
    again, facts = train_cell(Cell(CHAR_BASELINE), options, train, tmp_path / "run", EnergyMeter(gpu=False, cpu=False))
    assert facts["data"]["ids_cache_hit"]


def test_the_cell_keeps_every_character_at_order_11(tmp_path):
    """300 distinct characters do not pack 11 at a time into one int64 (at most 31 did), yet the cell keeps each
    one and counts the tables that fit() counts."""
    train = SplitText(TRAIN.text * 2 + RARE + TRAIN.text + RARE[::-1], "train", "fixture", proxy=True)
    options = CellOptions(budget_s=60.0, char_order=11, progress=False, device="cpu")
    model, facts = train_cell(Cell(CHAR_BASELINE), options, train, tmp_path / "run", EnergyMeter(gpu=False, cpu=False))
    reference = CharKneserNey.fit(train, order=11)
    assert model.chars == reference.chars == "".join(sorted(set(train.text)))
    assert facts["model"]["vocabulary"] == {"chars": len(set(train.text))}
    assert facts["model"]["train"]["ngrams"] == sum(len(table.keys) for table in reference.lm.tables)
    model.reset()
    reference.reset()
    assert model.distribution() == reference.distribution()
