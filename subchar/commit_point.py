"""Where exact mode may commit: a pre-token boundary that no later character can move.

A boundary ``j`` of the buffer text is *finished* when all of these hold:

1. ``j`` starts a pre-token of ``text`` and is not the start of the last one, so at least one whole pre-token
   ``[j, k)`` follows it inside the text: the pre-tokenizer has already seen the character after the span that
   ends at ``j`` (the regex pre-tokenizers in use decide a span from at most one character past its end);
2. for every probe ``x`` in ``PROBES`` (one per character class those pre-tokenizers tell apart: letter, upper
   case, digit, space, newline, punctuation, apostrophe, non-ASCII), ``j`` is still a boundary of
   ``text + x`` and the boundaries before ``j`` are unchanged;
3. pre-tokenizing ``text[:j]`` alone gives the same boundaries before ``j``, so ``encode(text[:j])`` is
   exactly the prefix of the canonical encoding of any continuation (tokens never cross a boundary).

Rules 2-3 are checked, not assumed; rule 1 is what makes the check sufficient for the supported tokenizers.
"""

from __future__ import annotations

from subchar.tokenizer_view import TokenizerView

PROBES = (" ", "a", "Z", "0", ".", "'", "\n", "é")
BOUNDARIES_REMEMBERED = 1 << 16  # buffer texts remembered with their boundary (words recur)


def finished_boundary(view: TokenizerView, text: str) -> int:
    """The largest finished boundary of ``text`` (see the module docstring), or 0 when there is none."""
    starts = view.span_starts(text)
    if len(starts) < 2:
        return 0
    probed = [view.span_starts(text + probe) for probe in PROBES]
    for j in reversed(starts[:-1]):
        before = [s for s in starts if s < j]
        if all(j in other and [s for s in other if s < j] == before for other in probed):
            if view.span_starts(text[:j]) == before:
                return j
    return 0


class CommitPoints:
    """``finished_boundary`` for one tokenizer, remembered per buffer text: the batch engine's plan and the
    adapters replaying it ask about the same buffers, and words recur (each answer costs ~10 pre-tokenizations)."""

    def __init__(self, view: TokenizerView) -> None:
        self.view = view
        self._known: dict[str, int] = {}

    @property
    def known(self) -> dict[str, int]:
        """The answers remembered so far (buffer text -> boundary)."""
        return self._known

    def remember(self, known: dict[str, int]) -> None:
        """Take answers found elsewhere (the batch engine's forked planner)."""
        if len(self._known) + len(known) > BOUNDARIES_REMEMBERED:
            self._known.clear()
        self._known.update(known)

    def __call__(self, text: str) -> int:
        cut = self._known.get(text)
        if cut is None:
            cut = finished_boundary(self.view, text)
            if len(self._known) >= BOUNDARIES_REMEMBERED:
                self._known.clear()
            self._known[text] = cut
        return cut
