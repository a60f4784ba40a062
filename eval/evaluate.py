"""Streaming evaluation exactly as the benchmark scores it: predict() strictly before observe(), exact equality."""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass

from tqdm import tqdm

from eval.contract import CharModel
from eval.data import VAL_WINDOW_CHARS
from eval.errors import UserError


@dataclass(frozen=True)
class EvalResult:
    """Scores of one stream; the bit figures are None unless the model offers ``distribution()``.

    ``zero_prob_chars`` counts true characters the model gave no mass: they make ``bits_per_char`` infinite, so
    ``covered_bits_per_char`` (the mean over the other characters) is reported beside it to stay informative.
    """

    accuracy: float
    chars: int
    correct: int
    bits_per_char: float | None
    covered_bits_per_char: float | None
    zero_prob_chars: int
    chars_per_s: float
    wall_s: float

    def to_dict(self) -> dict:
        return asdict(self)


def evaluate(
    model: CharModel,
    text: str,
    max_chars: int | None = VAL_WINDOW_CHARS,
    *,
    bits: bool = True,
    progress: bool = True,
) -> EvalResult:
    """Run the benchmark loop over ``text[:max_chars]``: one reset, then predict/score/observe per character.

    Accuracy is ``correct / max(1, chars)`` as in the benchmark. With ``bits`` and a model whose
    ``distribution()`` returns a dict, also the mean -log2 P(true char), queried before the char is observed.
    """
    if not isinstance(model, CharModel):
        raise UserError(f"{type(model).__name__} is not a CharModel; subclass eval.contract.CharModel")
    stream = text if max_chars is None else text[:max_chars]
    model.reset()
    correct = 0
    bit_total = 0.0
    zero_prob = 0
    with_bits = bits
    start = time.perf_counter()
    for position, true_char in enumerate(tqdm(stream, desc="eval", unit="char", disable=not progress, mininterval=1.0)):
        guess = model.predict()
        if not isinstance(guess, str) or len(guess) > 1:
            raise UserError(
                f"{type(model).__name__}.predict() returned {guess!r} at position {position}; "
                "it must return one character (or '' to abstain)"
            )
        correct += guess == true_char
        if with_bits:
            dist = model.distribution()
            if dist is None:
                with_bits = False
            else:
                p = dist.get(true_char, 0.0)
                if p > 0.0:
                    bit_total -= math.log2(p)
                else:
                    zero_prob += 1
        model.observe(true_char)
    wall = time.perf_counter() - start
    chars = len(stream)
    bits_per_char = covered = None
    if with_bits and chars:
        bits_per_char = math.inf if zero_prob else bit_total / chars
        covered = bit_total / (chars - zero_prob) if chars > zero_prob else None
    return EvalResult(
        accuracy=correct / max(1, chars),
        chars=chars,
        correct=correct,
        bits_per_char=bits_per_char,
        covered_bits_per_char=covered,
        zero_prob_chars=zero_prob,
        chars_per_s=chars / wall if wall > 0 else math.inf,
        wall_s=wall,
    )
