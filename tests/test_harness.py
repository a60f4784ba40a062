"""`subchar harness FILE`: a submission run as the benchmark's run_eval.py runs it (lab.harness)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import lab.harness as harness
from conftest import write_data
from eval.data import SplitText, load_split
from eval.energy import EnergyMeter
from eval.errors import UserError
from eval.guard import TIMEOUT_REASON
from eval.records import RunRecord
from lab.cell import Cell, CellOptions, run_cell
from lab.cli import main
from lab.export import export_run

OPTIONS = CellOptions(budget_s=30, mode="exact", beam=4, eval_chars=400, test_chars=0, progress=False)
# A copy of the benchmark (cybertronai/wikitext: run_eval.py beside wikitext.py) for the cross-check, never part of
# this repository: $SUBCHAR_BENCHMARK_DIR, else a checkout beside this one.
BENCHMARK_DIR = Path(os.environ.get("SUBCHAR_BENCHMARK_DIR") or Path(__file__).resolve().parents[2] / "wikitext")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A finished bytebpe 300 + n-gram cell (scored on 400 val chars) and its exported submission.py."""
    folder = tmp_path_factory.mktemp("harness")
    data, train_file = write_data(folder)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("lab.cell.EnergyMeter", lambda: EnergyMeter(gpu=None, cpu=None))
        record = run_cell(Cell("ngram", "bytebpe", 300), OPTIONS, folder / "run", str(data), str(train_file))
    return export_run(folder / "run", folder / "export"), record, data, train_file


@pytest.fixture(autouse=True)
def quiet_meter(monkeypatch):
    """No CodeCarbon start-up (seconds) in these tests: the meter's block is tested in tests/test_energy.py."""
    monkeypatch.setattr(harness, "EnergyMeter", lambda: EnergyMeter(gpu=None, cpu=None))


def write_submission(folder: Path, body: str, name: str = "submission.py") -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(body), encoding="utf-8")
    return path


ECHO = """
    import json
    from pathlib import Path
    from eval.contract import CharModel

    class Echo(CharModel):
        def reset(self): self.last = ""
        def predict(self): return self.last
        def observe(self, char): self.last = char

    def train(train_text, valid_text=None):
        Path(__file__).with_suffix(".seen.json").write_text(json.dumps({"train": train_text, "valid": valid_text}))
        return Echo()
"""


def seen(path: Path) -> dict:
    """What the ECHO submission at ``path`` was given by train()."""
    return json.loads(path.with_suffix(".seen.json").read_text())


def echo_accuracy(window: str) -> float:
    """Echo predicts the previous character ("" first): a hit wherever a character repeats its predecessor."""
    return sum(a == b for a, b in zip(window, window[1:])) / len(window)


def test_an_export_scores_in_the_harness_what_its_cell_scored(exported, capsys):
    submission, record, data, train_file = exported
    code = main(["harness", str(submission), "--data-dir", str(data), "--train-file", str(train_file),
                 "--chars", "400", "--acc-min", "0", "--json"])
    captured = capsys.readouterr()
    result = json.loads(captured.out)
    assert code == 0 and captured.out.count("\n") == 1  # one JSON object, every other line on stderr
    assert result["val_char_accuracy"] == record["val_char_accuracy"] and result["val_chars"] == 400
    assert (result["submission"], result["eval_engine"], result["proxy_train"]) == ("submission", "stream", True)
    assert result["disqualified"] is False and result["reason"] is None
    extra = result["extra"]
    assert extra["valid_text_passed"] is True and extra["invalid_predictions"] == 0
    assert extra["train_sha256"] == load_split("train", train_file=train_file).digest()
    assert extra["submission_file"] == str(submission.resolve())
    assert f"val  char-accuracy : {record['val_char_accuracy']:.4f}" in captured.err


def test_train_gets_the_baked_train_text_and_the_whole_valid_stream(tmp_path):
    data, train_file = write_data(tmp_path)
    path = write_submission(tmp_path, ECHO)
    train, valid = load_split("train", train_file=train_file), load_split("valid", data)
    record = harness.run_submission(path, train, valid, chars=300)
    assert seen(path) == {"train": train.text, "valid": valid.text}  # as run_eval.py passes them: whole streams
    assert (record.val_chars, record.val_char_accuracy) == (300, echo_accuracy(valid.text[:300]))
    assert record.disqualified and record.reason == harness.BELOW_FLOOR and record.extra["acc_min"] == 0.70


def test_train_without_a_valid_text_parameter_gets_the_train_text_alone(tmp_path):
    data, train_file = write_data(tmp_path)
    path = write_submission(tmp_path, ECHO.replace("def train(train_text, valid_text=None):\n",
                                                   "def train(train_text, valid=None):\n        valid_text = valid\n"))
    train, valid = load_split("train", train_file=train_file), load_split("valid", data)
    record = harness.run_submission(path, train, valid, chars=None, acc_min=None)
    assert seen(path) == {"train": train.text, "valid": None}
    assert record.extra["valid_text_passed"] is False and not record.disqualified
    assert (record.val_chars, record.val_char_accuracy) == (len(valid.text), echo_accuracy(valid.text))


def test_a_train_past_the_cap_is_disqualified_in_run_eval_s_words(tmp_path):
    path = write_submission(tmp_path, """
        import time
        def train(train_text):
            time.sleep(30)
    """)
    text = SplitText("abc " * 50, "train", "fixture", proxy=True)
    record = harness.run_submission(path, text, SplitText("abcd", "valid", "fixture"), max_train_seconds=0.2)
    assert (record.disqualified, record.reason, record.val_char_accuracy) == (True, TIMEOUT_REASON, None)
    assert record.extra["max_train_seconds"] == 0.2
    assert harness.summary_lines(record)[:4] == [
        "---", "DISQUALIFIED: training wall-clock budget exceeded (0.2 s)",  # run_eval.py's words
        "submission         : submission", f"training duration  : {record.training_duration_s:.1f}s"]


def test_predictions_that_are_not_characters_are_scored_wrong_and_reported(tmp_path, capsys):
    data, train_file = write_data(tmp_path)
    write_submission(tmp_path, """
        from eval.contract import CharModel
        class OldContract(CharModel):  # the benchmark's first API returned a distribution
            def reset(self): pass
            def predict(self): return {" ": 1.0}
            def observe(self, char): pass
        def train(train_text):
            return OldContract()
    """)
    code = main(["harness", str(tmp_path / "submission.py"), "--data-dir", str(data), "--train-file",
                 str(train_file), "--chars", "50"])
    out = capsys.readouterr().out
    assert code == 2 and "val  char-accuracy" not in out  # 0.0 is under the floor: run_eval.py's DQ block
    assert "DISQUALIFIED: val accuracy 0.0000 below floor 0.7000\n" in out
    assert "warning: 50 predict() results were neither one character nor '' and scored wrong" in out


def test_a_submission_of_the_benchmark_s_own_class_is_accepted(tmp_path, monkeypatch):
    """A hand-written file imports the benchmark's wikitext module: with it on the path, its CharModel counts."""
    bench = tmp_path / "bench"
    bench.mkdir()
    write_submission(bench, """
        from abc import ABC, abstractmethod
        class CharModel(ABC):
            @abstractmethod
            def reset(self): ...
    """, "wikitext.py")
    path = write_submission(tmp_path, """
        from wikitext import CharModel
        class Space(CharModel):
            def reset(self): pass
            def predict(self): return " "
            def observe(self, char): pass
        def train(train_text):
            return Space()
    """)
    text = SplitText("x", "train", "fixture", proxy=True)
    valid = SplitText("a b c", "valid", "fixture")
    with pytest.raises(UserError, match="put the folder holding the benchmark's wikitext.py on PYTHONPATH"):
        harness.run_submission(path, text, valid)
    monkeypatch.syspath_prepend(str(bench))
    try:
        record = harness.run_submission(path, text, valid, acc_min=None)
    finally:
        sys.modules.pop("wikitext", None)
    assert record.val_char_accuracy == 2 / 5


@pytest.mark.parametrize("body, message", [
    ("x = 1\n", "must define train(train_text, valid_text=None) -> CharModel"),
    ("def train(train_text):\n    return object()\n", "train() returned object, expected a CharModel subclass"),
])
def test_files_that_are_not_submissions(tmp_path, capsys, body, message):
    data, train_file = write_data(tmp_path)
    write_submission(tmp_path, body)
    code = main(["harness", str(tmp_path / "submission.py"), "--data-dir", str(data), "--train-file",
                 str(train_file)])
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.startswith("error: ") and err.count("\n") == 1


def test_a_missing_file_is_refused_before_any_data_is_read(tmp_path, monkeypatch, capsys):
    """No data folder exists here: the file is checked first. (--chars and --acc-min are refused while parsing,
    tests/test_cli_values.py.)"""
    monkeypatch.chdir(tmp_path)
    assert main(["harness", "absent.py", "--data-dir", str(tmp_path / "no-data")]) == 2
    assert capsys.readouterr().err == ("error: no submission file at absent.py; write one with `subchar export RUN "
                                       "--out DIR`\n")


def record_with(gpu: float | None, cpu: float | None, **fields) -> RunRecord:
    return RunRecord(submission="submission", training_energy_J=gpu, training_duration_s=10.0, cpu_energy_J=cpu,
                     total_energy_J=max((gpu or 0.0) + (cpu or 0.0), 500.0), val_char_accuracy=0.71234,
                     val_chars=60_000, gpu_name=None, **fields)


def test_the_summary_is_run_eval_s_closing_block():
    measured = record_with(1234.56, 78.9, extra={"train_source": "wiki.train.raw"})
    assert harness.summary_lines(measured) == [
        "---",
        "submission         : submission",
        "training energy (J): 1,313.5 (1,234.6 GPU + 78.9 CPU)",
        "training duration  : 10.0s",
        "val  char-accuracy : 0.7123",
        "val  chars         : 60,000",
        "subchar total (J)  : 1,313.5  (max(GPU + CPU, 50 W x duration), as `subchar compare` counts it)",
    ]
    assert harness.measurement_text(measured) == "1,234.6 J   cpu=78.9 J   total=1,313.5 J   duration=10.0s"
    unmetered = record_with(None, 12.0, proxy_train=True, disqualified=True, reason=harness.BELOW_FLOOR,
                            extra={"acc_min": 0.75, "train_source": "wiki.test.raw"})
    assert harness.measurement_text(unmetered) == "energy: not measured   duration=10.0s"
    assert harness.summary_lines(unmetered) == [
        "---",
        "DISQUALIFIED: val accuracy 0.7123 below floor 0.7500",
        "submission         : submission",
        "training duration  : 10.0s",
        "subchar total (J)  : 500.0  (max(GPU + CPU, 50 W x duration), as `subchar compare` counts it)",
        "proxy train text (wiki.test.raw): a development figure, not a benchmark result",
    ]


def test_the_benchmark_s_run_eval_scores_an_export_as_the_harness_does(exported, tmp_path, capsys):
    """Cross-check against a local copy of the benchmark (never committed here): its run_eval.py on the same file,
    train text and window gives the same accuracy as `subchar harness`."""
    if not (BENCHMARK_DIR / "run_eval.py").is_file() or not (BENCHMARK_DIR / "wikitext.py").is_file():
        pytest.skip(f"no copy of the benchmark's run_eval.py and wikitext.py in {BENCHMARK_DIR} "
                    "(set SUBCHAR_BENCHMARK_DIR)")
    submission, _, data, train_file = exported
    baked = tmp_path / "baked"  # run_eval.py reads wiki.<split>.raw as it is: the streams, baked by eval.data
    baked.mkdir()
    (baked / "wiki.train.raw").write_text(load_split("train", train_file=train_file).text, encoding="utf-8")
    (baked / "wiki.valid.raw").write_text(load_split("valid", data).text, encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "run_eval.py", "--data-dir", str(baked), "--submission", str(submission),
         "--max-test-chars", "400", "--max-train-seconds", "300", "--results-json", str(tmp_path / "result.json")],
        cwd=BENCHMARK_DIR, capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    benchmark = json.loads((tmp_path / "result.json").read_text())
    assert main(["harness", str(submission), "--data-dir", str(data), "--train-file", str(train_file),
                 "--chars", "400", "--acc-min", "0", "--json"]) == 0
    ours = json.loads(capsys.readouterr().out)
    assert (ours["val_char_accuracy"], ours["val_chars"]) == (benchmark["val_char_accuracy"], benchmark["val_chars"])
