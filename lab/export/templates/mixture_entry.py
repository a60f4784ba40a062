"""The entry point of a mixture submission (ngram+char-kn): encode, then the grid cell's own mixture step (lab.cell)."""

from __future__ import annotations

from lab.cell import mixture_char_model
from lab.export.templates.base_class import CharModel
from lab.export.templates.run import ADAPT, BEAM, CHAR_ORDER, CHAR_WEIGHT, MODE, ORDER, VOCAB_SIZE
from lab.export.templates.tokenizer import build_encoding, encode, run_text


def train(train_text: str, valid_text: str | None = None) -> CharModel:
    """Encode the part of ``train_text`` the run trained on (run_text), count its token n-grams and its char
    n-grams exactly as the run did (lab.cell.mixture_char_model) and return the two read per character and mixed,
    the char model weighted CHAR_WEIGHT; both learn from the text they are scored on when the run's did (ADAPT).
    ``valid_text`` is not used: training sees only the train split."""
    encoding = build_encoding()
    text = run_text(train_text)
    model, _ = mixture_char_model(encode(encoding, text), VOCAB_SIZE, encoding, text,
                                  overrides={"order": ORDER}, mode=MODE, beam=BEAM, char_order=CHAR_ORDER,
                                  char_weight=CHAR_WEIGHT, adapt=ADAPT)
    return model
