"""The benchmark's 300 s cap on ``train()``, enforced the same way (SIGALRM in the main thread)."""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from typing import Iterator

MAX_TRAIN_SECONDS = 300.0
TIMEOUT_REASON = "train_time_exceeded"


class TrainingTimeoutError(Exception):
    """Training ran past the wall-clock cap: the run is disqualified (reason ``train_time_exceeded``)."""

    reason = TIMEOUT_REASON


def caused_by_timeout(err: BaseException | None) -> bool:
    """Whether ``err`` is the guard's timeout or was raised while handling it: torch.compile wraps an exception
    that interrupts it (``InductorError``), so the alarm can surface under another type."""
    seen: set[int] = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, TrainingTimeoutError):
            return True
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return False


@contextmanager
def wall_clock_guard(max_seconds: float = MAX_TRAIN_SECONDS) -> Iterator[None]:
    """Raise :class:`TrainingTimeoutError` inside the block once ``max_seconds`` have passed.

    Like the benchmark's guard it only works in the main thread (elsewhere it does nothing), and code that never
    returns to Python (a long C call) delays the alarm until it does.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_alarm(signum, frame):
        raise TrainingTimeoutError(f"training exceeded {max_seconds:g} s wall clock; the run is disqualified")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, max_seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
