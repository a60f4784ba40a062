"""The entry point of an n-gram submission: encode, then the grid cell's own n-gram step (lab.cell)."""

from __future__ import annotations

from lab.cell import ngram_char_model
from lab.export.templates.base_class import CharModel
from lab.export.templates.run import ADAPT, BEAM, MODE, ORDER, VOCAB_SIZE
from lab.export.templates.tokenizer import build_encoding, encode, run_text


def train(train_text: str, valid_text: str | None = None) -> CharModel:
    """Encode the part of ``train_text`` the run trained on (run_text), count its n-grams exactly as the run did
    (lab.cell.ngram_char_model) and return the character model, which learns from the text it is scored on when the
    run's did (ADAPT). ``valid_text`` is not used: training sees only the train split."""
    encoding = build_encoding()
    model, _ = ngram_char_model(encode(encoding, run_text(train_text)), VOCAB_SIZE, encoding,
                                overrides={"order": ORDER}, mode=MODE, beam=BEAM, adapt=ADAPT)
    return model
