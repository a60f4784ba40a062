"""The batch engine gives the streaming loop's answers: identical predictions (so identical correct counts) and
bits/char within 1e-9, for the n-gram and the three neural models, on streams that cross commit points, split
UTF-8 characters between tokens and run past the models' block_size; and when an LM-dependent fallback breaks
its plan, it replays the stream from there."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest

from eval import progress as eval_progress
from eval.evaluate import evaluate
from subchar import CharAdapter
from eval.errors import UserError
from subchar import replay_plan
from subchar.batch_engine import batch_adapter, score
from subchar.forking import process_count as forks
from subchar.replay_plan import CUT_SLACK_CHARS, Segment, chunks_of, plan
from subchar.commit_point import CommitPoints
from test_adapter_exact import random_text, random_vocab
from test_adapter_reference import RandomTrigramLM, ToyTokenizer
from test_models import BLOCK, NEURAL, VOCAB, sharpened
from zoo.ngram import KneserNeyLM
from zoo.streaming import TorchTokenLM
import zoo.transformer


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def both_engines(adapter: CharAdapter, text: str):
    stream = evaluate(adapter, text, None, progress=False, engine="stream")
    batch = evaluate(adapter, text, None, progress=False, engine="batch")
    assert stream.engine == "stream"
    return stream, batch


def assert_same(stream, batch) -> None:
    assert batch.engine == "batch"
    assert batch.correct == stream.correct and batch.zero_prob_chars == stream.zero_prob_chars
    assert abs(batch.covered_bits_per_char - stream.covered_bits_per_char) < 1e-9


def test_the_stream_has_what_the_engine_must_handle():
    tok = random_vocab(11, VOCAB - 9)
    text = random_text(3, 120)
    segments, trunk = plan(CharAdapter(RandomTrigramLM(tok.vocab_size, 0), tok), text)
    assert len(segments) > 10 and len(trunk) > 3 * BLOCK  # many commit points, context past block_size
    assert any(len(c.encode()) > 1 for c in text)  # multi-byte characters, spelled by split byte tokens too
    assert any(s.rest for s in segments)  # commits that leave a buffer to respell


def test_chunks_cut_before_the_shortest_rest_near_each_mark():
    """Chunks cover the segments in order, one per equal-characters mark, each cut within the slack of its mark before
    the segment of shortest rest there (the next chunk's resume respells it with nothing remembered)."""
    rng = np.random.default_rng(0)
    ends = np.cumsum(rng.integers(1, 9, size=400)).tolist()
    segments = [Segment(start, end, "r" * int(rng.integers(0, 12)), 0, "c")
                for start, end in zip([0, *ends[:-1]], ends)]
    for count in (1, 2, 7, 60, 400, 1000):
        chunks = chunks_of(segments, count)
        assert [k for chunk in chunks for k in chunk] == list(range(len(segments)))
        assert len(chunks) == count if 4 * count <= len(segments) else len(chunks) <= count
        slack = min(ends[-1] / count / 4, CUT_SLACK_CHARS)
        for j, chunk in enumerate(chunks[:-1], start=1):
            mark, cut = ends[-1] * j / count, chunk[-1]
            near = [i for i in range(chunk[0], len(segments) - 1) if mark - slack <= ends[i] <= mark + slack]
            if near:
                assert cut in near and len(segments[cut + 1].rest) == min(len(segments[i + 1].rest) for i in near)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the forked planner needs fork (Linux)")
def test_a_plan_shared_with_a_forked_process_is_the_serial_plan(monkeypatch):
    """The second half planned in a forked process from an empty buffer, joined where the walk from the start reaches
    one of its states: the same segments and trunk as one walk, and the second half's commit points remembered."""
    monkeypatch.setattr(replay_plan, "PLAN_SPLIT_CHARS", 200)
    tok = random_vocab(11, VOCAB - 9)
    text = random_text(3, 1200)
    serial = plan(CharAdapter(RandomTrigramLM(tok.vocab_size, 0), tok), text)
    asked: list[str] = []  # the buffers this process asked about (the forked one fills its own copy)
    answer = CommitPoints.__call__
    monkeypatch.setattr(CommitPoints, "__call__", lambda self, buffer: asked.append(buffer) or answer(self, buffer))
    adapter = CharAdapter(RandomTrigramLM(tok.vocab_size, 0), tok)
    assert plan(adapter, text, processes=2) == serial
    assert len(text) // 2 <= len(asked) < 0.6 * len(text)  # this walk stopped soon after half
    assert len(adapter.commit_point.known) > len(set(asked))  # the second half's answers were taken over


@pytest.mark.parametrize("beam", [None, 3])
def test_ngram_engines_agree(beam):
    tok = random_vocab(11, VOCAB - 9)
    ids = np.asarray(tok.encode(random_text(5, 400)), dtype=np.int64)
    adapter = batch_adapter(KneserNeyLM.fit(ids, tok.vocab_size, order=3), tok, mode="exact", beam=beam)
    stream, batch = both_engines(adapter, random_text(3, 120))
    assert_same(stream, batch)
    adapter.reset()
    report = score(adapter, random_text(3, 120), bits=True)[2]
    assert report["replayed_from_segment"] is None


@pytest.mark.parametrize("name", NEURAL)
def test_neural_engines_agree(name, monkeypatch):
    """float64 weights, so the only difference batching may make (rounding) stays far below 1e-9. Two processes at
    most, as on CI: on a many-core machine 8 processes share 60 chars, and each has too few chunks to batch."""
    monkeypatch.setenv("SUBCHAR_PROCESSES", "2")
    tok = random_vocab(11, VOCAB - 9)
    adapter = batch_adapter(TorchTokenLM(sharpened(name, seed=2).double()), tok, mode="exact", beam=3)
    stream = evaluate(adapter, random_text(3, 60), None, progress=False, engine="stream")
    steps = adapter.diagnostics.lm_step_calls
    batch = evaluate(adapter, random_text(3, 60), None, progress=False, engine="batch")
    assert_same(stream, batch)
    adapter.reset()
    report = score(adapter, random_text(3, 60), bits=True)[2]
    assert report["replayed_from_segment"] is None and report["chunks"] > 1
    assert report["forward_passes"] < steps / 2  # the segments' steps went to the model together


class BatchedTrigramLM(RandomTrigramLM):
    """The random LM with a batched step, so the engine splits the stream into one chunk per worker."""

    def step_many(self, states, tokens):
        return [self.step(s, t) for s, t in zip(states, tokens)]


FORKS = sys.platform.startswith("linux")  # the engine forks on Linux only (``forking.process_count``)


def scored(adapter: CharAdapter, text: str, processes: int, report: bool = False):
    """The batch engine's (prediction, P(true char)) at each position of ``text`` with ``processes`` processes (and,
    with ``report``, the engine's report)."""
    adapter.reset()
    guesses, probs, found = score(adapter, text, bits=True, processes=processes)
    assert found["processes"] == (processes if FORKS else 1)
    return (list(zip(guesses, probs)), found) if report else list(zip(guesses, probs))


def streamed(adapter: CharAdapter, text: str):
    """The streaming loop's (prediction, P(true char)) at each position of ``text``."""
    adapter.reset()
    answers = []
    for char in text:
        answers.append((adapter.predict(), adapter.distribution().get(char, 0.0)))
        adapter.observe(char)
    return answers


@pytest.mark.parametrize("processes", [1, 3])
@pytest.mark.parametrize("lm_class", [BatchedTrigramLM, RandomTrigramLM, "ngram"])
def test_processes_give_the_stream_answers(lm_class, processes):
    """The chunks shared by forked processes (each with its threads when the LM is batched): the stream's exact
    predictions and probabilities."""
    tok = random_vocab(11, VOCAB - 9)
    text = random_text(3, 120)
    if lm_class == "ngram":
        ids = np.asarray(tok.encode(random_text(5, 400)), dtype=np.int64)
        lm = KneserNeyLM.fit(ids, tok.vocab_size, order=3)
    else:
        lm = lm_class(tok.vocab_size, 0)
    adapter = CharAdapter(lm, tok, mode="exact", beam=3)
    assert scored(adapter, text, processes) == streamed(adapter, text)


@pytest.mark.parametrize("processes", [1, 2])
def test_workers_take_many_chunks_each_in_order(processes, monkeypatch):
    """An LM's ``batch_chunk_chars`` makes far more chunks than threads: each thread resumes one adapter chunk
    after chunk, and the answers are still the stream's; with the transformer too (its shared reads of
    neighbouring chunks' branches)."""
    monkeypatch.setattr(zoo.transformer, "BATCH_CHUNK_CHARS", 8)
    tok = random_vocab(11, VOCAB - 9)
    text = random_text(3, 120)
    trigram = BatchedTrigramLM(tok.vocab_size, 0)
    trigram.batch_chunk_chars = 8
    for lm in (trigram, TorchTokenLM(sharpened("transformer", seed=2).double())):
        assert lm.batch_chunk_chars == 8
        adapter = CharAdapter(lm, tok, mode="exact", beam=3)
        adapter.reset()
        guesses, probs, report = score(adapter, text, bits=True, workers=2, processes=processes)
        assert report["chunks"] >= len(text) // 8 and report["replayed_from_segment"] is None
        want = streamed(adapter, text)
        assert guesses == [g for g, _ in want]
        np.testing.assert_allclose(probs, [p for _, p in want], atol=1e-12, rtol=0)


@pytest.mark.parametrize("processes", [1, 2])
@pytest.mark.parametrize("lm_class", [BatchedTrigramLM, RandomTrigramLM])
def test_a_fallback_replays_the_rest_as_a_stream(lm_class, processes):
    """'z' cannot be spelled: the forced commit departs from the plan, and the result is still the stream's (an
    unbatched LM in one process streams the whole text as one chunk, where nothing needs replaying)."""
    tok = ToyTokenizer([b"", b"a", b"b", b" ", b"ab"], {0})
    adapter = CharAdapter(lm_class(tok.vocab_size, 3), tok, mode="exact")
    text = "ab zab ba ab a ba b ab"
    answers, report = scored(adapter, text, processes, report=True)
    assert answers == streamed(adapter, text) and [p for _, p in answers].count(0.0) == 1
    split = lm_class is BatchedTrigramLM or (processes > 1 and FORKS)
    assert (report["replayed_from_segment"] is not None) == split
    assert (report["chunks"] > 1) == split


@pytest.mark.parametrize("processes", [1, 2])
def test_a_fallback_among_many_small_chunks_replays_the_rest_as_a_stream(processes):
    """Two threads taking 3-character chunks, one of which departs from the plan at the unspellable 'z': the
    chunks taken after it are dropped and the rest is replayed as a stream, as with one chunk per worker."""
    tok = ToyTokenizer([b"", b"a", b"b", b" ", b"ab"], {0})
    lm = BatchedTrigramLM(tok.vocab_size, 3)
    lm.batch_chunk_chars = 3
    adapter = CharAdapter(lm, tok, mode="exact")
    text = "ab ba ab ab a ba zab a ba b ab ba ab a"
    adapter.reset()
    guesses, probs, report = score(adapter, text, bits=True, workers=2, processes=processes)
    assert list(zip(guesses, probs)) == streamed(adapter, text) and probs.count(0.0) == 1
    assert report["chunks"] >= len(text) // 3 - 1 and 0 < report["replayed_from_segment"] < report["segments"] - 1


@pytest.mark.parametrize("processes", [1, 2])
def test_progress_hears_the_trunk_then_every_position_once(processes, capsys, monkeypatch):
    """0 once the trunk is ready (``evaluate`` then restarts its bar's clock), then counts that add up to the text;
    ``evaluate``'s bar ends at the whole text under its own name, and so does its line in a log."""
    tok = random_vocab(11, VOCAB - 9)
    text = random_text(3, 120)
    adapter = batch_adapter(BatchedTrigramLM(tok.vocab_size, 0), tok, mode="exact", beam=3)
    heard: list[int] = []
    adapter.reset()
    score(adapter, text, bits=False, processes=processes, progress=heard.append)
    assert heard[0] == 0 and 0 not in heard[1:] and sum(heard) == len(text)
    monkeypatch.setattr(eval_progress, "on_terminal", lambda: True)
    evaluate(adapter, text, None, progress=True, engine="batch")
    assert "eval (batch): 100%" in capsys.readouterr().err
    monkeypatch.setattr(eval_progress, "on_terminal", lambda: False)
    monkeypatch.setattr(eval_progress, "LOG_AFTER_S", 0.0)
    evaluate(adapter, text, None, progress=True, engine="batch")
    assert capsys.readouterr().err.startswith(f"eval (batch): {len(text)} chars in ")


def test_spec_mode_and_other_models_stream():
    tok = random_vocab(1, 5)
    adapter = batch_adapter(RandomTrigramLM(tok.vocab_size, 1), tok, mode="spec")
    stream, batch = both_engines(adapter, random_text(1, 30))
    assert batch.engine == "stream" and batch.correct == stream.correct


class FailingLM(RandomTrigramLM):
    """A batched LM whose model breaks after a few forward passes."""

    def __init__(self, *args) -> None:
        super().__init__(*args)
        self.passes = 0

    def step_many(self, states, tokens):
        self.passes += 1
        if self.passes > 3:
            raise RuntimeError("model broke")
        return [self.step(s, t) for s, t in zip(states, tokens)]


@pytest.mark.parametrize("processes", [1, 2])
def test_an_lm_error_reaches_the_caller_and_no_worker_hangs(processes):
    tok = random_vocab(11, VOCAB - 9)
    adapter = CharAdapter(FailingLM(tok.vocab_size, 0), tok, mode="exact", beam=3)
    with pytest.raises(RuntimeError, match="model broke"):
        scored(adapter, random_text(3, 120), processes)


class DyingLM(RandomTrigramLM):
    """A batched LM that kills any process but the one that made it (a forked worker running out of memory)."""

    def __init__(self, *args) -> None:
        super().__init__(*args)
        self.parent = os.getpid()

    def step_many(self, states, tokens):
        if os.getpid() != self.parent:
            os._exit(3)
        return [self.step(s, t) for s, t in zip(states, tokens)]


@pytest.mark.skipif(not FORKS, reason="the batch engine forks on Linux only")
def test_a_dead_process_is_an_error_not_a_hang():
    tok = random_vocab(11, VOCAB - 9)
    adapter = CharAdapter(DyingLM(tok.vocab_size, 0), tok, mode="exact", beam=3)
    with pytest.raises(RuntimeError, match="exit code 3"):
        scored(adapter, random_text(3, 120), 2)


def test_the_process_count_can_be_set_in_the_environment(monkeypatch):
    """``$SUBCHAR_PROCESSES`` caps the forks (1: none, to save memory); anything but a positive int is a clear error."""
    tok = random_vocab(11, VOCAB - 9)
    adapter = CharAdapter(BatchedTrigramLM(tok.vocab_size, 0), tok, mode="exact", beam=3)
    text = random_text(3, 120)
    monkeypatch.setenv("SUBCHAR_PROCESSES", "1")
    assert forks(None, 50) == 1
    adapter.reset()
    guesses, probs, report = score(adapter, text, bits=True)
    assert report["processes"] == 1 and list(zip(guesses, probs)) == streamed(adapter, text)
    if FORKS:
        monkeypatch.setenv("SUBCHAR_PROCESSES", "2")
        assert forks(None, 50) == 2 and forks(None, 1) == 1
    for bad in ("0", "-1", "two", "1.5"):
        monkeypatch.setenv("SUBCHAR_PROCESSES", bad)
        with pytest.raises(UserError, match="SUBCHAR_PROCESSES"):
            forks(None, 50)


def test_without_greenlet_a_batched_lm_is_a_clear_error_and_an_unbatched_one_still_scores(monkeypatch):
    """The batch engine runs a batched LM's workers as greenlets; an exported submission, which inlines it, runs in an
    image without greenlet, so the import waits until then and its absence names the fix."""
    monkeypatch.setitem(sys.modules, "greenlet", None)  # ``import greenlet`` now raises ImportError
    tok = random_vocab(11, VOCAB - 9)
    text = random_text(3, 120)
    batched = CharAdapter(BatchedTrigramLM(tok.vocab_size, 0), tok, mode="exact", beam=3)
    with pytest.raises(UserError, match="pip install greenlet"):
        score(batched, text, bits=False, processes=1)
    plain = CharAdapter(RandomTrigramLM(tok.vocab_size, 0), tok, mode="exact", beam=3)
    guesses, probs, _ = score(plain, text, bits=True, processes=1)
    assert list(zip(guesses, probs)) == streamed(plain, text)
