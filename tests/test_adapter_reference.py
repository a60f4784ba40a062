"""Independent references for the adapter tests (no tests here): brute-force enumeration straight from the
formulas, a context-dependent random token LM and a tiny lossless tokenizer; none of it uses subchar internals."""

from __future__ import annotations

import codecs
import math

import numpy as np


class RandomTrigramLM:
    """log P(next | last two tokens) from a seeded random table: context-dependent, branching, deterministic."""

    def __init__(self, vocab_size: int, seed: int, scale: float = 2.0) -> None:
        self.vocab_size, self.seed, self.scale = vocab_size, seed, scale
        self._rows: dict[tuple[int, int], np.ndarray] = {}

    def start(self) -> tuple[int, int]:
        return (-1, -1)

    def step(self, state: tuple[int, int], token: int) -> tuple[int, int]:
        return (state[1], token)

    def logprobs(self, state: tuple[int, int]) -> np.ndarray:
        row = self._rows.get(state)
        if row is None:
            logits = np.random.default_rng([self.seed, state[0] + 2, state[1] + 2]).normal(size=self.vocab_size)
            logits *= self.scale
            row = self._rows[state] = logits - np.log(np.exp(logits).sum())
        return row


def first_char(tail: bytes) -> tuple[str | None, bool]:
    """(the character ``tail`` starts with, or None; whether ``tail`` is an unfinished valid prefix)."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    for k in range(len(tail)):
        try:
            out = decoder.decode(tail[k : k + 1])
        except UnicodeDecodeError:
            return None, False
        if out:
            return out, False
    return None, True


def state_after(lm, tokens) -> object:
    state = lm.start()
    for t in tokens:
        state = lm.step(state, t)
    return state


def normalise(masses: dict[str, float]) -> dict[str, float]:
    total = math.fsum(masses.values())
    return {c: m / total for c, m in masses.items() if m > 0}


def brute_spec(surfaces, lm, committed, buffer: str) -> dict[str, float]:
    """P(c) ∝ Σ_t P(t | committed) · 1[surface(t) starts with buffer + c]."""
    lp = lm.logprobs(state_after(lm, committed))
    prefix = buffer.encode("utf-8")
    masses: dict[str, float] = {}
    for t, s in enumerate(surfaces):
        if s and s.startswith(prefix) and len(s) > len(prefix):
            char, _ = first_char(s[len(prefix):])
            if char is not None:
                masses[char] = masses.get(char, 0.0) + math.exp(lp[t])
    return normalise(masses)


def brute_exact(surfaces, lm, committed, buffer: str) -> dict[str, float]:
    """M(b + c) summed over every token sequence t_1..t_k whose first k-1 tokens spell a proper prefix of
    b + c and whose k tokens spell something starting with b + c; normalised over c."""
    target = buffer.encode("utf-8")
    masses: dict[str, float] = {}

    def walk(spelled: bytes, weight: float, state) -> None:
        lp = lm.logprobs(state)
        for t, s in enumerate(surfaces):
            if not s:
                continue
            now, w = spelled + s, weight * math.exp(lp[t])
            if len(now) <= len(target):
                if target.startswith(now):
                    walk(now, w, lm.step(state, t))
                continue
            if not now.startswith(target):
                continue
            char, unfinished = first_char(now[len(target):])
            if char is not None:
                masses[char] = masses.get(char, 0.0) + w
            elif unfinished:
                walk(now, w, lm.step(state, t))

    walk(b"", 1.0, state_after(lm, committed))
    return normalise(masses)


def assert_close(got: dict[str, float], want: dict[str, float], tol: float = 1e-12) -> None:
    assert set(got) == set(want), (sorted(set(got) ^ set(want)), got, want)
    worst = max((abs(got[c] - want[c]) for c in want), default=0.0)
    assert worst <= tol, (worst, got, want)


def tie_rule_argmax(dist: dict[str, float]) -> str:
    return max(dist.items(), key=lambda kv: (kv[1], -ord(kv[0])))[0]


class ToyTokenizer:
    """Tokenizer over explicit byte surfaces: pre-tokens start at each space, greedy longest match; lossless
    whenever every byte of the text is a token."""

    family = "toy"

    def __init__(self, surfaces: list[bytes], specials: set[int]) -> None:
        self._surfaces = surfaces
        self._specials = specials
        self._lookup = {s: i for i, s in enumerate(surfaces) if s and i not in specials}
        self._longest = max(len(s) for s in surfaces)

    @property
    def vocab_size(self) -> int:
        return len(self._surfaces)

    def surfaces(self) -> list[bytes]:
        return list(self._surfaces)

    def special_ids(self) -> set[int]:
        return set(self._specials)

    def pretokenize(self, text: str) -> list[tuple[int, int]]:
        starts = [0] + [i for i, ch in enumerate(text) if ch == " " and i > 0]
        return [(a, b) for a, b in zip(starts, starts[1:] + [len(text)]) if b > a]

    def encode(self, text: str) -> list[int]:
        ids: list[int] = []
        for a, b in self.pretokenize(text):
            data, at = text[a:b].encode("utf-8"), 0
            while at < len(data):
                for size in range(min(self._longest, len(data) - at), 0, -1):
                    token = self._lookup.get(data[at : at + size])
                    if token is not None:
                        ids.append(token)
                        at += size
                        break
                else:  # a byte no token spells is dropped (lossy, like [UNK])
                    at += 1
        return ids

    def decode(self, ids: list[int]) -> str:
        return b"".join(self._surfaces[i] for i in ids).decode("utf-8", errors="replace")
