"""The batch engine's plan (``subchar.batch_engine``), from the text alone: where the commit points cut the stream
into segments, the committed token ids, and the runs of segments (chunks) its workers replay.

In exact mode the adapter's LM questions depend only on the true text, and after a commit it holds the committed
tokens' LM state and respells the rest of the buffer from it, nothing else: so each segment can be replayed on its
own from the LM state after the committed ids before it. ``Replayer`` is what the engine needs of an adapter.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Protocol

from subchar.commit_point import CommitPoints
from subchar.forking import Forked
from subchar.lm import TokenLM

CUT_SLACK_CHARS = 8  # how far a chunk boundary may move to the cheapest resume (``chunks_of``)
PLAN_SPLIT_CHARS = 4096  # half a text at least this long is planned in a forked process meanwhile


class Replayer(Protocol):
    """What the batch engine needs of an adapter (``subchar.adapter.CharAdapter`` in exact mode): the commit rule and
    canonical ids to plan with, and adapters that resume at a commit and replay the benchmark loop from there."""

    lm: TokenLM
    commit_point: CommitPoints

    def canonical_ids(self, text: str) -> list[int]:
        """The tokenizer's ids for committed ``text`` (what a commit feeds the LM)."""
        ...

    def worker(self, lm: TokenLM) -> Replayer:
        """A fresh adapter over ``lm`` sharing this one's read-only tables."""
        ...

    def resume(self, state: Any, rest: str, seen: str = "") -> None:
        """Continue as right after a commit left the LM in ``state`` with ``rest`` still in the buffer."""
        ...

    def predict(self) -> str: ...

    def probability(self, char: str) -> float: ...

    def observe(self, char: str) -> None: ...

    def end_segment(self, char: str) -> None:
        """``observe(char)`` making a segment's last commit, leaving the rest of the buffer unspelled."""
        ...

    def kept_to_plan(self, commits: list[str | None]) -> bool:
        """Since ``resume``: exactly the commits ``commits`` (None: none) and no LM-dependent fallback."""
        ...


@dataclass(frozen=True)
class Segment:
    """Predictions ``start .. end-1``: the adapter resumes at the LM state after ``committed_ids[:ids_before]`` with
    ``rest`` (observed, not committed) in its buffer; observing char ``end-1`` commits ``next_commit``."""

    start: int
    end: int
    rest: str
    ids_before: int
    next_commit: str | None  # None: the last segment


def plan(adapter: Replayer, text: str, processes: int = 1) -> tuple[list[Segment], list[int]]:
    """The segments of ``text`` and the committed token ids in order, assuming no LM-dependent fallback
    (the commit rule of ``CharAdapter._observe_exact``).

    With ``processes >= 2`` and a long text, a forked process plans the second half from an empty buffer meanwhile
    (the plan is ~10 pre-tokenizations per commit). The plan's state after a commit is only where the buffer
    starts, so once this walk commits into a state the second half's plan also reached (same position, same rest),
    the rest is that plan's; until then this walk goes on alone, so the result is always the serial one."""
    half = len(text) // 2
    tail = Forked(_plan_tail, adapter, text, half) if processes >= 2 and half >= PLAN_SPLIT_CHARS else None
    meeting: dict[tuple[int, str], int] | None = None  # (start, rest) of the second half's segments -> their index
    segments: list[Segment] = []
    ids: list[int] = []
    buffer = rest = ""
    start = 0
    try:
        for position, char in enumerate(text):
            buffer += char
            cut = adapter.commit_point(buffer)
            if not cut:
                continue
            segments.append(Segment(start, position + 1, rest, len(ids), buffer[:cut]))
            ids.extend(adapter.canonical_ids(buffer[:cut]))
            buffer = rest = buffer[cut:]
            start = position + 1
            if tail is None or start < half:
                continue
            if meeting is None:
                tail_segments, tail_ids, known = tail.result()
                adapter.commit_point.remember(known)  # the workers forked later find the second half's answers
                meeting = {(segment.start, segment.rest): k for k, segment in enumerate(tail_segments)}
            k = meeting.get((start, rest))
            if k is not None:  # the second half's plan is in this very state: the rest is that plan's
                shift = len(ids) - tail_segments[k].ids_before
                segments += [replace(s, ids_before=s.ids_before + shift) for s in tail_segments[k:]]
                return segments, ids + tail_ids[tail_segments[k].ids_before :]
    finally:
        if tail is not None:
            tail.close()
    segments.append(Segment(start, len(text), rest, len(ids), None))
    return segments, ids


def _plan_tail(adapter: Replayer, text: str, half: int) -> tuple[list[Segment], list[int], dict[str, int]]:
    """``plan`` of ``text[half:]`` from an empty buffer, in ``text``'s positions, and the commit points it found."""
    segments, ids = plan(adapter, text[half:])
    return [replace(s, start=s.start + half, end=s.end + half) for s in segments], ids, adapter.commit_point.known


def chunks_of(segments: list[Segment], count: int) -> list[range]:
    """``segments`` cut into at most ``count`` runs of consecutive segments with about equal characters. A run starts
    by respelling its first segment's ``rest`` with nothing remembered (the streaming loop finds most of those steps
    among the ones it took before the commit), so each cut is made before the segment of shortest rest within
    ``CUT_SLACK_CHARS`` (at most a quarter run) of its mark. More slack would cut resumes further but spread the
    workers' branches over more of a Transformer's trunk (more passes then read a copied window per branch)."""
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
