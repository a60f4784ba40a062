"""Shared fixtures: hypothesis profiles, and where the real WikiText splits live when this machine has them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
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


# Invented source text in WikiText's raw shape, for the synthetic corpus generator (lab/synthetic_corpus.py).
SOURCE_ROWS = [
    "", " = The Lantern Keepers = ", "",
    " The lantern keepers of Varnholt were a guild of lamp @-@ lighters , founded in 1843 by Éloise Marchand . "
    "Their hall stood beside the canal , and the river carried their boats to the sea . "
    "The guild kept records of every street and every lamp . ",
    " In 1851 the guild had 240 members ; by 1870 it had 1 @,@ 200 . The café on the square served them . "
    "A visitor from Tokyo ( 東京 ) wrote that the lights were \" like stars on water \" . ",
    "", " = = Decline = = ", "",
    " Electric light reached Varnholt in 1903 . Within ten years the guild had fewer than 30 members . "
    "The last keeper , Jonas Weller , died in 1931 at the age of 88 . ",
    "", " = Harbour Railway of Ostmark = ", "",
    " The Harbour Railway was a narrow gauge line that connected the quarries of Ostmark with the northern harbour . "
    "Construction began in 1872 under the engineer Mathilde Brenner , and the first locomotives arrived from Leeds . ",
    " Passenger services started in 1879 . Timetables show four trains daily , each hauling granite wagons "
    "and a single carriage for travellers . ",
    "", " = = Closure and preservation = = ", "",
    " Traffic declined after 1950 , when lorries replaced the wagons . The volunteers restored two engines "
    "and reopened a short section in 1994 . ",
]


def synthetic_source() -> str:
    """The rows above as a WikiText ``.raw`` file (blank rows become ' \\n')."""
    return "".join(f"{row}\n" if row else " \n" for row in SOURCE_ROWS)


@pytest.fixture(scope="session")
def synthetic_train_text() -> str:
    """About 1 MB of synthetic WikiText grown from the invented source (seed 0), as the benchmark's stream."""
    from eval.data import stream_from_raw
    from lab.synthetic_corpus import generate

    return stream_from_raw(b"".join(generate(synthetic_source(), 0, 1_000_000)).decode("utf-8"))


@pytest.fixture
def one_torch_thread():
    """Tiny models gain nothing from threads, and on a shared 2-core CI box OpenMP spinning makes them crawl."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
