"""The entry point of a neural submission: encode, then the grid cell's own neural step (lab.cell)."""

from __future__ import annotations

import time

from lab.cell import neural_char_model
from lab.export.templates.base_class import CharModel
from lab.export.templates.run import BEAM, CONFIG, MODE, MODEL_NAME, SEED, SETTINGS, TRAIN_BUDGET_S, VOCAB_SIZE
from lab.export.templates.tokenizer import build_encoding, encode
from zoo.train import TrainSettings


def train(train_text: str, valid_text: str | None = None) -> CharModel:
    """Encode ``train_text``, train the run's model from scratch with its config, seed and settings for its
    number of steps (lab.cell.neural_char_model; a planned stop inside TRAIN_BUDGET_S comes first if the device
    is slower) and return the character model. ``valid_text`` is not used: training sees only the train split."""
    started = time.monotonic()
    encoding = build_encoding()
    ids = encode(encoding, train_text)
    budget_s = TRAIN_BUDGET_S - (time.monotonic() - started)
    model, _ = neural_char_model(MODEL_NAME, ids, VOCAB_SIZE, encoding, budget_s, CONFIG, "auto", SEED,
                                 TrainSettings(**SETTINGS), MODE, BEAM)
    return model
