"""Where the adapter commits, against a reference built from the text and the tokenizer alone.

The brute-force comparisons elsewhere evaluate at the adapter's own ``committed`` and ``buffer``, so they cannot
see a commit in the wrong place. Here an independent reference replays each mode's commit rule:

- spec: a character that no token's surface continues (buffer + char) commits the buffer;
- exact: the buffer commits up to its last *finished* pre-token boundary: one followed by a whole pre-token,
  that stays a boundary (with the same boundaries before it) under every continuation of up to two characters
  from a wide alphabet, and that pre-tokenizing the prefix alone reproduces.
"""

from __future__ import annotations

import itertools

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from eval.data import SplitText
from subchar import CharAdapter
from tokenizers_local import FAMILIES, train_tokenizer

TRAIN_TEXT = (
    " = Harbour Lights = \n\n"
    " The harbour lights of Kessel were lit at dusk by two keepers , Anna and Piet . \n"
    " In 1898 the town paid 12 @,@ 400 guilders for a new lamp @-@ house ; it 's still there . \n\n"
    " = = Later years = = \n\n"
    " The café by the quay served fish , bread and beer . Visitors wrote : \" a quiet place \" . \n"
) * 10
PIECES = [" the", " lamp", " café", " Anna", " 's", " @-@", " ,", " .", " 1898", " =", "\n", "  ", " Z", "x", "é"]
CONTINUATION_ALPHABET = [" ", "a", "Z", "0", ".", "'", "\n", "é", "@", "-", "s", "\t"]
CONTINUATIONS = CONTINUATION_ALPHABET + ["".join(pair) for pair in itertools.product(CONTINUATION_ALPHABET, repeat=2)]
TOKENIZERS = {family: train_tokenizer(SplitText(TRAIN_TEXT, "train", "fixture", proxy=True), family, 320)
              for family in sorted(FAMILIES)}
TEXTS = st.lists(st.sampled_from(PIECES), min_size=4, max_size=14).map("".join)


class UniformLM:
    """Every token equally likely in one plain state: commit points depend on the text alone."""

    def __init__(self, vocab_size: int) -> None:
        self.vocab_size = vocab_size

    def start(self) -> int:
        return 0

    def step(self, state: int, token: int) -> int:
        return 0

    def logprobs(self, state: int) -> np.ndarray:
        return np.full(self.vocab_size, -np.log(self.vocab_size))


def boundaries(tok, text: str) -> list[int]:
    """Offsets inside ``text`` where a pre-token ends and another follows (a dropped gap joins the next one)."""
    spans = sorted(tok.pretokenize(text))
    return [end for (_, end), _next in zip(spans, spans[1:]) if end > 0]


def reference_exact_cut(tok, buffer: str) -> int:
    here = boundaries(tok, buffer)
    extended = [boundaries(tok, buffer + tail) for tail in CONTINUATIONS]
    for j in reversed(here[:-1]):  # the start of the last pre-token can still move
        before = [b for b in here if b < j]
        stable = all(j in other and [b for b in other if b < j] == before for other in extended)
        if stable and boundaries(tok, buffer[:j]) == before:
            return j
    return 0


def reference_spec_extends(surfaces: list[bytes], buffer: str, char: str) -> bool:
    wanted = (buffer + char).encode("utf-8")
    return any(surface.startswith(wanted) for surface in surfaces if surface)


def replay(family: str, mode: str, text: str) -> None:
    tok = TOKENIZERS[family]
    surfaces = tok.surfaces()
    adapter = CharAdapter(UniformLM(len(surfaces)), tok, mode=mode, beam=4)
    committed, buffer = "", ""
    for char in text:
        adapter.predict()
        adapter.observe(char)
        if mode == "spec":
            if reference_spec_extends(surfaces, buffer, char):
                buffer += char
            else:
                committed, buffer = committed + buffer, char
        else:
            buffer += char
            cut = reference_exact_cut(tok, buffer)
            committed, buffer = committed + buffer[:cut], buffer[cut:]
        assert (adapter.committed_text, adapter.buffer) == (committed, buffer), (family, mode, text)
    assert adapter.diagnostics.lossy_commits == 0
    if mode == "exact":  # every character spellable: no forced commit stood in for the rule
        assert adapter.diagnostics.zero_mass_chars == 0


@settings(max_examples=5, deadline=None)
@given(text=TEXTS)
def test_spec_commits_exactly_when_no_token_continues_the_buffer(text: str) -> None:
    for family in TOKENIZERS:
        replay(family, "spec", text)


@settings(max_examples=5, deadline=None)
@given(text=TEXTS)
def test_exact_commits_exactly_at_finished_boundaries(text: str) -> None:
    for family in TOKENIZERS:
        replay(family, "exact", text)


def test_both_rules_commit_on_a_fixed_text() -> None:
    """The properties above are not vacuous: each mode commits, and at different places."""
    text = " the lamp @-@ house , 1898 . \n the café"
    for family in TOKENIZERS:
        for mode in ("spec", "exact"):
            replay(family, mode, text)
    spec = CharAdapter(UniformLM(len(TOKENIZERS["bytebpe"].surfaces())), TOKENIZERS["bytebpe"], mode="spec")
    exact = CharAdapter(UniformLM(len(TOKENIZERS["bytebpe"].surfaces())), TOKENIZERS["bytebpe"], mode="exact")
    for char in text:
        spec.observe(char)
        exact.observe(char)
    assert spec.diagnostics.commits > 3 and exact.diagnostics.commits > 3
    assert spec.committed_text != exact.committed_text
