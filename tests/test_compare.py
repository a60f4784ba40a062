"""End to end on fixtures: a grid of 2 tokenizers × the n-gram (plus the char baseline), resumed after a kill."""

import json
import struct

import pytest

from lab.compare import compare, grid, load_grid, read_results
from eval.data import raw_from_rows
from eval.errors import UserError
from lab.cell import Cell, CellOptions
from lab.report import pareto_front, table_markdown, winner
from test_records import strict_loads

SENTENCES = [
    " The cat sat on the mat . \n",
    " A dog ran to the park , and the cat sat still . \n",
    " Café prices rose 3 @-@ 4 % in 2020 ; the park stayed open . \n",
]


def fixture_dir(tmp_path):
    rows = [""] + SENTENCES * 40 + [""]
    data = tmp_path / "data"
    data.mkdir()
    for split in ("valid", "test"):
        (data / f"wiki.{split}.raw").write_text(raw_from_rows(rows[::-1] if split == "test" else rows), encoding="utf-8")
    train = tmp_path / "train.raw"
    train.write_text(raw_from_rows(rows * 3), encoding="utf-8")
    return data, train


OPTIONS = CellOptions(budget_s=30, mode="exact", beam=4, eval_chars=400, test_chars=200, char_order=4, progress=False)


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def test_grid_resumes_and_writes_the_three_files(tmp_path):
    data, train = fixture_dir(tmp_path)
    out = tmp_path / "cmp"
    cells = grid(["bytebpe:300", "unigram:300"], ["ngram"])
    assert [c.id for c in cells] == ["char-kn", "bytebpe300-ngram", "unigram300-ngram"]

    class Killed(Exception):
        pass

    def kill_after_first(record):
        raise Killed  # the process dies right after the first cell was appended

    with pytest.raises(Killed):
        compare(cells, OPTIONS, out, data_dir=str(data), train_file=str(train), on_record=kill_after_first)
    assert [r["submission"] for r in read_results(out / "results.jsonl")] == ["char-kn"]
    assert [strict_loads(line)["submission"] for line in (out / "results.jsonl").read_text().splitlines()] == ["char-kn"]

    seen = []
    records, table, plot = compare(cells, OPTIONS, out, data_dir=str(data), train_file=str(train),
                                   on_record=lambda r: seen.append(r["submission"]))
    assert seen == ["bytebpe300-ngram", "unigram300-ngram"]  # the finished cell was not redone
    assert [r["submission"] for r in records] == ["char-kn", "bytebpe300-ngram", "unigram300-ngram"]
    # fixed inputs, deterministic counting models: the scores are exact (correct chars / 400 and / 200)
    expected = {"char-kn": (0.915, 0.935), "bytebpe300-ngram": (0.9925, 0.97), "unigram300-ngram": (0.9575, 0.96)}
    for record in records:
        assert record["proxy_train"] is True and record["val_chars"] == 400 and record["total_energy_J"] > 0
        assert record["extra"]["test_chars"] == 200
        assert (record["val_char_accuracy"], record["extra"]["test_char_accuracy"]) == expected[record["submission"]]
    subword = records[1]
    assert set(subword["energy_phases"]) == {"probe", "tokenizer", "tokenize", "train"}
    phases = subword["extra"]["phases"]
    assert set(phases) == {"probe", "tokenizer", "tokenize", "train", "margin"}
    assert all(phases[name]["actual_s"] >= 0 and phases[name]["energy_J"] >= 0 for name in ("probe", "train"))
    assert sum(p["planned_s"] for p in phases.values()) <= OPTIONS.budget_s + 1e-9
    assert subword["extra"]["data"]["ids_dtype"] == "uint16" and not subword["extra"]["data"]["ids_cache_hit"]
    assert subword["tokenizer"]["family"] == "bytebpe" and subword["tokenizer"]["chars_per_token"] > 1.0
    lines = (out / "results.jsonl").read_text().splitlines()
    assert [strict_loads(line)["submission"] for line in lines] == [r["submission"] for r in records]
    text = (out / "table.md").read_text()
    assert "char-kn" in text and "proxy train text" in text and text.count("\n|") == 4 and "| 400 |" in text
    width, height = png_size((out / "pareto.png").read_bytes())
    assert (width, height) == (960, 600)
    assert (out / "runs" / "bytebpe300-ngram" / "checkpoint" / "manifest.json").is_file()


def test_torn_last_line_is_ignored(tmp_path):
    path = tmp_path / "results.jsonl"
    path.write_text(json.dumps({"submission": "a"}) + "\n" + '{"submission": "b", "tot')
    assert read_results(path) == [{"submission": "a"}]


def test_pareto_front_and_winner():
    records = [
        {"submission": "cheap", "total_energy_J": 100.0, "val_char_accuracy": 0.60},
        {"submission": "good", "total_energy_J": 500.0, "val_char_accuracy": 0.72},
        {"submission": "dominated", "total_energy_J": 600.0, "val_char_accuracy": 0.65},
        {"submission": "best", "total_energy_J": 900.0, "val_char_accuracy": 0.80},
    ]
    assert [r["submission"] for r in pareto_front(records)] == ["cheap", "good", "best"]
    assert winner(records)["submission"] == "good"
    assert "Winner (least energy with val acc ≥ 0.7): good" in table_markdown(records)
    assert winner(records[:1]) is None


def test_bad_grid_specs_are_clear_errors():
    with pytest.raises(UserError, match="FAMILY:VOCAB_SIZE"):
        grid(["bytebpe"], ["ngram"])
    with pytest.raises(UserError, match="corrupt"):
        bad = __import__("pathlib").Path(__import__("tempfile").mkdtemp())
        (bad / "grid.json").write_text("{")
        load_grid(bad)


def test_test_window_is_not_scored_when_it_was_the_proxy_train_text(tmp_path):
    from lab.cell import run_cell

    data, _ = fixture_dir(tmp_path)
    record = run_cell(Cell("char-kn"), OPTIONS, tmp_path / "run", str(data), str(data / "wiki.test.raw"))
    assert record["extra"]["test_skipped"] == "the proxy train text is the test split"
    assert record["extra"]["test_char_accuracy"] is None and record["extra"]["test_chars"] == 0
    assert json.loads((tmp_path / "run" / "record.json").read_text())["submission"] == "char-kn"


def test_a_comparison_reads_and_checks_the_train_text_once(tmp_path, monkeypatch):
    """The 540 MB split costs seconds and gigabytes to read and check: `compare` does it once for every cell."""
    from eval import data as eval_data
    from lab.cli import main

    data, train = fixture_dir(tmp_path)
    reads, checks = [], []
    read, find = eval_data.read_utf8, eval_data.ValFingerprint.find
    monkeypatch.setattr(eval_data, "read_utf8", lambda path, *a, **k: reads.append(path.name) or read(path, *a, **k))
    monkeypatch.setattr(eval_data.ValFingerprint, "find", lambda self, *a: checks.append(1) or find(self, *a))
    monkeypatch.setattr(eval_data, "LEAK_FINDINGS", {})
    code = main(["compare", "--tokenizers", "bytebpe:300", "unigram:300", "--models", "ngram", "--data-dir",
                 str(data), "--train-file", str(train), "--budget", "30", "--eval-chars", "100", "--test-chars", "0",
                 "--out", str(tmp_path / "cmp")])
    assert code == 0 and len(read_results(tmp_path / "cmp" / "results.jsonl")) == 3
    assert reads.count(train.name) == 1 and len(checks) == 1
