"""Progress of long phases: a live bar on a terminal, one line per phase in a log.

Why: reading, checking, encoding and counting the 540 MB train split each take seconds to minutes, and a silent
command looks hung; but a bar's carriage-return redraws turn a redirected log into noise. So a phase draws a tqdm
bar when stderr is a terminal, and otherwise writes one line when it ends, ``name: amount in seconds``, if it took
``LOG_AFTER_S`` or more (a log of a small run stays quiet).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

from tqdm import tqdm

LOG_AFTER_S = 1.0


class Phase:
    """What a phase has done so far (``update``), shown on its bar when there is one."""

    def __init__(self, name: str, bar: tqdm) -> None:
        self.name = name
        self.bar = bar
        self.done = 0

    def update(self, amount: int) -> None:
        self.done += amount
        self.bar.update(amount)

    def restart(self, name: str) -> None:
        """Go on as ``name`` from zero: the bar's rate and time left count from here (after a preparation)."""
        self.name = name
        self.bar.set_description(name, refresh=False)
        self.bar.reset(total=self.bar.total)


def on_terminal() -> bool:
    return sys.stderr.isatty()


@contextmanager
def phase(name: str, total: float | None = None, unit: str = "char", enabled: bool = True) -> Iterator[Phase]:
    """Report the phase ``name`` (of ``total`` ``unit``s, if known); silent when not ``enabled``."""
    started = time.monotonic()
    with tqdm(total=total, desc=name, unit=unit, unit_scale=True, mininterval=1.0,
              disable=not (enabled and on_terminal())) as bar:
        progress = Phase(name, bar)
        yield progress
    seconds = time.monotonic() - started
    if enabled and not on_terminal() and seconds >= LOG_AFTER_S:
        amount = f"{progress.done:,} {unit}s in " if progress.done else ""
        print(f"{progress.name}: {amount}{seconds:.1f} s", file=sys.stderr, flush=True)
