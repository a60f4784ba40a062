"""tokenizers_local on real WikiText (../shared/wikitext): every family exact on the whole val and test splits.

Trained on a prefix of the proxy train text (wiki.test.raw), so this checks exactness and the tiktoken bridge,
not quality. Skipped when the shared data folder is absent.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from eval.data import load_split, val_window
from tokenizers_local import FAMILIES, to_tiktoken, train_tokenizer

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "wikitext"
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (DATA / "wiki.valid.raw").is_file(), reason=f"no WikiText at {DATA}"),
]


@pytest.fixture(scope="module")
def splits() -> dict[str, str]:
    return {split: load_split(split, DATA).text for split in ("valid", "test")}


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def tokenizer(request):
    proxy = load_split("train", train_file=DATA / "wiki.test.raw").prefix(300_000)
    return train_tokenizer(proxy, request.param, 2000)


def test_whole_val_and_test_splits_round_trip(tokenizer, splits: dict[str, str]) -> None:
    surfaces = tokenizer.surfaces()
    for text in splits.values():
        ids = tokenizer.encode(text)
        assert tokenizer.decode(ids) == text
        assert b"".join(surfaces[i] for i in ids) == text.encode("utf-8")


def test_spans_are_never_crossed_on_the_val_window(tokenizer) -> None:
    window = val_window(DATA).text[:20_000]
    spans = tokenizer.pretokenize(window)
    assert [i for a, b in spans for i in tokenizer.encode(window[a:b])] == tokenizer.encode(window)


def test_tiktoken_matches_hf_on_the_val_split(splits: dict[str, str]) -> None:
    proxy = load_split("train", train_file=DATA / "wiki.test.raw")
    tokenizer = train_tokenizer(proxy, "bytebpe", 8000)
    assert to_tiktoken(tokenizer).encode_ordinary(splits["valid"]) == tokenizer.encode(splits["valid"])
