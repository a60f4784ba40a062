"""Shared fixtures: hypothesis profiles, and where the real WikiText splits live when this machine has them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import settings

# CI draws the same examples every run and prints a blob that replays a failure (@reproduce_failure); local runs stay
# random, so new failing cases keep being found. Profiles are set before the test modules build their settings.
settings.register_profile("ci", derandomize=True, print_blob=True, database=None)
settings.register_profile("dev", print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "dev"))

SHARED_WIKITEXT = Path(__file__).resolve().parents[1].parent / "shared" / "wikitext"


@pytest.fixture
def wikitext_dir() -> Path:
    """../shared/wikitext beside the checkout; tests using it skip on a machine without it."""
    if not (SHARED_WIKITEXT / "wiki.valid.raw").is_file():
        pytest.skip("real WikiText splits not present in ../shared/wikitext")
    return SHARED_WIKITEXT
