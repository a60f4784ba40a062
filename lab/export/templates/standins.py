"""What the inlined code takes from modules a submission does not carry: tqdm and eval.progress's phase (the
benchmark image has no tqdm), eval.data's require_train (eval.data imports what the image lacks) and a neural
submission's model registry."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from lab.export.templates.run import MODEL_NAME
from zoo.transformer import Config, Model  # a submission defines the Config and Model of its one model


class tqdm:
    """Silent stand-in for tqdm (not in the benchmark image): the inlined trainer's progress bar."""

    def __init__(self, *args, **kwargs) -> None:
        self.n = 0.0

    def __enter__(self) -> tqdm:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def update(self, n: float = 1) -> None:
        self.n += n

    def set_postfix(self, *args, **kwargs) -> None:
        pass

    def close(self) -> None:
        pass


@contextlib.contextmanager
def phase(name: str, total: float | None = None, unit: str = "char", enabled: bool = True) -> Iterator[tqdm]:
    """Silent stand-in for eval.progress.phase: what the inlined char baseline reports its counting to."""
    yield tqdm()


def require_train(text: object, purpose: str) -> object:
    """Stand-in for eval.data.require_train, which the inlined char baseline's ``fit`` names: a submission counts
    the text the harness passes (``CharKneserNey.count``), never a split loaded by eval.data, which it lacks."""
    raise RuntimeError(f"{purpose} needs a split loaded by eval.data, which a submission does not carry")


def lookup(name: str) -> tuple[type, type]:
    """zoo.registry.lookup for the one model this file carries."""
    if name != MODEL_NAME:
        raise ValueError(f"this submission carries only the {MODEL_NAME} model, not {name!r}")
    return Config, Model
