"""Shared fixtures: where the real WikiText splits live when this machine has them."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED_WIKITEXT = Path(__file__).resolve().parents[1].parent / "shared" / "wikitext"


@pytest.fixture
def wikitext_dir() -> Path:
    """../shared/wikitext beside the checkout; tests using it skip on a machine without it."""
    if not (SHARED_WIKITEXT / "wiki.valid.raw").is_file():
        pytest.skip("real WikiText splits not present in ../shared/wikitext")
    return SHARED_WIKITEXT
