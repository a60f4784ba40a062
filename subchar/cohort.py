"""The batch engine's cohorts (``subchar.batch_engine``): workers on one thread whose LM steps meet in one call.

Each worker is a greenlet replaying chunks with an adapter of its own; its adapter's LM is the cohort's
``LMCapabilities`` (``Cohort.token_lm``), whose ``step_many`` parks the worker until every live worker of the cohort
is parked, then asks the wrapped LM once for all of them (one forward pass of a few dozen branches instead of a few).
"""

from __future__ import annotations

import threading
from typing import Any, Callable, Sequence

from eval.errors import UserError
from subchar.lm import LMCapabilities, TokenLM, capabilities_of


class Cohort:
    """A ``TokenLM`` shared by one cohort of workers, greenlets on one thread: ``step_many`` parks the calling
    worker until every live worker of the cohort is parked, then asks the wrapped LM once for all of them. Greenlets
    switch in about a microsecond where worker threads handed off through a condition variable and the GIL (a lone
    process, CUDA or one core, gains most). Cohorts run on threads of their own, so while one cohort's forward pass
    runs (torch releases the GIL inside it) another cohort's adapters do their Python work; the other methods take
    ``shared``, one lock for all cohorts, so they never run two at once (``states_along`` may append to a model's
    trunk)."""

    def __init__(self, lm: TokenLM, shared: threading.Lock) -> None:
        self.lm = capabilities_of(lm)
        self.vocab_size = lm.vocab_size
        self.waiting: list[tuple[list[Any], list[int], dict[str, Any]]] = []
        self.shared = shared
        self.greenlet = greenlet_module()
        self.hub: Any = None  # the greenlet running ``run``, where parked workers switch to
        self.forward_passes = 0

    def token_lm(self) -> LMCapabilities:
        """This cohort as the LM of its workers' adapters: batched, with the wrapped LM's other capabilities."""
        inner = self.lm
        return LMCapabilities(
            self, batched=True, probs_many=self.probs_many if inner.probs_many is not None else None,
            settle=self.settle if inner.settles else None, chunk_chars=inner.chunk_chars,
            step_many=self.step_many, logprobs_many=self.logprobs_many, states_along=self.states_along,
        )

    def run(self, workers: list[Callable[[], None]]) -> None:
        """Run ``workers`` (functions that catch their own errors) to the end, in rounds: each live worker runs
        until it parks in ``step_many`` or ends, then one LM call answers every parked worker."""
        self.hub = self.greenlet.getcurrent()
        live = [self.greenlet.greenlet(work) for work in workers]
        while live:
            for worker in live:
                worker.switch()
            live = [worker for worker in live if not worker.dead]
            if self.waiting:
                self._answer()

    def start(self) -> Any:
        with self.shared:
            return self.lm.start()

    def logprobs(self, state: Any) -> Any:
        with self.shared:
            return self.lm.logprobs(state)

    def logprobs_many(self, states: Sequence[Any]) -> list[Any]:
        with self.shared:
            return self.lm.logprobs_many(states)

    def probs_many(self, states: Sequence[Any]) -> list[Any]:
        with self.shared:
            return list(self.lm.probs_many(states))  # type: ignore[misc]

    def step(self, state: Any, token: int) -> Any:
        return self.step_many([state], [token])[0]

    def states_along(self, state: Any, tokens: Sequence[int], at: Sequence[int]) -> list[Any]:
        with self.shared:
            return self.lm.states_along(state, tokens, at)

    def settle(self, state: Any) -> Any:
        with self.shared:
            return self.lm.settle(state)

    def step_many(self, states: Sequence[Any], tokens: Sequence[int]) -> list[Any]:
        slot: dict[str, Any] = {}
        self.waiting.append((list(states), list(tokens), slot))
        self.hub.switch()  # back in ``run`` until the cohort's LM call has answered
        if "error" in slot:
            raise slot["error"]
        return slot["out"]

    def _answer(self) -> None:
        """One LM call for every parked worker (outside ``shared``: another cohort's adapters run meanwhile)."""
        batch, self.waiting = self.waiting, []
        try:
            answers = self.lm.step_many([s for states, _, _ in batch for s in states],
                                        [t for _, tokens, _ in batch for t in tokens])
            for states, _, slot in batch:
                slot["out"], answers = answers[: len(states)], answers[len(states) :]
        except BaseException as error:  # every parked worker raises it, none is left waiting
            for _, _, slot in batch:
                slot["error"] = error
        self.forward_passes += 1


def greenlet_module() -> Any:
    """``greenlet``, imported where first needed: an exported submission inlines this module, and the benchmark's
    image has no greenlet (its harness only streams)."""
    try:
        import greenlet
    except ImportError:
        raise UserError("the batch engine runs a batched LM's workers as greenlets: pip install greenlet (or "
                        "evaluate with --engine stream)") from None
    return greenlet
