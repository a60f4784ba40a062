"""Output folders know their kind: every writing command (``tokenizer train``, ``train``, ``export``) replaces only a
folder of its own kind and refuses any other (a tokenizer, a checkpoint, a compare run, an export, a folder of other
files, a file) in one line before any work, without loading torch, leaving the folder as it was."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lab.cell import Cell, CellOptions, run_cell
from lab.cli import main

ROOT = Path(__file__).resolve().parents[1]
WORDS = [a + b + c for a in "bcdfglmnpst" for b in "aeiou" for c in "nrstx"]
WRITERS = ("tokenizer", "checkpoint", "export")
KINDS = ("tokenizer", "checkpoint", "run", "export")
NOUNS = {"tokenizer": "saved tokenizer", "checkpoint": "checkpoint", "run": "`subchar compare` run folder",
         "export": "`subchar export` folder"}


def words(seed: int, count: int) -> str:
    return " ".join(WORDS[(i * 37 + seed) % len(WORDS)] for i in range(count))


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> Path:
    """One real folder of each kind, made by the commands themselves, and the texts they were made from."""
    base = tmp_path_factory.mktemp("kinds")
    (base / "data").mkdir()
    (base / "data" / "wiki.valid.raw").write_text(" = Valid = \n \n" + words(5, 80) + " \n")
    (base / "data" / "wiki.test.raw").write_text(" = Test = \n \n" + words(9, 80) + " \n")
    (base / "train.txt").write_text(words(0, 3000) + ".\n")
    train = ["--train-file", str(base / "train.txt")]
    assert main(["tokenizer", "train", "--family", "bytebpe", "--vocab-size", "300", *train,
                 "--out", str(base / "tokenizer")]) == 0
    assert main(["train", "--model", "ngram", "--tokenizer", str(base / "tokenizer"), *train, "--set", "order=3",
                 "--out", str(base / "checkpoint")]) == 0
    assert main(["export", str(base / "checkpoint"), "--out", str(base / "export")]) == 0
    options = CellOptions(budget_s=30, beam=4, eval_chars=100, test_chars=0, progress=False)
    run_cell(Cell("ngram", "bytebpe", 300), options, base / "run", str(base / "data"), str(base / "train.txt"))
    return base


def command(writer: str, base: Path, out: Path) -> list[str]:
    """The command line that writes a folder of ``writer``'s kind to ``out``."""
    train = ["--train-file", str(base / "train.txt")]
    return {
        "tokenizer": ["tokenizer", "train", "--family", "bytebpe", "--vocab-size", "300", *train, "--out", str(out)],
        "checkpoint": ["train", "--model", "ngram", "--tokenizer", str(base / "tokenizer"), *train, "--out", str(out)],
        "export": ["export", str(base / "checkpoint"), "--out", str(out)],
    }[writer]


def tree_digest(path: Path) -> str:
    """Every file below ``path`` (or the file itself) with its bytes: equal digests, untouched folder."""
    digest = hashlib.sha256()
    for item in sorted([path] if path.is_file() else path.rglob("*")):
        if item.is_file():
            digest.update(f"{item.relative_to(path.parent)}\0".encode() + item.read_bytes())
    return digest.hexdigest()


def run_fresh(argvs: list[list[str]], cwd: Path) -> dict:
    """Each command line through ``lab.cli.main`` in one fresh interpreter: exit codes (or the exception that
    escaped), stderr, and whether torch (or a tokenizer library) was ever imported."""
    script = ("import contextlib, io, json, sys\nfrom lab.cli import main\nruns = []\n"
              f"for argv in {argvs!r}:\n"
              "    err = io.StringIO()\n"
              "    with contextlib.redirect_stderr(err):\n"
              "        try:\n"
              "            code = main(argv)\n"
              "        except SystemExit as exit:\n"
              "            code = exit.code\n"
              "        except Exception as crash:  # a traceback where one line was due\n"
              "            code = type(crash).__name__\n"
              "    runs.append([code, err.getvalue()])\n"
              "heavy = sorted(m for m in ('torch', 'tokenizers', 'tokenizers_local', 'zoo') if m in sys.modules)\n"
              "print(json.dumps({'runs': runs, 'heavy': heavy}))\n")
    env = {name: value for name, value in os.environ.items() if not name.startswith("SUBCHAR_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=cwd, timeout=300,
                          env=env)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_each_command_refuses_every_other_kind_before_any_work(saved, tmp_path):
    """tokenizer train over a checkpoint deleted its weights, train over a tokenizer deleted the tokenizer: now every
    pair of different kinds, a folder of other files and a file are refused in one line, and nothing changes."""
    targets: dict[str, Path] = {}
    for kind in KINDS:
        targets[kind] = tmp_path / f"a_{kind}"
        shutil.copytree(saved / kind, targets[kind])
    targets["other"] = tmp_path / "notes"
    targets["other"].mkdir()
    (targets["other"] / "notes.txt").write_text("keep me\n")
    targets["file"] = tmp_path / "a_file"
    targets["file"].write_text("not a folder\n")
    cases = [(writer, kind) for writer in WRITERS for kind in targets if kind != writer]
    before = {kind: tree_digest(path) for kind, path in targets.items()}
    out = run_fresh([command(writer, saved, targets[kind]) for writer, kind in cases], tmp_path)
    for (writer, kind), (code, err) in zip(cases, out["runs"]):
        target = targets[kind]
        if kind == "file":
            expected = f"--out {target} is a file; give a folder path"
        elif kind == "other":
            expected = f"--out {target} exists and is not a {NOUNS[writer]}; choose another path"
        else:
            expected = f"--out {target} is a {NOUNS[kind]}, not a {NOUNS[writer]}; choose another path"
        assert code == 2 and err.startswith("error: ") and err.count("\n") == 1, (writer, kind, err)
        assert expected in err, (writer, kind, err)
    assert {kind: tree_digest(path) for kind, path in targets.items()} == before
    assert out["heavy"] == []  # refused before torch or a tokenizer library was imported


@pytest.mark.parametrize("writer", WRITERS)
def test_each_command_replaces_a_folder_of_its_own_kind(saved, tmp_path, writer, capsys):
    target = tmp_path / writer
    shutil.copytree(saved / writer, target)
    assert main(command(writer, saved, target)) == 0, capsys.readouterr().err
    if writer == "export":
        assert (target / "submission.py").read_bytes().startswith(b'"""subchar submission ')
    else:
        assert json.loads((target / "manifest.json").read_text())["format"] == f"subchar-{writer}"


def test_nothing_is_written_inside_a_saved_folder(saved, tmp_path):
    """A checkpoint's bundled tokenizer and a compare run's checkpoint are parts of a whole: replacing them would
    leave the whole corrupt."""
    run, checkpoint = tmp_path / "run", tmp_path / "checkpoint"
    shutil.copytree(saved / "run", run)
    shutil.copytree(saved / "checkpoint", checkpoint)
    cases = [("tokenizer", checkpoint / "tokenizer", checkpoint, "checkpoint"),
             ("checkpoint", run / "checkpoint", run, "`subchar compare` run folder"),
             ("export", run / "submission", run, "`subchar compare` run folder")]
    before = [tree_digest(run), tree_digest(checkpoint)]
    out = run_fresh([command(writer, saved, target) for writer, target, _, _ in cases], tmp_path)
    for (writer, target, whole, noun), (code, err) in zip(cases, out["runs"]):
        assert code == 2 and err.count("\n") == 1, (writer, err)
        assert f"--out {target} is inside the {noun} {whole}; choose a path outside it" in err, (writer, err)
    assert [tree_digest(run), tree_digest(checkpoint)] == before
    assert out["heavy"] == []


def test_inputs_of_the_wrong_kind_name_the_folder_to_pass(saved, tmp_path):
    """`subchar eval runs/<cell>` hinted `subchar train --out runs/<cell>` (which would have replaced the run's
    files); a checkpoint given as a tokenizer, or a run to eval, now names the folder inside it to pass."""
    run, checkpoint = saved / "run", saved / "checkpoint"
    argvs = [["eval", str(run)],
             ["train", "--model", "ngram", "--tokenizer", str(checkpoint), "--train-file", str(saved / "train.txt"),
              "--out", str(tmp_path / "new")],
             ["tokenizer", "stats", str(run)],
             ["export", str(saved / "tokenizer"), "--out", str(tmp_path / "new")]]
    out = run_fresh(argvs, tmp_path)
    messages = [err for _, err in out["runs"]]
    assert all(code == 2 and err.count("\n") == 1 for code, err in out["runs"]), messages
    assert f"{run} is a `subchar compare` run folder, not a checkpoint; pass its checkpoint: {run / 'checkpoint'}" \
        in messages[0]
    assert "subchar train --out" not in messages[0]
    assert f"--tokenizer {checkpoint} is a checkpoint, not a saved tokenizer; pass its tokenizer: " \
           f"{checkpoint / 'tokenizer'}" in messages[1]
    assert f"pass its tokenizer: {run / 'tokenizer'}" in messages[2]
    assert f"{saved / 'tokenizer'} is a saved tokenizer, not a checkpoint" in messages[3]
    assert not (tmp_path / "new").exists()
    assert out["heavy"] == []


def test_damaged_inputs_are_refused_before_any_library_loads(saved, tmp_path):
    """A corrupt tokenizer (train), checkpoint (eval, export) or an export onto a file: one line, no torch."""
    tokenizer, checkpoint = tmp_path / "tokenizer", tmp_path / "checkpoint"
    shutil.copytree(saved / "tokenizer", tokenizer)
    shutil.copytree(saved / "checkpoint", checkpoint)
    (tokenizer / "tokenizer.json").write_text("{}")
    with open(checkpoint / "counts.npz", "ab") as handle:
        handle.write(b"\0")
    (tmp_path / "a_file").write_text("not a folder\n")
    argvs = [["train", "--model", "ngram", "--tokenizer", str(tokenizer), "--train-file", str(saved / "train.txt"),
              "--out", str(tmp_path / "new")],
             ["eval", str(checkpoint), "--data-dir", str(saved / "data")],
             ["export", str(checkpoint), "--out", str(tmp_path / "new")],
             ["export", str(saved / "checkpoint"), "--out", str(tmp_path / "a_file")]]
    out = run_fresh(argvs, tmp_path)
    messages = [err for _, err in out["runs"]]
    assert all(code == 2 and err.count("\n") == 1 for code, err in out["runs"]), messages
    assert f"{tokenizer / 'tokenizer.json'} does not match its manifest checksum (corrupt)" in messages[0]
    assert f"{checkpoint / 'counts.npz'} does not match its checksum" in messages[1] == messages[2]
    assert f"--out {tmp_path / 'a_file'} is a file; give a folder path" in messages[3]
    assert not (tmp_path / "new").exists()
    assert out["heavy"] == []


def test_the_spelled_out_names_are_the_libraries_own():
    from lab.commands import export as export_command
    from lab.commands import folders
    from lab.compare import CELL, GRID, RESULTS
    from lab.export import parts
    from lab.export.checks import SUBMISSION_FILE
    from tokenizers_local.base import MANIFEST_FORMAT, MANIFEST_NAME, MANIFEST_VERSION
    from zoo import checkpoint
    from zoo.train import TrainSettings

    assert folders.SAVED == {"tokenizer": (MANIFEST_FORMAT, MANIFEST_VERSION, "subchar tokenizer train"),
                             "checkpoint": (checkpoint.FORMAT, checkpoint.FORMAT_VERSION, "subchar train")}
    assert folders.SAVED_MANIFEST == MANIFEST_NAME == checkpoint.MANIFEST and checkpoint.TOKENIZER_DIR == "tokenizer"
    assert (folders.RUN_FILE, folders.COMPARE_FILES) == (CELL, (GRID, RESULTS))
    assert folders.SUBMISSION_FILE == SUBMISSION_FILE
    assert export_command.EXPORTABLE_MODELS == parts.EXPORTABLE_MODELS
    assert export_command.NGRAM_MODEL == parts.NGRAM_MODEL and export_command.DEFAULT_LR == TrainSettings.lr


def test_replay_refusals_of_a_neural_export_come_before_torch(saved, tmp_path):
    """--lr for a run that recorded the rate of each step was refused only once torch and the run were loaded."""
    run = tmp_path / "transformer"
    assert main(["train", "--model", "transformer", "--tokenizer", str(saved / "tokenizer"), "--train-file",
                 str(saved / "train.txt"), "--budget", "3", "--set", "n_layer=1", "--set", "n_embd=16",
                 "--set", "n_head=2", "--set", "block_size=16", "--batch-size", "2", "--out", str(run)]) == 0
    out = run_fresh([["export", str(run), "--out", str(tmp_path / "new"), "--lr", "0.01"]], tmp_path)
    [(code, err)] = out["runs"]
    assert code == 2 and err.count("\n") == 1
    assert f"error: {run} recorded the learning rate of each of its steps" in err
    assert not (tmp_path / "new").exists()
    assert out["heavy"] == []
