"""The batch evaluation engine: the streaming benchmark loop's answers, computed many positions at a time.

In exact mode the adapter's LM questions depend only on the true text, never on its own predictions, and every
commit point (``subchar.commit_point``) cuts the stream into independent *segments*: after a commit the adapter
holds the committed tokens' LM state and respells the rest of the buffer from it, nothing else. So:

1. the commit points and committed tokens are found from the text alone (``plan``);
2. the trunk — the LM state after each commit — is stepped once along the committed tokens (``states_along``:
   one teacher-forced pass for a model that offers it);
3. the segments, cut into one run of consecutive segments (a *chunk*) per worker thread, are replayed by many
   adapters at once, each resumed at its chunk's trunk state (``CharAdapter.resume``) and then streaming through
   its chunk's commits itself, so that each commit finds the canonical spelling among its coverings and the
   respelling after it among its remembered steps (``LMAnswers.along``). Their LM steps meet in a ``BatchingLM``
   per cohort of workers, which asks the model once for all of the cohort's waiting workers (one forward pass of
   a few dozen branches instead of a few), when the LM has ``step_many``; two cohorts take turns, one's forward
   pass running while the other's adapters work;
4. any chunk whose adapter departs from the plan (a forced or eager commit, a back-off distribution: events
   that depend on LM mass) invalidates the trunk after it, so from that chunk on the stream is replayed by one
   adapter exactly as the streaming loop would.

The answers are the streaming loop's: the same adapter code runs on the same states. Only floating-point
rounding can differ, where the model's batched forward pass rounds differently from a smaller batch (float32
networks: ~1e-7 relative; the engine tests run float64 models, where the two engines agree to 1e-12).
LMs without ``step_many`` (the n-gram) gain nothing from threads: their whole stream is one chunk.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from subchar.lm import logprobs_many, states_along, step_many

WORKERS = 16  # chunks streamed at once: the rows of the model's forward passes, over all cohorts. With two cohorts
# overlapping, 16 ran as fast as 64 here (hyena, 2 cores) and kept a quarter of the branch states alive: 64 workers
# ran a hyena evaluation of the 60k window out of 24 GB of memory.
PROGRESS_EVERY = 256  # positions between progress reports of one worker
COHORTS = 2  # worker groups whose forward passes and adapter work overlap (one core each on a 2-core machine)


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
    """A ``TokenLM`` shared by one cohort of worker threads: ``step_many`` waits until every running worker of the
    cohort is waiting, then asks the wrapped LM once for all of them. That call runs outside the cohort's lock, so
    while one cohort's forward pass runs (torch releases the GIL inside it) another cohort's adapters do their
    Python work: two cohorts keep two cores busy. The other methods take ``shared``, one lock for all cohorts, so
    they never run two at once (``states_along`` may append to a model's trunk)."""

    def __init__(self, lm: Any, workers: int, shared: threading.Lock | None = None) -> None:
        self.lm, self.vocab_size = lm, lm.vocab_size
        self.running = workers
        self.waiting: list[tuple[list[Any], list[int], dict[str, Any]]] = []
        self.condition = threading.Condition()
        self.shared = shared or threading.Lock()
        self.forward_passes = 0

    def start(self) -> Any:
        with self.shared:
            return self.lm.start()

    def logprobs(self, state: Any) -> Any:
        with self.shared:
            return self.lm.logprobs(state)

    def logprobs_many(self, states: Sequence[Any]) -> list[Any]:
        with self.shared:
            return logprobs_many(self.lm, states)

    def step(self, state: Any, token: int) -> Any:
        return self.step_many([state], [token])[0]

    def states_along(self, state: Any, tokens: Sequence[int], at: Sequence[int]) -> list[Any]:
        with self.shared:
            return states_along(self.lm, state, tokens, at)

    def settle(self, state: Any) -> Any:
        settle = getattr(self.lm, "settle", None)
        if settle is None:
            return state
        with self.shared:
            return settle(state)

    def step_many(self, states: Sequence[Any], tokens: Sequence[int]) -> list[Any]:
        slot: dict[str, Any] = {}
        with self.condition:
            self.waiting.append((list(states), list(tokens), slot))
            batch = self._take_if_all_wait()
        if batch:
            self._answer(batch)
        with self.condition:
            while not slot:
                self.condition.wait()
        if "error" in slot:
            raise slot["error"]
        return slot["out"]

    def finished(self) -> None:
        """A worker is done: the others no longer wait for it."""
        with self.condition:
            self.running -= 1
            batch = self._take_if_all_wait()
        if batch:
            self._answer(batch)

    def _take_if_all_wait(self) -> list[tuple[list[Any], list[int], dict[str, Any]]]:
        if not self.waiting or len(self.waiting) < self.running:
            return []
        batch, self.waiting = self.waiting, []
        return batch

    def _answer(self, batch: list[tuple[list[Any], list[int], dict[str, Any]]]) -> None:
        """One LM call for the whole batch (outside the lock), then every waiting worker gets its rows."""
        try:
            answers = step_many(self.lm, [s for states, _, _ in batch for s in states],
                                [t for _, tokens, _ in batch for t in tokens])
            outcome = []
            for states, _, _ in batch:
                outcome.append({"out": answers[: len(states)]})
                answers = answers[len(states) :]
        except BaseException as error:  # every waiting worker raises it, none hangs
            outcome = [{"error": error}] * len(batch)
        with self.condition:
            self.forward_passes += 1
            for (_, _, slot), result in zip(batch, outcome):
                slot.update(result)
            self.condition.notify_all()


def trunk_states(lm: Any, trunk: list[int], starts: list[int]) -> dict[int, Any]:
    """The LM state after ``trunk[:i]`` for each ``i`` in ``starts``, from one ``states_along`` call."""
    wanted = sorted(set(starts))
    return dict(zip(wanted, states_along(lm, lm.start(), trunk, wanted)))


def chunks_of(segments: list[Segment], count: int) -> list[range]:
    """``segments`` cut into at most ``count`` runs of consecutive segments with about equal characters."""
    total = segments[-1].end
    runs, first = [], 0
    for k, segment in enumerate(segments):
        if segment.end >= total * (len(runs) + 1) / count or k == len(segments) - 1:
            runs.append(range(first, k + 1))
            first = k + 1
    return runs


def score(adapter: Any, text: str, bits: bool, workers: int = WORKERS,
          progress: Callable[[int], None] | None = None) -> tuple[list[str], list[float] | None]:
    """Every prediction of the streaming loop over ``text`` and (with ``bits``) P(true char) at each position;
    ``progress`` is told how many positions were scored, every ``PROGRESS_EVERY`` or so."""
    segments, trunk = plan(adapter, text)
    batched = hasattr(adapter.lm, "step_many") and len(segments) > 1
    chunks = chunks_of(segments, workers if batched else 1)
    states = trunk_states(adapter.lm, trunk, [segments[chunk[0]].trunk_len for chunk in chunks])
    guesses: list[str] = [""] * len(text)
    probs: list[float] | None = [0.0] * len(text) if bits else None
    failed: list[int] = []
    threads = len(chunks)
    shared = threading.Lock()
    cohorts = [BatchingLM(adapter.lm, len(range(k, threads, COHORTS)), shared) for k in range(min(COHORTS, threads))]
    lock = threading.Lock()
    errors: list[BaseException] = []

    def tell(scored: int) -> None:
        if progress is not None:
            with lock:
                progress(scored)

    def work(k: int, lm: Any) -> None:
        try:
            chunk = [segments[i] for i in chunks[k]]
            first, last = chunk[0], chunk[-1]
            worker = adapter.worker(lm)
            worker.resume(states[first.trunk_len], first.rest)
            check = k + 1 < len(chunks)  # the next chunk starts from the plan's state after this one's last commit
            replay(worker, text, first.start, last.end, guesses, probs, check=check, progress=tell)
            if check and not worker.kept_to_plan([s.next_commit for s in chunk]):
                with lock:
                    failed.append(k)
        except BaseException as error:  # raised again in the caller's thread below
            errors.append(error)
        finally:
            if batched:
                lm.finished()

    if not batched:
        work(0, adapter.lm)
    else:
        pool = [threading.Thread(target=work, args=(k, cohorts[k % len(cohorts)]), daemon=True) for k in range(threads)]
        for thread in pool:
            thread.start()
        for thread in pool:
            thread.join()
    if errors:
        raise errors[0]
    adapter.batch_report = {"segments": len(segments), "threads": threads,
                            "replayed_from_segment": chunks[min(failed)][0] if failed else None,
                            "forward_passes": sum(c.forward_passes for c in cohorts) if batched else None}
    if failed:  # from the first departure on, the stream as the streaming loop runs it
        segment = segments[chunks[min(failed)][0]]
        worker = adapter.worker(adapter.lm)
        worker.resume(states[segment.trunk_len], segment.rest, seen=text[: segment.start])
        replay(worker, text, segment.start, len(text), guesses, probs, check=False, progress=lambda _: None)
    return guesses, probs


def replay(worker: Any, text: str, start: int, end: int, guesses: list[str], probs: list[float] | None,
           check: bool, progress: Callable[[int], None]) -> None:
    """The benchmark loop over positions ``start .. end-1``; with ``check`` also the observe of the last one
    (the commit the plan expects there). ``progress`` hears of every ``PROGRESS_EVERY`` positions scored."""
    for position in range(start, end):
        guesses[position] = worker.predict()
        if probs is not None:
            probs[position] = worker.distribution().get(text[position], 0.0)
        if position + 1 < end:
            worker.observe(text[position])
        elif check:
            worker.end_segment(text[position])
        if (position + 1 - start) % PROGRESS_EVERY == 0 or position + 1 == end:
            progress((position - start) % PROGRESS_EVERY + 1)
