"""The kinds of model a run can hold, by name: what training, checkpoints, exports and reports do with each.

Four kinds: the neural models (trained by gradient steps, ``zoo.train.train_neural``; each lives in
``zoo/<name>.py`` with a ``Config`` and a ``Model``, listed with their classes in ``zoo.registry``), the token
n-gram (counted on token ids, ``zoo.ngram``), the character-level Kneser-Ney baseline (counted on characters,
``zoo.char_baseline``; it needs no tokenizer) and the mixture of those two counted models (``ngram+char-kn``: both
counted on the same text, their per-character distributions mixed by ``subchar.mixture.Mixture``; a grid cell of
its own, ``lab.cell.mixture_char_model``). Code elsewhere asks a name's :class:`ModelKind` what to do instead of
comparing names. Standard library only, so that light modules (the CLI, ``subchar show``) can ask too.
"""

from __future__ import annotations

from dataclasses import dataclass

NGRAM = "ngram"
CHAR_BASELINE = "char-kn"
MIXTURE = "ngram+char-kn"  # the token n-gram and the char baseline (NGRAM + CHAR_BASELINE), mixed per character
NEURAL_MODELS = ("transformer", "mamba", "hyena")  # each is zoo/<name>.py (zoo.registry.MODELS holds its classes)


@dataclass(frozen=True)
class ModelKind:
    """What a model name is: how it trains, is saved, exported and shown."""

    name: str
    neural: bool  # a torch module trained by steps (weights.pt, a learning rate per step); else counted tables
    tokenized: bool = True  # trained on a subword tokenizer's ids; the character baseline reads characters
    exportable: bool = True  # `subchar export` can write it as a single-file submission
    known: bool = True  # one of the zoo's models; a module of your own (zoo.train) is not
    mixture: bool = False  # the token n-gram mixed with the char baseline counted on the same text (a grid cell)

    @property
    def counted(self) -> bool:
        """Trained by counting n-grams in one pass (no optimizer steps, no parameters)."""
        return not self.neural

    @property
    def token_ngram(self) -> bool:
        """Counted on a tokenizer's ids: the n-gram of ``zoo.train.count_ngram_chunked``."""
        return self.counted and self.tokenized

    @property
    def size_fact(self) -> str:
        """The record's measure of the model's size: a network's ``params``, an n-gram's stored ``ngrams``."""
        return "params" if self.neural else "ngrams"


KINDS: dict[str, ModelKind] = {
    NGRAM: ModelKind(NGRAM, neural=False),
    MIXTURE: ModelKind(MIXTURE, neural=False, mixture=True),
    **{name: ModelKind(name, neural=True) for name in NEURAL_MODELS},
    CHAR_BASELINE: ModelKind(CHAR_BASELINE, neural=False, tokenized=False, exportable=False),
}


def kind_of(name: str) -> ModelKind:
    """The kind of the model called ``name``; any other name is a module of your own (``zoo.train`` trains one)."""
    return KINDS.get(name) or ModelKind(name, neural=True, exportable=False, known=False)


def trainable_names() -> list[str]:
    """Every model ``zoo.train`` trains on token ids by name: the n-gram, then the neural models."""
    return [name for name, kind in KINDS.items() if kind.tokenized and not kind.mixture]


def grid_names() -> list[str]:
    """Every model a grid cell trains over a tokenizer: the n-gram, the mixture, then the neural models."""
    return [name for name, kind in KINDS.items() if kind.tokenized]


def exportable_names() -> tuple[str, ...]:
    """Every model ``subchar export`` writes as a submission."""
    return tuple(name for name, kind in KINDS.items() if kind.exportable)
