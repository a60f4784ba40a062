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
    # fixed inputs, deterministic counting models (learning from the scored text too, the default): the scores are
    # exact (correct chars / 400 and / 200)
    expected = {"char-kn": (0.8925, 0.935), "bytebpe300-ngram": (0.9925, 0.97), "unigram300-ngram": (0.9375, 0.96)}
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


def test_compare_names_each_cell_before_it_runs_and_scores_it_when_done(tmp_path, capsys, monkeypatch):
    """A cell takes minutes of bars: its header comes before its work, its done line says how it scored."""
    from lab import compare as compare_module
    from lab.cli import main

    data, train = fixture_dir(tmp_path)
    run_cell = compare_module.run_cell

    def announced_run(cell, *args, **kwargs):
        print(f"(running {cell.id})")
        return run_cell(cell, *args, **kwargs)

    monkeypatch.setattr(compare_module, "run_cell", announced_run)
    out = tmp_path / "cmp"
    assert main(["compare", "--tokenizers", "bytebpe:300", "--models", "ngram", "--data-dir", str(data),
                 "--train-file", str(train), "--budget", "30", "--eval-chars", "100", "--test-chars", "0",
                 "--out", str(out)]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith(("cell ", "(running", "done:"))]
    records = {r["submission"]: r for r in read_results(out / "results.jsonl")}
    done = {name: (f"done: {name}: val acc {r['val_char_accuracy']:.4f}, {r['bits_per_char']:.3f} bits/char, "
                   f"{r['total_energy_J']:,.0f} J, DQ (val_accuracy_below_floor)" if r["disqualified"] else
                   f"done: {name}: val acc {r['val_char_accuracy']:.4f}, {r['bits_per_char']:.3f} bits/char, "
                   f"{r['total_energy_J']:,.0f} J") for name, r in records.items()}
    assert lines == ["cell 1/2: char-kn", "(running char-kn)", done["char-kn"],
                     "cell 2/2: bytebpe300-ngram", "(running bytebpe300-ngram)", done["bytebpe300-ngram"]]


def test_the_table_shows_model_size_steps_training_throughput_and_threads(tmp_path):
    data, train = fixture_dir(tmp_path)
    records, _, _ = compare(grid(["bytebpe:300"], ["ngram"]), OPTIONS, tmp_path / "cmp", data_dir=str(data),
                            train_file=str(train))
    ngram = records[1]["model"]["train"]
    rows = {line.split(" | ")[0].lstrip("| "): line.split(" | ") for line in table_markdown(records).splitlines()}
    header = rows["run"]
    column = {name: header.index(name) for name in ("params", "steps", "train tok/s", "threads")}
    counted = rows["bytebpe300-ngram"]
    assert counted[column["params"]].endswith(" n-grams") and ngram["ngrams"] > 0
    assert counted[column["steps"]] == "—" and counted[column["threads"]] == "—"
    assert counted[column["train tok/s"]] == f"{ngram['tokens_seen'] / ngram['seconds']:,.0f}"
    neural = {"submission": "bytebpe300-transformer", "total_energy_J": 900.0, "val_char_accuracy": 0.5,
              "model": {"name": "transformer", "params": 1_052_672,
                        "train": {"steps": 321, "stop_reason": "budget", "tokens_per_s": 12_345.6, "threads": 1,
                                  "thread_choice": {"how": "probe", "available": 2, "collapsed_at_step": 40}}}}
    row = {line.split(" | ")[0].lstrip("| "): line.split(" | ") for line in
           table_markdown([neural]).splitlines()}["bytebpe300-transformer"]
    assert [row[column[name]] for name in column] == ["1.05M", "321", "12,346", "2→1"]
    assert "2→1: all-thread steps slowed mid-run" in table_markdown([neural])


def test_the_plot_shows_chars_scored_the_energy_floor_and_one_winner(monkeypatch):
    import matplotlib.axes

    from lab.report import pareto_png, plot_inputs

    def record(name, energy, accuracy, **fields):
        return {"submission": name, "total_energy_J": energy, "training_duration_s": energy / 50,
                "val_char_accuracy": accuracy, "val_chars": 400, "model": {"name": "ngram"}, **fields}

    records = [record("cheap", 100.0, 0.60), record("good", 500.0, 0.72), record("best", 900.0, 0.80)]
    shown = plot_inputs(records)
    assert shown.winner["submission"] == "good" and [r["submission"] for r in shown.front] == ["cheap", "good", "best"]
    assert shown.notes == ["val chars scored: 400 (the benchmark scores 60,000)",
                           "no GPU energy counter: energy = 50 W × training seconds"]
    measured = [{**r, "training_energy_J": 10.0, "total_energy_J": r["total_energy_J"] + 1} for r in records]
    assert plot_inputs(measured).notes == ["val chars scored: 400 (the benchmark scores 60,000)"]
    assert plot_inputs(records[:1]).winner is None
    assert plot_inputs(records[:1]).notes[-1] == "no winner: no run reaches val acc 0.7 (hollow = disqualified)"

    drawn = []  # what reaches matplotlib: only the winner gets the star, and the front line circles nothing
    scatter, plot = matplotlib.axes.Axes.scatter, matplotlib.axes.Axes.plot
    monkeypatch.setattr(matplotlib.axes.Axes, "scatter",
                        lambda ax, x, y, **kw: drawn.append(("scatter", x, y, kw)) or scatter(ax, x, y, **kw))
    monkeypatch.setattr(matplotlib.axes.Axes, "plot",
                        lambda ax, *args, **kw: drawn.append(("plot", *args, kw)) or plot(ax, *args, **kw))
    pareto_png(records)
    stars = [call for call in drawn if call[0] == "scatter" and call[3].get("marker") == "*"]
    assert [(x, y) for _, x, y, _ in stars] == [(500.0, 0.72)] and stars[0][3]["label"] == "winner: good"
    front = [call for call in drawn if call[0] == "plot" and call[-1].get("label") == "Pareto front"]
    assert len(front) == 1 and "marker" not in front[0][-1]


def test_a_cell_without_progress_draws_no_training_bar(tmp_path, capfd, monkeypatch):
    """``CellOptions(progress=False)`` reaches the neural trainer, whose bar tqdm would draw even into a log."""
    from dataclasses import replace

    from lab import cell as cell_module

    data, train = fixture_dir(tmp_path)
    trainer = cell_module.train_neural
    monkeypatch.setattr(cell_module, "train_neural",  # three steps are enough to draw a bar
                        lambda *args: trainer(*args[:-1], replace(args[-1], max_steps=3)))
    tiny = {"transformer": {"n_layer": 1, "n_head": 2, "n_embd": 32, "block_size": 32}}
    options = replace(OPTIONS, overrides=tiny, eval_chars=50, test_chars=0)
    record = cell_module.run_cell(Cell("transformer", "bytebpe", 300), options, tmp_path / "run", str(data),
                                  str(train))
    assert record["model"]["train"]["steps"] == 3
    assert capfd.readouterr() == ("", "")
