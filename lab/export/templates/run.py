"""Stand-ins for what a submission knows about its run, so that the templates import and lint.

A generated submission defines each of these names in its "the run" section with the run's values, and does not
carry this module (``lab.export.build`` checks that it writes exactly these names).
"""

from __future__ import annotations

from typing import Any

ENCODING_NAME: str = ""  # the tokenizer, as tiktoken's constructor arguments
VOCAB_SIZE: int = 0
PAT_STR: str = ""
SPECIAL_TOKENS: dict[str, int] = {}
MERGEABLE_RANKS: str = ""  # every token's bytes in base64, rank order, special ids skipped
ENCODE_CHUNK_CHARS: int = 1 << 20
TRAIN_CHARS: int | None = None  # train() keeps the first TRAIN_CHARS chars of its text, as the run did (None: all)
COUNTED_CHARS: int | None = None  # and of those the prefix the run's plan counted, cut where it cut (None: all)
MODE: str = "exact"  # the CharAdapter's settings
BEAM: int | None = None
ORDER: int = 0  # n-gram runs
ADAPT: bool = False  # n-gram runs: the model also learns from the text it is scored on (zoo.online_ngram)
CHAR_ORDER: int = 0  # ngram+char-kn runs: the char model's order, and its weight in the mixture
CHAR_WEIGHT: float = 0.0
MODEL_NAME: str = ""  # neural runs
TRAIN_BUDGET_S: float = 0.0  # lab.export.build.TRAIN_BUDGET_S
SEED: int = 0  # the run's seed: train() uses it unless the harness passes one (SEED in the environment)
SETTINGS: dict[str, Any] = {}
LR_SCHEDULE: list[float] | None = None  # the learning rate of each of the run's steps, replayed as recorded
CONFIG: dict[str, Any] = {}
TOKENIZER: dict[str, Any] = {}  # what learning the tokenizer was (family, vocab, text digest) and cost
