"""The batch evaluation engine: the streaming benchmark loop's answers, computed many positions at a time.

In exact mode the adapter's LM questions depend only on the true text, never on its own predictions, and every
commit point (``subchar.commit_point``) cuts the stream into independent *segments*: after a commit the adapter
holds the committed tokens' LM state and respells the rest of the buffer from it, nothing else. So:

1. the commit points and committed token ids are found from the text alone (``subchar.replay_plan.plan``; with two
   or more processes the second half is planned by a forked process meanwhile, and joined where the two plans
   meet);
2. the LM state after each commit is stepped once along the committed ids (``states_along``: one teacher-forced
   pass for a model that offers it);
3. the segments, cut into runs of consecutive segments (*chunks*: one per worker, or of about the LM's
   ``batch_chunk_chars`` characters, ``subchar.lm``; each cut where the next chunk's resume is cheapest,
   ``chunks_of``), are replayed by many adapters at once, each resumed at its chunk's commit state
   (``CharAdapter.resume``) and then streaming through its chunk's commits itself, so that each commit finds the
   canonical spelling among its coverings and the respelling after it among its remembered steps
   (``LMAnswers.along``). Their LM steps meet in a ``subchar.cohort.Cohort`` of workers (greenlets on one
   thread), when the LM is batched. The chunks are shared by one forked process per usable CPU core
   (``subchar.forking``: the adapters' Python work then runs on every core, not on one under the GIL), each with
   one cohort of ``WORKERS`` workers that take the process's chunks in order (with small chunks, the branches of
   one pass stay within a few hundred tokens of each other); where there is one process (one core, or CUDA,
   which a forked child cannot use) two cohorts on two threads take turns, one's forward pass running while the
   other's adapters work;
4. any chunk whose adapter departs from the plan (a forced or eager commit, a back-off distribution: events
   that depend on LM mass) invalidates the commit states after it, so from that chunk on the stream is replayed by
   one adapter exactly as the streaming loop would.

The answers are the streaming loop's: the same adapter code runs on the same states. Only floating-point
rounding can differ, where the model's batched forward pass rounds differently from a smaller batch (float32
networks: ~1e-7 relative; the engine tests run float64 models, where the two engines agree to 1e-12).
LMs without ``step_many`` (the n-gram) gain nothing from more workers: one chunk per process. An LM that learns
from what is committed (``commit``, ``subchar.lm``: ``zoo.online_ngram``) answers according to everything committed
before, so its window is streamed in order by one adapter (``in_order``).

This module sits above the adapter: ``batch_adapter`` builds a ``CharAdapter`` whose ``batch_scores`` (the hook
``eval.evaluate`` calls for ``engine="batch"``) is ``batch_scores`` here.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from functools import partial
from typing import Any, Callable

from subchar.adapter import CharAdapter, Mode
from subchar.cohort import Cohort
from subchar.forking import process_count, run_forked
from subchar.lm import TokenLM, capabilities_of
from subchar.replay_plan import Replayer, Segment, chunks_of, plan

# Chunks streamed at once per process: the rows of the model's forward passes, over all cohorts. More workers keep
# more branch states alive (a hyena evaluation of the whole window can run out of memory with far more).
WORKERS = 24
PROGRESS_EVERY = 256  # positions between progress reports of one worker
COHORTS = 2  # worker groups of one lone process whose forward passes and adapter work overlap (one core each)

Scores = tuple[list[str], list[float] | None]


def batch_adapter(lm: TokenLM, tokenizer: Any, mode: Mode = "exact", beam: int | None = None,
                  prune: float | None = None, canonical: bool = False) -> CharAdapter:
    """A ``CharAdapter`` for evaluation: ``evaluate(..., engine="batch")`` runs it through this engine."""
    return CharAdapter(lm, tokenizer, mode=mode, beam=beam, prune=prune, batch=batch_scores, canonical=canonical)


def batch_scores(adapter: CharAdapter, text: str, bits: bool, progress: Callable[[int], None] | None,
                 processes: int | None) -> Scores:
    """``CharAdapter.batch_scores``'s work (the adapter is reset): ``score``'s answers without its report."""
    guesses, probs, _ = score(adapter, text, bits, processes=processes, progress=progress)
    return guesses, probs


def score(adapter: Replayer, text: str, bits: bool, workers: int = WORKERS, processes: int | None = None,
          progress: Callable[[int], None] | None = None) -> tuple[list[str], list[float] | None, dict[str, Any]]:
    """Every prediction of the streaming loop over ``text`` and (with ``bits``) P(true char) at each position, and
    a report of how they were found (segments, chunks, processes, the segment a replay started from, forward
    passes); ``progress`` hears 0 once the commit states are ready, then how many positions were scored, every
    ``PROGRESS_EVERY`` or so. ``processes`` (default: the usable CPU cores, ``process_count``) share the chunks,
    ``workers`` workers each when the LM is batched."""
    lm = capabilities_of(adapter.lm)
    if lm.learns:
        return in_order(adapter, text, bits, progress)
    most = process_count(processes, len(text))
    segments, ids = plan(adapter, text, most)
    count = min(most, len(segments))
    if not lm.batched:
        wanted = count  # more workers gain nothing: one chunk per process
    elif lm.chunk_chars:
        wanted = max(count * workers, math.ceil(len(text) / lm.chunk_chars))
    else:
        wanted = count * workers
    chunks = chunks_of(segments, wanted)
    states = commit_states(lm, ids, [segments[chunk[0]].ids_before for chunk in chunks])
    if progress is not None:
        progress(0)  # the commit states are ready: scoring starts
    guesses: list[str] = [""] * len(text)
    probs: list[float] | None = [0.0] * len(text) if bits else None
    parts = [range(len(chunks) * p // count, len(chunks) * (p + 1) // count) for p in range(count)]
    parts = [part for part in parts if len(part)]
    cohorts = 1 if len(parts) > 1 else COHORTS
    job = Job(adapter, text, segments, chunks, states, guesses, probs, lm.batched, progress, cohorts, workers)
    failed, passes = job.run_forked(parts) if len(parts) > 1 else job.run(parts[0])
    report = {"segments": len(segments), "chunks": len(chunks), "processes": len(parts),
              "replayed_from_segment": chunks[min(failed)][0] if failed else None,
              "forward_passes": passes if lm.batched else None}
    if failed:  # from the first departure on, the stream as the streaming loop runs it
        segment = segments[chunks[min(failed)][0]]
        worker = adapter.worker(adapter.lm)
        worker.resume(states[segment.ids_before], segment.rest, seen=text[: segment.start])
        replay(worker, text, segment.start, len(text), guesses, probs, check=False, progress=lambda _: None)
    return guesses, probs, report


def in_order(adapter: Replayer, text: str, bits: bool,
             progress: Callable[[int], None] | None) -> tuple[list[str], list[float] | None, dict[str, Any]]:
    """``score`` for an LM that learns from what is committed: the window streamed in order by one adapter."""
    guesses: list[str] = [""] * len(text)
    probs: list[float] | None = [0.0] * len(text) if bits else None
    tell = progress or (lambda _: None)
    tell(0)
    replay(adapter.worker(adapter.lm), text, 0, len(text), guesses, probs, check=False, progress=tell)
    report = {"segments": None, "chunks": 1, "processes": 1, "replayed_from_segment": None, "forward_passes": None}
    return guesses, probs, report


def commit_states(lm: TokenLM, ids: list[int], starts: list[int]) -> dict[int, Any]:
    """The LM state after ``ids[:i]`` for each ``i`` in ``starts``, from one ``states_along`` call."""
    wanted = sorted(set(starts))
    return dict(zip(wanted, capabilities_of(lm).states_along(lm.start(), ids, wanted)))


@dataclass
class Job:
    """One scoring run: what every chunk needs, and the lists the chunks fill in."""

    adapter: Replayer
    text: str
    segments: list[Segment]
    chunks: list[range]
    states: dict[int, Any]
    guesses: list[str]
    probs: list[float] | None
    batched: bool
    progress: Callable[[int], None] | None
    cohorts: int  # per process: processes already keep the cores busy, a lone one overlaps two cohorts
    workers: int  # workers per process (batched LMs)

    def span(self, part: range) -> tuple[int, int]:
        """The positions the chunks ``part`` score."""
        return self.segments[self.chunks[part[0]][0]].start, self.segments[self.chunks[part[-1]][-1]].end

    def run(self, part: range) -> tuple[list[int], int]:
        """Score the chunks ``part`` in this process: when the LM is batched, ``workers`` greenlets take them in
        order, dealt round the cohorts (their steps meet in their ``Cohort``), each cohort on a thread of its own.
        Returns the chunks that departed from the plan and the forward passes."""
        count = min(self.workers, len(part))
        shared = threading.Lock()
        cohorts = [Cohort(self.adapter.lm, shared) for _ in range(min(self.cohorts, count))] if self.batched else []
        lock = threading.Lock()
        todo = iter(part)
        failed: list[int] = []
        errors: list[BaseException] = []

        def tell(scored: int) -> None:
            if self.progress is not None:
                with lock:
                    self.progress(scored)

        def take() -> int | None:
            with lock:
                return None if errors else next(todo, None)

        def work(lm: TokenLM) -> None:
            try:
                worker = self.adapter.worker(lm)
                while (k := take()) is not None:
                    chunk = [self.segments[i] for i in self.chunks[k]]
                    first, last = chunk[0], chunk[-1]
                    worker.resume(self.states[first.ids_before], first.rest)
                    check = last.next_commit is not None  # the next chunk starts from the plan's state after this
                    replay(worker, self.text, first.start, last.end, self.guesses, self.probs, check=check,
                           progress=tell)
                    if check and not worker.kept_to_plan([s.next_commit for s in chunk]):
                        with lock:
                            failed.append(k)
            except BaseException as error:  # raised again in the caller's thread below
                errors.append(error)

        if not self.batched:
            work(self.adapter.lm)
        else:
            # every cohort on a new thread, even a lone one: a forked child's main thread would inherit the
            # parent's OpenMP pool, whose threads did not survive the fork (torch hangs in its first parallel op)
            members = [[partial(work, cohort.token_lm())] * len(range(k, count, len(cohorts)))
                       for k, cohort in enumerate(cohorts)]
            pool = [threading.Thread(target=cohort.run, args=(workers,), daemon=True)
                    for cohort, workers in zip(cohorts, members)]
            for thread in pool:
                thread.start()
            for thread in pool:
                thread.join()
        if errors:
            raise errors[0]
        return failed, sum(c.forward_passes for c in cohorts)

    def answers(self, part: range, tell: Callable[[int], None]) -> tuple[list[str], list[float] | None, list[int], int]:
        """In a forked process: ``run(part)`` with its progress told to ``tell``, and the positions' answers."""
        self.progress = tell
        failed, passes = self.run(part)
        start, end = self.span(part)
        return self.guesses[start:end], None if self.probs is None else self.probs[start:end], failed, passes

    def run_forked(self, parts: list[range]) -> tuple[list[int], int]:
        """``run`` of each part in its own forked process (``subchar.forking.run_forked``), their answers written
        into this job's lists; returns the chunks that departed from the plan and the forward passes."""
        failed: list[int] = []
        passes = [0]

        def done(part: range, outcome: tuple[list[str], list[float] | None, list[int], int]) -> None:
            start, end = self.span(part)
            guesses, probs, part_failed, part_passes = outcome
            self.guesses[start:end] = guesses
            if self.probs is not None:
                self.probs[start:end] = probs  # type: ignore[assignment]
            failed.extend(part_failed)
            passes[0] += part_passes

        run_forked(parts, self.answers, self.progress, done)
        return failed, passes[0]


def replay(worker: Replayer, text: str, start: int, end: int, guesses: list[str], probs: list[float] | None,
           check: bool, progress: Callable[[int], None]) -> None:
    """The benchmark loop over positions ``start .. end-1``; with ``check`` also the observe of the last one
    (the commit the plan expects there). ``progress`` hears of every ``PROGRESS_EVERY`` positions scored."""
    for position in range(start, end):
        guesses[position] = worker.predict()
        if probs is not None:
            probs[position] = worker.probability(text[position])
        if position + 1 < end:
            worker.observe(text[position])
        elif check:
            worker.end_segment(text[position])
        if (position + 1 - start) % PROGRESS_EVERY == 0 or position + 1 == end:
            progress((position - start) % PROGRESS_EVERY + 1)
