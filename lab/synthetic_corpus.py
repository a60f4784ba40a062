"""A synthetic WikiText-like train split of any size, grown from a small source text (the proxy train text).

Why: no machine here has the 540 MB train split, and repeating the 1.3 MB proxy 420 times would keep the
vocabulary and the n-gram tables flat, so it would prove nothing about scale. This generator keeps WikiText's
look (`` = Heading = `` lines, blank lines, `` @-@ `` tokens, one paragraph per line) and makes the statistics grow
the way real text does:

- each *block* (one pass over the source) permutes the source's articles, and the sentences of each article among
  the slots of the same kind (mid-paragraph or paragraph-final), so paragraph and heading layout stay intact;
- within an article, each content word type (alphabetic, >= 3 letters, not among the most frequent types) is
  renamed with probability ``rename_p`` to a synthetic word, consistently within that article (names recur inside
  an article, as in Wikipedia); the synthetic word's rank is drawn from a Zipf law of exponent ``zipf_a``, and the
  number of distinct ranks seen in M draws grows like M^(1/zipf_a): Heaps' law, where the source alone stays flat;
- numbers are redrawn with the same digit count, and a tenth of the lower-case function words are swapped for
  others drawn by frequency, so that word 4-grams keep growing too.

A synthetic word is a pure function of its rank (a head of one source word glued to the tail of another), so the
output depends only on (source text, seed, size, parameters): blocks are generated independently, in parallel,
and joined in order.
"""

from __future__ import annotations

import multiprocessing
from collections import Counter
from itertools import count
from dataclasses import dataclass

import numpy as np

NEWLINE = "\n"
HEADING = "="
MAX_RANK = 1 << 40


@dataclass(frozen=True)
class GrowthParams:
    """Knobs of the generator; the defaults were tuned so the curve follows the real split (see make_corpus.py)."""

    rename_p: float = 0.2
    zipf_a: float = 1.5
    zipf_q: float = 2000.0  # Zipf-Mandelbrot offset: flattens the head, so no synthetic word swamps the text
    number_p: float = 0.5
    swap_p: float = 0.1  # a lower-case function word becomes another one (new 4-grams, no new words)
    frequent_types: int = 200  # the most frequent source types (function words; at most a tenth) are never renamed


class SourceModel:
    """The source text cut into WikiText units: lines for headings and blanks, sentences inside paragraphs."""

    def __init__(self, raw: str, params: GrowthParams = GrowthParams()) -> None:
        if not raw.startswith(" ") or not raw.endswith(NEWLINE):
            raise ValueError("the source must be WikiText raw text: lines that start with ' ' and end with '\\n'")
        self.params = params
        words = raw[1:].split(" ")  # raw == " " + " ".join(words), exactly
        counts = Counter(words)
        self.vocab = sorted(counts)
        index = {word: i for i, word in enumerate(self.vocab)}
        self.tokens = np.fromiter((index[w] for w in words), dtype=np.int64, count=len(words))
        frequent = {w for w, _ in counts.most_common(min(params.frequent_types, len(counts) // 10))}
        self.is_content = np.array([w.isalpha() and len(w) >= 3 and w not in frequent for w in self.vocab])
        self.is_function = np.array([w.isalpha() and w.islower() and w in frequent for w in self.vocab])
        self.function_ids = np.flatnonzero(self.is_function)
        weights = np.array([counts[self.vocab[i]] for i in self.function_ids], dtype=np.float64)
        self.function_p = weights / weights.sum() if len(weights) else weights
        self.is_capital = np.array([w[:1].isupper() for w in self.vocab])
        self.digits = np.array([len(w) if w.isdigit() and len(w) <= 4 else 0 for w in self.vocab])
        self.strings = np.array(self.vocab, dtype=object)
        self._cut_units(index.get(NEWLINE, -1), index.get(".", -1), index.get(HEADING, -2))
        stems = sorted({w.lower() for w in self.vocab if w.isalpha() and len(w) >= 4})
        self.heads = sorted({w[: (len(w) + 1) // 2] for w in stems}) or ["ka"]
        self.tails = sorted({w[(len(w) + 1) // 2 :] for w in stems}) or ["ro"]

    def _cut_units(self, newline: int, period: int, heading: int) -> None:
        """Units end at a newline, or at a '.' not followed by one; classes 0 fixed line, 1 mid, 2 final sentence."""
        tokens = self.tokens
        is_newline = tokens == newline
        next_is_newline = np.append(is_newline[1:], True)
        ends = np.flatnonzero(is_newline | ((tokens == period) & ~next_is_newline))
        self.unit_start = np.concatenate(([0], ends[:-1] + 1))
        self.unit_len = ends + 1 - self.unit_start
        first = tokens[self.unit_start]
        line_start = np.concatenate(([True], is_newline[ends[:-1]]))
        fixed = (first == newline) | ((first == heading) & line_start)
        self.unit_class = np.where(fixed, 0, np.where(is_newline[ends], 2, 1))
        second = tokens[np.minimum(self.unit_start + 1, len(tokens) - 1)]
        title = np.flatnonzero(fixed & (first == heading) & (second != heading))  # " = Title = " lines
        blank_before = (title > 0) & (first[np.maximum(title - 1, 0)] == newline)
        opens = np.zeros(len(first), dtype=np.int64)
        opens[title - blank_before] = 1  # an article starts with the blank line above its title
        self.unit_article = np.cumsum(opens)
        self.num_articles = int(self.unit_article[-1]) + 1

    def synthetic_word(self, rank: int, capital: bool) -> str:
        """The word of a Zipf rank: a head and a tail of source words, chosen by a multiplicative hash."""
        mixed = (rank * 0x9E3779B97F4A7C15) % (1 << 61)
        word = self.heads[mixed % len(self.heads)] + self.tails[(mixed // len(self.heads)) % len(self.tails)]
        return word.capitalize() if capital else word

    def block(self, seed: int, index: int) -> str:
        """One pass over the source, reshuffled and renamed with the random stream (seed, index)."""
        rng = np.random.default_rng([seed, index])
        units = self._unit_order(rng)
        lengths = self.unit_len[units]
        offsets = np.repeat(self.unit_start[units] - np.cumsum(lengths) + lengths, lengths)
        tokens = self.tokens[offsets + np.arange(len(offsets))]
        articles = np.repeat(self.unit_article[units], lengths)
        return " " + " ".join(self._spell(tokens, articles, rng)) if len(tokens) else ""

    def _unit_order(self, rng: np.random.Generator) -> np.ndarray:
        """Articles in a random order; within each, sentences permuted among slots of the same class."""
        n = len(self.unit_start)
        article_rank = rng.permutation(self.num_articles)[self.unit_article]
        position = np.arange(n, dtype=np.float64)
        slots = np.lexsort((position, self.unit_class, article_rank))
        jitter = np.where(self.unit_class == 0, position, rng.random(n) * n)
        sources = np.lexsort((jitter, self.unit_class, article_rank))
        # slot i (in (article, class, position) order) receives source i (in (article, class, random) order)
        filled = np.empty(n, dtype=np.int64)
        filled[slots] = sources
        return filled[np.lexsort((position, article_rank))]

    def _spell(self, tokens: np.ndarray, articles: np.ndarray, rng: np.random.Generator) -> list[str]:
        params = self.params
        words = self.strings[tokens]
        content = np.flatnonzero(self.is_content[tokens])
        if len(content):
            keys = articles[content] * len(self.vocab) + tokens[content]
            unique_keys, inverse = np.unique(keys, return_inverse=True)
            renamed = rng.random(len(unique_keys)) < params.rename_p
            ranks = zipf_mandelbrot(rng, params.zipf_a, params.zipf_q, len(unique_keys))
            chosen = renamed[inverse]
            where = content[chosen]
            codes = ranks[inverse][chosen] * 2 + self.is_capital[tokens[where]]
            unique_codes, code_index = np.unique(codes, return_inverse=True)
            spelled = np.array([self.synthetic_word(int(c) >> 1, bool(c & 1)) for c in unique_codes], dtype=object)
            words[where] = spelled[code_index]
        swapped = np.flatnonzero(self.is_function[tokens])
        swapped = swapped[rng.random(len(swapped)) < params.swap_p]
        if len(swapped):
            words[swapped] = self.strings[rng.choice(self.function_ids, len(swapped), p=self.function_p)]
        numbers = np.flatnonzero(self.digits[tokens] > 0)
        if len(numbers):
            numbers = numbers[rng.random(len(numbers)) < params.number_p]
            digits = self.digits[tokens[numbers]]
            low = np.where(digits == 1, 0, 10 ** (digits - 1))
            values = rng.integers(low, 10**digits)
            words[numbers] = np.array([str(v) for v in values.tolist()], dtype=object)
        return words.tolist()


def zipf_mandelbrot(rng: np.random.Generator, a: float, q: float, size: int) -> np.ndarray:
    """Ranks r >= 0 with P(r) ~ (r + q) ** -a (a continuous Lomax draw, floored): a heavy tail, a flat head."""
    draws = q * (rng.random(size) ** (-1.0 / (a - 1.0)) - 1.0)
    return np.minimum(draws, MAX_RANK).astype(np.int64)


def generate(raw: str, seed: int, target_bytes: int, params: GrowthParams = GrowthParams(), workers: int = 1):
    """Yield UTF-8 pieces of the corpus until ``target_bytes``; the last piece is cut after a whole line."""
    model = SourceModel(raw, params)
    written = 0
    for text in map_blocks(model, seed, workers):
        data = text.encode("utf-8")
        if written + len(data) >= target_bytes:
            cut = data.rfind(b"\n", 0, target_bytes - written) + 1
            if cut > 0:
                yield data[:cut]
            return
        written += len(data)
        yield data


def map_blocks(model: SourceModel, seed: int, workers: int):
    """Blocks 0, 1, 2, ... in order, computed by ``workers`` processes (fork shares the source model)."""
    if workers <= 1:
        yield from (model.block(seed, i) for i in count())
        return
    global _WORKER_MODEL
    _WORKER_MODEL = model
    context = multiprocessing.get_context("fork")
    with context.Pool(workers) as pool:
        yield from pool.imap(_worker_block, ((seed, i) for i in count()), chunksize=1)


_WORKER_MODEL: SourceModel | None = None


def _worker_block(job: tuple[int, int]) -> str:
    seed, index = job
    return _WORKER_MODEL.block(seed, index)


# --- growth statistics --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GrowthPoint:
    """Vocabulary statistics of a text prefix: Heaps' law is ``distinct ~ K * words ** beta``."""

    mb: float
    words: int
    distinct_words: int
    words_count3: int
    distinct_word_4grams: int


def growth_curve(pieces, sizes_mb: list[float]) -> list[GrowthPoint]:
    """Statistics at each prefix size, reading ``pieces`` (str chunks cut at whitespace) once.

    Word 4-grams are counted as 64-bit mixes of the words' hashes (a collision among 10^8 of them is improbable).
    """
    counts: Counter[str] = Counter()
    grams = np.zeros(0, dtype=np.uint64)
    fresh: list[np.ndarray] = []
    tail = np.zeros(0, dtype=np.uint64)
    points, size, words, targets = [], 0, 0, sorted(sizes_mb)
    for piece in pieces:
        split = piece.split()
        counts.update(split)
        words += len(split)
        window = np.concatenate((tail, np.fromiter(map(hash, split), dtype=np.int64, count=len(split)).view(np.uint64)))
        if len(window) >= 4:
            mixed = np.zeros(len(window) - 3, dtype=np.uint64)
            for j in range(4):
                mixed = (mixed ^ window[j : len(window) - 3 + j]) * np.uint64(0x100000001B3)
            fresh.append(sorted_unique(mixed))
        tail = window[-3:]
        size += len(piece.encode("utf-8"))
        while targets and size >= targets[0] * 1e6:
            targets.pop(0)
            grams = sorted_unique(np.concatenate([grams, *fresh]))
            fresh = []
            frequent = sum(1 for c in counts.values() if c >= 3)
            points.append(GrowthPoint(size / 1e6, words, len(counts), frequent, len(grams)))
    return points


def sorted_unique(values: np.ndarray) -> np.ndarray:
    """np.unique by sorting (numpy's hash-based unique is several times slower on 64-bit keys)."""
    values = np.sort(values)
    return values[np.concatenate(([True], values[1:] != values[:-1]))] if len(values) else values


def line_pieces(text: str, chars: int = 100_000):
    """``text`` in pieces of about ``chars`` characters, cut after a newline."""
    start = 0
    while start < len(text):
        cut = text.find("\n", start + chars)
        end = len(text) if cut < 0 else cut + 1
        yield text[start:end]
        start = end


def heaps_beta(points: list[GrowthPoint], field: str = "distinct_words") -> float:
    """Least-squares slope of log(distinct) against log(words)."""
    x = np.log([p.words for p in points])
    y = np.log([getattr(p, field) for p in points])
    return float(np.polyfit(x, y, 1)[0])
