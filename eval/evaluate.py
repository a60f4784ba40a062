"""Streaming evaluation exactly as the benchmark scores it: predict() strictly before observe(), exact equality.

Two engines give the same scores. ``stream`` runs the benchmark's loop itself. ``batch`` (the default) asks a
model that offers ``batch_scores(text, bits, progress)`` (``subchar.CharAdapter`` in exact mode) for all its
predictions at once, ``progress(n)`` reporting n more positions scored (``progress(0)``: the preparation, e.g.
a teacher-forced pass over the whole window, is done and scoring starts); it may compute them in any order, as long
as each is what the loop would have got. Other models are streamed.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass


from eval.contract import CharModel
from eval.data import VAL_WINDOW_CHARS
from eval.errors import UserError
from eval.progress import phase


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
    engine: str = "stream"

    def to_dict(self) -> dict:
        return asdict(self)


ENGINES = ("batch", "stream")


def eval_result(stream: str, guesses: list[str], probs: list[float] | None, wall: float, engine: str) -> EvalResult:
    """The result of a batch engine's per-position answers, summed in the streaming loop's order."""
    correct = sum(guess == char for guess, char in zip(guesses, stream))
    bit_total, zero_prob = 0.0, 0
    for p in probs or ():
        if p > 0.0:
            bit_total -= math.log2(p)
        else:
            zero_prob += 1
    chars = len(stream)
    bits_per_char = covered = None
    if probs is not None and chars:
        bits_per_char = math.inf if zero_prob else bit_total / chars
        covered = bit_total / (chars - zero_prob) if chars > zero_prob else None
    return EvalResult(
        accuracy=correct / max(1, chars), chars=chars, correct=correct, bits_per_char=bits_per_char,
        covered_bits_per_char=covered, zero_prob_chars=zero_prob,
        chars_per_s=chars / wall if wall > 0 else math.inf, wall_s=wall, engine=engine,
    )


def evaluate(
    model: CharModel,
    text: str,
    max_chars: int | None = VAL_WINDOW_CHARS,
    *,
    bits: bool = True,
    progress: bool = True,
    engine: str = "batch",
) -> EvalResult:
    """Run the benchmark loop over ``text[:max_chars]``: one reset, then predict/score/observe per character.

    Accuracy is ``correct / max(1, chars)`` as in the benchmark. With ``bits`` and a model whose
    ``distribution()`` returns a dict, also the mean -log2 P(true char), queried before the char is observed.
    """
    if not isinstance(model, CharModel):
        raise UserError(f"{type(model).__name__} is not a CharModel; subclass eval.contract.CharModel")
    if engine not in ENGINES:
        raise UserError(f"engine must be one of {', '.join(ENGINES)}, not {engine!r}")
    stream = text if max_chars is None else text[:max_chars]
    if engine == "batch" and hasattr(model, "batch_scores"):
        start = time.perf_counter()
        with phase("eval (batch): preparing", len(stream), enabled=progress) as shown:

            def advance(scored: int) -> None:
                if scored == 0:  # preparation done: the rate and time left count from here, not from the start
                    shown.restart("eval (batch)")
                else:
                    shown.update(scored)

            scored = model.batch_scores(stream, bits, progress=advance)
        if scored is not None:
            return eval_result(stream, *scored, time.perf_counter() - start, "batch")
    model.reset()
    guesses: list[str] = []
    probs: list[float] | None = [] if bits else None
    start = time.perf_counter()
    with phase("eval", len(stream), enabled=progress) as shown:
        for position, true_char in enumerate(stream):
            guess = model.predict()
            if not isinstance(guess, str) or len(guess) > 1:
                raise UserError(
                    f"{type(model).__name__}.predict() returned {guess!r} at position {position}; "
                    "it must return one character (or '' to abstain)"
                )
            guesses.append(guess)
            if probs is not None:
                dist = model.distribution()
                if dist is None:
                    probs = None
                else:
                    probs.append(dist.get(true_char, 0.0))
            model.observe(true_char)
            shown.update(1)
    return eval_result(stream, guesses, probs, time.perf_counter() - start, "stream")
