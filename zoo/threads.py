"""Torch's thread count for CPU training, chosen by timing the run's first steps (:class:`ThreadChoice`).

Used by ``zoo.train`` and inlined into exported neural submissions (``lab.export.parts``): torch and the standard
library only.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import torch

PROBE_PAIRS = 2  # CPU: steps at 1 thread and at all of torch's threads, alternated, timed at the start (ThreadChoice)
COLLAPSE_RATIO = 1.5  # all-thread steps this much slower than a 1-thread step: another process holds the cores


class ThreadChoice:
    """Torch's intra-op thread count for CPU training, chosen by timing the run's own first steps.

    Why: on an idle multi-core machine more threads make a step faster, but beside busy processes an all-thread
    step can be many times slower than a 1-thread one (each of a step's many small kernels ends at a barrier where
    OpenMP threads spin while another process holds a core). So no fixed count is right: after a warm-up step on
    1 thread, the run alternates ``PROBE_PAIRS`` steps on 1 and on all threads (torch's setting, ``available``),
    stopping at the first pair whose all-thread step is slower than ``COLLAPSE_RATIO`` times its 1-thread step, and
    keeps the faster. They are training steps, so the probe costs only their speed. Should all-thread steps later
    slow past that ratio (the median of the last three), the run drops to 1 thread for good: a collapsed step costs
    far more than 1 thread loses on an idle machine, so it does not probe its way back. As a context manager it
    restores torch's count on exit. ``fixed`` (or one available thread) skips the probe; ``available=None`` (CUDA)
    leaves the threads alone. ``threads`` is the count decided (None while probing), ``last`` the count of the last
    step taken.
    """

    def __init__(self, available: int | None, fixed: int | None = None) -> None:
        self.available = available
        self.times: dict[int, list[float]] = {}
        self.recent: deque[float] = deque(maxlen=3)
        self.steps = 0
        self.last: int | None = None
        self.collapsed_at_step: int | None = None
        self.saved: int | None = None
        if available is None:
            self.how, self.threads = "cuda", None
        elif fixed is not None:
            self.how, self.threads = "fixed", fixed
        elif available <= 1:
            self.how, self.threads = "one thread available", 1
        else:
            self.how, self.threads = "probe", None
            self.schedule = [1] + [1, available] * PROBE_PAIRS  # the warm-up step, then the timed pairs

    def __enter__(self) -> ThreadChoice:
        self.saved = torch.get_num_threads()
        return self

    def __exit__(self, *exc: object) -> None:
        torch.set_num_threads(self.saved)

    def current(self) -> int | None:
        """The thread count of the next step (None: leave torch's setting)."""
        return self.schedule[self.steps] if self.how == "probe" and self.threads is None else self.threads

    def before_step(self) -> None:
        threads = self.current()
        if threads is not None and threads != torch.get_num_threads():
            torch.set_num_threads(threads)

    def after_step(self, seconds: float) -> None:
        """Account one step of ``seconds``: decide once the probe has its pairs, watch for a collapse after."""
        threads, self.steps = self.current(), self.steps + 1
        self.last = threads
        if self.how != "probe" or self.steps == 1:  # nothing to choose, or the warm-up step (first-call costs)
            return
        if self.threads is None:
            self.times.setdefault(threads, []).append(seconds)
            one, every = self.times.get(1, []), self.times.get(self.available, [])
            if len(every) == len(one):  # a pair is complete
                if every[-1] > COLLAPSE_RATIO * one[-1]:
                    self.threads = 1
                elif len(one) == PROBE_PAIRS:
                    self.threads = self.available if sum(every) < sum(one) else 1
        elif self.threads > 1:
            self.recent.append(seconds)
            one_thread_s = sum(self.times[1]) / len(self.times[1])
            if len(self.recent) == self.recent.maxlen and sorted(self.recent)[1] > COLLAPSE_RATIO * one_thread_s:
                self.threads, self.collapsed_at_step = 1, self.steps

    def record(self) -> dict[str, Any]:
        """How the count was chosen, for the run record: the probe's mean step seconds per thread count, and the
        step after which a collapse sent the run to 1 thread (None if it never did)."""
        probe = {str(threads): round(sum(times) / len(times), 4) for threads, times in sorted(self.times.items())}
        return {"how": self.how, "available": self.available, "probe_step_s": probe,
                "collapsed_at_step": self.collapsed_at_step}
