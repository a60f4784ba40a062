"""The batch evaluation engine: the streaming benchmark loop's answers, computed many positions at a time.

In exact mode the adapter's LM questions depend only on the true text, never on its own predictions, and every
commit point (``subchar.commit_point``) cuts the stream into independent *segments*: after a commit the adapter
holds the committed tokens' LM state and respells the rest of the buffer from it, nothing else. So:

1. the commit points and committed tokens are found from the text alone (``plan``; with two or more processes the
   second half is planned by a forked process meanwhile, and joined where the two plans meet);
2. the trunk — the LM state after each commit — is stepped once along the committed tokens (``states_along``:
   one teacher-forced pass for a model that offers it);
3. the segments, cut into runs of consecutive segments (*chunks*: one per worker, or of about the LM's
   ``batch_chunk_chars`` characters, ``subchar.lm``; each cut where the next chunk's resume is cheapest,
   ``chunks_of``), are replayed by many adapters at once, each resumed at its chunk's trunk state
   (``CharAdapter.resume``) and then streaming through its chunk's commits itself, so that each commit finds the
   canonical spelling among its coverings and the respelling after it among its remembered steps
   (``LMAnswers.along``). Their LM steps meet in a ``Cohort`` of workers (greenlets on one thread), which asks the
   model once for all of its parked workers (one forward pass of a few dozen branches instead of a few), when the
   LM has ``step_many``. The chunks are shared by one forked process per usable CPU core (the adapters' Python work
   then runs on every core, not on one under the GIL), each with one cohort of ``WORKERS`` workers that take the
   process's chunks in order (with small chunks, the branches of one pass stay within a few hundred tokens of
   each other); where there is one process (one core, or CUDA, which a forked child cannot use) two cohorts on two
   threads take turns, one's forward pass running while the other's adapters work;
4. any chunk whose adapter departs from the plan (a forced or eager commit, a back-off distribution: events
   that depend on LM mass) invalidates the trunk after it, so from that chunk on the stream is replayed by one
   adapter exactly as the streaming loop would.

The answers are the streaming loop's: the same adapter code runs on the same states. Only floating-point
rounding can differ, where the model's batched forward pass rounds differently from a smaller batch (float32
networks: ~1e-7 relative; the engine tests run float64 models, where the two engines agree to 1e-12).
LMs without ``step_many`` (the n-gram) gain nothing from more workers: one chunk per process.
"""

from __future__ import annotations

import math
import multiprocessing
import multiprocessing.connection
import os
import sys
import threading
from dataclasses import dataclass, replace
from functools import partial
from typing import Any, Callable, Sequence

from eval.errors import UserError
from subchar.lm import logprobs_many, states_along, step_many

WORKERS = 24  # chunks streamed at once per process: the rows of the model's forward passes, over all cohorts. On 2
# cores, 24 beat 16 by 2-3% (mamba, hyena; 30k characters) and, with chunks of 32 characters instead of 48, 1-5% for the
# Transformer (60k); 32 gained no more. More workers keep more branch states alive: 64 ran a hyena evaluation of the
# 60k window out of 24 GB of memory.
PROGRESS_EVERY = 256  # positions between progress reports of one worker
MAX_PROCESSES = 8  # forked processes sharing the chunks, at most (one per usable core)
PROCESSES_VARIABLE = "SUBCHAR_PROCESSES"  # environment variable that sets the process count (1: no forking)
CUT_SLACK_CHARS = 8  # how far a chunk boundary may move to the cheapest resume (``chunks_of``)
PLAN_SPLIT_CHARS = 4096  # half a text at least this long is planned in a forked process meanwhile
COHORTS = 2  # worker groups of one lone process whose forward passes and adapter work overlap (one core each)


@dataclass(frozen=True)
class Segment:
    """Predictions ``start .. end-1``: the adapter resumes at the LM state after ``trunk[:trunk_len]`` with
    ``rest`` (observed, not committed) in its buffer; observing char ``end-1`` commits ``next_commit``."""

    start: int
    end: int
    rest: str
    trunk_len: int
    next_commit: str | None  # None: the last segment


def plan(adapter: Any, text: str, processes: int = 1) -> tuple[list[Segment], list[int]]:
    """The segments of ``text`` and the committed token ids in order, assuming no LM-dependent fallback
    (the commit rule of ``CharAdapter._observe_exact``).

    With ``processes >= 2`` and a long text, a forked process plans the second half from an empty buffer meanwhile
    (the plan is ~10 pre-tokenizations per commit: 2 s of one core for the 60k window). The plan's state after a
    commit is only where the buffer starts, so once this walk commits into a state the second half's plan also
    reached (same position, same rest), the rest is that plan's; until then this walk goes on alone, so the result
    is always the serial one."""
    half = len(text) // 2
    tail = Forked(_plan_tail, adapter, text, half) if processes >= 2 and half >= PLAN_SPLIT_CHARS else None
    meeting: dict[tuple[int, str], int] | None = None  # (start, rest) of the second half's segments -> their index
    segments: list[Segment] = []
    trunk: list[int] = []
    buffer = rest = ""
    start = 0
    try:
        for position, char in enumerate(text):
            buffer += char
            cut = adapter.commit_point(buffer)
            if not cut:
                continue
            segments.append(Segment(start, position + 1, rest, len(trunk), buffer[:cut]))
            trunk.extend(adapter._encoding(buffer[:cut])[0])
            buffer = rest = buffer[cut:]
            start = position + 1
            if tail is None or start < half:
                continue
            if meeting is None:
                tail_segments, tail_trunk, known = tail.result()
                adapter.commit_point.remember(known)  # the workers forked later find the second half's answers
                meeting = {(segment.start, segment.rest): k for k, segment in enumerate(tail_segments)}
            k = meeting.get((start, rest))
            if k is not None:  # the second half's plan is in this very state: the rest is that plan's
                shift = len(trunk) - tail_segments[k].trunk_len
                segments += [replace(s, trunk_len=s.trunk_len + shift) for s in tail_segments[k:]]
                return segments, trunk + tail_trunk[tail_segments[k].trunk_len :]
    finally:
        if tail is not None:
            tail.close()
    segments.append(Segment(start, len(text), rest, len(trunk), None))
    return segments, trunk


def _plan_tail(adapter: Any, text: str, half: int) -> tuple[list[Segment], list[int], dict[str, int]]:
    """``plan`` of ``text[half:]`` from an empty buffer, in ``text``'s positions, and the commit points it found."""
    segments, trunk = plan(adapter, text[half:])
    return [replace(s, start=s.start + half, end=s.end + half) for s in segments], trunk, adapter.commit_point.known


class Cohort:
    """A ``TokenLM`` shared by one cohort of workers, greenlets on one thread: ``step_many`` parks the calling
    worker until every live worker of the cohort is parked, then asks the wrapped LM once for all of them. Greenlets
    switch in about a microsecond where worker threads handed off through a condition variable and the GIL: a lone
    process (CUDA, one core) gains most, the H200's batch engine 1.4-1.6x. Cohorts run on threads of their own, so
    while one cohort's forward pass runs (torch releases the GIL inside it) another cohort's adapters do their
    Python work; the other methods take ``shared``, one lock for all cohorts, so they never run two at once
    (``states_along`` may append to a model's trunk)."""

    def __init__(self, lm: Any, shared: threading.Lock) -> None:
        self.lm, self.vocab_size = lm, lm.vocab_size
        self.waiting: list[tuple[list[Any], list[int], dict[str, Any]]] = []
        self.shared = shared
        self.greenlet = greenlet_module()
        self.hub: Any = None  # the greenlet running ``run``, where parked workers switch to
        self.forward_passes = 0
        if hasattr(lm, "probs_many"):  # offered only when the wrapped LM has it (``LMAnswers`` looks for it)
            self.probs_many = self._probs_many

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
            return logprobs_many(self.lm, states)

    def _probs_many(self, states: Sequence[Any]) -> list[Any]:
        with self.shared:
            return list(self.lm.probs_many(states))

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
        self.waiting.append((list(states), list(tokens), slot))
        self.hub.switch()  # back in ``run`` until the cohort's LM call has answered
        if "error" in slot:
            raise slot["error"]
        return slot["out"]

    def _answer(self) -> None:
        """One LM call for every parked worker (outside ``shared``: another cohort's adapters run meanwhile)."""
        batch, self.waiting = self.waiting, []
        try:
            answers = step_many(self.lm, [s for states, _, _ in batch for s in states],
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


def trunk_states(lm: Any, trunk: list[int], starts: list[int]) -> dict[int, Any]:
    """The LM state after ``trunk[:i]`` for each ``i`` in ``starts``, from one ``states_along`` call."""
    wanted = sorted(set(starts))
    return dict(zip(wanted, states_along(lm, lm.start(), trunk, wanted)))


def chunks_of(segments: list[Segment], count: int) -> list[range]:
    """``segments`` cut into at most ``count`` runs of consecutive segments with about equal characters. A run starts
    by respelling its first segment's ``rest`` with nothing remembered (the streaming loop finds most of those steps
    among the ones it took before the commit), so each cut is made before the segment of shortest rest within
    ``CUT_SLACK_CHARS`` (at most a quarter run) of its mark: for the Transformer's 32-character runs, resumes took
    13% of the branch steps, 6% now. Twice the slack halved that again but spread the workers' branches over more
    trunk (7% of the passes then read a copied window per branch), and the model's time grew."""
    total, last = segments[-1].end, len(segments) - 1
    slack = min(total / count / 4, CUT_SLACK_CHARS)
    cuts: list[int] = []  # the last segment of every run but the last
    k = 0
    for mark in (total * j / count for j in range(1, count)):
        while k < last and segments[k].end < mark - slack:
            k += 1
        if k == last:
            break
        stop = k  # segments k .. stop-1 end within the slack of the mark
        while stop < last and segments[stop].end <= mark + slack:
            stop += 1
        cut = min(range(k, stop), key=lambda i: (len(segments[i + 1].rest), abs(segments[i].end - mark)), default=k)
        cuts.append(cut)
        k = cut + 1
    bounds = [-1, *cuts, last]
    return [range(a + 1, b + 1) for a, b in zip(bounds, bounds[1:])]


def score(adapter: Any, text: str, bits: bool, workers: int = WORKERS, processes: int | None = None,
          progress: Callable[[int], None] | None = None) -> tuple[list[str], list[float] | None]:
    """Every prediction of the streaming loop over ``text`` and (with ``bits``) P(true char) at each position;
    ``progress`` hears 0 once the trunk is ready, then how many positions were scored, every ``PROGRESS_EVERY`` or
    so. ``processes`` (default: the usable CPU cores, ``forks``) share the chunks, ``workers`` workers each when the
    LM has ``step_many``."""
    most = forks(processes, len(text))
    segments, trunk = plan(adapter, text, most)
    batched = hasattr(adapter.lm, "step_many")
    count = min(most, len(segments))
    size = getattr(adapter.lm, "batch_chunk_chars", None)
    if not batched:
        wanted = count  # more workers gain nothing: one chunk per process
    elif size:
        wanted = max(count * workers, math.ceil(len(text) / size))
    else:
        wanted = count * workers
    chunks = chunks_of(segments, wanted)
    states = trunk_states(adapter.lm, trunk, [segments[chunk[0]].trunk_len for chunk in chunks])
    if progress is not None:
        progress(0)  # the trunk is ready: scoring starts
    guesses: list[str] = [""] * len(text)
    probs: list[float] | None = [0.0] * len(text) if bits else None
    parts = [range(len(chunks) * p // count, len(chunks) * (p + 1) // count) for p in range(count)]
    parts = [part for part in parts if len(part)]
    cohorts = 1 if len(parts) > 1 else COHORTS
    job = Job(adapter, text, segments, chunks, states, guesses, probs, batched, progress, cohorts, workers)
    failed, passes = run_forked(job, parts) if len(parts) > 1 else job.run(parts[0])
    adapter.batch_report = {"segments": len(segments), "chunks": len(chunks), "processes": len(parts),
                            "replayed_from_segment": chunks[min(failed)][0] if failed else None,
                            "forward_passes": passes if batched else None}
    if failed:  # from the first departure on, the stream as the streaming loop runs it
        segment = segments[chunks[min(failed)][0]]
        worker = adapter.worker(adapter.lm)
        worker.resume(states[segment.trunk_len], segment.rest, seen=text[: segment.start])
        replay(worker, text, segment.start, len(text), guesses, probs, check=False, progress=lambda _: None)
    return guesses, probs


def forks(processes: int | None, segments: int) -> int:
    """How many processes score the chunks: ``processes`` (default: ``$SUBCHAR_PROCESSES``, else the CPU cores this
    process may use, at most ``MAX_PROCESSES``), one where there is a single segment or where forking is unsafe: off
    Linux (macOS's system libraries are not fork-safe; Windows cannot fork) and once CUDA is initialised (a forked
    child cannot use it). Each process holds its own workers' branch states, so fewer processes use less memory."""
    if processes is None:
        processes = processes_from_environment()
    if not sys.platform.startswith("linux"):
        return 1
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_initialized():
        return 1
    if processes is None:
        processes = min(len(os.sched_getaffinity(0)), MAX_PROCESSES)
    return max(1, min(processes, segments))


def processes_from_environment() -> int | None:
    """``$SUBCHAR_PROCESSES`` as a positive int (None when unset); a clear error for anything else."""
    given = os.environ.get(PROCESSES_VARIABLE, "").strip()
    if not given:
        return None
    if not given.isdigit() or int(given) < 1:
        raise UserError(f"{PROCESSES_VARIABLE}={given!r}: set it to a positive number of processes (1: no forking)")
    return int(given)


@dataclass
class Job:
    """One scoring run: what every chunk needs, and the lists the chunks fill in."""

    adapter: Any
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

        def work(lm: Any) -> None:
            try:
                worker = self.adapter.worker(lm)
                while (k := take()) is not None:
                    chunk = [self.segments[i] for i in self.chunks[k]]
                    first, last = chunk[0], chunk[-1]
                    worker.resume(self.states[first.trunk_len], first.rest)
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
            members = [[partial(work, cohort)] * len(range(k, count, len(cohorts))) for k, cohort in enumerate(cohorts)]
            pool = [threading.Thread(target=cohort.run, args=(workers,), daemon=True)
                    for cohort, workers in zip(cohorts, members)]
            for thread in pool:
                thread.start()
            for thread in pool:
                thread.join()
        if errors:
            raise errors[0]
        return failed, sum(c.forward_passes for c in cohorts)


def run_forked(job: Job, parts: list[range]) -> tuple[list[int], int]:
    """``job.run`` of each part in its own forked process (the adapter's Python work then uses every core, not one
    under the GIL); each sends its progress and then its positions' answers back through a pipe. An error in one
    stops all and is raised here; so is a process that dies."""
    context = multiprocessing.get_context("fork")
    children = []
    try:
        for part in parts:
            receive, send = context.Pipe(duplex=False)
            child = context.Process(target=run_child, args=(job, part, send), daemon=True)
            child.start()
            send.close()
            children.append((child, receive, part))
        failed: list[int] = []
        passes = 0
        waiting = {receive: (child, part) for child, receive, part in children}
        while waiting:
            for receive in multiprocessing.connection.wait(list(waiting)):
                child, part = waiting[receive]
                try:
                    kind, payload = receive.recv()
                except EOFError:
                    raise died(child) from None
                if kind == "progress":
                    if job.progress is not None:
                        job.progress(payload)
                    continue
                if kind == "error":
                    raise payload
                start, end = job.span(part)
                guesses, probs, part_failed, part_passes = payload
                job.guesses[start:end] = guesses
                if job.probs is not None:
                    job.probs[start:end] = probs
                failed.extend(part_failed)
                passes += part_passes
                del waiting[receive]
        return failed, passes
    finally:
        for child, receive, _ in children:
            if child.is_alive():
                child.terminate()
            child.join()
            receive.close()


def run_child(job: Job, part: range, send: Any) -> None:
    """A forked process's work: ``job.run(part)``, its answers (or its error) sent back through ``send``."""
    job.progress = lambda scored: send.send(("progress", scored))

    def answers() -> tuple[list[str], list[float] | None, list[int], int]:
        failed, passes = job.run(part)
        start, end = job.span(part)
        return job.guesses[start:end], None if job.probs is None else job.probs[start:end], failed, passes

    send_outcome(send, answers)


def send_outcome(send: Any, work: Callable[[], Any]) -> None:
    """In a forked process: send ``("done", work())`` through ``send``, or ``("error", the error)``."""
    try:
        send.send(("done", work()))
    except BaseException as error:  # every error goes back to the parent, which raises it
        try:
            send.send(("error", error))
        except OSError:  # the parent is gone (Ctrl-C reaches the whole process group): nobody to tell
            pass
        except Exception:  # an error that cannot be pickled
            send.send(("error", RuntimeError(f"{type(error).__name__}: {error}")))
    finally:
        send.close()


def died(child: Any) -> RuntimeError:
    """The error for a forked process that ended without an answer (it is joined first, for its exit code)."""
    child.join()
    return RuntimeError(f"a batch-engine process died (exit code {child.exitcode}, e.g. out of memory); rerun with "
                        f"{PROCESSES_VARIABLE}=1, or --engine stream")


class Forked:
    """``function(*args)`` running in a forked process meanwhile; ``result()`` waits for its value (or raises its
    error), ``close()`` stops it if still running."""

    def __init__(self, function: Callable[..., Any], *args: Any) -> None:
        context = multiprocessing.get_context("fork")
        self._receive, send = context.Pipe(duplex=False)
        self._child = context.Process(target=send_outcome, args=(send, lambda: function(*args)), daemon=True)
        self._child.start()
        send.close()

    def result(self) -> Any:
        try:
            kind, payload = self._receive.recv()
        except EOFError:
            raise died(self._child) from None
        if kind == "error":
            raise payload
        return payload

    def close(self) -> None:
        if self._child.is_alive():
            self._child.terminate()
        self._child.join()
        self._receive.close()


def replay(worker: Any, text: str, start: int, end: int, guesses: list[str], probs: list[float] | None,
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
