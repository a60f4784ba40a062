import math

import pytest

from eval.contract import CharModel
from eval.errors import UserError
from eval.evaluate import evaluate


class Constant(CharModel):
    def __init__(self, guess):
        self.guess = guess

    def reset(self):
        pass

    def predict(self):
        return self.guess

    def observe(self, char):
        pass


class Recorder(CharModel):
    """Logs every call, and predicts the previous character (so the order decides its score)."""

    def __init__(self):
        self.calls = []
        self.last = ""

    def reset(self):
        self.calls.append(("reset",))
        self.last = ""

    def predict(self):
        self.calls.append(("predict",))
        return self.last

    def observe(self, char):
        self.calls.append(("observe", char))
        self.last = char


class Halves(Constant):
    """Puts 1/2 on 'a' and 1/2 on 'b': bits/char is exactly 1 on a stream of a and b."""

    def distribution(self):
        return {"a": 0.5, "b": 0.5}


def test_predict_comes_strictly_before_observe_and_reset_once():
    model = Recorder()
    result = evaluate(model, "abba", progress=False)
    assert model.calls == [
        ("reset",),
        ("predict",), ("observe", "a"),
        ("predict",), ("observe", "b"),
        ("predict",), ("observe", "b"),
        ("predict",), ("observe", "a"),
    ]
    assert result.correct == 1  # only the second 'b' equals the char observed before it
    assert result.chars == 4
    assert result.accuracy == 0.25


@pytest.mark.parametrize(
    ("stream", "guess", "correct"),
    [("aaa", "a", 3), ("bcd", "a", 0), ("abab", "a", 2), ("é日é", "é", 2), ("xyz", "", 0)],
)
def test_accuracy_is_exact_equality(stream, guess, correct):
    result = evaluate(Constant(guess), stream, progress=False)
    assert (result.correct, result.chars) == (correct, len(stream))
    assert result.accuracy == correct / len(stream)
    assert result.bits_per_char is None


def test_empty_stream_scores_zero_like_the_benchmark():
    result = evaluate(Constant("a"), "", progress=False)
    assert (result.accuracy, result.chars) == (0.0, 0)


@pytest.mark.parametrize("bad", [None, 3, "ab", ["a"]])
def test_bad_predict_return_is_a_clear_error(bad):
    with pytest.raises(UserError, match=r"must return one character"):
        evaluate(Constant(bad), "abc", progress=False)


def test_non_charmodel_is_refused():
    with pytest.raises(UserError, match="not a CharModel"):
        evaluate(object(), "abc", progress=False)


def test_window_is_first_60000_chars():
    result = evaluate(Constant("x"), "x" * 60_000 + "y" * 10, progress=False)
    assert (result.chars, result.correct) == (60_000, 60_000)
    assert evaluate(Constant("x"), "xy" * 10, max_chars=None, progress=False).chars == 20


def test_bits_per_char_from_distribution():
    result = evaluate(Halves("a"), "abab", progress=False)
    assert result.bits_per_char == pytest.approx(1.0)
    assert result.zero_prob_chars == 0
    missing = evaluate(Halves("a"), "abc", progress=False)
    assert missing.zero_prob_chars == 1
    assert math.isinf(missing.bits_per_char)
    assert missing.covered_bits_per_char == pytest.approx(1.0)
