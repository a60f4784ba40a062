"""An export trains on what its run trained on: the prefix a cell's plan kept (to fit its time and memory) or its
``--train-chars`` kept, not all the train text the harness passes, whose 540 MB could pass the 12 GB and the 300 s
the plan kept to."""

from __future__ import annotations

import json
import shutil

import pytest

from conftest import write_data
from eval.data import load_split
from eval.energy import EnergyMeter
from eval.errors import UserError
from lab import export
from lab.cell_phases import prefix_at_boundary, prefix_through
from lab.cli import main
from test_export import load_in_process, run_in_harness
from tokenizers_local.text_stream import CHUNK_BOUNDARY
from zoo.checkpoint import load_checkpoint
from zoo.kinds import MIXTURE, NGRAM

EVAL_CHARS = 300
RUNS = [f"bytebpe300-{NGRAM}", f"bytebpe300-{MIXTURE}"]


def compare(out, data, train_file, *extra: str) -> None:
    """`subchar compare` of the n-gram and the mixture over bytebpe 300 (char order 4), scored on EVAL_CHARS."""
    assert main(["compare", "--tokenizers", "bytebpe:300", "--models", NGRAM, MIXTURE, "--budget", "30",
                 "--eval-chars", str(EVAL_CHARS), "--test-chars", "0", "--char-order", "4", "--beam", "4",
                 "--out", str(out), "--data-dir", str(data), "--train-file", str(train_file), *extra]) == 0


@pytest.fixture(scope="module")
def grids(tmp_path_factory):
    """Two grids on one small proxy text: ``cut``, whose memory plan fits only about half the text (so the plan
    encodes and counts a prefix), and ``kept``, given a third of it by ``--train-chars`` (which the plan keeps)."""
    root = tmp_path_factory.mktemp("prefix")
    data, train_file = write_data(root)
    train_text = load_split("train", train_file=str(train_file)).text
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("lab.cell.EnergyMeter", lambda: EnergyMeter(gpu=None, cpu=None))  # no CodeCarbon start-up
        patch.setattr("lab.phase_plan.chars_that_fit_memory", lambda rates: len(train_text) // 2)
        compare(root / "cut", data, train_file)
        compare(root / "kept", data, train_file, "--train-chars", str(len(train_text) // 3))
    valid = load_split("valid", str(data)).text[:EVAL_CHARS]
    return root, train_text, valid


def run_of(root, grid: str, name: str) -> tuple:
    """A run folder of the grid and its record."""
    run = root / grid / "runs" / name
    return run, json.loads((run / "record.json").read_text(encoding="utf-8"))


def test_prefix_through_gives_back_what_the_plan_cut(synthetic_train_text):
    """From its length alone, on the same text: a prefix cut at any length; on other text, a boundary cut."""
    text = synthetic_train_text[:200_000]
    for chars in range(0, len(text) + 50, 997):
        cut = prefix_at_boundary(text, chars)
        assert prefix_through(text, len(cut)) == cut
    other = synthetic_train_text[200_000:400_000]
    taken = prefix_through(other, 5_000)
    assert len(taken) >= 5_000 and CHUNK_BOUNDARY.match(other, len(taken) - 1)
    assert prefix_through(other, len(other)) == other and prefix_through(other, len(other) + 1) == other


@pytest.mark.parametrize("name", RUNS)
def test_an_export_trains_on_the_prefix_its_plan_counted(grids, tmp_path, name):
    """Under the harness's loop, given the whole train text, the file answers as the run did: every prediction and
    the bits/char, which counts of any other text would change; it encodes as many tokens as the run counted."""
    root, train_text, valid = grids
    run, record = run_of(root, "cut", name)
    counted = record["extra"]["data"]["encoded_chars"]
    assert counted < len(train_text) == record["extra"]["train_chars"]  # the plan cut the text
    path = export.export_run(run, tmp_path / "out")
    source = path.read_text(encoding="utf-8")
    assert f"COUNTED_CHARS = {counted}\n" in source and "TRAIN_CHARS = None\n" in source
    assert f"trained on only the first {counted:,} of them" in " ".join(source.split())
    module = load_in_process(path)
    assert module.run_text(train_text) == train_text[:counted]
    tokens = len(module.encode(module.build_encoding(), module.run_text(train_text)))
    assert tokens == load_checkpoint(run / "checkpoint").manifest["tokens_seen"]
    result = run_in_harness(path, train_text, valid, tmp_path)
    assert (result["accuracy"], result["bits_per_char"]) == (record["val_char_accuracy"], record["bits_per_char"])


def test_an_export_keeps_the_runs_train_chars(grids, tmp_path):
    """``--train-chars`` cut the run's text wherever it fell (not at a boundary); the file cuts there too."""
    root, train_text, valid = grids
    run, record = run_of(root, "kept", RUNS[1])
    kept = len(train_text) // 3
    assert record["extra"]["data"]["encoded_chars"] == record["extra"]["train_chars"] == kept  # no plan cut
    path = export.export_run(run, tmp_path / "out")
    source = path.read_text(encoding="utf-8")
    assert f"TRAIN_CHARS = {kept}\n" in source and "COUNTED_CHARS = None\n" in source
    assert load_in_process(path).run_text(train_text) == train_text[:kept]
    result = run_in_harness(path, train_text, valid, tmp_path)
    assert (result["accuracy"], result["bits_per_char"]) == (record["val_char_accuracy"], record["bits_per_char"])


def test_a_compare_run_without_its_record_does_not_export(grids, tmp_path):
    """Without record.json nothing says how much of its text the run counted: refused rather than guessed."""
    root, *_ = grids
    run = tmp_path / "run"
    shutil.copytree(run_of(root, "cut", RUNS[0])[0], run)
    (run / "record.json").unlink()
    with pytest.raises(UserError, match="no record of how much train text its plan counted"):
        export.export_run(run, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_proxy_run_that_counted_all_its_text_exports_with_a_warning(grids, tmp_path, capsys):
    """A counted run whose plan took all of a proxy text exports a train() that would count all 540 MB of the real
    split, unplanned: the export says so and names the route that is planned; a run whose plan cut does not."""
    root, *_ = grids
    cut = run_of(root, "cut", RUNS[1])[0]
    whole = tmp_path / "whole"
    shutil.copytree(cut, whole)
    record = json.loads((whole / "record.json").read_text(encoding="utf-8"))
    record["extra"]["data"]["encoded_chars"] = record["extra"]["train_chars"]  # as if the plan took all the text
    (whole / "record.json").write_text(json.dumps(record), encoding="utf-8")
    for run, out, warned in ((cut, tmp_path / "a", False), (whole, tmp_path / "b", True)):
        assert main(["export", str(run), "--out", str(out)]) == 0
        err = capsys.readouterr().err
        assert ("warning: this run counted all" in err and "subchar compare --backend modal" in err) is warned
