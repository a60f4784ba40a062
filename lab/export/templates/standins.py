"""What the inlined trainer takes from modules a neural submission does not carry: tqdm and the model registry."""

from __future__ import annotations

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


def lookup(name: str) -> tuple[type, type]:
    """zoo.registry.lookup for the one model this file carries."""
    if name != MODEL_NAME:
        raise ValueError(f"this submission carries only the {MODEL_NAME} model, not {name!r}")
    return Config, Model
