"""`subchar show PATH`: every kind of subchar folder, read from its JSON alone (lab.show)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

import lab.checkpoint_runs
import lab.show as show_module
import zoo.checkpoint
from eval.data import load_split
from eval.energy import EnergyMeter
from eval.errors import UserError
from lab.cli import main
from lab.show import render, show
from test_harness import write_data

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """A compare folder (char-kn and bytebpe 300 + n-gram on 300 val chars) and a `subchar train` checkpoint
    scored by `subchar eval`, all on a tiny proxy train text."""
    root = tmp_path_factory.mktemp("show")
    data, train_file = write_data(root)
    common = ["--data-dir", str(data), "--train-file", str(train_file)]
    with pytest.MonkeyPatch.context() as patch:
        quiet = lambda: EnergyMeter(gpu=None, cpu=None)  # noqa: E731 - no CodeCarbon start-up per run
        patch.setattr("lab.cell.EnergyMeter", quiet)
        patch.setattr(lab.checkpoint_runs, "EnergyMeter", quiet)
        assert main(["compare", "--tokenizers", "bytebpe:300", "--models", "ngram", "--budget", "30",
                     "--eval-chars", "300", "--test-chars", "200", "--out", str(root / "grid"), *common]) == 0
        assert main(["tokenizer", "train", "--family", "bytebpe", "--vocab-size", "300", "--out", str(root / "tok"),
                     *common]) == 0
        assert main(["train", "--model", "ngram", "--tokenizer", str(root / "tok"), "--out", str(root / "ckpt"),
                     "--set", "order=3", *common]) == 0
        assert main(["eval", str(root / "ckpt"), "--chars", "200", "--beam", "2", "--data-dir", str(data)]) == 0
    return root, train_file


def results(root: Path) -> dict[str, dict]:
    lines = (root / "grid" / "results.jsonl").read_text().splitlines()
    return {record["submission"]: record for record in map(json.loads, lines)}


def eval_file(root: Path) -> Path:
    """The record `subchar eval` wrote beside the checkpoint (its name says the split and the settings)."""
    (found,) = (root / "ckpt").glob("eval_valid_*.json")
    return found


def test_the_names_match_the_modules_that_write_them():
    assert (show_module.TRAIN_RECORD, show_module.CHECKPOINT_TOKENIZER) == (
        lab.checkpoint_runs.TRAIN_RECORD, zoo.checkpoint.TOKENIZER_DIR)


def test_a_compare_folder(folders):
    root, train_file = folders
    view = show(root / "grid")
    records = results(root)
    assert view["kind"] == "compare" and view["settings"]["cells"] == ["char-kn", "bytebpe300-ngram"]
    assert view["settings"]["options"]["eval_chars"] == 300 and view["settings"]["invocations"] == 1
    passing = [r for r in records.values() if r["val_char_accuracy"] >= 0.70 and not r["disqualified"]]
    cheapest = min(passing, key=lambda r: r["total_energy_J"], default={})  # energy follows wall time here
    assert view["scores"] == {"runs": 2, "superseded": 0, "winner": cheapest.get("submission"), "acc_min": 0.70}
    assert [run["run"] for run in view["runs"]] == ["char-kn", "bytebpe300-ngram"]
    assert [run["val_char_accuracy"] for run in view["runs"]] == [
        records["char-kn"]["val_char_accuracy"], records["bytebpe300-ngram"]["val_char_accuracy"]]
    assert view["provenance"]["train_sha256"] == [load_split("train", train_file=train_file).digest()]
    assert view["provenance"]["subchar"] == [metadata.version("subchar")]
    assert view["provenance"]["proxy_train"] is True and view["provenance"]["backends"] == ["local"]
    text = render(view)
    assert text.startswith(f"compare: {root / 'grid'}\n")
    assert "| bytebpe300-ngram |" in text and "note: trained on a proxy train text" in text


def test_a_run_folder(folders):
    root, train_file = folders
    view = show(root / "grid" / "runs" / "bytebpe300-ngram")
    record = json.loads((root / "grid" / "runs" / "bytebpe300-ngram" / "record.json").read_text())
    manifest = json.loads((root / "grid" / "runs" / "bytebpe300-ngram" / "checkpoint" / "manifest.json").read_text())
    assert view["kind"] == "run" and view["status"] == "finished"
    assert view["settings"]["cell"] == "bytebpe300-ngram" and view["settings"]["options"]["beam"] == 8
    scores = view["scores"]
    assert (scores["val_char_accuracy"], scores["val_chars"], scores["bits_per_char"]) == (
        record["val_char_accuracy"], 300, record["bits_per_char"])
    assert (scores["test_char_accuracy"], scores["test_chars"]) == (record["extra"]["test_char_accuracy"], 200)
    energy = view["energy"]
    assert energy["total_energy_J"] == record["total_energy_J"] and energy["gpu_energy_J"] is None
    assert set(energy["phases"]) == {"probe", "tokenizer", "tokenize", "train"}
    assert energy["phases"]["train"] == {
        "seconds": record["energy_phases"]["train"]["duration_s"],
        "energy_J": record["energy_phases"]["train"]["total_energy_J"],
        "planned_s": record["extra"]["phases"]["train"]["planned_s"]}
    assert energy["plan"]["budget_s"] == 30.0
    provenance = view["provenance"]
    assert provenance["train_sha256"] == load_split("train", train_file=train_file).digest()
    assert provenance["subchar"] == metadata.version("subchar") and provenance["backend"] == "local"
    assert provenance["tokenizer_sha256"] == manifest["tokenizer_sha256"]
    assert (provenance["proxy_train"], provenance["train_source"]) == (True, str(train_file))
    assert "status: finished\n" in render(view)
    baseline = show(root / "grid" / "runs" / "char-kn")
    assert baseline["status"] == "finished" and baseline["scores"]["val_chars"] == 300


def test_the_char_baseline_and_an_unfinished_run(folders, tmp_path):
    root, _ = folders
    view = show(root / "grid" / "runs" / "char-kn")
    assert view["settings"]["family"] is None and view["provenance"]["checkpoint"] is None
    assert "tokenizer_sha256" not in view["provenance"]
    unfinished = tmp_path / "cell"
    unfinished.mkdir()
    shutil.copy(root / "grid" / "runs" / "char-kn" / "cell.json", unfinished)
    view = show(unfinished)
    assert view["status"].startswith("unfinished: no record.json") and view["scores"] == {}
    record = json.loads((root / "grid" / "runs" / "char-kn" / "record.json").read_text())
    timed_out = {**record, "disqualified": True, "reason": "train_time_exceeded", "val_char_accuracy": None}
    (tmp_path / "timed_out.json").write_text(json.dumps(timed_out))
    view = show(tmp_path / "timed_out.json")
    assert view["kind"] == "record" and view["status"] == "disqualified (train_time_exceeded)"
    assert "val_char_accuracy" not in view["scores"]


def test_a_checkpoint_with_its_records(folders):
    root, train_file = folders
    view = show(root / "ckpt")
    manifest = json.loads((root / "ckpt" / "manifest.json").read_text())
    scored_file = eval_file(root)
    scored = json.loads(scored_file.read_text())
    trained = json.loads((root / "ckpt" / "train_record.json").read_text())
    assert view["kind"] == "checkpoint"
    assert view["settings"]["model"] == "ngram" and view["settings"]["config"] == {"vocab_size": 300, "order": 3}
    assert view["settings"]["tokenizer"] == {"family": "bytebpe", "vocab_size": 300}
    assert view["scores"] == {scored_file.stem: {
        "split": "valid", "mode": "exact", "beam": 2, "char_accuracy": scored["val_char_accuracy"], "chars": 200,
        "bits_per_char": scored["bits_per_char"], "adapt": True, "date_utc": scored["date_utc"]}}
    assert view["energy"]["total_energy_J"] == trained["total_energy_J"] and set(view["energy"]["phases"]) == {
        "tokenize", "train"}
    assert view["provenance"]["train_sha256"] == load_split("train", train_file=train_file).digest()
    assert view["provenance"]["tokenizer_sha256"] == manifest["tokenizer_sha256"]
    cell_checkpoint = show(root / "grid" / "runs" / "bytebpe300-ngram" / "checkpoint")
    assert cell_checkpoint["energy"]["note"].startswith("a grid cell's checkpoint: its energy is in ")


def test_a_tokenizer_and_a_record_file(folders, tmp_path):
    root, train_file = folders
    view = show(root / "tok" / "manifest.json")  # a folder's own file stands for the folder
    assert view["kind"] == "tokenizer" and view["path"] == str(root / "tok")
    assert view["settings"] == {"family": "bytebpe", "vocab_size": 300, "requested_vocab_size": 300, "options": {}}
    assert view["provenance"]["train_sha256"] == load_split("train", train_file=train_file).digest()
    (tmp_path / "other.json").write_text('{"a": 1}')
    with pytest.raises(UserError, match="other.json is not a subchar run record; pass a run record file"):
        show(tmp_path / "other.json")
    record = show(eval_file(root))
    scored = json.loads(eval_file(root).read_text())
    assert (record["kind"], record["status"]) == ("record", "finished")
    assert (record["scores"]["val_char_accuracy"], record["scores"]["val_chars"]) == (scored["val_char_accuracy"], 200)


def test_json_is_one_object_on_stdout(folders, capsys):
    root, _ = folders
    assert main(["show", str(root / "grid" / "runs" / "bytebpe300-ngram"), "--json"]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and json.loads(out) == json.loads(json.dumps(show(
        root / "grid" / "runs" / "bytebpe300-ngram")))


def test_show_loads_no_torch(folders):
    """`subchar show` must be instant: it reads JSON and never imports torch, numpy or a tokenizer library."""
    root, _ = folders
    paths = [root / "grid", root / "grid" / "runs" / "bytebpe300-ngram", root / "ckpt", root / "tok"]
    script = ("import sys; from lab.cli import main\n"
              f"codes = [main(['show', p, '--json']) for p in {[str(p) for p in paths]!r}]\n"
              "heavy = sorted({'torch', 'numpy', 'tokenizers', 'tiktoken'} & set(sys.modules))\n"
              "print(codes, heavy, file=sys.stderr)")
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip().splitlines()[-1] == "[0, 0, 0, 0] []"


def corrupt(folder: Path, name: str, text: str) -> None:
    (folder / name).write_text(text)


@pytest.mark.parametrize("make, message", [
    (lambda f: None, "does not exist; pass a tokenizer, checkpoint, run (cell.json) or compare (grid.json) folder"),
    (lambda f: f.mkdir(), "is not a subchar folder: it holds no manifest.json, cell.json, grid.json or results.jsonl"),
    (lambda f: (f.mkdir(), corrupt(f, "manifest.json", "{")), "manifest.json is corrupt (not JSON); delete "),
    (lambda f: (f.mkdir(), corrupt(f, "manifest.json", '{"format": "other"}')),
     "is not a subchar tokenizer or checkpoint manifest (format 'other')"),
    (lambda f: (f.mkdir(), corrupt(f, "cell.json", '{"options": {}}')),
     "cell.json is not a complete subchar run folder (KeyError: 'cell'); run the cell again with `subchar compare`"),
    (lambda f: (f.mkdir(), corrupt(f, "grid.json", "[1]")),
     "grid.json is not a complete subchar compare folder (TypeError"),
    (lambda f: corrupt(f.parent, f.name, '{"a": 1}'), "thing is not a run record (a .json file); pass "),
])
def test_what_cannot_be_shown_is_one_line_naming_the_fix(tmp_path, capsys, make, message):
    target = tmp_path / "thing"
    make(target)
    assert main(["show", str(target)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and message in err


def test_a_damaged_checkpoint_or_tokenizer_names_the_fix(folders, tmp_path, capsys):
    root, _ = folders
    checkpoint = tmp_path / "ckpt"
    shutil.copytree(root / "ckpt", checkpoint)
    (checkpoint / "counts.npz").unlink()
    tokenizer = tmp_path / "tok"
    shutil.copytree(root / "tok", tokenizer)
    (tokenizer / "tokenizer.json").unlink()
    stale = tmp_path / "stale"
    shutil.copytree(root / "tok", stale)
    manifest = json.loads((stale / "manifest.json").read_text())
    corrupt(stale, "manifest.json", json.dumps({**manifest, "format_version": 9}))
    for folder, message in ((checkpoint, "lacks counts.npz; the checkpoint is incomplete, train"),
                            (tokenizer, "lacks its tokenizer.json; delete the folder and train it again"),
                            (stale, "has format version 9, this subchar reads 1; run `subchar tokenizer train")):
        assert main(["show", str(folder)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1 and message in err
