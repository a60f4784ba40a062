"""Shared fixtures: hypothesis profiles, where the real WikiText splits live when this machine has them, and invented
WikiText-shaped data for the end-to-end tests."""

from __future__ import annotations

import os
import random
import time
from pathlib import Path

import pytest
import torch
from hypothesis import settings

from eval.data import raw_from_rows

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


SYLLABLES = ("ka", "lo", "ve", "rin", "dor", "sa", "mi", "tul", "bre", "quo", "zen", "fa", "go", "ny", "shi", "ar",
             "el", "um", "pra", "wex", "té", "os")


def varied_rows(seed: int, rows: int) -> list[str]:
    """Invented WikiText-shaped rows: headings, and sentences over a generated lexicon of ~600 words drawn with
    Zipf weights, with numbers and commas. Unlike a few rows repeated, a model's order or weights change its
    bits/char here, and accuracy stays well below 1. Every seed shares the lexicon; the seed picks the text."""
    lexicon_rng, rng = random.Random(0), random.Random(seed)
    lexicon = sorted({"".join(lexicon_rng.choices(SYLLABLES, k=lexicon_rng.randint(1, 4))) for _ in range(600)})
    lexicon_rng.shuffle(lexicon)
    weights = [1.0 / (rank + 1) for rank in range(len(lexicon))]
    out = [""]
    for _ in range(rows):
        if rng.random() < 0.08:
            marks = rng.choice(["=", "= ="])
            title = " ".join(word.capitalize() for word in rng.choices(lexicon, weights, k=rng.randint(1, 3)))
            out += ["", f" {marks} {title} {marks} \n", ""]
            continue
        sentences = []
        for _ in range(rng.randint(1, 4)):
            words = rng.choices(lexicon, weights, k=rng.randint(4, 16))
            words[0] = words[0].capitalize()
            if rng.random() < 0.3:
                number = rng.choice([str(rng.randint(1800, 2020)), f"{rng.randint(1, 9)} @,@ {rng.randint(100, 999)}",
                                     f"{rng.randint(2, 99)} @.@ {rng.randint(0, 9)}"])
                words.insert(rng.randrange(1, len(words)), number)
            if len(words) > 6 and rng.random() < 0.5:
                words.insert(rng.randrange(2, len(words) - 1), ",")
            sentences.append(" ".join(words) + " .")
        out.append(" " + " ".join(sentences) + " \n")
    return out + [""]


def write_data(folder: Path) -> tuple[Path, Path]:
    data = folder / "data"
    data.mkdir()
    for split, seed in (("valid", 2), ("test", 3)):
        (data / f"wiki.{split}.raw").write_text(raw_from_rows(varied_rows(seed, 40)), encoding="utf-8")
    train_file = folder / "train.raw"
    train_file.write_text(raw_from_rows(varied_rows(1, 250)), encoding="utf-8")
    return data, train_file


class TickingClock:
    """zoo.train's ``time`` with a clock that each reading advances by ``tick`` seconds: a clock-stopped run takes
    as many steps on any machine under any load (its steps and their learning rates are the same every time), while
    the wall-clock guard still runs on real time."""

    def __init__(self, tick: float) -> None:
        self.now, self.tick = 0.0, tick

    def monotonic(self) -> float:
        self.now += self.tick
        return self.now

    def __getattr__(self, name: str):
        return getattr(time, name)
