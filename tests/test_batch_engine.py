"""The batch engine gives the streaming loop's answers: identical predictions (so identical correct counts) and
bits/char within 1e-9, for the n-gram and the three neural models, on streams that cross commit points, split
UTF-8 characters between tokens and run past the models' block_size; and when an LM-dependent fallback breaks
its plan, it replays the stream from there."""

from __future__ import annotations

import numpy as np
import pytest

from eval.evaluate import evaluate
from subchar import CharAdapter
from subchar.batch_engine import plan
from test_adapter_exact import random_text, random_vocab
from test_adapter_reference import RandomTrigramLM, ToyTokenizer
from test_models import BLOCK, NEURAL, VOCAB, sharpened
from zoo.ngram import KneserNeyLM
from zoo.streaming import TorchTokenLM


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


@pytest.mark.parametrize("beam", [None, 3])
def test_ngram_engines_agree(beam):
    tok = random_vocab(11, VOCAB - 9)
    ids = np.asarray(tok.encode(random_text(5, 400)), dtype=np.int64)
    adapter = CharAdapter(KneserNeyLM.fit(ids, tok.vocab_size, order=3), tok, mode="exact", beam=beam)
    stream, batch = both_engines(adapter, random_text(3, 120))
    assert_same(stream, batch)
    assert adapter.batch_report["replayed_from_segment"] is None


@pytest.mark.parametrize("name", NEURAL)
def test_neural_engines_agree(name):
    """float64 weights, so the only difference batching may make (rounding) stays far below 1e-9."""
    tok = random_vocab(11, VOCAB - 9)
    adapter = CharAdapter(TorchTokenLM(sharpened(name, seed=2).double()), tok, mode="exact", beam=3)
    stream = evaluate(adapter, random_text(3, 60), None, progress=False, engine="stream")
    steps = adapter.diagnostics.lm_step_calls
    batch = evaluate(adapter, random_text(3, 60), None, progress=False, engine="batch")
    assert_same(stream, batch)
    report = adapter.batch_report
    assert report["replayed_from_segment"] is None and report["threads"] > 1
    assert report["forward_passes"] < steps / 2  # the segments' steps went to the model together


class BatchedTrigramLM(RandomTrigramLM):
    """The random LM with a batched step, so the engine splits the stream into one chunk per worker."""

    def step_many(self, states, tokens):
        return [self.step(s, t) for s, t in zip(states, tokens)]


@pytest.mark.parametrize("lm_class", [BatchedTrigramLM, RandomTrigramLM])
def test_a_fallback_replays_the_rest_as_a_stream(lm_class):
    """'z' cannot be spelled: the forced commit departs from the plan, and the result is still the stream's (an
    unbatched LM streams the whole text as one chunk, where nothing needs replaying)."""
    tok = ToyTokenizer([b"", b"a", b"b", b" ", b"ab"], {0})
    adapter = CharAdapter(lm_class(tok.vocab_size, 3), tok, mode="exact")
    stream, batch = both_engines(adapter, "ab ba ab zab a ba b ab")
    assert_same(stream, batch)
    assert stream.zero_prob_chars == 1
    assert (adapter.batch_report["replayed_from_segment"] is not None) == (lm_class is BatchedTrigramLM)
    assert (adapter.batch_report["threads"] > 1) == (lm_class is BatchedTrigramLM)


def test_spec_mode_and_other_models_stream():
    tok = random_vocab(1, 5)
    adapter = CharAdapter(RandomTrigramLM(tok.vocab_size, 1), tok, mode="spec")
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


def test_an_lm_error_reaches_the_caller_and_no_worker_hangs():
    tok = random_vocab(11, VOCAB - 9)
    adapter = CharAdapter(FailingLM(tok.vocab_size, 0), tok, mode="exact", beam=3)
    with pytest.raises(RuntimeError, match="model broke"):
        evaluate(adapter, random_text(3, 120), None, progress=False, engine="batch")
