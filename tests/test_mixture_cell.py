"""The mixture cell ``ngram+char-kn`` end to end: the kind and its cell id, the option and its identity, the
model the cell builds (the token n-gram and the char baseline counted on the text it encoded, mixed per character),
its checkpoint (`subchar eval`, `subchar show`), its export (the harness's loop gives the run's own scores) and
the command line."""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

import lab.cell
import lab.commands.common as common
from eval.data import SplitText, load_split
from eval.energy import EnergyMeter
from eval.errors import UserError
from eval.evaluate import evaluate
from lab import export
from lab.cell import DEFAULT_CHAR_WEIGHT, Cell, CellOptions, adapts, mixture_char_model, train_cell
from lab.cell_phases import with_char_model
from lab.checkpoint_runs import char_model_of
from lab.cli import build_parser, main
from lab.commands.common import MODEL_CHOICES, TRAIN_MODEL_CHOICES
from lab.compare import grid
from lab.export.checks import undefined_names
from lab.identity import cell_identity, identity_key
from lab.phase_plan import Throughputs
from lab.report import compact
from lab.results import read_results
from lab.show import show
from subchar import CharAdapter
from subchar.mixture import Mixture
from test_export import run_in_harness
from test_harness import write_data
from tokenizers_local import load as load_tokenizer
from tokenizers_local import train_tokenizer
from zoo.char_baseline import CharKneserNey
from zoo.checkpoint import CHAR_WEIGHTS, CHARS, load_checkpoint
from zoo.kinds import CHAR_BASELINE, MIXTURE, NGRAM, grid_names, kind_of, trainable_names
from zoo.ngram import KneserNeyLM
from zoo.online_ngram import OnlineKneserNey

WEIGHT = 0.4  # not the default, so a run shows that the flag reached the model
CHAR_ORDER = 4
EVAL_CHARS = 300
RUN = f"bytebpe300-{MIXTURE}"


@pytest.fixture(autouse=True)
def quiet_meter(monkeypatch):
    """No CodeCarbon start-up per cell: the energy is not what these tests look at."""
    monkeypatch.setattr("lab.cell.EnergyMeter", lambda: EnergyMeter(gpu=None, cpu=None))


@pytest.fixture(scope="module")
def grid_run(tmp_path_factory):
    """`subchar compare` of the n-gram and the mixture over bytebpe 300 (char order 4, char weight 0.4, both
    adapting, as by default) on a small proxy text, scored on 300 val chars."""
    root = tmp_path_factory.mktemp("mixture")
    data, train_file = write_data(root)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("lab.cell.EnergyMeter", lambda: EnergyMeter(gpu=None, cpu=None))
        assert main(["compare", "--tokenizers", "bytebpe:300", "--models", NGRAM, MIXTURE, "--budget", "30",
                     "--eval-chars", str(EVAL_CHARS), "--test-chars", "0", "--char-order", str(CHAR_ORDER),
                     "--char-weight", str(WEIGHT), "--beam", "4", "--out", str(root / "grid"),
                     "--data-dir", str(data), "--train-file", str(train_file)]) == 0
    run = root / "grid" / "runs" / RUN
    record = json.loads((run / "record.json").read_text(encoding="utf-8"))
    train_text = load_split("train", train_file=str(train_file)).text
    valid = load_split("valid", str(data)).text[:EVAL_CHARS]
    return run, record, data, train_file, train_text, valid


def rebuilt(run: Path, train_text: str, adapt: bool = True, weight: float = WEIGHT) -> Mixture:
    """The run's model built again from its saved tokenizer alone: the n-gram counted at once on the ids of the
    whole train text (the cell encoded all of it), the char baseline fitted on that text, mixed with ``weight``."""
    tokenizer = load_tokenizer(run / "tokenizer")
    counts = KneserNeyLM.fit(np.asarray(tokenizer.encode(train_text)), tokenizer.vocab_size, order=5)
    char_model = CharKneserNey.fit(SplitText(train_text, "train", "fixture", proxy=True), CHAR_ORDER, adapt=adapt)
    adapter = CharAdapter(OnlineKneserNey(counts) if adapt else counts, tokenizer, mode="exact", beam=4)
    return Mixture([char_model, adapter], [weight, 1 - weight])


# --- the kind, its name and its option ------------------------------------------------------------------------
def test_the_mixture_is_a_counted_tokenized_exportable_grid_model():
    kind = kind_of(MIXTURE)
    assert MIXTURE == "ngram+char-kn" and kind.mixture and kind.counted and kind.tokenized and kind.exportable
    assert kind.token_ngram and kind.size_fact == "ngrams" and not kind_of(NGRAM).mixture
    assert MIXTURE in grid_names() and MIXTURE not in trainable_names()  # a grid cell; `subchar train` has none
    assert MODEL_CHOICES == ("ngram", "ngram+char-kn", "transformer", "mamba", "hyena")
    assert MIXTURE not in TRAIN_MODEL_CHOICES
    cell = Cell(MIXTURE, "unigram", 2048)
    assert cell.id == "unigram2048-ngram+char-kn"
    assert grid(["unigram:2048"], [NGRAM, MIXTURE]) == [Cell(CHAR_BASELINE), Cell(NGRAM, "unigram", 2048), cell]
    assert adapts(cell, CellOptions()) and not adapts(cell, CellOptions(adapt=False))


def test_the_default_weight_is_kept_in_one_place():
    assert CellOptions().char_weight == DEFAULT_CHAR_WEIGHT == common.char_weight_default() == 0.4
    args = build_parser().parse_args(["quickstart"])
    assert args.char_weight == DEFAULT_CHAR_WEIGHT and args.models == (NGRAM, MIXTURE)
    saved = CellOptions().to_dict()
    del saved["char_weight"]  # a grid.json or cell.json from before the option
    assert CellOptions.from_saved(saved).char_weight == DEFAULT_CHAR_WEIGHT


def test_the_weight_is_part_of_a_mixture_cells_identity_only():
    mixture, ngram = Cell(MIXTURE, "bytebpe", 300), Cell(NGRAM, "bytebpe", 300)
    half, other = CellOptions(), CellOptions(char_weight=0.3)
    assert identity_key(cell_identity(mixture, half, "sha")) != identity_key(cell_identity(mixture, other, "sha"))
    assert cell_identity(mixture, other, "sha")["options"]["char_weight"] == 0.3
    for cell in (ngram, Cell(CHAR_BASELINE), Cell("transformer", "bytebpe", 300)):
        assert cell_identity(cell, half, "sha") == cell_identity(cell, other, "sha")
        assert "char_weight" not in cell_identity(cell, half, "sha")["options"]  # as records from before it


def test_the_command_line_takes_a_weight_between_0_and_1(capsys):
    grid_args = ["compare", "--tokenizers", "bytebpe:300", "--models", MIXTURE, "--out", "o"]
    assert build_parser().parse_args([*grid_args, "--char-weight", "0.35"]).char_weight == 0.35
    from lab.commands.grid import options_from

    assert options_from(build_parser().parse_args([*grid_args, "--char-weight", "1"])).char_weight == 1.0
    for value in ("1.5", "-0.1", "nan"):
        with pytest.raises(SystemExit):
            main([*grid_args, "--char-weight", value])
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "--char-weight: expected a number >= 0 and <= 1" in err
    with pytest.raises(SystemExit):  # `subchar train` trains one model; the mixture is a grid cell
        main(["train", "--model", MIXTURE, "--tokenizer", "t", "--out", "o"])
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "invalid choice: 'ngram+char-kn'" in err


def test_an_export_parts_name_check_is_not_fooled_by_a_function_called_top():
    """Python 3.11's symtable takes a scope named ``top`` for the module (subchar.mixture has one)."""
    assert undefined_names("def top(dist, count):\n    return sorted(dist)[:count] + other\n") == ["other"]


# --- the model the cell builds --------------------------------------------------------------------------------
def test_the_step_mixes_the_n_gram_with_the_char_baseline_of_the_same_text(tmp_path):
    """``mixture_char_model`` is ``ngram_char_model`` plus the char baseline counted on the text the ids encode,
    weighted ``char_weight``; its result names the mixture and sums both models' n-grams."""
    train = SplitText("the cat sat on the mat.\nthe dog sat on the log.\n" * 30, "train", "fixture", proxy=True)
    tokenizer = train_tokenizer(train, "bytebpe", 300, progress=False)
    ids = np.asarray(tokenizer.encode(train.text))
    model, result = mixture_char_model(ids, tokenizer.vocab_size, tokenizer, train.text, overrides={"order": 3},
                                       mode="exact", beam=4, char_order=3, char_weight=0.25, adapt=True,
                                       device="cpu")
    char_model, adapter = model.components
    assert model.weights == [0.25, 0.75] and isinstance(char_model, CharKneserNey) and char_model.adapt
    assert isinstance(adapter, CharAdapter) and isinstance(adapter.lm, OnlineKneserNey)
    reference = CharKneserNey.fit(train, order=3)
    assert char_model.chars == reference.chars
    for got, want in zip(char_model.counts.tables, reference.counts.tables):
        assert np.array_equal(got.keys, want.keys) and np.array_equal(got.counts, want.counts)
    assert result.model_name == MIXTURE and result.config == {"vocab_size": tokenizer.vocab_size, "order": 3,
                                                                "char_order": 3, "char_weight": 0.25}
    token_ngrams = sum(len(table.keys) for table in result.model.tables)
    char_ngrams = sum(len(table.keys) for table in reference.counts.tables)
    assert result.ngrams == token_ngrams + char_ngrams and result.tokens_seen == len(ids)
    for weight in (-0.1, 1.5):
        with pytest.raises(UserError, match=r"char weight must lie in \[0, 1\]"):
            mixture_char_model(ids, tokenizer.vocab_size, tokenizer, train.text, overrides={}, mode="exact",
                               beam=4, char_order=3, char_weight=weight)


def test_the_cell_counts_the_char_model_on_the_text_it_encoded(tmp_path, monkeypatch):
    """When the plan encodes a prefix of the train text, the char model learns that prefix too (its vocabulary
    and its counts), as the n-gram does."""
    text = "the cat sat on the mat.\nthe dog sat on the log.\n" * 30 + "zebra quux\n" * 30
    train = SplitText(text, "train", "fixture", proxy=True)
    cut = text.index("zebra")
    real = lab.cell.prepare_ids

    def prefix_only(*args, **kwargs):
        prepared, started = real(*args, **kwargs)
        return replace(prepared, encoded_chars=cut), started

    monkeypatch.setattr(lab.cell, "prepare_ids", prefix_only)
    options = CellOptions(budget_s=30, beam=4, eval_chars=100, test_chars=0, char_order=3, device="cpu",
                          progress=False)
    model, facts = train_cell(Cell(MIXTURE, "bytebpe", 300), options, train, tmp_path / "run",
                              EnergyMeter(gpu=False, cpu=False))
    assert model.components[0].chars == CharKneserNey.fit(SplitText(text[:cut], "train", "x")).chars
    assert "z" not in model.components[0].chars and facts["model"]["vocabulary"] == {"chars": len(set(text[:cut]))}


def test_with_char_model_plans_both_counts_as_one_rate(monkeypatch):
    """A token costs its own counting plus, per character, learning, encoding and counting the char model."""
    chars = Throughputs(probe_s=0.5, tokenizer_chars_per_s=100.0, encode_chars_per_s=200.0, encode_threads=1,
                        chars_per_token=1.0, count_tokens_per_s=50.0)
    monkeypatch.setattr("lab.cell_phases.probe_char_rates", lambda train, order: chars)
    tokens = Throughputs(probe_s=1.0, tokenizer_chars_per_s=10.0, encode_chars_per_s=20.0, encode_threads=2,
                         chars_per_token=4.0, count_tokens_per_s=10.0)
    both = with_char_model(tokens, SplitText("x", "train", "x"), 6)
    assert both.probe_s == 1.5 and both.count_tokens_per_s == pytest.approx(1 / (0.1 + 4 * (0.01 + 0.005 + 0.02)))
    assert replace(both, probe_s=1.0, count_tokens_per_s=10.0) == tokens
    neural = replace(tokens, count_tokens_per_s=None)
    assert with_char_model(neural, SplitText("x", "train", "x"), 6) == neural


def test_the_grid_cell_scores_the_mixture_of_its_two_models(grid_run):
    run, record, _, _, train_text, valid = grid_run
    model = record["model"]
    assert record["submission"] == RUN and model["name"] == MIXTURE and record["extra"]["adapt"] is True
    assert model["config"] == {"vocab_size": 300, "order": 5, "char_order": CHAR_ORDER, "char_weight": WEIGHT}
    assert model["train"]["ngrams"] == model["components"][NGRAM] + model["components"][CHAR_BASELINE]
    assert model["vocabulary"]["chars"] == len(set(train_text))
    again = evaluate(rebuilt(run, train_text), valid, None, progress=False, engine="stream")
    assert (record["val_char_accuracy"], record["bits_per_char"]) == (again.accuracy, again.bits_per_char)
    results = {line["submission"]: line for line in read_results(run.parent.parent / "results.jsonl")}
    assert results[RUN]["extra"]["cell_identity"]["options"]["char_weight"] == WEIGHT
    assert "char_weight" not in results["bytebpe300-ngram"]["extra"]["cell_identity"]["options"]
    assert record["bits_per_char"] != results["bytebpe300-ngram"]["bits_per_char"]


# --- the saved run: checkpoint, eval, show -------------------------------------------------------------------
def test_the_checkpoint_holds_both_models(grid_run):
    run, record, _, _, train_text, valid = grid_run
    checkpoint = load_checkpoint(run / "checkpoint")
    assert checkpoint.model_name == MIXTURE and set(checkpoint.manifest["files"]) == {
        "config.json", "counts.npz", CHAR_WEIGHTS, CHARS}
    assert checkpoint.config["char_weight"] == WEIGHT and checkpoint.config["char_order"] == CHAR_ORDER
    model = char_model_of(checkpoint, "cpu", True, mode="exact", beam=4, prune=None)
    assert isinstance(model, Mixture) and model.weights == [WEIGHT, 1 - WEIGHT]
    assert model.components[0].chars == "".join(sorted(set(train_text)))
    scored = evaluate(model, valid, None, progress=False)
    assert (scored.accuracy, scored.bits_per_char) == (record["val_char_accuracy"], record["bits_per_char"])
    with pytest.raises(UserError, match="only ngram\\+char-kn holds a char model"):
        load_checkpoint(run.parent / "bytebpe300-ngram" / "checkpoint").char_model()


def test_subchar_eval_scores_a_mixture_as_its_cell_did(grid_run, capsys):
    run, record, data, *_ = grid_run
    checkpoint = run / "checkpoint"
    for old in checkpoint.glob("eval_*.json"):
        old.unlink()
    assert main(["eval", str(checkpoint), "--chars", str(EVAL_CHARS), "--beam", "4", "--data-dir", str(data)]) == 0
    [path] = checkpoint.glob("eval_*.json")
    scored = json.loads(path.read_text(encoding="utf-8"))
    assert path.name == f"eval_valid_exact_beam4_{EVAL_CHARS}chars_batch_cpu_adapt.json"
    assert (scored["val_char_accuracy"], scored["bits_per_char"]) == (record["val_char_accuracy"],
                                                                      record["bits_per_char"])
    assert scored["eval_engine"] == "stream"  # a mixture has no batch engine of its own: the benchmark's loop
    assert main(["eval", str(checkpoint), "--chars", str(EVAL_CHARS), "--beam", "4", "--data-dir", str(data),
                 "--no-adapt"]) == 0
    static = json.loads((checkpoint / path.name.replace("_adapt", "")).read_text(encoding="utf-8"))
    assert static["extra"]["adapt"] is False and static["bits_per_char"] != record["bits_per_char"]
    capsys.readouterr()


@pytest.mark.parametrize("damage,message", [
    (lambda folder: (folder / CHAR_WEIGHTS).write_bytes(b"not an npz"), "char_counts.npz does not match its checksum"),
    (lambda folder: (folder / CHARS).unlink(), "lacks chars.json; the checkpoint is incomplete"),
])
def test_a_damaged_char_model_is_one_line_naming_the_fix(grid_run, tmp_path, capsys, damage, message):
    run, _, data, *_ = grid_run
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    damage(copy / "checkpoint")
    assert main(["eval", str(copy / "checkpoint"), "--chars", "50", "--data-dir", str(data)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and "Traceback" not in err
    with pytest.raises(UserError, match=message.split(";")[0]):
        load_checkpoint(copy / "checkpoint")


def test_a_manifest_without_the_char_files_is_refused_by_the_loader(grid_run, tmp_path):
    run, *_ = grid_run
    copy = tmp_path / "checkpoint"
    shutil.copytree(run / "checkpoint", copy)
    manifest = json.loads((copy / "manifest.json").read_text(encoding="utf-8"))
    del manifest["files"][CHARS]
    (copy / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    with pytest.raises(UserError, match="lists no chars.json, which an ngram\\+char-kn checkpoint holds"):
        load_checkpoint(copy)


def test_show_says_what_the_mixture_is(grid_run):
    run, record, *_ = grid_run
    view = show(run)
    assert view["settings"]["cell"] == RUN and view["settings"]["options"]["char_weight"] == WEIGHT
    assert view["scores"]["val_char_accuracy"] == record["val_char_accuracy"] and view["scores"]["adapted"] is True
    checkpoint = show(run / "checkpoint")["settings"]
    assert checkpoint["model"] == MIXTURE and checkpoint["adapt"] is True
    assert checkpoint["config"]["char_weight"] == WEIGHT and checkpoint["config"]["char_order"] == CHAR_ORDER
    rows = {line.split(" | ")[0].lstrip("| "): line.split(" | ") for line in show(run.parent.parent)["table"].splitlines()}
    header, row = rows["run"], rows[RUN]
    assert row[header.index("online")] == "yes"
    assert row[header.index("params")] == f"{compact(record['model']['train']['ngrams'])} n-grams"  # both tables


# --- the export and the harness ------------------------------------------------------------------------------
def test_the_export_reproduces_the_run_under_the_harness(grid_run, tmp_path):
    """The file counts both models and mixes them: under the harness's loop its accuracy, bits/char and every
    prediction are the run's (the cell scored through the same stream)."""
    run, record, _, _, train_text, valid = grid_run
    path = export.export_run(run, tmp_path / "out")
    source = path.read_text(encoding="utf-8")
    assert export.unguarded_imports(source) == [] and "mixture_char_model(encode(encoding, text)" in source
    assert f"CHAR_WEIGHT = {WEIGHT!r}\n" in source and f"CHAR_ORDER = {CHAR_ORDER}\n" in source
    assert "ADAPT = True\n" in source and "class Mixture(CharModel)" in source and "class CharKneserNey" in source
    assert f"mixed with weight {WEIGHT:g} on the char model" in " ".join(source.split())
    result = run_in_harness(path, train_text, valid, tmp_path)
    assert result["refused"] == []
    assert (result["accuracy"], result["bits_per_char"]) == (record["val_char_accuracy"], record["bits_per_char"])
    expected = rebuilt(run, train_text)
    expected.reset()
    guesses = []
    for char in valid:
        guesses.append(expected.predict())
        expected.observe(char)
    assert result["predictions"] == "".join(guesses)
    assert 0.3 < result["accuracy"] < 0.9  # room for a wrong model to show


def test_subchar_harness_scores_the_export_as_the_cell_did(grid_run, tmp_path, capsys):
    run, record, data, train_file, *_ = grid_run
    submission = export.export_run(run, tmp_path / "out")
    assert main(["harness", str(submission), "--data-dir", str(data), "--train-file", str(train_file),
                 "--chars", str(EVAL_CHARS), "--acc-min", "0", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["val_char_accuracy"] == record["val_char_accuracy"] and result["val_chars"] == EVAL_CHARS


def test_an_export_without_adaptation_is_the_static_mixture(grid_run, tmp_path, capsys):
    run, record, _, _, train_text, valid = grid_run
    assert main(["export", str(run), "--out", str(tmp_path / "out"), "--no-adapt"]) == 0
    capsys.readouterr()
    result = run_in_harness(tmp_path / "out" / "submission.py", train_text, valid, tmp_path)
    static = evaluate(rebuilt(run, train_text, adapt=False), valid, None, progress=False)
    assert (result["accuracy"], result["bits_per_char"]) == (static.accuracy, static.bits_per_char)
    assert result["bits_per_char"] != record["bits_per_char"]
    assert math.isfinite(result["bits_per_char"])


# --- Modal ---------------------------------------------------------------------------------------------------
def test_a_mixture_cell_runs_in_the_modal_container_with_its_weight(tmp_path):
    """The container builds the cell from the options' JSON (the weight travels with them) and leaves the run
    folder, both models' tables included, on the results Volume for the client to pull."""
    from lab.modal_container import run_cell_in_container
    from test_modal import data_with_train

    options = CellOptions(budget_s=30, beam=4, eval_chars=100, test_chars=0, char_order=3, char_weight=0.3,
                          progress=False)
    volume = tmp_path / "vol"
    record = run_cell_in_container({"model": MIXTURE, "family": "bytebpe", "vocab_size": 300}, options.to_dict(),
                                   "k", allow_no_energy_counter=True, data_dir=str(data_with_train(tmp_path)),
                                   results_dir=str(volume), results_volume=None)
    assert record["submission"] == RUN and not record["reason"], record["extra"].get("error")
    assert record["model"]["config"]["char_weight"] == 0.3 and record["extra"]["backend"] == "modal"
    checkpoint = volume / "k" / "runs" / RUN / "checkpoint"
    assert load_checkpoint(checkpoint).char_model().chars and (checkpoint / CHAR_WEIGHTS).is_file()
