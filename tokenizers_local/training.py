"""Learning a tokenizer from the train split, and only from it."""

from __future__ import annotations

import sys
import time
from typing import Any

import sentencepiece
import tiktoken
import tokenizers

from eval.data import SplitText, require_train
from eval.errors import UserError
from eval.progress import phase
from tokenizers_local.base import LocalTokenizer, TrainInfo
from tokenizers_local.families import family_class

MIN_VOCAB_SIZE = 300  # 256 byte tokens, a few specials, and room to learn something


def library_versions() -> dict[str, str]:
    return {
        "tokenizers": tokenizers.__version__,
        "sentencepiece": sentencepiece.__version__,
        "tiktoken": tiktoken.__version__,
    }


def train_tokenizer(
    text: SplitText, family: str, vocab_size: int, *, progress: bool = False, **options: Any
) -> LocalTokenizer:
    """Learn a ``family`` tokenizer of about ``vocab_size`` ids (bytes and specials included) from ``text``.

    ``text`` must come from ``eval.data.load_split('train')`` (a flagged proxy is accepted and recorded as such):
    a tokenizer fitted on validation text would leak it into every score built on top.
    """
    text = require_train(text, f"training a {family} tokenizer")
    cls = family_class(family)
    if not isinstance(vocab_size, int) or vocab_size < MIN_VOCAB_SIZE:
        raise UserError(f"vocab size must be an integer of at least {MIN_VOCAB_SIZE}, got {vocab_size!r}")
    unknown = sorted(set(options) - set(cls.option_defaults))
    if unknown:
        allowed = ", ".join(cls.option_defaults) or "none"
        raise UserError(f"the {family} family has no option {unknown[0]!r}; its options: {allowed}")
    if not text.text:
        raise UserError("the train text is empty; check --train-chars / --train-file")
    chosen = {**cls.option_defaults, **options}
    # HF trainers print one blank line per bar to a stdout that is not a terminal (logs, pipes, CI): there, and for
    # a library without bars, the phase reports the learning (a bar on a terminal, one line in a log)
    library_bars = progress and cls.library_bars and sys.stdout.isatty()
    started = time.perf_counter()
    with phase(f"learn {family} tokenizer ({vocab_size:,} ids)", len(text.text), "char",
               enabled=progress and not library_bars) as shown:
        backend = cls.train_backend(text.text, vocab_size, library_bars, **chosen)
        shown.update(len(text.text))
    seconds = time.perf_counter() - started
    info = TrainInfo(
        requested_vocab_size=vocab_size,
        options=chosen,
        train_split=text.split,
        train_source=text.source,
        train_proxy=text.proxy,
        train_sha256=text.digest(),
        train_chars=len(text.text),
        training_seconds=round(seconds, 3),
        libraries=library_versions(),
    )
    return cls(backend, info)
