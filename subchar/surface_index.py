"""Token surfaces sorted once, so every "tokens whose bytes start with P" set is one contiguous range.

For a byte prefix ``P`` the tokens extending it sit in ``sorted[lo:hi)``; inside that range the tokens that
continue with the same next character are contiguous too (UTF-8 byte order is code-point order). ``groups``
cuts a range into those runs once per prefix (vectorised with numpy, cached), so the mass of every candidate
character under any token distribution is one ``np.add.reduceat`` over the range.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

import numpy as np

UTF8_LENGTH = np.zeros(256, dtype=np.int64)  # bytes in the character a lead byte opens; 0 = cannot open one
UTF8_LENGTH[0x00:0x80] = 1
UTF8_LENGTH[0xC2:0xE0] = 2
UTF8_LENGTH[0xE0:0xF0] = 3
UTF8_LENGTH[0xF0:0xF5] = 4
KEY_MASK = np.array([0, 0xFF000000, 0xFFFF0000, 0xFFFFFF00, 0xFFFFFFFF], dtype=np.int64)
PARTIAL_FLAG = np.int64(1) << 32  # the token ends before the character does
INVALID_FLAG = np.int64(1) << 33  # the bytes cannot start (or continue) a character
CONTINUATION = (b"\x80", b"\xc0")  # byte range [0x80, 0xC0): bytes that continue a character
EXTENDS_REMEMBERED = 1 << 16  # prefixes remembered by ``extends``


def is_char_prefix(data: bytes) -> bool:
    """True when ``data`` is a proper, so far valid, prefix of one multi-byte UTF-8 character."""
    if not data or len(data) >= UTF8_LENGTH[data[0]] or UTF8_LENGTH[data[0]] < 2:
        return False
    return all(0x80 <= b < 0xC0 for b in data[1:])


@dataclass(frozen=True)
class Groups:
    """The tokens extending a prefix, cut into runs by the next character.

    ``starts`` partitions ``[lo, hi)`` (absolute sorted positions). Run ``chars_at[k]`` spells character
    ``chars[k]`` completely; run ``partial_runs[k]`` (sorted positions ``partial_at[k]``) ends inside a
    character, leaving bytes ``partial_bytes[k]`` of it pending (they are the whole rest of those tokens).
    Runs of invalid UTF-8 are in neither list. ``char_set`` holds ``chars``; ``key`` is the ``(prefix,
    pending)`` pair the runs were cut for (distributions cache their run masses by it).
    """

    key: tuple[bytes, bytes]
    lo: int
    hi: int
    starts: np.ndarray
    chars: list[str]
    chars_at: np.ndarray
    partial_bytes: list[bytes]
    partial_at: list[tuple[int, int]]
    partial_runs: np.ndarray
    char_set: frozenset[str]

    def run_masses(self, probs: np.ndarray) -> np.ndarray:
        """Mass of every run, given the probabilities of the sorted range ``[lo, hi)``."""
        if self.hi == self.lo:
            return np.zeros(0)
        return np.add.reduceat(probs, self.starts - self.lo)


class SurfaceIndex:
    """Sorted, non-empty token surfaces with prefix ranges, exact lookup and per-prefix character runs."""

    def __init__(self, surfaces: list[bytes]) -> None:
        ids = sorted((i for i, s in enumerate(surfaces) if s), key=surfaces.__getitem__)
        self.sorted = [surfaces[i] for i in ids]
        self.order = np.array(ids, dtype=np.int64)
        self.size = len(ids)
        self.exact: dict[bytes, tuple[int, ...]] = {}
        for i in ids:
            self.exact[surfaces[i]] = self.exact.get(surfaces[i], ()) + (i,)
        width = max((len(s) for s in self.sorted), default=0) + 4
        self.lengths = np.array([len(s) for s in self.sorted], dtype=np.int64)
        flat = np.zeros((self.size, width), dtype=np.uint8)
        for row, s in enumerate(self.sorted):
            flat[row, : len(s)] = np.frombuffer(s, dtype=np.uint8)
        self.bytes = flat
        self._groups: dict[tuple[bytes, bytes], Groups] = {}
        self._extends: dict[bytes, bool] = {}
        self.max_len = width - 4

    def prefix_range(self, prefix: bytes) -> tuple[int, int]:
        """Sorted positions [lo, hi) of the tokens whose surface starts with ``prefix``."""
        lo = bisect.bisect_left(self.sorted, prefix)
        upper = prefix.rstrip(b"\xff")
        if not upper:
            return lo, self.size
        upper = upper[:-1] + bytes([upper[-1] + 1])
        return lo, bisect.bisect_left(self.sorted, upper, lo)

    def extends(self, prefix: bytes) -> bool:
        """True when some token's surface starts with ``prefix`` (remembered: buffer suffixes recur)."""
        known = self._extends.get(prefix)
        if known is None:
            lo = bisect.bisect_left(self.sorted, prefix)
            known = lo < self.size and self.sorted[lo].startswith(prefix)
            if len(self._extends) >= EXTENDS_REMEMBERED:
                self._extends.clear()
            self._extends[prefix] = known
        return known

    def groups(self, prefix: bytes, pending: bytes = b"") -> Groups:
        """Runs of the tokens that extend ``prefix`` by one more character.

        With ``pending`` (the first bytes of a character an earlier token left unfinished) the runs are the
        tokens that go on with that character's continuation bytes instead.
        """
        key = (prefix, pending)
        cached = self._groups.get(key)
        if cached is None:
            cached = self._groups[key] = self._cut(prefix, pending)
        return cached

    def _cut(self, prefix: bytes, pending: bytes) -> Groups:
        at = len(prefix)
        if pending:
            lo = bisect.bisect_left(self.sorted, prefix + CONTINUATION[0])
            hi = bisect.bisect_left(self.sorted, prefix + CONTINUATION[1], lo)
        else:
            lo, hi = self.prefix_range(prefix)
            lo = bisect.bisect_right(self.sorted, prefix, lo, hi)  # surface == prefix: ends here, no next char
        empty = np.zeros(0, dtype=np.int64)
        if lo >= hi:
            return Groups((prefix, pending), lo, lo, empty, [], empty, [], [], empty, frozenset())
        window = self.bytes[lo:hi, at : at + 4].astype(np.int64)
        if pending:
            need = np.full(hi - lo, int(UTF8_LENGTH[pending[0]]) - len(pending))
        else:
            need = UTF8_LENGTH[window[:, 0]]
        have = self.lengths[lo:hi] - at
        packed = (window[:, 0] << 24) | (window[:, 1] << 16) | (window[:, 2] << 8) | window[:, 3]
        key = packed & KEY_MASK[np.minimum(need, have)]
        key = key | np.where(have < need, PARTIAL_FLAG, 0) | np.where(need == 0, INVALID_FLAG, 0)
        starts = np.concatenate(([0], np.flatnonzero(key[1:] != key[:-1]) + 1)) + lo
        ends = np.append(starts[1:], hi)
        chars, chars_at, partial_bytes, partial_at, partial_runs = [], [], [], [], []
        for run, (start, end) in enumerate(zip(starts.tolist(), ends.tolist())):
            n_need, surface = int(need[start - lo]), self.sorted[start]
            if n_need == 0:
                continue
            if len(surface) - at < n_need:
                rest = pending + surface[at:]
                if is_char_prefix(rest):
                    partial_bytes.append(rest)
                    partial_at.append((start, end))
                    partial_runs.append(run)
                continue
            try:
                char = (pending + surface[at : at + n_need]).decode("utf-8")
            except UnicodeDecodeError:
                continue
            chars.append(char)
            chars_at.append(run)
        return Groups(
            (prefix, pending), lo, hi, starts, chars, np.array(chars_at, dtype=np.int64), partial_bytes, partial_at,
            np.array(partial_runs, dtype=np.int64), frozenset(chars),
        )
