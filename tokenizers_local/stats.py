"""How well a tokenizer fits held-out text: compression, fallback, exactness, speed."""

from __future__ import annotations

import time
from dataclasses import dataclass

from tokenizers_local.base import LocalTokenizer


@dataclass(frozen=True)
class TokenizerStats:
    family: str
    vocab_size: int
    chars_per_token: float  # on the window
    fallback_share: float  # share of the window's characters spelled by fallback tokens
    round_trip_ok: bool  # decode(encode(x)) == x and the surfaces add up to x, on the whole check text
    encode_mb_per_s: float  # UTF-8 megabytes per second, one call on the whole check text
    training_seconds: float
    proxy_train: bool


def encode_throughput(encode, text: str) -> tuple[list[int], float]:
    """Ids of ``text`` and the encode speed in UTF-8 MB/s (one call, so library caches start cold)."""
    started = time.perf_counter()
    ids = encode(text)
    seconds = time.perf_counter() - started
    return ids, len(text.encode("utf-8")) / 1e6 / max(seconds, 1e-9)


def round_trips(tokenizer: LocalTokenizer, text: str, ids: list[int]) -> bool:
    surfaces = tokenizer.surfaces()
    return tokenizer.decode(ids) == text and b"".join(surfaces[i] for i in ids) == text.encode("utf-8")


def measure(tokenizer: LocalTokenizer, window: str, check_text: str) -> TokenizerStats:
    """Stats on ``window`` (the scored val window) and ``check_text`` (the whole val split) for exactness/speed."""
    ids, speed = encode_throughput(tokenizer.encode, check_text)
    window_tokens = len(tokenizer.encode(window))
    return TokenizerStats(
        family=tokenizer.family,
        vocab_size=tokenizer.vocab_size,
        chars_per_token=len(window) / max(window_tokens, 1),
        fallback_share=tokenizer.fallback_chars(window) / max(len(window), 1),
        round_trip_ok=round_trips(tokenizer, check_text, ids),
        encode_mb_per_s=speed,
        training_seconds=tokenizer.info.training_seconds,
        proxy_train=tokenizer.info.train_proxy,
    )
