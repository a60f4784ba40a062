"""The batch evaluation engine: the streaming benchmark loop's answers, computed many positions at a time.

In exact mode the adapter's LM questions depend only on the true text, never on its own predictions, and every
commit point (``subchar.commit_point``) cuts the stream into independent *segments*: after a commit the adapter
holds the committed tokens' LM state and respells the rest of the buffer from it, nothing else. So:

1. the commit points and committed tokens are found from the text alone (``plan``);
2. the trunk — the LM state after each commit — is stepped once along the committed tokens;
3. segments are replayed by many adapters at once, one per worker thread, each resumed at its segment's trunk
   state (``CharAdapter.resume``). Their LM steps meet in one ``BatchingLM``, which asks the model once for all
   waiting workers (one forward pass of a few hundred branches instead of a few), when the LM has ``step_many``;
4. any segment whose adapter departs from the plan (a forced or eager commit, a back-off distribution: events
   that depend on LM mass) invalidates the trunk after it, so from that segment on the stream is replayed by one
   adapter exactly as the streaming loop would.

The answers are the streaming loop's: the same adapter code runs on the same states. Only floating-point
rounding can differ, where the model's batched forward pass rounds differently from a smaller batch (float32
networks: ~1e-7 relative; the engine tests run float64 models, where the two engines agree to 1e-12).
LMs without ``step_many`` (the n-gram) gain nothing from threads: their segments run in one thread.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from subchar.lm import logprobs_many, step_many

WORKERS = 64  # concurrent segments: the batch size of the model's forward passes


@dataclass(frozen=True)
class Segment:
    """Predictions ``start .. end-1``: the adapter resumes at the LM state after ``trunk[:trunk_len]`` with
    ``rest`` (observed, not committed) in its buffer; observing char ``end-1`` commits ``next_commit``."""

    start: int
    end: int
    rest: str
    trunk_len: int
    next_commit: str | None  # None: the last segment


def plan(adapter: Any, text: str) -> tuple[list[Segment], list[int]]:
    """The segments of ``text`` and the committed token ids in order, assuming no LM-dependent fallback
    (the commit rule of ``CharAdapter._observe_exact``)."""
    segments: list[Segment] = []
    trunk: list[int] = []
    buffer = rest = ""
    start = 0
    for position, char in enumerate(text):
        buffer += char
        cut = adapter.commit_point(buffer)
        if cut:
            segments.append(Segment(start, position + 1, rest, len(trunk), buffer[:cut]))
            trunk.extend(adapter._encoding(buffer[:cut])[0])
            buffer = rest = buffer[cut:]
            start = position + 1
    segments.append(Segment(start, len(text), rest, len(trunk), None))
    return segments, trunk


class BatchingLM:
    """A ``TokenLM`` shared by worker threads: ``step_many`` waits until every running worker is waiting, then
    asks the wrapped LM once for all of them; the other methods are serialised, so the wrapped LM is never
    called from two threads at once."""

    def __init__(self, lm: Any, workers: int) -> None:
        self.lm, self.vocab_size = lm, lm.vocab_size
        self.running = workers
        self.waiting: list[tuple[list[Any], list[int], dict[str, Any]]] = []
        self.condition = threading.Condition()
        self.forward_passes = 0

    def start(self) -> Any:
        with self.condition:
            return self.lm.start()

    def logprobs(self, state: Any) -> Any:
        with self.condition:
            return self.lm.logprobs(state)

    def logprobs_many(self, states: Sequence[Any]) -> list[Any]:
        with self.condition:
            return logprobs_many(self.lm, states)

    def step(self, state: Any, token: int) -> Any:
        return self.step_many([state], [token])[0]

    def step_many(self, states: Sequence[Any], tokens: Sequence[int]) -> list[Any]:
        slot: dict[str, Any] = {}
        with self.condition:
            self.waiting.append((list(states), list(tokens), slot))
            self._flush_if_all_wait()
            while not slot:
                self.condition.wait()
        if "error" in slot:
            raise slot["error"]
        return slot["out"]

    def finished(self) -> None:
        """A worker is done: the others no longer wait for it."""
        with self.condition:
            self.running -= 1
            self._flush_if_all_wait()

    def _flush_if_all_wait(self) -> None:
        if not self.waiting or len(self.waiting) < self.running:
            return
        batch, self.waiting = self.waiting, []
        try:
            answers = step_many(self.lm, [s for states, _, _ in batch for s in states],
                                [t for _, tokens, _ in batch for t in tokens])
            self.forward_passes += 1
            at = 0
            for states, _, slot in batch:
                slot["out"] = answers[at : at + len(states)]
                at += len(states)
        except BaseException as error:  # every waiting worker raises it, none hangs
            for _, _, slot in batch:
                slot["error"] = error
        self.condition.notify_all()


def trunk_states(lm: Any, trunk: list[int], starts: list[int]) -> dict[int, Any]:
    """The LM state after ``trunk[:i]`` for each ``i`` in ``starts``."""
    wanted, states = set(starts), {}
    state = lm.start()
    for i in range(len(trunk) + 1):
        if i in wanted:
            states[i] = state
        if i < len(trunk):
            state = lm.step(state, trunk[i])
    return states


def score(adapter: Any, text: str, bits: bool, workers: int = WORKERS,
          progress: Callable[[int], None] | None = None) -> tuple[list[str], list[float] | None]:
    """Every prediction of the streaming loop over ``text`` and (with ``bits``) P(true char) at each position;
    ``progress`` is told how many positions each finished segment scored."""
    segments, trunk = plan(adapter, text)
    states = trunk_states(adapter.lm, trunk, [s.trunk_len for s in segments])
    guesses: list[str] = [""] * len(text)
    probs: list[float] | None = [0.0] * len(text) if bits else None
    failed: list[int] = []
    batched = hasattr(adapter.lm, "step_many") and len(segments) > 1
    threads = min(workers, len(segments)) if batched else 1
    lm = BatchingLM(adapter.lm, threads) if batched else adapter.lm
    queue = iter(range(len(segments)))
    lock = threading.Lock()
    errors: list[BaseException] = []

    def work() -> None:
        try:
            worker = adapter.worker(lm)
            while True:
                with lock:
                    k = next(queue, None)
                if k is None:
                    return
                segment = segments[k]
                worker.resume(states[segment.trunk_len], segment.rest)
                replay(worker, text, segment.start, segment.end, guesses, probs, check=segment.next_commit is not None)
                with lock:
                    if progress is not None:
                        progress(segment.end - segment.start)
                    if not worker.kept_to_plan(segment.next_commit):
                        failed.append(k)
        except BaseException as error:  # raised again in the caller's thread below
            errors.append(error)
        finally:
            if batched:
                lm.finished()

    if threads == 1:
        work()
    else:
        pool = [threading.Thread(target=work, daemon=True) for _ in range(threads)]
        for thread in pool:
            thread.start()
        for thread in pool:
            thread.join()
    if errors:
        raise errors[0]
    adapter.batch_report = {"segments": len(segments), "threads": threads, "replayed_from_segment": min(failed, default=None),
                            "forward_passes": lm.forward_passes if batched else None}
    if failed:  # from the first departure on, the stream as the streaming loop runs it
        segment = segments[min(failed)]
        worker = adapter.worker(adapter.lm)
        worker.resume(states[segment.trunk_len], segment.rest, seen=text[: segment.start])
        replay(worker, text, segment.start, len(text), guesses, probs, check=False)
    return guesses, probs


def replay(worker: Any, text: str, start: int, end: int, guesses: list[str], probs: list[float] | None,
           check: bool) -> None:
    """The benchmark loop over positions ``start .. end-1``; with ``check`` also the observe of the last one
    (the commit the plan expects there)."""
    for position in range(start, end):
        guesses[position] = worker.predict()
        if probs is not None:
            probs[position] = worker.distribution().get(text[position], 0.0)
        if position + 1 < end or check:
            worker.observe(text[position])
